#!/usr/bin/env bash
# The tokenkit tool meets faulty cards on the in-process virtual reader
# (TOKENKIT_READERS=vcard:...,fault=SPEC; no pcscd): each failure is a
# message naming the reader and the fault, with the documented exit code,
# on time; a transparent retry of a read-only command is invisible; and
# `tokenkit reset` / `tokenkit diag` show the recovery ladder at work,
# including the cold reset that cures a card mute until power cycle.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
trap 'rm -rf "$TK_TMP"' EXIT
export TOKENKIT_RECOVERY_LOG=$TK_TMP/recovery.jsonl
R="tokenkit virtual reader 0"
SELECT=00A4040009A0000003080000100000
GENAUTH=0087079A047C02810000
T=$TK_BUILD/tokenkit

# tk_rc "what" EXPECTED_RC cmd...: run, output in $TK_OUT, check the exit code
tk_rc() {
	local what=$1 want=$2 rc=0
	shift 2
	tk_log "$what: $*"
	TK_OUT=$("$@" 2>&1) || rc=$?
	printf '%s\n' "$TK_OUT" >&2
	[[ $rc == "$want" ]] || tk_fail "$what: exit $rc, expected $want"
}

# a mute card: the reader gives up after bwt, exit 6 (did not answer in time)
export TOKENKIT_READERS="vcard:fault=mute,bwt=300"
tk_rc "mute card" 6 "$T" apdu "$R" $SELECT
tk_expect "tokenkit apdu: $R: card is unresponsive"
tk_expect "tokenkit diag '$R'"

# a stalled card: the caller's deadline (TOKENKIT_TIMEOUT_MS is the
# module's; the tool uses the core default) ends it with exit 6
export TOKENKIT_READERS="vcard:fault=stall"
tk_rc "stalled card" 6 timeout 30 "$T" apdu "$R" $SELECT
tk_expect "tokenkit apdu: $R: timed out"

# an empty answer to a read-only command is retried: the user sees 9000
export TOKENKIT_READERS="vcard:fault=empty+count=1"
tk_rc "empty answer, read-only" 0 "$T" apdu "$R" $SELECT
tk_expect 'SW=9000'
# ... to a state-changing one it is an error (never repeated)
export TOKENKIT_READERS="vcard:fault=empty+count=2"
tk_rc "empty answer, state-changing" 1 "$T" apdu --raw "$R" $GENAUTH
tk_expect "tokenkit apdu: $R: communication error"

# a bad fault spec is a usage error naming it
export TOKENKIT_READERS="vcard:fault=frobnicate"
tk_rc "bad fault" 2 "$T" readers
tk_expect "bad fault 'frobnicate'"

# tokenkit reset: forced recoveries, recorded in the log
export TOKENKIT_READERS="vcard:bwt=300"
tk_rc "reset" 0 "$T" reset "$R"
tk_expect 'cured by warm-reset'
tk_rc "reset --cold" 0 "$T" reset "$R" --cold
tk_expect 'cured by cold-reset'
# a card mute until power cycle, met by a forced recovery: the ladder's
# warm reset does not help, the cold reset does
export TOKENKIT_READERS="vcard:fault=mute=cold,bwt=300"
tk_rc "reset a card mute until power cycle" 0 "$T" reset "$R"
tk_expect 'cured by cold-reset'
tk_rc "diag" 0 "$T" diag "$R"
tk_expect 'fault .*forced'
tk_expect 'warm-reset TK_ERR_UNRESPONSIVE'
tk_expect 'cured by cold-reset'
tk_rc "diag --json" 0 "$T" diag --json "$R"
python3 -c 'import json,sys; d=json.load(sys.stdin); h=d["history"]; assert [x["cured_by"] for x in h].count("cold-reset") >= 2, h' <<<"$TK_OUT" ||
	tk_fail "diag --json: cold resets not in the history"
tk_pass
