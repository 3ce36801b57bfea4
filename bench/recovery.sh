#!/usr/bin/env bash
# Recovery benchmark (issue 4): for fault-matrix scenarios on reader A, while
# a thread signs on reader B through tokenkit-pkcs11.so all the time:
#   - fault -> error:   from injecting the fault to the error at the caller
#   - end -> valid:     from the end of the fault to reader A answering again
#                       (a signature, or CKR_USER_NOT_LOGGED_IN after a reset)
#   - end -> usable:    ... to a verified signature on A (new login if needed)
#   - B ratio:          B's signatures per second from the fault to A being
#                       valid again (at least 1 s), as a fraction of B's rate
#                       without a fault (the 3 s just before); target >= 0.9
#
#   bench/recovery.sh [--runs N] [SCENARIO...]
#        scenarios: stall (row 1), short, garbage (row 2), mute (row 3; under
#        vpcd cleared by hand after 2 s: no reset can reach the card there),
#        restart (row 8), empty (row 2; wedges vpcd 0.8), and on the
#        in-process virtual reader (TOKENKIT_READERS=vcard:..., no pcscd for
#        A and B): vr-stall, vr-empty, vr-mute (mute until power cycle,
#        cured by the ladder's cold reset); default all but empty.
#        With --runs N every scenario runs N times and the table shows medians.
#
# Every scenario runs in a fresh private pcscd with freshly provisioned cards
# (tests/fault/lib_fault.sh) and one tk-p11-fault --bench process, the
# driver the fault tests use. It prints a table and never fails on a figure
# ("-" where a step did not happen: the driver output is kept in the log
# named at the end). Needs root (private pcscd namespaces), yubico-piv-tool.
# TK_BUILD selects the build (default ./build).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
export TK_SOURCE=$SRC
export TK_BUILD=${TK_BUILD:-$SRC/build}
RUNS=1
if [[ ${1:-} == --runs ]]; then
	RUNS=$2
	shift 2
fi
SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(stall short garbage mute restart vr-stall vr-empty vr-mute)
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/recovery-bench.XXXXXX")

# the scenario text of each (shared preamble: 3 s of B without a fault)
scenario() {
	local pre='sign A expect CKR_OK
mark base0
sleep 3000
mark base1
mark fault'
	local post='mark valid
recover A within 15000
mark usable
bench fault_to_error fault error
bench end_to_valid fault-end valid
bench end_to_usable fault-end usable
bench-rate b_ratio fault valid base0 base1'
	local send='$VPCD_ENV card fault 0'
	case $1 in
	vr-*)
		# the in-process virtual reader: faults through A's control socket
		send='$VR_SEND_A'
		set -- "${1#vr-}"
		[[ $1 == mute ]] && set -- mute=cold
		;;
	esac
	case $send:$1 in
	*VPCD*:mute)
		# under vpcd no reset reaches a mute card (pcscd holds the reader
		# while the APDU is outstanding): the fault is cleared by hand after
		# 2 s, like a stall; vr-mute shows the ladder curing it
		set -- stall-like
		;;
	esac
	case $1 in
	stall | stall-like | mute=cold)
		local spec=$1
		[[ $1 == stall-like ]] && spec=mute
		if [[ $1 != mute=cold ]]; then
			cat <<EOF
$pre
exec $send $spec
sign A expect CKR_DEVICE_ERROR within 30000
mark error
sleep 2000
exec $send none
mark fault-end
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 30000
$post
EOF
		else
			# mute ends only by a power cycle: its "end" is the error itself
			cat <<EOF
$pre
exec $send $spec
sign A expect CKR_DEVICE_ERROR within 30000
mark error
mark fault-end
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 30000
$post
EOF
		fi
		;;
	empty | short | garbage)
		# random bytes may end in a status word the driver follows
		# (61xx, 6Cxx) and the signature then works: not a failure
		local want=ERR
		[[ $1 == garbage ]] && want='ERR|CKR_OK'
		cat <<EOF
$pre
exec $send $1,count=1
sign A expect $want within 30000
mark error
mark fault-end
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 30000
$post
EOF
		;;
	restart)
		# pcscd restarted under load: the first error a caller of A sees, and
		# full service again (a new session and login where the module
		# dropped the old ones)
		cat <<EOF
$pre
b-window open 15000
exec \$VPCD_ENV restart-pcscd
mark fault-end
sign A until ERR within 10000
mark error
b-back-since fault within 10000
recover A within 15000
mark valid
mark usable
bench fault_to_error fault error
bench end_to_valid fault-end valid
bench end_to_usable fault-end usable
bench-rate b_ratio fault valid base0 base1
bench b_back b-fail b-back
EOF
		;;
	*) echo "recovery: unknown scenario $1" >&2; return 1 ;;
	esac
}

declare -A FIG
run_one() { # name run
	local name=$1 run=$2 out=$LOGDIR/$1.$2.out
	echo "scenario $name (run $run of $RUNS)..." >&2
	# a subshell per scenario: fresh pcscd, cards and module
	(
		# shellcheck source=../tests/fault/lib_fault.sh
		source "$SRC/tests/fault/lib_fault.sh"
		if [[ $name == vr-* ]]; then
			fault_setup_vreader >/dev/null 2>&1
		else
			fault_setup >/dev/null 2>&1
		fi
		scenario "$name" >"$TK_TMP/scenario"
		timeout -k 5 300 "$FAULT_DRIVER" "${FAULT_READERS[@]}" --bench "$TK_P11_MODULE" \
			"$TK_TMP/scenario" >"$out" 2>&1 || true
	) >"$LOGDIR/$name.$run.setup.log" 2>&1 || echo "recovery: $name: set-up failed (see $LOGDIR/$name.$run.setup.log)" >&2
	local k v
	while read -r k v; do
		FIG[$name.$k]+="$v "
	done < <(sed -n 's/.*\] BENCH \([a-z_]*\) \([-0-9.]*\).*/\1 \2/p' "$out" 2>/dev/null)
	v=$(sed -n 's/.*BENCH b_ratio .*(during \([0-9.]*\)\/s, without fault \([0-9.]*\)\/s.*/\1\/\2/p' "$out" 2>/dev/null)
	FIG[$name.rate]+="${v:--} "
	v=$(sed -n 's/.*\] RESULT \([A-Z]*\).*/\1/p' "$out" 2>/dev/null)
	FIG[$name.result]+="${v:-none} "
}

for s in "${SCENARIOS[@]}"; do
	for ((r = 1; r <= RUNS; r++)); do run_one "$s" "$r"; done
done

fig() { # median of the runs' values, "-" when none (missing or negative)
	local vals
	vals=$(tr ' ' '\n' <<<"${FIG[$1]:-}" | grep -E '^[0-9.]+$' | sort -g || true)
	if [[ -z $vals ]]; then
		echo "-"
	else
		sed -n "$((($(wc -l <<<"$vals") + 1) / 2))p" <<<"$vals"
	fi
}
results() { # PASS/FAIL per run, counted
	local out="" n r
	while read -r n r; do
		out+="${out:+, }$r x$n"
	done < <(tr ' ' '\n' <<<"${FIG[$1.result]:-}" | grep -v '^$' | sort | uniq -c)
	echo "$out"
}
printf '\n%-10s %15s %15s %15s %9s %24s  %s\n' scenario "fault->error ms" "end->valid ms" \
	"end->usable ms" "B ratio" "B signs/s (fault/base)" "driver (per run)"
for s in "${SCENARIOS[@]}"; do
	printf '%-10s %15s %15s %15s %9s %24s  %s\n' "$s" "$(fig "$s.fault_to_error")" \
		"$(fig "$s.end_to_valid")" "$(fig "$s.end_to_usable")" "$(fig "$s.b_ratio")" \
		"$(tr ' ' '\n' <<<"${FIG[$s.rate]:-}" | grep -v '^$' | head -1)" "$(results "$s")"
done
for s in "${SCENARIOS[@]}"; do
	[[ -n ${FIG[$s.b_back]:-} ]] && printf '%s: B signing again %s ms after its first failure\n' "$s" "$(fig "$s.b_back")"
done
printf '\nMedians of %s run(s); "B signs/s" is from the first run. B ratio target >= 0.9\n' "$RUNS"
printf '(rows 1-3; a pcscd restart stops B too). Driver output: %s\n' "$LOGDIR"
printf "Deadline per APDU: TOKENKIT_TIMEOUT_MS=%s ms (tests/fault/lib_fault.sh).\n" "${TOKENKIT_TIMEOUT_MS:-5000}"
