#!/usr/bin/env bash
# Fault matrix row 3 (issue 4): the card in reader A goes mute until it is
# powered off or reset. A: the caller gets CKR_DEVICE_ERROR by the deadline;
# the recovery ladder reaches the reset / power cycle and A works again
# without anyone touching the card (login again: the reset logged it out).
# B signs all the while; no leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row03 <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card fault 0 mute
sign A expect CKR_DEVICE_ERROR within $FAULT_BOUND_MS
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 20000
relogin A
sign A expect CKR_OK
slot A same
handles-same A
EOF
tk_pass
