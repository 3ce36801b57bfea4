#!/usr/bin/env bash
# Carried transactions (tk_slotmgr_opts_t.txn_carry_ms, what tokenkitd
# uses): with carrying on, back-to-back transactions of one process take
# pcscd's transaction over instead of ending and beginning it again; with
# it off (every application's module), each is begun at pcscd. A carried
# transaction nobody takes over is ended by the reader's worker: another
# program (OpenSC's opensc-tool, which locks the card with
# SCardBeginTransaction for its APDU) gets the card while our process still
# holds its connection.
source "$(dirname "$0")/lib.sh"

PROBE="$TK_BUILD/tk-slotmgr-probe"
[[ -x "$PROBE" ]] || tk_fail "tk-slotmgr-probe not built in $TK_BUILD"
tk_require_cmd opensc-tool

tk_env_start
tk_card_start 0

tk_run "50 transactions, carrying off" "$PROBE" txn "$TK_READER0" 50 0 0
tk_expect '^txn ok=50 begun=50 carried=0 '
tk_run "50 transactions, carrying on" "$PROBE" txn "$TK_READER0" 50 60000 0
tk_expect '^txn ok=50 begun=1 carried=49 '
# One transaction is carried for at most txn_carry_ms (1 ms here) from its
# beginning: 300 rounds through pcscd and vpcd take longer than that.
tk_run "300 transactions, carried for 1 ms at most" "$PROBE" txn "$TK_READER0" 300 1 0
tk_expect '^txn ok=300 '
read -r begun carried < <(sed -n 's/^txn ok=300 begun=\([0-9]*\) carried=\([0-9]*\) .*/\1 \2/p' <<<"$TK_OUT")
[[ -n $begun && $begun -ge 2 && $((begun + carried)) -eq 300 ]] ||
	tk_fail "begun=$begun carried=$carried: the 1 ms bound did not end a transaction"
tk_log "with a 1 ms bound: $begun begun, $carried carried"

# The last carried transaction: our process keeps its connection for 20 s
# after its last END; opensc-tool must get the card meanwhile.
"$PROBE" txn "$TK_READER0" 50 60000 20 >"$TK_TMP/hold.out" 2>&1 &
hold=$!
for ((i = 0; i < 100; i++)); do grep -q '^idle' "$TK_TMP/hold.out" && break; sleep 0.1; done
grep -q '^txn ok=50 begun=1 carried=49 ' "$TK_TMP/hold.out" ||
	{ cat "$TK_TMP/hold.out" >&2; tk_fail "the holding probe did not carry its transactions"; }
tk_run "another program's APDU while our connection stays" \
	timeout 10 opensc-tool -r "$TK_READER0" -s 00:A4:04:00:09:A0:00:00:03:08:00:00:10:00:00
tk_expect 'SW1=0x(90|61)'
if grep -q '^done' "$TK_TMP/hold.out"; then
	tk_fail "opensc-tool got the card only after our process let its connection go"
fi
kill "$hold" 2>/dev/null || true
wait "$hold" 2>/dev/null || true
tk_pass
