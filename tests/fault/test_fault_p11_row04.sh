#!/usr/bin/env bash
# Fault matrix row 4 (issue 4): the card in reader A is removed in the
# middle of a C_Sign (its APDU is held by the card, then the card goes).
# A: that C_Sign answers CKR_DEVICE_REMOVED (well before the deadline + 1 s);
# the slot then shows no token. B signs all the while; no leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row04 <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card fault 0 stall count=1
exec-bg sleep 0.5; \$VPCD_ENV card fault 0 remove
sign A expect CKR_DEVICE_REMOVED within $FAULT_BOUND_MS
token A absent within 3000
slotinfo A
EOF
tk_pass
