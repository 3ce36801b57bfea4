#!/usr/bin/env bash
# Fault matrix rows 8 and 9 at the slot-manager level, under real pcscd +
# vpcd, two readers in one slot manager:
#   row 8: pcscd restarted under load -> both readers back within 2 s; the
#          card handles taken before the restart work again (re-bound to the
#          new connection, one generation on).
#   row 9: pcscd killed and down for 10 s -> clear errors on time during the
#          outage, full service after it, no process restart.
# No thread or descriptor leaked.
source "$(dirname "$0")/../integration/lib.sh"

DRV="$TK_BUILD/tk-slotmgr-fault"
[[ -x "$DRV" ]] || tk_fail "tk-slotmgr-fault not built in $TK_BUILD"
DEADLINE_MS=2000
OUTAGE_S=${TK_OUTAGE_S:-10}

tk_env_start
tk_card_start 0
tk_card_start 1
export TOKENKIT_RECOVERY_LOG="$TK_TMP/recovery.jsonl"
DRV_PID=""
trap 'rc=$?; [[ -n $DRV_PID ]] && kill -TERM "$DRV_PID" 2>/dev/null; (exit $rc); tk_cleanup' EXIT

wait_for() { # pattern seconds
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		grep -Eq -- "$1" "$TK_TMP/drv.out" 2>/dev/null && return 0
		sleep 0.05
	done
	cat "$TK_TMP/drv.out" "$TK_TMP/drv.err" >&2
	tk_fail "no /$1/ from the driver within $2 s"
}
N=0
drv() { # command... ; answer lines in $OUT
	N=$((N + 1))
	echo "$*" >&8
	wait_for "^done $N\$" "${DRV_WAIT:-30}"
	OUT=$(awk -v a="done $((N - 1))" -v b="done $N" 'BEGIN{on=(a=="done 0")} $0==a{on=1;next} $0==b{on=0} on' "$TK_TMP/drv.out" | grep -v '^event ' || true)
	tk_log "> $* : $(tr '\n' ' ' <<<"$OUT")"
}
val() { sed -nE "s/.*[ ^]$1=([^ ]+).*/\\1/p" <<<"$OUT" | head -1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

mkfifo "$TK_TMP/drv.in"
"$DRV" "$TK_READER0" "$TK_READER1" "$DEADLINE_MS" <"$TK_TMP/drv.in" >"$TK_TMP/drv.out" 2>"$TK_TMP/drv.err" &
DRV_PID=$!
exec 8>"$TK_TMP/drv.in"
wait_for '^ready' 15
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
for x in A B; do
	drv wait $x valid 10
	[[ $OUT == *" ok "* ]] || tk_fail "row 8: reader $x not back"
done
back_ms=$(($(now_ms) - t0))
drv tx A ro
[[ $(val result) == TK_OK ]] || tk_fail "row 8: the old handle on A after the restart: $(val result)"
drv state A
[[ $(val rebinds) == 1 && $(val gen) -gt $gen0 && $(val present) == 1 ]] ||
	tk_fail "row 8: handle not re-bound: $OUT"
drv bg stop
tk_log "row 8: readers back $back_ms ms after the restart began; B: $OUT"
((back_ms <= 2000 + 1000)) || tk_fail "row 8: readers back only after $back_ms ms"
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
