#!/usr/bin/env bash
# Broker mode against embedded mode, in one run (README "The broker:
# figures"; issue 13's targets: <= 50 us per call and >= 0.8 x embedded
# throughput for the software token):
#
#   bench/broker.sh [--rounds N] [--seconds S]
#
# Two tokens: the software token (an EC P-256 identity imported with
# `tokenkit soft import`) and the virtual PIV card in process
# (TOKENKIT_READERS=vcard, no latency profile: its own time is small, so
# the difference is the broker's), a P-256 key in 9A. p11bench signs in a
# loop (C_SignInit + C_Sign, CKM_ECDSA on 32 bytes) for S seconds, with 1
# and 2 threads, once embedded (TOKENKIT_BROKER=off) and once through a
# tokenkitd of its own (TOKENKIT_BROKER=on), taking turns within a round.
# Per call overhead = (1/broker rate - 1/embedded rate) / 2 (two calls per
# signature), from the 1-thread medians; per signature twice that (the
# client sends a repeated C_SignInit with the C_Sign: one round trip). Last,
# the floor: a bare UNIX-socket round trip (sock_rtt). Broker mode runs
# twice: as shipped (both ends spin up to 50 us before a read waits,
# bp_rbuf.spin_us) and with TOKENKIT_BROKER_SPIN_US=0 on both ends (the
# column "no spin"). It prints figures; it never fails on one.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TK_BUILD:-$SRC/build}
ROUNDS=3
SECS=2
while (($#)); do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--seconds S]" >&2; exit 2 ;;
	esac
done
for f in "$BUILD/p11bench" "$BUILD/tokenkit" "$BUILD/tokenkitd" "$BUILD/tokenkit-pkcs11.so"; do
	[[ -e $f ]] || { echo "broker bench: $f missing (build first)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/broker_bench.XXXXXX")
BPID=""
stop_broker() { [[ -z $BPID ]] || { kill -9 "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null; } || true; BPID=""; }
trap 'stop_broker; rm -rf "$TMP"' EXIT
cd "$TMP"
mkdir -m 0700 run
export XDG_STATE_HOME=$TMP/state XDG_CACHE_HOME=$TMP/cache XDG_RUNTIME_DIR=$TMP/run
export PCSCLITE_CSOCK_NAME=$TMP/no-pcscd TOKENKIT_LOG=warn TOKENKIT_PLUGIN_PATH=$BUILD/plugins
PIN=123456

echo "making the tokens..." >&2
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem
openssl req -x509 -new -key ec.pem -subj "/CN=bench" -days 2 -out ec.crt 2>/dev/null
openssl pkcs12 -export -inkey ec.pem -in ec.crt -name bench -out ec.p12 -passout pass:pw
TOKENKIT_BROKER=off "$BUILD/tokenkit" soft create --label bench --kdf-cost 10 --insecure-pin "$PIN" \
	--insecure-so-pin 12345678 >/dev/null
TOKENKIT_BROKER=off "$BUILD/tokenkit" soft import ec.p12 --insecure-pin "$PIN" --password-fd 3 \
	3<<<pw >/dev/null
export TOKENKIT_READERS="vcard:state=$TMP/card.state,latency=none"
R="tokenkit virtual reader 0"
TOKENKIT_BROKER=off "$BUILD/tokenkit" piv generate "$R" 9a --algorithm eccp256 --default-mgmt-key \
	-o 9a.pem >/dev/null 2>&1
TOKENKIT_BROKER=off "$BUILD/tokenkit" piv certificate "$R" 9a --self-sign /CN=bench9a \
	--insecure-pin "$PIN" --default-mgmt-key >/dev/null 2>&1
CARD_LABEL=$(TOKENKIT_BROKER=off "$BUILD/tokenkit" tokens 2>/dev/null | sed -n 's/.*\(PIV [0-9A-Za-z]*\).*/\1/p' | head -1)
[[ -n $CARD_LABEL ]] || { echo "broker bench: the virtual card has no token" >&2; exit 1; }

start_broker() {
	local i # (not the rounds' i: a broker ready within 3 polls restarted them for ever)
	TOKENKIT_BROKER=off TOKENKIT_BROKER_SPIN_US=${1:-} "$BUILD/tokenkitd" >broker.log 2>&1 &
	BPID=$!
	for ((i = 0; i < 100; i++)); do
		grep -qs 'tokenkitd: ready' broker.log && return 0
		sleep 0.05
	done
	cat broker.log >&2
	exit 1
}

declare -A W
val() { sed -n "s/^$1=//p" <<<"$2"; }
one() { # mode(off|on|nospin) token threads
	local r label=bench mode=$1 spin=
	[[ $2 == card ]] && label=$CARD_LABEL
	[[ $mode == nospin ]] && mode=on spin=0
	r=$(TOKENKIT_BROKER=$mode TOKENKIT_BROKER_SPIN_US=$spin "$BUILD/p11bench" --module "$BUILD/tokenkit-pkcs11.so" --pin "$PIN" \
		--label "$label" --mech ecdsa --threads "$3" --seconds "$SECS" rate)
	W[$1.$2.$3]+="$(val signs_per_s "$r") "
}
for ((i = 0; i < ROUNDS; i++)); do
	echo "round $((i + 1)) of $ROUNDS (${SECS}s per figure)..." >&2
	for tok in soft card; do
		for t in 1 2; do
			one off $tok $t
			start_broker
			one on $tok $t
			stop_broker
			start_broker 0
			one nospin $tok $t
			stop_broker
		done
	done
done

med() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %3s | %12s %12s | %8s | %-24s | %9s %8s\n' token thr "embedded/s" "broker/s" \
	"ratio" "overhead/call, /sig (us)" "no spin/s" "ratio"
for tok in soft card; do
	for t in 1 2; do
		e=$(med "${W[off.$tok.$t]}") b=$(med "${W[on.$tok.$t]}") n=$(med "${W[nospin.$tok.$t]}")
		awk -v tok=$tok -v t=$t -v e="$e" -v b="$b" -v n="$n" 'BEGIN {
			over = (e > 0 && b > 0) ? (1e6 / b - 1e6 / e) / 2 : 0
			ratio = e > 0 ? b / e : 0
			per = t == 1 ? sprintf("%.1f / %.1f", over, 2 * over) : "-"
			printf "%-5s %3s | %12.0f %12.0f | %8.2f | %-24s | %9.0f %8.2f\n", tok, t, e, b,
				ratio, per, n, (e > 0 ? n / e : 0) }'
	done
done
# the floor: one bare round trip between two processes on this machine
if [[ -x $BUILD/sock_rtt ]]; then
	echo "floor: one bare UNIX-socket round trip between two processes:" \
		"$("$BUILD/sock_rtt" | sed 's/round_trip_us=//') us"
fi
