#!/usr/bin/env bash
# Fault matrix row 8 (issue 4): pcscd is restarted while B signs. Both
# readers come back within 2 s of pcscd being up again (bounded here by
# 2 s + 1 s): B signs again by then, A's old session signs again by then
# (after a new login if the cards were reset); sessions survive (B never
# needed a new session), slots and handles are the same. B's failures are
# allowed only around the restart. No leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row08 <<EOF
sign A expect CKR_OK
b-window open 3000
mark fault
exec \$VPCD_ENV restart-pcscd
mark fault-end
b-ok-since fault-end within 3000
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 3000
relogin A
sign A expect CKR_OK
b-window close
b-reopens 0
slot A same
slot B same
handles-same A
EOF
tk_pass
