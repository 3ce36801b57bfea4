# Shared set-up for the slot-manager-level fault scripts
# (tests/fault/test_fault_core_*.sh): a private pcscd with two virtual cards,
# a private recovery log, and the driver tk-slotmgr-fault reading commands
# from a FIFO. Set DEADLINE_MS before sourcing. With CORE_READERS=vcard the
# two cards are in-process virtual readers of the driver instead (no pcscd;
# TOKENKIT_READERS, control sockets $TK_TMP/ctl0 and ctl1).
#   fault N SPEC     inject a fault into card N (0: A, 1: B)
#   core_begin       sessions on A and B, A answering, the thread/descriptor
#                    baseline taken, B busy in the background (each of B's
#                    exchanges with deadline B_DEADLINE_MS, default DEADLINE_MS)
#   b_mark; b_moved MIN WHAT
#                    B completed at least MIN exchanges since b_mark, none
#                    failed (B is not held behind A while A is stuck)
#   core_finish      B must have answered all along; no thread or descriptor
#                    leaked; the driver quits cleanly
#   drv COMMAND...   send one command, wait for its "done N"; answer in $OUT
#                    (logged with t=MS: when it was sent, in ms since B
#                    started, to set beside B's max_at and first_fail_at)
#   val KEY          KEY=value from $OUT
#   wait_for RE S    wait up to S seconds for a driver output line
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

DRV="$TK_BUILD/tk-slotmgr-fault"
[[ -x "$DRV" ]] || tk_fail "tk-slotmgr-fault not built in $TK_BUILD"

if [[ ${CORE_READERS:-pcsc} == vcard ]]; then
	TK_TMP=$(mktemp -d /tmp/tk-fault.XXXXXX)
	export TOKENKIT_READERS="vcard:state=$TK_TMP/card0.state,control=$TK_TMP/ctl0;state=$TK_TMP/card1.state,control=$TK_TMP/ctl1"
	TK_READER0="tokenkit virtual reader 0"
	TK_READER1="tokenkit virtual reader 1"
	tk_cleanup() {
		local rc=$?
		[[ ${TK_KEEP:-0} == 1 ]] || rm -rf "$TK_TMP"
		exit "$rc"
	}
	fault() { tk_run "card $1: ${*:2}" "$TK_BUILD/tokenkit-vcard" --control "$TK_TMP/ctl$1" --send "${*:2}"; }
else
	tk_env_start
	tk_card_start 0
	tk_card_start 1
	fault() { tk_run "card $1: ${*:2}" "$VPCD_ENV" card fault "$1" "${*:2}"; }
fi
export TOKENKIT_RECOVERY_LOG="$TK_TMP/recovery.jsonl"
DRV_PID=""
trap 'rc=$?; [[ -n $DRV_PID ]] && kill -TERM "$DRV_PID" 2>/dev/null; (exit $rc); tk_cleanup' EXIT

wait_for() { # pattern seconds
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		grep -Eq -- "$1" "$TK_TMP/drv.out" 2>/dev/null && return 0
		sleep 0.05
	done
	cat "$TK_TMP/drv.out" "$TK_TMP/drv.err" >&2
	tk_fail "no /$1/ from the driver within $2 s"
}
N=0
BG_T0=""
drv() { # command... ; answer lines in $OUT
	local t=""
	[[ -n $BG_T0 ]] && t="t=$(((${EPOCHREALTIME/./} - BG_T0) / 1000)) "
	N=$((N + 1))
	echo "$*" >&8
	wait_for "^done $N\$" "${DRV_WAIT:-30}"
	OUT=$(awk -v a="done $((N - 1))" -v b="done $N" 'BEGIN{on=(a=="done 0")} $0==a{on=1;next} $0==b{on=0} on' "$TK_TMP/drv.out" | grep -v '^event ' || true)
	tk_log "${t}> $* : $(tr '\n' ' ' <<<"$OUT")"
}
val() { sed -nE "s/.*[ ^]$1=([^ ]+).*/\\1/p" <<<"$OUT" | head -1; }

mkfifo "$TK_TMP/drv.in"
"$DRV" "$TK_READER0" "$TK_READER1" "$DEADLINE_MS" <"$TK_TMP/drv.in" >"$TK_TMP/drv.out" 2>"$TK_TMP/drv.err" &
DRV_PID=$!
exec 8>"$TK_TMP/drv.in"
wait_for '^ready' 15

core_begin() {
	drv card A
	drv card B
	drv tx A ro
	[[ $(val result) == TK_OK ]] || tk_fail "A does not answer before the faults"
	drv res
	threads0=$(val threads)
	fds0=$(val fds)
	BG_T0=${EPOCHREALTIME/./}
	drv bg start "${B_DEADLINE_MS:-$DEADLINE_MS}"
}

b_mark() {
	drv bg count
	b_ok0=$(val ok)
}

b_moved() { # min what
	drv bg count
	(($(val fail) == 0)) || tk_fail "$2: B failed: $OUT"
	(($(val ok) - b_ok0 >= $1)) || tk_fail "$2: B did $(($(val ok) - b_ok0)) exchanges (at least $1 expected): $OUT"
	tk_log "$2: B did $(($(val ok) - b_ok0)) exchanges meanwhile"
}

core_finish() {
	local ok fail
	drv bg stop
	ok=$(val ok)
	fail=$(val fail)
	((ok > 50 && fail == 0)) || tk_fail "B during the faults: $OUT"
	tk_log "B answered $ok APDUs during the faults, none failed, slowest $(val max_ms) ms (begun at t=$(val max_at))"
	drv settle 15
	(($(val threads) <= threads0)) || tk_fail "threads: $threads0 before, $(val threads) after"
	(($(val fds) <= fds0)) || tk_fail "descriptors: $fds0 before, $(val fds) after"
	drv quit
	exec 8>&-
	wait "$DRV_PID" || tk_fail "driver exited with an error"
	DRV_PID=""
}
