#!/usr/bin/env bash
# The fault injection of tokenkit-vcard, seen by a raw PC/SC client
# (build/apdu_rtt) through pcscd + vpcd: what each fault spec does to
# SCardTransmit. The figures behind the table in README.md.
source "$(dirname "$0")/lib.sh"
tk_require_cmd opensc-tool
RTT="$TK_BUILD/apdu_rtt"
[[ -x $RTT ]] || tk_fail "$RTT not built"

tk_env_start
tk_card_start 0
fault() { tk_run "fault $*" vpcd card fault 0 "$*"; }
rtt() { "$RTT" --reader "$TK_READER0" "$@"; }

tk_run "baseline" rtt --count 20
tk_expect 'last_sw=9000'

fault 'short count=1'
tk_run_fails "short answer" rtt --count 1
tk_expect '\(1 bytes\)'
tk_run "next APDU is normal again" rtt --count 5

fault 'garbage count=1'
tk_run "garbage answer (random bytes, still 'success')" rtt --count 1
tk_run "next APDU is normal again" rtt --count 5
tk_expect 'last_sw=9000'

fault 'delay=300 count=1'
tk_run "delayed answer" rtt --count 1
us=$(sed -n 's/^rtt_max_us=//p' <<<"$TK_OUT")
((us >= 300000)) || tk_fail "delay=300 answered after ${us} us"
tk_run "delay is over" rtt --count 5
us=$(sed -n 's/^rtt_max_us=//p' <<<"$TK_OUT")
((us < 300000)) || tk_fail "delay did not end (${us} us)"

# the card vanishes with an APDU outstanding: 0-byte success, then it is back
fault 'close=600 count=1'
tk_run_fails "close mid-APDU" rtt --count 1
tk_expect '\(0 bytes\)'
tk_wait 5 "card back after close" rtt --count 1

# stall: the transmit blocks until the fault is cleared, then completes
fault 'stall'
rtt --count 1 >"$TK_TMP/stall.out" 2>&1 &
bg=$!
sleep 1
kill -0 "$bg" 2>/dev/null || { cat "$TK_TMP/stall.out" >&2; tk_fail "stall did not block"; }
tk_run "status shows the held APDU" vpcd card status 0
tk_expect 'held=1'
fault none
for ((i = 0; i < 50; i++)); do kill -0 "$bg" 2>/dev/null || break; sleep 0.1; done
wait "$bg" || { cat "$TK_TMP/stall.out" >&2; tk_fail "stalled APDU did not complete after 'none'"; }
tk_run "normal after stall" rtt --count 5

# mute: same blocking; "none" (or a power cycle) ends it
fault 'mute'
rtt --count 1 >"$TK_TMP/mute.out" 2>&1 &
bg=$!
sleep 1
kill -0 "$bg" 2>/dev/null || { cat "$TK_TMP/mute.out" >&2; tk_fail "mute did not block"; }
fault none
for ((i = 0; i < 50; i++)); do kill -0 "$bg" 2>/dev/null || break; sleep 0.1; done
wait "$bg" || { cat "$TK_TMP/mute.out" >&2; tk_fail "muted APDU did not complete after 'none'"; }

# remove / insert between APDUs
fault remove
tk_wait 3 "card gone" tk_card_absent 0
tk_run_fails "no card" rtt --count 1
fault insert
tk_wait 3 "card back" tk_card_present 0
tk_run "normal after insert" rtt --count 5

# empty (0-byte) answer: vpcd keeps waiting, the transmit blocks until the
# card disconnects
fault 'empty count=1'
rtt --count 1 >"$TK_TMP/empty.out" 2>&1 &
bg=$!
sleep 1
if kill -0 "$bg" 2>/dev/null; then
	tk_log "empty answer: SCardTransmit blocks (as measured before)"
	fault remove
	for ((i = 0; i < 50; i++)); do kill -0 "$bg" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$bg" 2>/dev/null && { kill "$bg"; tk_fail "blocked transmit not released by remove"; }
	wait "$bg" || true
	tk_log "after remove: $(tr '\n' ' ' <"$TK_TMP/empty.out")"
	fault insert
else
	wait "$bg" || true
	tk_log "empty answer returned: $(tr '\n' ' ' <"$TK_TMP/empty.out")"
fi
tk_wait 5 "card usable after empty" rtt --count 3
tk_pass
