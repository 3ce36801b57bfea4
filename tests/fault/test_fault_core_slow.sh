#!/usr/bin/env bash
# Fault matrix row 10 at the slot-manager level, under real pcscd + vpcd: a
# slow card (every response 2 s late) with a 5 s deadline works, and the
# recovery ladder never starts (no false recovery); B is used all the while.
DEADLINE_MS=5000
source "$(dirname "$0")/lib_core.sh"
drv card A
drv card B
drv res
threads0=$(val threads)
fds0=$(val fds)
drv bg start
tk_run "card 0: every response 2 s late" vpcd card fault 0 delay=2000
for k in 1 2 3; do
	drv tx A ro
	[[ $(val result) == TK_OK && $(val sw) == 9000 ]] || tk_fail "slow card, APDU $k: $(val result)"
	ms=$(val ms)
	((ms >= 1900 && ms < DEADLINE_MS)) || tk_fail "slow card, APDU $k answered after $ms ms"
done
drv tx A rw
[[ $(val result) == TK_OK ]] || tk_fail "slow card, state-changing APDU: $(val result)"
tk_run "card 0: normal again" vpcd card fault 0 none
drv tx A ro
[[ $(val result) == TK_OK ]] || tk_fail "after the slow phase: $(val result)"
drv bg stop
((  $(val ok) > 50 && $(val fail) == 0 )) || tk_fail "B during the slow phase: $OUT"
drv diag A
[[ $(val recoveries) == 0 && $(val timeouts) == 0 && $(val errors) == 0 ]] ||
	tk_fail "false recovery on a slow card: $OUT"
[[ $(val state) == valid ]] || tk_fail "A not valid: $OUT"
if grep -Eq '^event (state-changed|recovery) A state=(recovering|quarantined)' "$TK_TMP/drv.out"; then
	tk_fail "A left the valid state on a slow card"
fi
drv settle 10
(($(val threads) <= threads0 && $(val fds) <= fds0)) || tk_fail "leak: threads $threads0 -> $(val threads), fds $fds0 -> $(val fds)"
drv quit
exec 8>&-
wait "$DRV_PID" || tk_fail "driver exited with an error"
DRV_PID=""
[[ ! -s $TOKENKIT_RECOVERY_LOG ]] || tk_fail "recovery log written for a slow card"
tk_pass
