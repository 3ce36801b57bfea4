#!/usr/bin/env bash
# Fault matrix row 2 (issue 4): garbage and truncated (1-byte) responses
# from the card in reader A, each for one APDU of a C_Sign. (The empty
# response is pending/test_fault_p11_row02_empty.sh: vpcd 0.8 wedges on it.)
# A: an error (CKR_DEVICE_ERROR) or a transparent retry, never a wrong
# signature (every CKR_OK is verified), never a hang; then A is back to a
# valid card on the same session (login again if the card was reset).
# B signs all the while; no leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row02 <<EOF
sign A expect CKR_OK
# truncated answer (1 byte)
exec \$VPCD_ENV card fault 0 short count=1
sign A expect CKR_OK|CKR_DEVICE_ERROR within $FAULT_BOUND_MS
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 10000
relogin A
sign A expect CKR_OK
# random bytes (any status word may come out of them: any result but a wrong signature)
exec \$VPCD_ENV card fault 0 garbage count=1
sign A expect CKR_OK|ERR within $FAULT_BOUND_MS
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 10000
relogin A
sign A expect CKR_OK
slot A same
handles-same A
EOF
tk_pass
