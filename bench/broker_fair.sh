#!/usr/bin/env bash
# Fairness: N programs signing on two cards at once, embedded against
# broker mode (issue 13: in embedded mode pcsc-lite's polled transactions
# left programs whole seconds without a signature; through the broker's
# per-card queues every program should sign every second, with the total
# at least as high):
#
#   bench/broker_fair.sh [--procs N] [--seconds S] [--carry MS] [--rounds R]
#                                                  (default 8, 20, 0, 1)
#
# --carry MS: a third mode, a broker with --carry-transactions MS (a busy
# card's PC/SC transaction goes on from turn to turn). --rounds R: the
# modes' N-program runs R times, in alternation (on this 2-core VM one
# mode's total moves by 20 % and more from run to run), and the medians.
#
# A private pcscd with two virtual PIV cards (tests/harness/vpcd-env), each
# with P-256 keys in 9A and 9C (tokenkit piv generate, self-signed). Each
# program is `tk-p11-login MODULE steady S` on one card (half on each):
# 9A signatures, each verified, for S seconds. First one program alone per
# mode, then all N. Per mode it prints the total, the total against one
# program alone, and over the programs the fewest signatures, the longest
# wait between two signatures and the most whole seconds without one.
# Needs root (the private pcscd). Never fails on a figure.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TK_BUILD:-$SRC/build}
VPCD=$SRC/tests/harness/vpcd-env
PROCS=8
SECS=20
CARRY=0
ROUNDS=1
while (($#)); do
	case $1 in
	--procs) PROCS=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	--carry) CARRY=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	*) echo "usage: $0 [--procs N] [--seconds S] [--carry MS] [--rounds R]" >&2; exit 2 ;;
	esac
done
for f in "$BUILD/tk-p11-login" "$BUILD/tokenkitd" "$BUILD/tokenkit" "$BUILD/tokenkit-pkcs11.so"; do
	[[ -e $f ]] || { echo "broker_fair: $f missing (build first)" >&2; exit 1; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/broker_fair.XXXXXX")
BPID=""
cleanup() {
	[[ -z $BPID ]] || kill -9 "$BPID" 2>/dev/null || true
	"$VPCD" stop >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT
export TK_BUILD=$BUILD TK_VPCD_DIR=$TMP/vpcd XDG_CACHE_HOME=$TMP/cache XDG_STATE_HOME=$TMP/state
export XDG_RUNTIME_DIR=$TMP/run TOKENKIT_LOG=error
mkdir -m 0700 "$XDG_RUNTIME_DIR"
out=$("$VPCD" start --dir "$TK_VPCD_DIR")
PCSCLITE_CSOCK_NAME=$(sed -n 's/^PCSCLITE_CSOCK_NAME=//p' <<<"$out")
export PCSCLITE_CSOCK_NAME
MOD=$BUILD/tokenkit-pkcs11.so
echo "provisioning two cards..." >&2
for n in 0 1; do
	"$VPCD" card start $n --state "$TMP/card$n.state" >/dev/null
	r="Virtual PCD 00 0$n"
	for s in 9a 9c; do
		TOKENKIT_BROKER=off "$BUILD/tokenkit" piv generate "$r" $s --algorithm eccp256 \
			--default-mgmt-key >/dev/null 2>&1
		TOKENKIT_BROKER=off "$BUILD/tokenkit" piv certificate "$r" $s --self-sign "/CN=fair$n$s" \
			--insecure-pin 123456 --default-mgmt-key >/dev/null 2>&1
	done
done

# run MODE N [ROUND]: N programs (card = i % 2) for SECS; their STEADY lines
# in $TMP/MODE.N[.ROUND] (MODE: off, on, or carry: on with the broker that
# carries transactions)
run() {
	local mode=$1 n=$2 out=$TMP/$1.$2${3:+.$3} pids=() i
	: >"$out"
	for ((i = 0; i < n; i++)); do
		TOKENKIT_BROKER=${mode/carry/on} TK_LOGIN_READER="Virtual PCD 00 0$((i % 2))" \
			"$BUILD/tk-p11-login" "$MOD" steady "$SECS" >>"$out" 2>/dev/null &
		pids+=($!)
	done
	wait "${pids[@]}" || true
}
summary() { # MODE N SINGLE ROUND
	awk -v mode="$1" -v n="$2" -v single="$3" -v round="$4" '/STEADY/ {
		for (i = 1; i <= NF; i++) {
			if ($i == "signatures") s = $(i + 1) + 0
			if ($i == "wait") w = $(i + 1) + 0
			if ($i == "signature") q = $(i + 1) + 0
		}
		tot += s; c++
		if (min == "" || s < min) min = s
		if (w > maxw) maxw = w
		if (q > maxq) maxq = q
	} END {
		x = single > 0 ? tot / single : 0
		printf "%-8s | %5d | %2d/%2d | %8d | %6.2f | %8d | %8d | %6d\n", mode, round, c, n, tot, x, min, maxw, maxq
	}' "$TMP/$1.$2.$4"
}
total() { awk '/STEADY/ { for (i = 1; i <= NF; i++) if ($i == "signatures") t += $(i + 1) } END { print t + 0 }' "$1"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# broker [OPTIONS]: a broker of its own, ready
broker() {
	[[ -z $BPID ]] || { kill -9 "$BPID" 2>/dev/null || true; wait "$BPID" 2>/dev/null || true; }
	: >"$TMP/broker.log"
	TOKENKIT_BROKER=off "$BUILD/tokenkitd" "$@" >"$TMP/broker.log" 2>&1 &
	BPID=$!
	for ((i = 0; i < 100; i++)); do grep -q 'tokenkitd: ready' "$TMP/broker.log" && break; sleep 0.05; done
}
MODES=(off on)
((CARRY == 0)) || MODES+=(carry)
for ((r = 1; r <= ROUNDS; r++)); do
	for m in "${MODES[@]}"; do
		case $m in
		on) broker ;;
		carry) broker --carry-transactions "$CARRY" ;;
		esac
		# (one program alone, in the first round: the "x one" column)
		((r > 1)) || { echo "$m: 1 program (${SECS}s)..." >&2; run "$m" 1; }
		echo "$m: $PROCS programs (${SECS}s), round $r of $ROUNDS..." >&2
		run "$m" "$PROCS" "$r"
	done
done
echo
echo "machine: $(nproc) cores; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$PROCS programs on two cards for ${SECS} s, each signing with 9A (P-256), every signature verified"
if ((CARRY > 0)); then
	echo "(off: embedded; on: through the broker; carry: through a broker with --carry-transactions $CARRY)"
else
	echo "(off: embedded; on: through the broker)"
fi
printf '%-8s | %5s | %5s | %8s | %6s | %8s | %8s | %6s\n' mode round progs total "x one" "fewest" \
	"wait ms" "idle s"
for ((r = 1; r <= ROUNDS; r++)); do
	for m in "${MODES[@]}"; do summary "$m" "$PROCS" "$(total "$TMP/$m.1")" "$r"; done
done
echo "(x one: the total against one program alone in that mode; wait ms: the longest wait"
echo " between two signatures of one program; idle s: the most whole seconds one program"
echo " had without a signature)"
if ((ROUNDS > 1)); then
	off=$(for ((r = 1; r <= ROUNDS; r++)); do total "$TMP/off.$PROCS.$r"; done | median)
	for m in "${MODES[@]}"; do
		[[ $m != off ]] || continue
		med=$(for ((r = 1; r <= ROUNDS; r++)); do total "$TMP/$m.$PROCS.$r"; done | median)
		ratios=$(for ((r = 1; r <= ROUNDS; r++)); do
			awk -v a="$(total "$TMP/$m.$PROCS.$r")" -v b="$(total "$TMP/off.$PROCS.$r")" \
				'BEGIN { printf "%.2f ", (b > 0 ? a / b : 0) }'
		done)
		awk -v m="$m" -v a="$med" -v b="$off" -v r="$ratios" \
			'BEGIN { printf "median total: %s %d, off %d: %.2f x (rounds: %s)\n", m, a, b, (b > 0 ? a / b : 0), r }'
	done
fi
