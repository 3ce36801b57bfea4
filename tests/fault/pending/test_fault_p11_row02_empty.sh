#!/usr/bin/env bash
# PENDING (not registered with ctest; run by hand: bash tests/fault/pending/test_fault_p11_row02_empty.sh)
#
# Fault matrix row 2, empty response (issue 4): the card in reader A answers
# one APDU of a C_Sign with 0 bytes. Expected: CKR_DEVICE_ERROR (or a
# transparent retry) by the deadline, then A back to a valid card.
#
# Why it fails: this row cannot be produced on the vpcd stack. vsmartcard
# vpcd 0.8 wedges on a zero-length answer frame: the SCardTransmit that got
# it never returns, and every later transmit on that reader, from any
# process, blocks as well (opensc-tool -s ... after `card fault 0 empty
# count=1`: killed by timeout after 8 s, the card never sees another APDU).
# So the module's C_Sign ends with CKR_DEVICE_ERROR after the 5 s deadline
# (correct; working tree of 05:00 UTC), but A never recovers
# (CKR_DEVICE_ERROR for as long as pcscd runs: step "sign A until
# CKR_OK|CKR_USER_NOT_LOGGED_IN within 10000"), and the abandoned worker
# thread stays inside pcsc-lite after C_Finalize (2 threads instead of 1).
# The issue says such a row is produced on the in-process virtual reader
# instead; tokenkit-pkcs11.so
# cannot use that backend yet (tk_slotmgr_opts_t has only `pcsc`), so this
# waits for an in-process virtual-reader backend selectable by the module.
source "$(dirname "$0")/../lib_fault.sh"
fault_setup
fault_run row02_empty <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card fault 0 empty count=1
sign A expect CKR_OK|CKR_DEVICE_ERROR within $FAULT_BOUND_MS
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 10000
relogin A
sign A expect CKR_OK
slot A same
handles-same A
EOF
tk_pass
