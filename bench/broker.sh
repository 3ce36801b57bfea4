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
# three times: as shipped (messages through shared memory, both ends spin up
# to 50 us before a read waits, bp_rbuf.spin_us), with TOKENKIT_BROKER_SHM=off
# (the column "socket": every message a send and a recv) and with
# TOKENKIT_BROKER_SPIN_US=0 on both ends ("no spin"). "CPU us/sig": the CPU
# time of the client (p11bench's own) and, in broker mode, the broker's
# (/proc) per signature: with two threads on two cores the sum is what
# bounds the rate. It prints figures; it never fails on one.
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

start_broker() { # spin shm
	local i # (not the rounds' i: a broker ready within 3 polls restarted them for ever)
	TOKENKIT_BROKER=off TOKENKIT_BROKER_SPIN_US=${1:-} TOKENKIT_BROKER_SHM=${2:-} \
		"$BUILD/tokenkitd" >broker.log 2>&1 &
	BPID=$!
	for ((i = 0; i < 100; i++)); do
		grep -qs 'tokenkitd: ready' broker.log && return 0
		sleep 0.05
	done
	cat broker.log >&2
	exit 1
}
# the broker's CPU time so far, in seconds
broker_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$BPID/stat"; }

declare -A W C
val() { sed -n "s/^$1=//p" <<<"$2"; }
one() { # mode(off|on|nospin|socket) token threads
	local r label=bench mode=$1 spin= shm= b0=0 b1=0
	[[ $2 == card ]] && label=$CARD_LABEL
	[[ $mode == nospin ]] && mode=on spin=0
	[[ $mode == socket ]] && mode=on shm=off
	[[ -z $BPID ]] || b0=$(broker_cpu)
	r=$(TOKENKIT_BROKER=$mode TOKENKIT_BROKER_SPIN_US=$spin TOKENKIT_BROKER_SHM=$shm \
		"$BUILD/p11bench" --module "$BUILD/tokenkit-pkcs11.so" --pin "$PIN" \
		--label "$label" --mech ecdsa --threads "$3" --seconds "$SECS" rate)
	[[ -z $BPID ]] || b1=$(broker_cpu)
	W[$1.$2.$3]+="$(val signs_per_s "$r") "
	# CPU per signature, both processes (us)
	C[$1.$2.$3]+="$(awk -v c="$(val cpu_seconds "$r")" -v n="$(val signs "$r")" \
		-v b0="$b0" -v b1="$b1" 'BEGIN { printf "%.1f", (n > 0 ? (c + b1 - b0) * 1e6 / n : 0) }') "
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
			start_broker "" off
			one socket $tok $t
			stop_broker
		done
	done
done

med() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %3s | %10s %9s %6s | %-17s | %9s %6s | %9s %6s | %s\n' token thr "embedded/s" \
	"broker/s" ratio "overhead/call,sig" "socket/s" ratio "no spin/s" ratio "CPU us/sig: emb, broker"
for tok in soft card; do
	for t in 1 2; do
		e=$(med "${W[off.$tok.$t]}") b=$(med "${W[on.$tok.$t]}") n=$(med "${W[nospin.$tok.$t]}")
		k=$(med "${W[socket.$tok.$t]}") ce=$(med "${C[off.$tok.$t]}") cb=$(med "${C[on.$tok.$t]}")
		awk -v tok=$tok -v t=$t -v e="$e" -v b="$b" -v n="$n" -v k="$k" -v ce="$ce" -v cb="$cb" 'BEGIN {
			over = (e > 0 && b > 0) ? (1e6 / b - 1e6 / e) / 2 : 0
			per = t == 1 ? sprintf("%.1f / %.1f us", over, 2 * over) : "-"
			printf "%-5s %3s | %10.0f %9.0f %6.2f | %-17s | %9.0f %6.2f | %9.0f %6.2f | %s, %s\n", tok, t, e, b,
				(e > 0 ? b / e : 0), per, k, (e > 0 ? k / e : 0), n, (e > 0 ? n / e : 0), ce, cb }'
	done
done
# the floor: one bare round trip between two processes on this machine
if [[ -x $BUILD/sock_rtt ]]; then
	echo "floor: one bare UNIX-socket round trip between two processes:" \
		"$("$BUILD/sock_rtt" | sed 's/round_trip_us=//') us"
fi
