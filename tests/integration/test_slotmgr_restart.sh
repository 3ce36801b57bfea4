#!/usr/bin/env bash
# pcscd restarted (and briefly stopped) under a running slot manager: the
# manager reports service-lost / service-restored, the readers come back with
# their old slot ids, and APDUs work again without restarting the process.
source "$(dirname "$0")/lib.sh"

PROBE="$TK_BUILD/tk-slotmgr-probe"
[[ -x "$PROBE" ]] || tk_fail "tk-slotmgr-probe not built in $TK_BUILD"

tk_env_start
tk_card_start 0
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

"$PROBE" survive "$TK_READER0" 60 >"$TK_TMP/probe.out" 2>&1 &
PROBE_PID=$!
wait_line "$TK_TMP/probe.out" '^ok ' 10
slot=$(sed -nE 's/.*reader-added slot=([0-9]+) .*Virtual PCD 00 00.*/\1/p' "$TK_TMP/probe.out" | head -1)

t0=$(date +%s%N)
tk_run "restart pcscd" vpcd restart-pcscd
wait_line "$TK_TMP/probe.out" 'service-lost' 10
wait_line "$TK_TMP/probe.out" 'service-restored' 10
# a failure, then success again, after the restart
for ((i = 0; i < 200; i++)); do
	tail -1 "$TK_TMP/probe.out" | grep -q '^ok ' && sed -n '/^fail/,$p' "$TK_TMP/probe.out" | grep -q '^ok ' && break
	sleep 0.05
done
sed -n '/^fail/,$p' "$TK_TMP/probe.out" | grep -q '^ok ' || { cat "$TK_TMP/probe.out" >&2; tk_fail "APDUs did not work again after the restart"; }
t_ok=$(sed -n '/^fail/,$p' "$TK_TMP/probe.out" | sed -nE 's/^ok ([0-9]+)/\1/p' | head -1)
tk_log "pcscd restart -> APDUs work again after $(((t_ok - t0) / 1000000)) ms"
grep -Eq "reader-added slot=$slot .*Virtual PCD 00 00" <(sed -n '/service-restored/,$p' "$TK_TMP/probe.out") ||
	tk_fail "reader did not come back with slot id $slot"

# an outage: pcscd gone for a while, then back
n_ok=$(grep -c '^ok ' "$TK_TMP/probe.out")
tk_run "stop pcscd" vpcd stop-pcscd
sleep 1.5
tk_run "start pcscd" vpcd start-pcscd
for ((i = 0; i < 200; i++)); do
	(($(grep -c '^ok ' "$TK_TMP/probe.out") > n_ok)) && break
	sleep 0.05
done
(($(grep -c '^ok ' "$TK_TMP/probe.out") > n_ok)) || { cat "$TK_TMP/probe.out" >&2; tk_fail "APDUs did not work again after the outage"; }
kill -TERM "$PROBE_PID" 2>/dev/null || true
wait "$PROBE_PID" 2>/dev/null || true
PROBE_PID=""
tk_pass
