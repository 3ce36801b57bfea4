#!/usr/bin/env bash
# A card that drops its connection with an APDU outstanding (pcscd answers
# "success, 0 bytes"): the caller gets an error, never a 0-byte "response";
# when the card is back (pcscd may or may not have reported a removal: the
# card reconnects within one of its polls), APDUs work again in the same
# process.
source "$(dirname "$0")/lib.sh"

PROBE="$TK_BUILD/tk-slotmgr-probe"
[[ -x "$PROBE" ]] || tk_fail "tk-slotmgr-probe not built in $TK_BUILD"

tk_env_start
tk_card_start 0
tk_run "arm close fault" vpcd card fault 0 'close=300 count=1'
tk_run "probe" "$PROBE" survive "$TK_READER0" 4
tk_expect '^fail TK_ERR_(COMM|CARD_REMOVED) '
# success again after the failure
sed -n '/^fail/,$p' <<<"$TK_OUT" | grep -q '^ok ' || { printf '%s\n' "$TK_OUT" >&2; tk_fail "no success after the card came back"; }
tk_pass
