#!/usr/bin/env bash
# Fault matrix row 1 (issue 4): the card in reader A stalls mid-APDU forever.
# A: the caller gets CKR_DEVICE_ERROR by the deadline (+1 s); the reader is
# quarantined (the next call fails at once instead of waiting for the card
# again); once the stall ends (`card fault 0 none`) A recovers by itself:
# same slot, same session, same handles, login again if the card was reset,
# then signing works. B signs all the while; no leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row01 <<EOF
sign A expect CKR_OK
mark fault
exec \$VPCD_ENV card fault 0 stall
sign A expect CKR_DEVICE_ERROR within $FAULT_BOUND_MS
mark error
# quarantined: no second wait for a card that does not answer
sign A expect CKR_DEVICE_ERROR within 1000
sleep 1000
sign A expect CKR_DEVICE_ERROR within 1000
exec \$VPCD_ENV card fault 0 none
mark fault-end
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 20000
mark valid
# the ladder may still reset the card: whatever it did, the same session must
# sign again (after a new login if the card was reset) and keep signing
sleep 1000
recover A within 5000 same-session
sign A expect CKR_OK
sign A expect CKR_OK
slot A same
serial A same
handles-same A
EOF
tk_pass
