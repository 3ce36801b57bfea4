#!/usr/bin/env bash
# `tokenkit readers` and `tokenkit apdu` against a private pcscd: listing
# (text, --json, --atr), APDUs with GET RESPONSE, and the error messages and
# exit codes for a missing pcscd, an unknown reader, malformed hex and an
# empty reader.
source "$(dirname "$0")/lib.sh"

TOOL="$TK_BUILD/tokenkit"
[[ -x "$TOOL" ]] || tk_fail "tokenkit not built in $TK_BUILD"

# expect_rc CODE "description" cmd...: output in $TK_OUT
expect_rc() {
	local want=$1 what=$2 rc=0
	shift 2
	tk_log "$what: $*"
	TK_OUT=$("$@" 2>&1) || rc=$?
	if [[ $rc -ne $want ]]; then
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "$what: exit $rc, expected $want"
	fi
}

expect_rc 0 "version" "$TOOL" --version
tk_expect '^tokenkit [0-9]+\.[0-9]+'
expect_rc 0 "help" "$TOOL" help
tk_expect 'readers'
tk_expect '3 +PC/SC daemon'
expect_rc 2 "unknown command" "$TOOL" frobnicate
tk_expect "unknown command 'frobnicate'"

# No daemon behind the socket.
expect_rc 3 "readers without pcscd" env PCSCLITE_CSOCK_NAME="/nonexistent/pcscd.comm" "$TOOL" readers
tk_expect 'PC/SC daemon \(pcscd\) is not running or not reachable at /nonexistent/pcscd.comm; start it with `systemctl start pcscd` or `pcscd`'
expect_rc 3 "apdu without pcscd" env PCSCLITE_CSOCK_NAME="/nonexistent/pcscd.comm" "$TOOL" apdu X 00A4040000
tk_expect 'not running or not reachable'

# Malformed hex is reported before any reader is contacted.
expect_rc 2 "bad hex digit" "$TOOL" apdu X 00A40400 00A4G400
tk_expect "argument 3 \('00A4G400'\): malformed hex at position 5: not a hex digit"
expect_rc 2 "odd hex" "$TOOL" apdu X "00 A4 04 0"
tk_expect "argument 2 \('00 A4 04 0'\): malformed hex at position 10: odd number"
expect_rc 2 "short APDU" "$TOOL" apdu X 00A4
tk_expect 'at least 4 bytes'

tk_env_start
tk_card_start 0

expect_rc 0 "readers" "$TOOL" readers
tk_expect '^[0-9]+ +valid +T=1 +pcsc +Virtual PCD 00 00 +3B[0-9A-F]+$'
tk_expect '^[0-9]+ +empty +- +pcsc +Virtual PCD 00 01$'
expect_rc 0 "readers --atr" "$TOOL" readers --atr
tk_expect 'Historical bytes'
expect_rc 0 "readers --json --atr" "$TOOL" readers --json --atr
python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
by = {x["reader"]: x for x in r}
a, b = by["Virtual PCD 00 00"], by["Virtual PCD 00 01"]
assert a["state"] == "valid" and a["card"] and a["atr"].startswith("3B") and a["protocol"] == "T=1", a
assert "\n" in a["atr_info"], a
assert b["state"] == "empty" and not b["card"] and b["atr"] is None, b
assert a["slot"] != b["slot"]
' <<<"$TK_OUT" || { printf '%s\n' "$TK_OUT" >&2; tk_fail "readers --json"; }

# SELECT PIV, then GET DATA CHUID; by full name, by unique substring.
expect_rc 0 "apdu" "$TOOL" apdu "$TK_READER0" "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00" 00CB3FFF055C035FC102
tk_expect '^> 00 A4 04 00 09 A0 00 00 03 08 00 00 10 00$'
tk_expect '^< 61 .* SW=9000 \(success\)$'
tk_expect '^< 53 .* SW=9000 \(success\)$'
expect_rc 0 "apdu by substring" "$TOOL" apdu "00 00" 00A4040009A00000030800001000
tk_expect 'SW=9000'
# an unknown instruction is the card's answer, not a tool failure
expect_rc 0 "apdu with error SW" "$TOOL" apdu "$TK_READER0" 00A4040009A00000030800001000 00EE000000
tk_expect 'SW=6D00'

expect_rc 4 "unknown reader" "$TOOL" apdu "No Such Reader" 00A4040000
tk_expect "no reader matches 'No Such Reader'"
tk_expect 'available readers:'
tk_expect 'Virtual PCD 00 00'
tk_expect 'Virtual PCD 00 01'
expect_rc 4 "ambiguous reader" "$TOOL" apdu "Virtual PCD" 00A4040000
tk_expect 'available readers:'
expect_rc 5 "empty reader" "$TOOL" apdu "$TK_READER1" 00A4040000
tk_expect 'no card in reader'
tk_pass
