#!/usr/bin/env bash
# A card that never answers: the caller gets TK_ERR_TIMEOUT by its deadline
# (plus a generous "did not hang" margin) although the worker stays stuck in
# SCardTransmit; the other reader keeps answering meanwhile; the stuck reader
# is quarantined and answers TK_ERR_QUARANTINED at once; once the card
# answers again the recovery ladder reconnects and APDUs work without
# restarting the process.
source "$(dirname "$0")/lib.sh"

PROBE="$TK_BUILD/tk-slotmgr-probe"
[[ -x "$PROBE" ]] || tk_fail "tk-slotmgr-probe not built in $TK_BUILD"
DEADLINE_MS=1000

tk_env_start
tk_card_start 0
tk_card_start 1
PROBE_PID=""
trap 'rc=$?; [[ -n $PROBE_PID ]] && kill -TERM "$PROBE_PID" 2>/dev/null; (exit $rc); tk_cleanup' EXIT

wait_line() {
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		grep -Eq -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	cat "$1" >&2
	tk_fail "no /$2/ in $1 within $3 s"
}
field() { sed -nE "s/^$1 .*$2=([^ ]+).*/\\1/p" "$TK_TMP/probe.out" | head -1; }

tk_run "stall card 0" vpcd card fault 0 stall
mkfifo "$TK_TMP/probe.in"
"$PROBE" stall "$TK_READER0" "$TK_READER1" "$DEADLINE_MS" <"$TK_TMP/probe.in" >"$TK_TMP/probe.out" 2>&1 &
PROBE_PID=$!
exec 8>"$TK_TMP/probe.in"
wait_line "$TK_TMP/probe.out" '^waiting-release' $((DEADLINE_MS / 1000 + 15))
cat "$TK_TMP/probe.out" >&2

[[ $(field stalled result) == TK_ERR_TIMEOUT ]] || tk_fail "stalled transmit: not TK_ERR_TIMEOUT"
ms=$(field stalled elapsed_ms)
((ms >= DEADLINE_MS - 50 && ms < DEADLINE_MS + 1000)) || tk_fail "stalled transmit returned after $ms ms"
ok=$(field other ok)
fail=$(field other fail)
((ok > 0 && fail == 0)) || tk_fail "other reader during the stall: ok=$ok fail=$fail"
[[ $(field stalled-again result) == TK_ERR_QUARANTINED ]] || tk_fail "second call on the stuck reader"
ms=$(field stalled-again elapsed_ms)
((ms < 1000)) || tk_fail "second call on the stuck reader took $ms ms"
grep -Eq 'state-changed .*state=quarantined.*Virtual PCD 00 00' "$TK_TMP/probe.out" ||
	tk_fail "no 'quarantined' state event"

tk_run "release card 0" vpcd card fault 0 none
echo go >&8
wait_line "$TK_TMP/probe.out" '^after-release' 15
cat "$TK_TMP/probe.out" >&2
grep -q '^after-release result=TK_OK' "$TK_TMP/probe.out" || tk_fail "reader did not come back"
exec 8>&-
wait "$PROBE_PID" || true
PROBE_PID=""
tk_log "other reader answered $ok APDUs during the ${DEADLINE_MS} ms stall"
tk_pass
