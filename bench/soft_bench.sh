#!/usr/bin/env bash
# The software token's signing speed against SoftHSMv2 and raw OpenSSL, in
# one run (README "Software token: figures"):
#
#   bench/soft_bench.sh [--rounds N] [--seconds S] [--mechs "ecdsa ed25519 rsa-pss"]
#
# Three keys (EC P-256, Ed25519, RSA-2048) made by openssl genpkey: the same
# PEM files are signed with in process by OpenSSL's EVP API (p11bench --key)
# and, imported as .p12 identities with `tokenkit soft import`, through
# tokenkit-pkcs11.so; SoftHSMv2 (libsofthsm2.so, its own configuration and
# token directory here) gets keys of the same kinds made by C_GenerateKeyPair
# (pkcs11-tool). Mechanisms: CKM_ECDSA on a 32-byte hash, CKM_EDDSA, and
# CKM_SHA256_RSA_PKCS_PSS (what TLS 1.3 signs with). Each figure is the
# median of N rounds of S seconds, the three contenders taking turns within
# a round, with 1 and 2 threads (own session each, one login). Two rates:
# per wall-clock second, and per CPU second of the whole process — on a
# machine busy with other work the second is the fair one for one thread.
# It prints figures and ratios; it never fails on a figure.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TK_BUILD:-$SRC/build}
HSM=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
ROUNDS=3
SECS=2
MECHS="ecdsa ed25519 rsa-pss"
while (($#)); do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	--mechs) MECHS=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--seconds S] [--mechs LIST]" >&2; exit 2 ;;
	esac
done
for f in "$BUILD/p11bench" "$BUILD/tokenkit" "$BUILD/tokenkit-pkcs11.so" "$HSM"; do
	[[ -e $f ]] || { echo "soft_bench: $f missing (build first; scripts/deps installs softhsm2)" >&2; exit 1; }
done
command -v pkcs11-tool >/dev/null || { echo "soft_bench: pkcs11-tool missing (scripts/deps)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/soft_bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
export XDG_STATE_HOME=$TMP/state PCSCLITE_CSOCK_NAME=$TMP/no-pcscd TOKENKIT_LOG=warn
export SOFTHSM2_CONF=$TMP/softhsm2.conf
PIN=123456
mkdir hsm-tokens
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$TMP/hsm-tokens" >"$SOFTHSM2_CONF"

echo "making keys and tokens..." >&2
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ecdsa.pem
openssl genpkey -algorithm ed25519 -out ed25519.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-pss.pem 2>/dev/null
"$BUILD/tokenkit" soft create --label bench --kdf-cost 10 --insecure-pin "$PIN" \
	--insecure-so-pin 12345678 >/dev/null
for m in ecdsa ed25519 rsa-pss; do
	openssl req -x509 -new -key $m.pem -subj "/CN=bench $m" -days 2 -out $m.crt 2>/dev/null
	openssl pkcs12 -export -inkey $m.pem -in $m.crt -name "bench $m" -out $m.p12 -passout pass:pw
	"$BUILD/tokenkit" soft import $m.p12 --insecure-pin "$PIN" --password-fd 3 3<<<pw >/dev/null
done
softhsm2-util --init-token --free --label bench --pin "$PIN" --so-pin 12345678 >/dev/null
for k in EC:prime256v1 EC:edwards25519 rsa:2048; do
	pkcs11-tool --module "$HSM" --token-label bench --login --pin "$PIN" --keypairgen \
		--key-type $k --label "bench $k" >/dev/null
done

declare -A W C # wall and CPU rates: W[tk.ecdsa.1] = "r1 r2 ..."
val() { sed -n "s/^$1=//p" <<<"$2"; }
one() { # who mech threads
	local r
	case $1 in
	tk) r=$("$BUILD/p11bench" --module "$BUILD/tokenkit-pkcs11.so" --pin "$PIN" --label bench \
		--mech "$2" --threads "$3" --seconds "$SECS" rate) ;;
	hsm) r=$("$BUILD/p11bench" --module "$HSM" --pin "$PIN" --label bench --mech "$2" \
		--threads "$3" --seconds "$SECS" rate) ;;
	evp) r=$("$BUILD/p11bench" --key "$2.pem" --mech "$2" --threads "$3" --seconds "$SECS" rate) ;;
	esac
	W[$1.$2.$3]+="$(val signs_per_s "$r") "
	C[$1.$2.$3]+="$(val signs_per_cpu_s "$r") "
}
for m in $MECHS; do
	for t in 1 2; do
		echo "measuring $m, $t thread(s), $ROUNDS rounds of ${SECS}s each..." >&2
		for ((i = 0; i < ROUNDS; i++)); do
			for who in tk hsm evp; do one $who "$m" "$t"; done
		done
	done
done

med() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) print "n/a"; else printf "%.2f", a/b }'; }
echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "OpenSSL $(openssl version | cut -d' ' -f2), SoftHSMv2 $(softhsm2-util --version)"
printf '%-8s %3s | %9s %9s %9s | %9s %9s %9s | %7s %7s %7s\n' mech thr "tk/s" "hsm/s" "evp/s" \
	"tk/cpu-s" "hsm/cpu-s" "evp/cpu-s" "tk/evp" "tk/evp" "tk/hsm"
printf '%-8s %3s | %29s | %29s | %7s %7s %7s\n' "" "" "(signatures per wall second)" \
	"(per CPU second)" "wall" "cpu" "wall"
for m in $MECHS; do
	for t in 1 2; do
		tw=$(med "${W[tk.$m.$t]}") hw=$(med "${W[hsm.$m.$t]}") ew=$(med "${W[evp.$m.$t]}")
		tc=$(med "${C[tk.$m.$t]}") hc=$(med "${C[hsm.$m.$t]}") ec=$(med "${C[evp.$m.$t]}")
		printf '%-8s %3s | %9.0f %9.0f %9.0f | %9.0f %9.0f %9.0f | %7s %7s %7s\n' "$m" "$t" \
			"$tw" "$hw" "$ew" "$tc" "$hc" "$ec" "$(ratio "$tw" "$ew")" "$(ratio "$tc" "$ec")" \
			"$(ratio "$tw" "$hw")"
	done
	echo "$m: two threads / one, wall: tokenkit $(ratio "$(med "${W[tk.$m.2]}")" "$(med "${W[tk.$m.1]}")")," \
		"SoftHSMv2 $(ratio "$(med "${W[hsm.$m.2]}")" "$(med "${W[hsm.$m.1]}")")," \
		"OpenSSL $(ratio "$(med "${W[evp.$m.2]}")" "$(med "${W[evp.$m.1]}")");" \
		"cores busy with two threads (CPU s / wall s): tokenkit" \
		"$(ratio "$(med "${W[tk.$m.2]}")" "$(med "${C[tk.$m.2]}")")," \
		"SoftHSMv2 $(ratio "$(med "${W[hsm.$m.2]}")" "$(med "${C[hsm.$m.2]}")")," \
		"OpenSSL $(ratio "$(med "${W[evp.$m.2]}")" "$(med "${C[evp.$m.2]}")")"
done
