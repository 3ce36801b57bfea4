#!/usr/bin/env bash
# Two readers in parallel through one slot manager, the APDU round trip
# through slot manager + pcscd + vpcd (figures printed, not judged), and
# slot managers made and freed in many threads at once.
source "$(dirname "$0")/lib.sh"

PROBE="$TK_BUILD/tk-slotmgr-probe"
[[ -x "$PROBE" ]] || tk_fail "tk-slotmgr-probe not built in $TK_BUILD"

tk_env_start
tk_card_start 0
tk_card_start 1

tk_run "parallel APDUs" "$PROBE" parallel "$TK_READER0" "$TK_READER1" 300
tk_expect '^parallel a_ok=300 b_ok=300 '
tk_log "$(grep '^parallel' <<<"$TK_OUT")"
tk_run "round trip" "$PROBE" rtt "$TK_READER0" 500
tk_expect '^rtt ok=500 '
tk_log "SELECT through slot manager + pcscd + vpcd: $(grep '^rtt' <<<"$TK_OUT")"
# Slot managers made and freed in 8 threads at once: workers drop their
# connections while others connect. With SCardDisconnect in the drop this
# crashed inside pcsc-lite in 5 of 6 runs (core/pcsc.c, conn_disconnect).
tk_run "8 threads churning slot managers" "$PROBE" churn "$TK_READER0" "$TK_READER1" 8 300
tk_expect '^churn ok=2400 of=2400$'
tk_pass
