#!/usr/bin/env bash
# kill -9 during a storm of registry writes, 200 times (TK_CRASH_ROUNDS):
# afterwards every record file parses (no torn record: old or new, never a
# mix) and every write that was acknowledged (tk_registry_put returned its
# generation) is in the store, at that generation or a later one.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_registry.sh"
reg_setup
ROUNDS=${TK_CRASH_ROUNDS:-200}
: >"$TK_TMP/acks"
for ((i = 0; i < ROUNDS; i++)); do
	"$REGT" storm "$STORE" 8 >>"$TK_TMP/acks" 2>>"$TK_TMP/storm.err" &
	pid=$!
	# somewhere in the middle of a write: 2..40 ms after the start
	sleep "0.0$(printf '%02d' $((RANDOM % 39 + 2)))"
	kill -9 "$pid" 2>/dev/null || tk_fail "round $i: the storm ended by itself: $(tail -n 3 "$TK_TMP/acks")"
	wait "$pid" 2>/dev/null || true
	if ! out=$("$REGT" verify "$STORE" "$TK_TMP/acks"); then
		tk_fail "round $i: $out"
	fi
done
tk_log "$out ($(grep -c '^ack' "$TK_TMP/acks") writes acknowledged over $ROUNDS kills)"
grep -q '^error' "$TK_TMP/acks" && tk_fail "a write failed: $(grep '^error' "$TK_TMP/acks" | head -n 1)"
tk_log "PASS"
