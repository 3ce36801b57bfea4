#!/usr/bin/env bash
# Independent check of the emulated reader: GnuPG's scdaemon with its own
# CCID driver (ccid-driver.c over libusb; no pcscd) opens the emulated
# reader, powers the card and exchanges APDUs with it. scdaemon 2.2 has no
# PIV application, so "SERIALNO undefined" (the application type that
# accepts any card) opens the card and SCD APDU sends SELECT PIV and GET
# DATA CHUID. Its driver does T=1 only at the TPDU level: the T=0 variant
# is left out (it refuses the card: "update_param_by_atr failed").
set -euo pipefail

B=${TK_BUILD:-build}
SERVE=$B/tests/ccid/ccid-emu-serve
SCD=/usr/lib/gnupg/scdaemon
[[ -x $SERVE ]] || { echo "build first (TK_BUILD=$B)"; exit 1; }
[[ -x $SCD ]] || { echo "skipped: scdaemon not installed"; exit 77; }
command -v gpg-connect-agent >/dev/null || { echo "skipped: gnupg not installed"; exit 77; }

# (under /tmp: socket names must stay short; see ccid_emu.c)
W=$(mktemp -d /tmp/tk-ccid-scd.XXXXXX)
export GNUPGHOME=$W/gnupg
cleanup() { gpgconf --kill all 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -m 700 "$GNUPGHOME"
cat >"$GNUPGHOME/scdaemon.conf" <<EOC
log-file $W/scd.log
debug-ccid-driver
EOC

# What runs against the emulated reader: the exchange, then scdaemon is
# stopped while the reader still exists (scdaemon lives on under gpg-agent
# with the device open, and the emulator's teardown would wait for it).
cat >"$W/client.sh" <<'EOC'
rc=0
timeout 60 gpg-connect-agent 'SCD SERIALNO undefined' \
	'SCD APDU 00A4040009A00000030800001000' \
	'SCD APDU 00CB3FFF055C035FC10200' \
	'SCD GETINFO reader_list' /bye || rc=$?
timeout 10 gpgconf --kill all || true
exit $rc
EOC

fail=0
variant() {
	local name=$1 opts=$2 out
	echo "== $name"
	# every wait bounded: the emulator too (it once never returned in a loaded
	# sanitizer run, and ctest's 600 s timeout ended the test)
	# shellcheck disable=SC2086
	out=$(timeout -k 5 150 "$SERVE" $opts --log "$W/counts" -- bash "$W/client.sh" 2>&1 |
		tr -d '\0' | LC_ALL=C tr -c '[:print:]\n' '.') || true
	gpgconf --kill all 2>/dev/null || true
	# GnuPG 2.2's gpgconf --kill returns before the agent has left: the next
	# variant's agent must not meet the old one (tests/integration/lib_gnupg.sh)
	timeout 10 bash -c 'while pgrep -f -- "--homedir $GNUPGHOME( |\$)" >/dev/null; do
		sleep 0.1; done' || true
	echo "$out" | grep -v "^gpg-connect-agent:" | cut -c1-100
	if [[ $(grep -c '^OK' <<<"$out") -ne 4 ]] ||
		! grep -q "tokenkit virtual PIV" <<<"$out" ||
		! grep -q "^D S;" <<<"$out" ||
		! grep -q "^D 04E6:5116:EMU0001" <<<"$out"; then
		echo "FAIL: $name"; tail -40 "$W/scd.log" || true; fail=1
	fi
	grep -q "claims 1" "$W/counts" || { echo "FAIL: $name: the interface was not claimed"; fail=1; }
}

variant "TPDU, T=1" "--level tpdu"
variant "extended APDU" "--level ext"
variant "short APDU" "--level short"
exit $fail
