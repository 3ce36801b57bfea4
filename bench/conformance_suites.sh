#!/usr/bin/env bash
# Public PKCS#11 conformance suites against tokenkit-pkcs11.so and a
# provisioned virtual PIV card in the in-process virtual reader: OpenSC's
# p11test, google's pkcs11test and OpenSC's pkcs11-tool --test,
# --test-threads and --test-fork. It fetches and builds nothing: give it the
# programs, built from their sources outside this repository.
#
#   bench/conformance_suites.sh [--module SO] [--p11test PATH] [--pkcs11test PATH]
#                               [--pkcs11-tool PATH] [--out DIR] [--broker]
#
# --broker: the module in broker mode (TOKENKIT_BROKER=on), the card served
# by a tokenkitd of the run's own, started again with each fresh card.
#
# The card (provisioned once per run under a private pcscd with
# yubico-piv-tool, then served in-process: TOKENKIT_READERS=vcard:state=...)
# holds 9A RSA-2048, 9C P-256 (PIN always), 9D RSA-2048, 9E P-384, each with
# a certificate; PIN 123456, PUK 12345678. A suite whose program is not
# given is left out. Prints one line per suite (passed / failed / skipped, as
# the suite itself counts them) and keeps each suite's log in DIR (default: a
# temporary directory, printed). Never fails on a count. Needs root (private
# pcscd namespaces), yubico-piv-tool, openssl.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TK_BUILD:-$SRC/build}
MOD=$BUILD/tokenkit-pkcs11.so
P11TEST="" PKCS11TEST="" P11TOOL="" OUT="" BROKER=0
while (($#)); do
	case $1 in
	--module) MOD=$2; shift 2 ;;
	--p11test) P11TEST=$2; shift 2 ;;
	--pkcs11test) PKCS11TEST=$2; shift 2 ;;
	--pkcs11-tool) P11TOOL=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--broker) BROKER=1; shift ;;
	*) sed -n '8,9p' "$0" >&2; exit 2 ;;
	esac
done
MOD=$(realpath "$MOD")
[[ -e $MOD ]] || { echo "conformance_suites: $MOD missing" >&2; exit 1; }
command -v yubico-piv-tool >/dev/null || { echo "conformance_suites: yubico-piv-tool missing (scripts/deps)" >&2; exit 1; }
PIN=123456
SOPIN=12345678

TMP=$(mktemp -d "${TMPDIR:-/tmp}/p11suites.XXXXXX")
KEEP=$TMP/logs # the logs stay unless --out put them elsewhere
OUT=${OUT:-$KEEP}
mkdir -p "$OUT"
export TK_VPCD_DIR=$TMP/vpcd TK_BUILD=$BUILD
VPCD=$SRC/tests/harness/vpcd-env
BPID=""
broker_stop() { [[ -z $BPID ]] || { kill -9 "$BPID" 2>/dev/null; wait "$BPID" 2>/dev/null; } || true; BPID=""; }
broker_start() { # (the environment as it is now: the readers, the cache)
	local i n r
	((BROKER)) || return 0
	broker_stop
	mkdir -p -m 0700 "$TMP/run"
	export XDG_RUNTIME_DIR=$TMP/run TOKENKIT_BROKER=on
	n=$(grep -c 'tokenkitd: ready' "$OUT/broker.log" 2>/dev/null || true)
	TOKENKIT_BROKER=off "$BUILD/tokenkitd" >>"$OUT/broker.log" 2>&1 &
	BPID=$!
	for ((i = 0; i < 200; i++)); do
		# (the log may not be there yet: the broker's shell opens it)
		r=$(grep -c 'tokenkitd: ready' "$OUT/broker.log" 2>/dev/null || true)
		((${r:-0} > ${n:-0})) && return 0
		sleep 0.05
	done
	echo "conformance_suites: the broker did not start (see $OUT/broker.log)" >&2
	exit 1
}
cleanup() {
	broker_stop
	"$VPCD" stop >/dev/null 2>&1 || true
	if [[ $OUT == "$KEEP" ]]; then
		rm -rf "$TMP/vpcd" "$TMP/work" "$TMP/cache" "$TMP"/*.state
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the card ----------------------------------------------------------------
out=$("$VPCD" start --dir "$TK_VPCD_DIR" --owner $$)
PCSCLITE_CSOCK_NAME=$(sed -n 's/^PCSCLITE_CSOCK_NAME=//p' <<<"$out")
export PCSCLITE_CSOCK_NAME
mkdir -p "$TMP/work"
piv() { yubico-piv-tool -r "Virtual PCD 00 00" "$@" >/dev/null 2>&1; }
provision() { # slot algorithm: key and certificate made with OpenSSL, imported
	local slot=$1 alg=$2 k=$TMP/work/key.pem
	case $alg in
	RSA2048) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$k" 2>/dev/null ;;
	ECCP256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$k" 2>/dev/null ;;
	ECCP384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$k" 2>/dev/null ;;
	esac
	openssl req -x509 -new -key "$k" -subj "/CN=conformance $slot $alg" -days 365 \
		-out "$TMP/work/cert.pem" 2>/dev/null
	piv -a import-key -s "$slot" -i "$k" || { echo "conformance_suites: import-key $slot failed" >&2; exit 1; }
	piv -a import-certificate -s "$slot" -i "$TMP/work/cert.pem" ||
		{ echo "conformance_suites: import-certificate $slot failed" >&2; exit 1; }
}
echo "provisioning the virtual card..." >&2
"$VPCD" card start 0 --state "$TMP/card.state" >/dev/null 2>&1
provision 9a RSA2048
provision 9c ECCP256
provision 9d RSA2048
provision 9e ECCP384
"$VPCD" card stop 0
"$VPCD" stop >/dev/null 2>&1
unset PCSCLITE_CSOCK_NAME

# --- the suites ----------------------------------------------------------------
# Each suite gets a fresh copy of the card (a suite may change PINs or
# leave tries spent) and its own object cache.
fresh_card() {
	cp "$TMP/card.state" "$TMP/run.state"
	rm -rf "$TMP/cache"
	export TOKENKIT_READERS="vcard:state=$TMP/run.state"
	export TOKENKIT_PLUGIN_PATH=${TOKENKIT_PLUGIN_PATH:-$BUILD/plugins} # the in-process reader is a plugin
	export XDG_CACHE_HOME=$TMP/cache
	broker_start
}
# run NAME CMD...: the suite's output in $OUT/NAME.log, its exit status in $RC
run() {
	local name=$1
	shift
	fresh_card
	RC=0
	(cd "$TMP" && timeout 600 "$@") >"$OUT/$name.log" 2>&1 || RC=$?
}
report() { printf '%-22s passed %4s  failed %4s  skipped %4s  (exit %s)\n' "$@"; }

if [[ -n $P11TEST ]]; then
	run p11test "$P11TEST" -m "$MOD" -p "$PIN"
	# cmocka's summary lines
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$OUT/p11test.log" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$OUT/p11test.log" | tail -1)
	s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$OUT/p11test.log" | tail -1)
	report p11test "${p:-0}" "${f:-0}" "${s:-0}" "$RC"
fi

if [[ -n $PKCS11TEST ]]; then
	# pkcs11test takes the slot ID (default 0): the first slot with a token.
	# Each test runs in a process of its own, so that one crash costs one
	# test; a run that met CKR_SLOT_ID_INVALID for the slot that exists
	# (issue 8 section 1: slots not ready right after C_Initialize) is tried
	# again, up to 5 times, and counted in "slot retries".
	fresh_card
	slot=$("${P11TOOL:-pkcs11-tool}" --module "$MOD" -L 2>/dev/null | sed -n 's/^Slot [0-9]* (\(0x[0-9a-f]*\)).*/\1/p' | head -1)
	GT=("$PKCS11TEST" -m "$(basename "$MOD")" -l "$(dirname "$MOD")" -s "$((slot))" -u "$PIN" -o "$SOPIN")
	: >"$OUT/pkcs11test.log"
	tests=()
	for ((i = 0; i < 20 && ${#tests[@]} == 0; i++)); do
		mapfile -t tests < <(cd "$TMP" && "${GT[@]}" --gtest_list_tests 2>/dev/null |
			awk '/^[A-Za-z_0-9\/]+\.$/{s=$1; next} /^  [A-Za-z_0-9\/]+/{print s $1}')
	done
	p=0 f=0 sk=0 retries=0 crashed=0
	for t in "${tests[@]}"; do
		for ((a = 1; a <= 5; a++)); do
			fresh_card
			RC=0
			o=$(cd "$TMP" && timeout 120 "${GT[@]}" --gtest_filter="$t" 2>&1) || RC=$?
			if ((a < 5)) && grep -q 'CKR_SLOT_ID_INVALID' <<<"$o"; then
				retries=$((retries + 1))
				continue
			fi
			break
		done
		printf '=== %s (exit %s)\n%s\n' "$t" "$RC" "$o" >>"$OUT/pkcs11test.log"
		if ((RC >= 128)); then
			crashed=$((crashed + 1)); f=$((f + 1))
		elif grep -q '^\[  FAILED  \] 1 test' <<<"$o" || ((RC != 0)); then
			f=$((f + 1))
		elif grep -q 'Following tests were skipped because' <<<"$o"; then
			sk=$((sk + 1))
		else
			p=$((p + 1))
		fi
	done
	report pkcs11test "$p" "$f" "$sk" "${#tests[@]} tests, $crashed crashed, $retries slot retries"
	# and the whole suite in one process, as its authors run it (a crash
	# there ends every test after it)
	fresh_card
	RC=0
	(cd "$TMP" && timeout 1200 "${GT[@]}") >"$OUT/pkcs11test-whole.log" 2>&1 || RC=$?
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$OUT/pkcs11test-whole.log" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$OUT/pkcs11test-whole.log" | tail -1)
	report "pkcs11test (one process)" "${p:-0}" "${f:-0}" - "$RC$( ((RC >= 128)) && echo ", crashed")"
fi

# pkcs11-tool: "N errors" / "No errors" at the end; its OK lines as passed,
# the checks it leaves out ("skipping", "not implemented") as skipped
tool_counts() { # log
	local e
	e=$(sed -n 's/^\([0-9]*\) errors$/\1/p; s/^No errors$/0/p' "$1" | tail -1)
	F=${e:-?}
	P=$(grep -cE ': OK$|seems to be OK|seem to work|: OK \(' "$1" || true)
	S=$(grep -cE 'skipping|not implemented|not supported' "$1" || true)
}
if [[ -n $P11TOOL ]]; then
	run pkcs11-tool-test "$P11TOOL" --module "$MOD" --login --pin "$PIN" --test
	tool_counts "$OUT/pkcs11-tool-test.log"
	report "pkcs11-tool --test" "$P" "$F" "$S" "$RC"
	# three threads: C_Initialize, C_GetInfo, C_GetSlotList, C_GetTokenInfo,
	# then (two of them) a login and the whole --test
	run pkcs11-tool-threads "$P11TOOL" --module "$MOD" --pin "$PIN" \
		--test-threads IN:GI:SL:T0:LT --test-threads IN:GI:SL:T0:LT --test-threads IN:GI:SL:T0
	ok=$(grep -c 'returning rv:CKR_OK' "$OUT/pkcs11-tool-threads.log" || true)
	e=$(grep -c 'returning rv:' "$OUT/pkcs11-tool-threads.log" || true)
	report "pkcs11-tool threads" "$ok" "$((e - ok))" "-" "$RC"
	# --test in a forked child that calls C_Initialize itself: two processes on one card,
	# which the in-process reader (one process per state file) cannot
	# serve: this one runs under the private pcscd with the card in vpcd
	broker_stop # (its in-process reader holds the state file)
	cp "$TMP/card.state" "$TMP/run.state"
	rm -rf "$TMP/cache"
	out=$("$VPCD" start --dir "$TK_VPCD_DIR" --owner $$)
	PCSCLITE_CSOCK_NAME=$(sed -n 's/^PCSCLITE_CSOCK_NAME=//p' <<<"$out")
	"$VPCD" card start 0 --state "$TMP/run.state" >/dev/null 2>&1
	readers=${TOKENKIT_READERS:-}
	unset TOKENKIT_READERS
	export PCSCLITE_CSOCK_NAME
	broker_start # (on this pcscd)
	export TOKENKIT_READERS=$readers
	RC=0
	(cd "$TMP" && unset TOKENKIT_READERS && export PCSCLITE_CSOCK_NAME &&
		timeout 600 "$P11TOOL" --module "$MOD" --login --pin "$PIN" --test --test-fork) \
		>"$OUT/pkcs11-tool-fork.log" 2>&1 || RC=$?
	tool_counts "$OUT/pkcs11-tool-fork.log"
	report "pkcs11-tool --test-fork" "$P" "$F" "$S" "$RC"
fi
echo "mode: $( ((BROKER)) && echo "broker (tokenkitd)" || echo embedded); logs: $OUT" >&2
