#!/usr/bin/env bash
# Fault matrix row 2, empty response (issue 4): the card in reader A answers
# the GENERAL AUTHENTICATE of a C_Sign with 0 bytes. A state-changing command
# is never repeated, so C_Sign says CKR_DEVICE_ERROR at once; the ladder's
# reconnect brings A back to a valid card: same slot and handles, not logged
# in; login and sign work. B signs all the while; no leak; one process.
#
# Produced on the in-process virtual reader (TOKENKIT_READERS=vcard:...), as
# the issue allows: vsmartcard vpcd 0.8 wedges on a zero-length answer frame
# (the SCardTransmit that got it never returns, nor does any later transmit
# on that reader from any process), so under pcscd this is a stall; the
# short and garbage halves of row 2 run under pcscd in
# test_fault_p11_row02.sh.
source "$(dirname "$0")/lib_fault.sh"
fault_setup_vreader
fault_run row02_empty <<EOF
sign A expect CKR_OK
exec \$VR_SEND_A empty,count=1
sign A expect CKR_DEVICE_ERROR within $FAULT_BOUND_MS
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 10000
relogin A
sign A expect CKR_OK
slot A same
handles-same A
EOF
tk_pass
