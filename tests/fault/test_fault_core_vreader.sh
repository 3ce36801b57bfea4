#!/usr/bin/env bash
# Fault matrix rows 1-3 at the slot-manager level on the in-process virtual
# reader (TOKENKIT_READERS=vcard:...; no pcscd), where the faults that a real
# pcscd + vpcd cannot produce are real: a mute card answers nothing and the
# reader gives up after its waiting time (1 s), so the ladder can reach the
# card; an empty answer is an error, not a wedged reader.
#   row 1: stall mid-APDU forever -> TK_ERR_TIMEOUT by the deadline, worker
#          abandoned, A quarantined; A recovers by itself when the stall ends.
#   row 2: short / empty / garbage -> transparent retry for read-only
#          commands, an error for state-changing ones; A back to valid.
#   row 3: "mute until power cycle" (mute=cold) -> the ladder tries reconnect
#          and warm reset (both fail: the card stays mute) and the cold reset
#          cures it; plain "mute" is cured by the warm reset.
# B (the other virtual reader of the same manager) answers all the while.
# Then `tokenkit diag` (another process) shows the history of rows 1-3 from
# the recovery log; no thread or descriptor leaked in the driver.
DEADLINE_MS=1500
# B's own deadline is looser, as in test_fault_core_ladder.sh: B's
# independence is judged by B completing exchanges while A is stuck or mute
# (b_mark/b_moved), not by each of them beating A's 1.5 s on a loaded
# machine. Seen once in 12 loaded whole-suite runs (three on two cores): one of
# B's 721 exchanges reached the 1.5 s deadline while A went through rows 2
# and 3; no lock is shared by the two in-process readers (each has its own
# worker and reader mutex; the slot manager's mutex is not held across a
# reader call), so the cause was not found. The driver now says when B's
# slowest and first failed exchanges began (max_at, first_fail_at) and the
# log gives each step's time (t=), to set them side by side if it recurs.
B_DEADLINE_MS=5000
CORE_READERS=vcard
source "$(dirname "$0")/lib_core.sh"
core_begin

# ---- row 1: stall mid-APDU forever
b_mark
fault 0 stall
drv tx A ro
[[ $(val result) == TK_ERR_TIMEOUT ]] || tk_fail "row 1: stalled transmit gave $(val result)"
(($(val ms) <= DEADLINE_MS + 1000)) || tk_fail "row 1: error after $(val ms) ms (deadline $DEADLINE_MS)"
drv wait A quarantined 5
[[ $OUT == *" ok "* ]] || tk_fail "row 1: A not quarantined"
drv tx A ro
[[ $(val result) == TK_ERR_QUARANTINED ]] || tk_fail "row 1: call on the quarantined reader gave $(val result)"
sleep 2 # B keeps going while A is stuck
b_moved 5 "row 1: while A was stuck"
fault 0 none
drv wait A valid 10
[[ $OUT == *" ok "* ]] || tk_fail "row 1: A did not recover after the stall ended"
drv card A
drv tx A ro
[[ $(val result) == TK_OK ]] || tk_fail "row 1: A after recovery: $(val result)"

# ---- row 2: short, empty, garbage
for f in short empty; do
	fault 0 "$f count=1"
	drv tx A ro
	[[ $(val result) == TK_OK && $(val sw) == 9000 ]] ||
		tk_fail "row 2: $f answer to a read-only command not retried: $(val result)"
	fault 0 "$f count=1"
	drv tx A rw
	[[ $(val result) == TK_ERR_COMM ]] || tk_fail "row 2: $f answer to a state-changing command: $(val result)"
	drv wait A valid 10
	[[ $OUT == *" ok "* ]] || tk_fail "row 2: A not valid after the $f answer"
	drv card A
	drv tx A ro
	[[ $(val result) == TK_OK ]] || tk_fail "row 2: A after the $f answer: $(val result)"
done
drv diag A
(($(val retried_ok) >= 2)) || tk_fail "row 2: transparent retries not counted: $OUT"
fault 0 'garbage count=1'
drv tx A ro
r=$(val result)
[[ $r == TK_OK || $r == TK_ERR_COMM ]] || tk_fail "row 2: garbage answer: $r"
drv tx A ro
[[ $(val result) == TK_OK && $(val sw) == 9000 ]] || tk_fail "row 2: A after garbage: $(val result)"

# ---- row 3: mute until power cycle
b_mark
fault 0 mute=cold
drv tx A rw
[[ $(val result) == TK_ERR_UNRESPONSIVE ]] || tk_fail "row 3: muted card: $(val result)"
(($(val ms) <= DEADLINE_MS + 1000)) || tk_fail "row 3: error after $(val ms) ms"
drv wait A valid 15
[[ $OUT == *" ok "* ]] || tk_fail "row 3: A not back"
b_moved 5 "row 3: while A was mute"
drv diag A
grep -q 'cured_by=cold-reset outcome=TK_OK' <<<"$OUT" || tk_fail "row 3: not cured by the cold reset: $OUT"
drv card A
drv tx A ro
[[ $(val result) == TK_OK && $(val sw) == 9000 ]] || tk_fail "row 3: A after the power cycle: $(val result)"
# plain mute: a warm reset is enough
fault 0 mute
drv tx A rw
[[ $(val result) == TK_ERR_UNRESPONSIVE ]] || tk_fail "row 3: mute: $(val result)"
drv wait A valid 15
drv diag A
grep -q 'cured_by=warm-reset outcome=TK_OK' <<<"$OUT" || tk_fail "row 3: mute not cured by the warm reset: $OUT"

core_finish

# ---- another process: tokenkit diag fed by the recovery log
tk_run "tokenkit diag" "$TK_BUILD/tokenkit" diag "$TK_READER0"
echo "$TK_OUT" >&2
tk_expect 'fault TK_ERR_TIMEOUT \(deadline\)'
tk_expect 'cured by retry'
tk_expect 'cured by cold-reset'
tk_expect 'cured by warm-reset'
tk_pass
