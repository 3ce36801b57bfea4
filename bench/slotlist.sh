#!/usr/bin/env bash
# How long an application waits for its slots at start-up (issue 8 §1): a
# fresh process calls C_Initialize and then C_GetSlotList, with two healthy
# cards, and with a card that does not answer in reader A next to a healthy
# one in B (in-process virtual readers: A fault=mute; pcscd + vpcd: A
# stalled). For each case it prints, over N runs, min-max and median of the
# C_GetSlotList call itself and of the time from C_Initialize to its return.
#
#   bench/slotlist.sh [--runs N]      (default 10)
#
# TK_BUILD selects the build (default ./build), TK_MODULE the module (default
# its tokenkit-pkcs11.so). The object cache is a fresh directory, warm after
# the first run. Needs root for the private pcscd (tests/harness/vpcd-env);
# without it only the in-process rows are printed. Never fails on a figure.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${TK_BUILD:-$SRC/build}
MOD=${TK_MODULE:-$BUILD/tokenkit-pkcs11.so}
STARTUP=$BUILD/p11_startup
VPCD=$SRC/tests/harness/vpcd-env
RUNS=10
if [[ ${1:-} == --runs ]]; then
	RUNS=$2
	shift 2
fi
for f in "$STARTUP" "$MOD" "$BUILD/tokenkit-vcard"; do
	[[ -e $f ]] || { echo "slotlist: $f missing (build first)" >&2; exit 1; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/slotlist.XXXXXX")
export XDG_CACHE_HOME=$TMP/cache TK_BUILD=$BUILD TK_VPCD_DIR=$TMP/vpcd
cleanup() { "$VPCD" stop >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT

# stats FILE: "min-max (median)" of the numbers in FILE
stats() {
	sort -n "$1" | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "-"; exit }
		printf "%d-%d (%d)", v[1], v[NR], v[int((NR + 1) / 2)] }'
}

# series LABEL BEFORE_CMD AFTER_CMD [env...]: RUNS fresh processes; BEFORE_CMD
# runs before each, AFTER_CMD in the background right after C_GetSlotList
series() {
	local label=$1 before=$2 after=$3 i out
	shift 3
	: >"$TMP/call"
	: >"$TMP/total"
	for ((i = 0; i < RUNS; i++)); do
		eval "$before"
		out=$(env "$@" "$STARTUP" "$MOD" init slotlist "after:0:$after" sleep:300 finalize 2>/dev/null)
		sed -n 's/^slotlist rv=CKR_OK ms=\([0-9]*\) .*/\1/p' <<<"$out" >>"$TMP/call"
		sed -n 's/^slotlist rv=CKR_OK .* at=\([0-9]*\) .*/\1/p' <<<"$out" >>"$TMP/total"
	done
	printf '| %-38s | %-16s | %-16s |\n' "$label" "$(stats "$TMP/call")" "$(stats "$TMP/total")"
}

echo "C_GetSlotList right after C_Initialize, $RUNS runs each: min-max (median), ms"
echo "module: $MOD"
printf '| %-38s | %-16s | %-16s |\n' "case" "C_GetSlotList" "C_Initialize→list"
printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..40})" "$(printf -- '-%.0s' {1..18})" "$(printf -- '-%.0s' {1..18})"
series "in-process, both cards healthy" : true TOKENKIT_READERS='vcard:latency=yubikey5;latency=yubikey5'
series "in-process, A mute, B healthy" : true TOKENKIT_READERS='vcard:fault=mute,latency=yubikey5;latency=yubikey5'

if [[ $(id -u) -ne 0 ]]; then
	echo "(pcscd rows need root: private pcscd namespaces)"
	exit 0
fi
out=$("$VPCD" start --dir "$TK_VPCD_DIR" --owner $$)
PCSCLITE_CSOCK_NAME=$(sed -n 's/^PCSCLITE_CSOCK_NAME=//p' <<<"$out")
export PCSCLITE_CSOCK_NAME
"$VPCD" card start 0 --state "$TMP/card0.state" --latency yubikey5 >/dev/null 2>&1
"$VPCD" card start 1 --state "$TMP/card1.state" --latency yubikey5 >/dev/null 2>&1
series "pcscd + vpcd, both cards healthy" : true
series "pcscd + vpcd, A stalled, B healthy" "$VPCD card fault 0 stall >/dev/null" \
	"$VPCD card fault 0 none >/dev/null"
