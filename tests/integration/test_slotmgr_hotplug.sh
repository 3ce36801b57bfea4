#!/usr/bin/env bash
# Hotplug through the slot manager: a virtual card started and stopped in a
# real pcscd shows up as card-inserted / card-removed events, both in a C
# program on the slot manager (tk-slotmgr-probe) and in `tokenkit watch`,
# one event per insertion and removal. Prints the measured latency (about
# one pcscd poll, ~400 ms; bench/card_insert.c measures it): a slow machine
# is not a failure.
source "$(dirname "$0")/lib.sh"

PROBE="$TK_BUILD/tk-slotmgr-probe"
TOOL="$TK_BUILD/tokenkit"
[[ -x "$PROBE" && -x "$TOOL" ]] || tk_fail "tk-slotmgr-probe / tokenkit not built in $TK_BUILD"

tk_env_start
BG_PIDS=()
kill_bg() {
	local p
	for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap 'rc=$?; kill_bg; (exit $rc); tk_cleanup' EXIT

# wait_line FILE PATTERN SECONDS: bounded wait for a line matching PATTERN
wait_line() {
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		grep -Eq -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	cat "$1" >&2
	tk_fail "no /$2/ in $1 within $3 s"
}
count_lines() { grep -Ec -- "$2" "$1" 2>/dev/null || true; }
# wait_count FILE PATTERN N SECONDS: bounded wait for the N-th line matching
# PATTERN (a round's event, not an earlier round's); the bound only ends a
# wait for an event that never comes: the latency is measured, not judged
wait_count() {
	local i
	for ((i = 0; i < $4 * 20; i++)); do
		[[ $(count_lines "$1" "$2") -ge $3 ]] && return 0
		sleep 0.05
	done
	cat "$1" >&2
	tk_fail "fewer than $3 /$2/ in $1 within $4 s"
}

# The probe exits when its stdin closes; keep it open with a fifo.
mkfifo "$TK_TMP/probe.in"
"$PROBE" watch 120 <"$TK_TMP/probe.in" >"$TK_TMP/probe.out" 2>&1 &
BG_PIDS+=($!)
exec 8>"$TK_TMP/probe.in"
"$TOOL" watch --json >"$TK_TMP/watch.json" 2>"$TK_TMP/watch.err" &
WATCH_PID=$!
BG_PIDS+=($WATCH_PID)
"$TOOL" watch >"$TK_TMP/watch.txt" 2>&1 &
BG_PIDS+=($!)
wait_line "$TK_TMP/probe.out" '^ready TK_OK' 5
wait_line "$TK_TMP/probe.out" 'reader-added slot=[0-9]+ .*Virtual PCD 00 00' 5
wait_line "$TK_TMP/watch.json" '"event": "reader-added"' 5

lat_in=() lat_out=()
for round in 1 2 3; do
	t0=$(date +%s%N)
	tk_card_start 0
	wait_count "$TK_TMP/probe.out" 'card-inserted .*Virtual PCD 00 00' "$round" 30
	n=$(count_lines "$TK_TMP/probe.out" 'card-inserted .*Virtual PCD 00 00')
	[[ $n == "$round" ]] || tk_fail "round $round: $n card-inserted events"
	t_ev=$(grep -E 'card-inserted .*Virtual PCD 00 00' "$TK_TMP/probe.out" | tail -1 | awk '{print $2}')
	lat_in+=($(((t_ev - t0) / 1000000)))
	wait_count "$TK_TMP/probe.out" 'state-changed .*state=valid.*Virtual PCD 00 00' "$round" 30

	t0=$(date +%s%N)
	tk_card_stop 0
	wait_count "$TK_TMP/probe.out" 'card-removed .*Virtual PCD 00 00' "$round" 30
	n=$(count_lines "$TK_TMP/probe.out" 'card-removed .*Virtual PCD 00 00')
	[[ $n == "$round" ]] || tk_fail "round $round: $n card-removed events"
	t_ev=$(grep -E 'card-removed .*Virtual PCD 00 00' "$TK_TMP/probe.out" | tail -1 | awk '{print $2}')
	lat_out+=($(((t_ev - t0) / 1000000)))
done
tk_log "card start -> card-inserted event (ms): ${lat_in[*]} (includes vpcd-env start of the card)"
tk_log "card stop -> card-removed event (ms): ${lat_out[*]}"

# tokenkit watch saw the same, one JSON object per line, in order.
wait_count "$TK_TMP/watch.json" '"event": "card-removed".*Virtual PCD 00 00' 3 30
python3 - "$TK_TMP/watch.json" <<'PY' || tk_fail "tokenkit watch --json output"
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
seqs = [e["seq"] for e in evs]
assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
ins = [e for e in evs if e["event"] == "card-inserted" and e["reader"] == "Virtual PCD 00 00"]
rem = [e for e in evs if e["event"] == "card-removed" and e["reader"] == "Virtual PCD 00 00"]
assert len(ins) == 3 and len(rem) == 3, (len(ins), len(rem))
assert all(len(e["atr"]) >= 4 for e in ins)
assert all(e["backend"] == "pcsc" for e in evs), [e["backend"] for e in evs]
PY
grep -Eq 'card-inserted +backend=pcsc slot=[0-9]+ state=empty->probing reader="Virtual PCD 00 00" atr=3B' "$TK_TMP/watch.txt" ||
	{ cat "$TK_TMP/watch.txt" >&2; tk_fail "tokenkit watch text output"; }

# SIGTERM ends watch cleanly.
kill -TERM "$WATCH_PID"
for ((i = 0; i < 50; i++)); do kill -0 "$WATCH_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$WATCH_PID" 2>/dev/null && tk_fail "tokenkit watch still running 5 s after SIGTERM"
wait "$WATCH_PID" || tk_fail "tokenkit watch exit status $? after SIGTERM"
tk_pass
