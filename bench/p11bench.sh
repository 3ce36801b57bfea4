#!/usr/bin/env bash
# PKCS#11 start-up and signing benchmark: tokenkit-pkcs11.so against OpenSC's
# opensc-pkcs11.so on the same two virtual PIV cards, under a real pcscd, with
# the card's YubiKey 5 latency profile (tokenkit-vcard --latency yubikey5).
#
#   bench/p11bench.sh [--signs N] [--warm-runs N] [--generate]
#
# Card 0 holds RSA-2048 keys with certificates in 9A and 9C; card 1 P-256
# keys with certificates in 9A, 9C, 9D and 9E. The keys are imported; with
# --generate they are generated on the cards instead, so that each has an
# attestation, which the first open asks for (ATTEST: a signature by the
# card's attestation key, 200 ms in the profile) and publishes. For each module it prints APDUs
# and wall time from C_Initialize to the full list of certificates with a cold
# and a warm cache, APDUs per C_Sign, and signatures per second for RSA-2048
# and P-256; then tokenkit's figures as fractions of OpenSC's. It never fails
# on a figure. Needs root (private pcscd namespaces), yubico-piv-tool, opensc.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TK_BUILD:-$SRC/build}
TK_MOD=${TK_MODULE:-$BUILD/tokenkit-pkcs11.so}
SC_MOD=${OPENSC_P11:-/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so}
SIGNS=20
WARM=3
GENERATE=0
if [[ ${1:-} == --apdus ]]; then # internal: total APDUs of both cards now
	t=0
	for n in 0 1; do
		v=$("$SRC/tests/harness/vpcd-env" card status $n | sed -n 's/.* card_apdus=\([0-9]*\).*/\1/p')
		t=$((t + ${v:-0}))
	done
	echo "$t"
	exit 0
fi
while (($#)); do
	case $1 in
	--signs) SIGNS=$2; shift 2 ;;
	--warm-runs) WARM=$2; shift 2 ;;
	--generate) GENERATE=1; shift ;;
	*) echo "usage: $0 [--signs N] [--warm-runs N] [--generate]" >&2; exit 2 ;;
	esac
done
for f in "$BUILD/p11bench" "$BUILD/tokenkit-vcard" "$TK_MOD" "$SC_MOD"; do
	[[ -e $f ]] || { echo "p11bench: $f missing (build first: scripts/test or cmake --build build)" >&2; exit 1; }
done
command -v yubico-piv-tool >/dev/null || { echo "p11bench: yubico-piv-tool missing (scripts/deps)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/p11bench.XXXXXX")
export TK_VPCD_DIR=$TMP/vpcd TK_BUILD=$BUILD
VPCD=$SRC/tests/harness/vpcd-env
cleanup() { "$VPCD" stop >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT
out=$("$VPCD" start --dir "$TK_VPCD_DIR" --owner $$)
PCSCLITE_CSOCK_NAME=$(sed -n 's/^PCSCLITE_CSOCK_NAME=//p' <<<"$out")
export PCSCLITE_CSOCK_NAME

piv() { yubico-piv-tool -r "Virtual PCD 00 0$1" "${@:2}" >/dev/null 2>&1; }
provision() { # card slot algorithm: key and self-signed certificate made with
	# OpenSSL and imported (yubico-piv-tool 2.2's on-card self-signing fails
	# for RSA with OpenSSL 3)
	local n=$1 slot=$2 alg=$3
	if ((GENERATE)); then # on the card; the certificate by a throwaway issuer
		piv "$n" -a generate -s "$slot" -A "$alg" -o "$TMP/pub.pem" || { echo "p11bench: generate $slot failed" >&2; exit 1; }
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/issuer.pem" 2>/dev/null
		openssl x509 -new -subj "/CN=p11bench $slot $alg" -days 365 -force_pubkey "$TMP/pub.pem" \
			-key "$TMP/issuer.pem" -out "$TMP/cert.pem" 2>/dev/null
		piv "$n" -a import-certificate -s "$slot" -i "$TMP/cert.pem" || { echo "p11bench: import-certificate $slot failed" >&2; exit 1; }
		return
	fi
	if [[ $alg == RSA2048 ]]; then
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/key.pem" 2>/dev/null
	else
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/key.pem" 2>/dev/null
	fi
	openssl req -x509 -new -key "$TMP/key.pem" -subj "/CN=p11bench $slot $alg" -days 365 \
		-out "$TMP/cert.pem" 2>/dev/null
	piv "$n" -a import-key -s "$slot" -i "$TMP/key.pem" || { echo "p11bench: import-key $slot failed" >&2; exit 1; }
	piv "$n" -a import-certificate -s "$slot" -i "$TMP/cert.pem" || { echo "p11bench: import-certificate $slot failed" >&2; exit 1; }
}
echo "provisioning two virtual cards..." >&2
"$VPCD" card start 0 --state "$TMP/rsa.state" >/dev/null 2>&1
"$VPCD" card start 1 --state "$TMP/ec.state" >/dev/null 2>&1
for s in 9a 9c; do provision 0 $s RSA2048; done
for s in 9a 9c 9d 9e; do provision 1 $s ECCP256; done
"$VPCD" card stop 0; "$VPCD" card stop 1
"$VPCD" card start 0 --state "$TMP/rsa.state" --latency yubikey5 >/dev/null 2>&1
"$VPCD" card start 1 --state "$TMP/ec.state" --latency yubikey5 >/dev/null 2>&1

apdus() { bash "$0" --apdus; } # total APDUs the two cards have answered
# p11bench asks the two cards for their APDU counts itself (control sockets)
# the moment the certificate list is complete, so the module's background
# work after the list is not counted as start-up.
CARDS="$TK_VPCD_DIR/card.0.ctl:$TK_VPCD_DIR/card.1.ctl"
val() { sed -n "s/^$1=//p" <<<"$2"; }

# run MODULE ARGS...: p11bench output in $R, APDUs it caused in $A; for a
# startup run, $AL holds the APDUs sent up to the full certificate list
run() {
	local mod=$1 a0
	shift
	a0=$(apdus)
	R=$(HOME=$TMP/home XDG_CACHE_HOME=$TMP/cache \
		P11BENCH_CARDS="$CARDS" \
		"$BUILD/p11bench" --module "$mod" "$@")
	sleep 0.5 # the cards' counters settle after the module lets go
	A=$(($(apdus) - a0))
	AL=$A
	local at
	at=$(val card_apdus_at_list "$R")
	if [[ -n $at ]]; then AL=$((at - a0)); fi
}

declare -A F
measure() { # name module
	local name=$1 mod=$2 t=() a=() aa=() i n1=2
	rm -rf "$TMP/cache" "$TMP/home"; mkdir -p "$TMP/home"
	run "$mod" startup
	F[$name.cold_ms]=$(val startup_ms "$R"); F[$name.cold_apdus]=$AL; F[$name.cold_apdus_all]=$A
	F[$name.certs]=$(val certs "$R")
	for ((i = 0; i < WARM; i++)); do
		run "$mod" startup
		t+=("$(val startup_ms "$R")"); a+=("$AL"); aa+=("$A")
	done
	F[$name.warm_ms]=$(printf '%s\n' "${t[@]}" | sort -n | sed -n "$(((WARM + 1) / 2))p")
	F[$name.warm_apdus]=$(printf '%s\n' "${a[@]}" | sort -n | sed -n "$(((WARM + 1) / 2))p")
	F[$name.warm_apdus_all]=$(printf '%s\n' "${aa[@]}" | sort -n | sed -n "$(((WARM + 1) / 2))p")
	for mech in rsa ecdsa; do
		# APDUs per C_Sign: the difference between two runs of different length
		run "$mod" --mech $mech --count $n1 sign
		local a1=$A
		run "$mod" --mech $mech --count "$SIGNS" sign
		F[$name.$mech.apdus_per_sign]=$(awk -v a="$A" -v b="$a1" -v n="$SIGNS" -v m=$n1 'BEGIN{printf "%.2f", (a-b)/(n-m)}')
		F[$name.$mech.per_s]=$(val signs_per_s "$R")
	done
}

echo "measuring tokenkit..." >&2
measure tokenkit "$TK_MOD"
echo "measuring OpenSC..." >&2
measure opensc "$SC_MOD"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) print "n/a"; else printf "%.3f", a/b }'; }
printf '\n%-34s %14s %14s %10s\n' "figure (yubikey5 latency profile)" tokenkit OpenSC "tk/OpenSC"
row() { printf '%-34s %14s %14s %10s\n' "$1" "${F[tokenkit.$2]}" "${F[opensc.$2]}" "$(ratio "${F[tokenkit.$2]}" "${F[opensc.$2]}")"; }
row "certificates listed" certs
row "cold start to certs: ms" cold_ms
row "cold start to certs: APDUs" cold_apdus
row "  APDUs in the whole process" cold_apdus_all
row "warm start to certs: ms" warm_ms
row "warm start to certs: APDUs" warm_apdus
row "  APDUs in the whole process" warm_apdus_all
row "APDUs per C_Sign, RSA-2048" rsa.apdus_per_sign
row "APDUs per C_Sign, P-256" ecdsa.apdus_per_sign
row "C_Sign per second, RSA-2048" rsa.per_s
row "C_Sign per second, P-256" ecdsa.per_s
