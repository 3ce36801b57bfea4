#!/usr/bin/env bash
# Fault matrix row 11 (issue 4): C_WaitForSlotEvent blocked (1) while pcscd
# restarts: it wakes with CKR_OK and a slot; (2) while C_Finalize is called:
# it wakes with CKR_CRYPTOKI_NOT_INITIALIZED; neither hangs. The module then
# initialises again and signs. No leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row11 <<EOF
sign A expect CKR_OK
waitevent-drain
waitevent-bg
sleep 500
waitevent-blocked
b-window open 3000
exec \$VPCD_ENV restart-pcscd
mark fault-end
waitevent-join expect CKR_OK within 5000
b-ok-since fault-end within 3000
recover A within 5000
b-window close
waitevent-drain
waitevent-bg
sleep 500
waitevent-blocked
finalize
waitevent-join expect CKR_CRYPTOKI_NOT_INITIALIZED within 2000
initialize
sign A expect CKR_OK
EOF
tk_pass
