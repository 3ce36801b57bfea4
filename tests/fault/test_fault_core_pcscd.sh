#!/usr/bin/env bash
# Fault matrix rows 8 and 9 at the slot-manager level, under real pcscd +
# vpcd, two readers in one slot manager:
#   row 8: pcscd restarted under load -> both readers back within 2 s of
#          the new pcscd accepting clients (bound 3 s in the test); the
#          card handles taken before the restart work again (re-bound to the
#          new connection, one generation on).
#   row 9: pcscd killed and down for 10 s -> clear errors on time during the
#          outage, full service after it, no process restart.
# No thread or descriptor leaked.
DEADLINE_MS=2000
OUTAGE_S=${TK_OUTAGE_S:-10}
source "$(dirname "$0")/lib_core.sh"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
drv card A
drv card B
drv tx A ro
[[ $(val result) == TK_OK ]] || tk_fail "A before the restart: $(val result)"
drv state A
gen0=$(val gen)
drv res
threads0=$(val threads)
fds0=$(val fds)

# ---- row 8: restart under load
drv bg start
t0=$(now_ms)
tk_run "restart pcscd" vpcd restart-pcscd 8>&-
t1=$(now_ms) # the new pcscd accepts clients (stopping and starting it: the harness's part)
for x in A B; do
	drv wait $x valid 10
	[[ $OUT == *" ok "* ]] || tk_fail "row 8: reader $x not back"
done
back_ms=$(($(now_ms) - t0))
ours_ms=$(($(now_ms) - t1))
drv tx A ro
[[ $(val result) == TK_OK ]] || tk_fail "row 8: the old handle on A after the restart: $(val result)"
drv state A
[[ $(val rebinds) == 1 && $(val gen) -gt $gen0 && $(val present) == 1 ]] ||
	tk_fail "row 8: handle not re-bound: $OUT"
drv bg stop
tk_log "row 8: readers back $back_ms ms after the restart began, $ours_ms ms after the new pcscd accepted clients; B: $OUT"
# The bound is on what follows the restart (the virtual cards reconnecting
# to the new pcscd, our readers coming back): stopping and starting pcscd
# itself took over 2.7 s on a loaded machine of this kind (a whole-suite
# loop failed on 3164 ms in all, of which 420 ms after the restart).
((ours_ms <= 2000 + 1000)) || tk_fail "row 8: readers back only $ours_ms ms after pcscd was back"
drv tx B ro
[[ $(val result) == TK_OK ]] || tk_fail "row 8: the old handle on B after the restart: $(val result)"

# ---- row 9: an outage
tk_run "stop pcscd" vpcd stop-pcscd 8>&-
drv wait A absent 10
[[ $OUT == *" ok "* ]] || tk_fail "row 9: A still present with pcscd down"
for x in A B; do
	drv tx $x ro
	r=$(val result)
	[[ $r == TK_ERR_READER_GONE || $r == TK_ERR_NO_SERVICE ]] || tk_fail "row 9: during the outage $x said $r"
	(($(val ms) <= DEADLINE_MS + 1000)) || tk_fail "row 9: error after $(val ms) ms"
done
grep -q '^event service-lost' "$TK_TMP/drv.out" || tk_fail "row 9: no service-lost event"
sleep "$OUTAGE_S"
tk_run "start pcscd" vpcd start-pcscd 8>&-
t0=$(now_ms)
for x in A B; do
	drv wait $x valid 10
	[[ $OUT == *" ok "* ]] || tk_fail "row 9: reader $x not back after the outage"
done
tk_log "row 9: readers back $(($(now_ms) - t0)) ms after pcscd started"
for x in A B; do
	drv tx $x rw
	[[ $(val result) == TK_OK ]] || tk_fail "row 9: the old handle on $x after the outage: $(val result)"
done
drv state A
[[ $(val rebinds) == 2 ]] || tk_fail "row 9: handle not re-bound: $OUT"

drv settle 15
(($(val threads) <= threads0 && $(val fds) <= fds0)) || tk_fail "leak: threads $threads0 -> $(val threads), fds $fds0 -> $(val fds)"
drv quit
exec 8>&-
wait "$DRV_PID" || tk_fail "driver exited with an error"
DRV_PID=""
tk_pass
