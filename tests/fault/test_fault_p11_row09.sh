#!/usr/bin/env bash
# Fault matrix row 9 (issue 4): pcscd is killed, stays down for 10 s, and is
# started again. During the outage calls on A fail at once with a clear
# error (device/token errors, not CKR_GENERAL_ERROR or a hang); after it
# both readers give full service again in the same process (new session and
# login where the module had to drop them). No leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
CLEAR="CKR_DEVICE_ERROR|CKR_DEVICE_REMOVED|CKR_TOKEN_NOT_PRESENT|CKR_SESSION_HANDLE_INVALID|CKR_SLOT_ID_INVALID"
fault_run row09 <<EOF
sign A expect CKR_OK
b-window open 20000
mark fault
exec \$VPCD_ENV stop-pcscd
sleep 1000
sign A expect $CLEAR within 2000
token A absent within 3000
sleep 4000
sign A expect $CLEAR within 2000
sleep 4000
exec \$VPCD_ENV start-pcscd
mark fault-end
b-ok-since fault-end within 5000
recover A within 5000
b-window close
slot A same
slot B same
EOF
tk_pass
