#!/usr/bin/env bash
# CCID benchmark (issue 10): the emulated USB reader of tests/ccid (umockdev,
# the real libusb), reached in one run
#   - directly, by tokenkit's CCID backend (TOKENKIT_READERS=ccid), and
#   - through pcscd + Debian's libccid on the same emulation, by tokenkit's
#     PC/SC backend (TOKENKIT_READERS=pcsc) and by a bare SCardTransmit loop
#     (bench/apdu_rtt: no slot manager at all).
# Figures: APDU round trip (SELECT PIV, 78-byte answer; median, p90, p99),
# card insertion -> card-inserted event latency (remove and insert through
# the emulator's control FIFO), and a fresh process's time from
# tk_slotmgr_new to the reader's slot with its card and to the end of its
# first APDU (--starts runs), and signatures through the PKCS#11 module
# (bench/p11bench: C_Sign with ECDSA P-256 and RSA-2048 PKCS#1 v1.5 on the
# emulated card's PIV keys, made by `tokenkit piv generate` at the start;
# --signs N each, 0: none). Target: direct <= 1.0 x pcscd + libccid.
#
#   bench/ccid.sh [--count N] [--level ext|short|tpdu] [--inserts N] [--starts N] [--signs N]
#
# Needs root for pcscd's private namespaces (as tests/ccid/test_ccid_pcscd.sh);
# without it only the direct figures are taken. TK_BUILD selects the build.
# Prints a table; never fails on a figure.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${TK_BUILD:-$SRC/build}
COUNT=1000
LEVEL=ext
INSERTS=20
STARTS=10
SIGNS=200
while [[ $# -gt 0 ]]; do
	case $1 in
	--count) COUNT=$2; shift 2 ;;
	--level) LEVEL=$2; shift 2 ;;
	--inserts) INSERTS=$2; shift 2 ;;
	--starts) STARTS=$2; shift 2 ;;
	--signs) SIGNS=$2; shift 2 ;;
	*) echo "usage: bench/ccid.sh [--count N] [--level ext|short|tpdu] [--inserts N] [--starts N] [--signs N]" >&2; exit 2 ;;
	esac
done
SERVE=$B/tests/ccid/ccid-emu-serve
for f in "$SERVE" "$B/slot_rtt" "$B/apdu_rtt" "$B/plugins/reader-ccid.so" "$B/p11bench" \
	"$B/tokenkit" "$B/tokenkit-pkcs11.so"; do
	[[ -e $f ]] || { echo "bench/ccid.sh: $f not built" >&2; exit 1; }
done
# (under /tmp: umockdev's socket names must stay short)
W=$(mktemp -d /tmp/tk-ccid-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
export TOKENKIT_PLUGIN_PATH=$B/plugins TOKENKIT_LOG=error XDG_CACHE_HOME=$W/cache
with_pcscd=0
[[ $(id -u) -eq 0 ]] && command -v pcscd >/dev/null && command -v unshare >/dev/null && with_pcscd=1
: >"$W/reader.conf"

cat >"$W/inner.sh" <<EOC
#!/usr/bin/env bash
set -u
# signs MECH FILE: C_Sign figures through the module (the first key of MECH's
# type: 9A P-256, 9E RSA-2048)
signs() {
	[[ $SIGNS -gt 0 ]] || return 0
	"$B/p11bench" --module "$B/tokenkit-pkcs11.so" --mech \$1 --count $SIGNS sign >"\$2" 2>&1
}
if [[ $SIGNS -gt 0 ]]; then
	for k in "9a eccp256" "9e rsa2048"; do
		set -- \$k
		TOKENKIT_READERS=ccid "$B/tokenkit" piv generate EMU0001 \$1 --algorithm \$2 \
			--default-mgmt-key >>"$W/provision.log" 2>&1 &&
		TOKENKIT_READERS=ccid "$B/tokenkit" piv certificate EMU0001 \$1 --self-sign "CN=bench \$1" \
			--insecure-pin 123456 --default-mgmt-key >>"$W/provision.log" 2>&1 ||
			echo "provisioning \$1 failed" >>"$W/provision.log"
	done
fi
TOKENKIT_READERS=ccid signs ecdsa "$W/direct.ecdsa"
TOKENKIT_READERS=ccid signs rsa "$W/direct.rsa"
"$B/slot_rtt" --readers ccid --count $COUNT >"$W/direct.rtt" 2>&1
"$B/slot_rtt" --readers ccid --insert "$W/ctl" --count $INSERTS >"$W/direct.ins" 2>&1
for i in \$(seq $STARTS); do "$B/slot_rtt" --readers ccid --count 1; done >"$W/direct.start" 2>&1
[[ $with_pcscd == 1 ]] || exit 0
rm -rf "$W/run"; mkdir -p "$W/run/pcscd"
unshare -m -n --propagation private -- bash -c 'mount --bind "$W/run" /run && exec pcscd -f -c "$W/reader.conf"' >"$W/pcscd.log" 2>&1 &
pid=\$!
export PCSCLITE_CSOCK_NAME="$W/run/pcscd/pcscd.comm"
for i in \$(seq 100); do
	"$B/apdu_rtt" --reader EMU0001 --count 1 >/dev/null 2>&1 && break
	sleep 0.2
done
"$B/apdu_rtt" --reader EMU0001 --count $COUNT >"$W/raw.rtt" 2>&1
"$B/slot_rtt" --readers pcsc --reader EMU0001 --count $COUNT >"$W/pcsc.rtt" 2>&1
"$B/slot_rtt" --readers pcsc --reader EMU0001 --insert "$W/ctl" --count $INSERTS >"$W/pcsc.ins" 2>&1
for i in \$(seq $STARTS); do "$B/slot_rtt" --readers pcsc --reader EMU0001 --count 1; done >"$W/pcsc.start" 2>&1
TOKENKIT_READERS=pcsc signs ecdsa "$W/pcsc.ecdsa"
TOKENKIT_READERS=pcsc signs rsa "$W/pcsc.rsa"
kill \$pid 2>/dev/null; wait \$pid 2>/dev/null
exit 0
EOC
chmod +x "$W/inner.sh"
TMPDIR=$W "$SERVE" --level "$LEVEL" --control "$W/ctl" -- "$W/inner.sh" 2>"$W/serve.log" ||
	{ cat "$W/serve.log" >&2; exit 1; }

val() { awk -F= -v k="$2" '$1 == k {print $2}' "$W/$1" 2>/dev/null; }
row() { # label file prefix
	local m p90 p99
	m=$(val "$2" "${3}_median_us")
	p90=$(val "$2" "${3}_p90_us")
	p99=$(val "$2" "${3}_p99_us")
	if [[ -z $m ]]; then
		printf '%-44s %10s\n' "$1" "-"
		sed 's/^/    /' "$W/$2" 2>/dev/null | head -3
	else
		printf '%-44s %10.2f %10.2f %10.2f\n' "$1" "$(bc -l <<<"$m/1000")" \
			"$(bc -l <<<"$p90/1000")" "$(bc -l <<<"$p99/1000")"
	fi
}
echo "emulated reader: $LEVEL level, $COUNT APDUs, $INSERTS insertions"
printf '%-44s %10s %10s %10s\n' "APDU round trip (ms)" median p90 p99
row "direct: CCID backend (slot manager)" direct.rtt rtt
row "pcscd + libccid: PC/SC backend (slot manager)" pcsc.rtt rtt
row "pcscd + libccid: bare SCardTransmit" raw.rtt rtt
printf '%-44s %10s %10s %10s\n' "card insertion -> event (ms)" median p90 p99
row "direct: CCID backend" direct.ins insert
row "pcscd + libccid: PC/SC backend" pcsc.ins insert
# start-up: min / median / max over the runs
starts() { # label file key
	local v
	v=$(awk -F= -v k="$3" '$1 == k {print $2}' "$W/$2" 2>/dev/null | sort -n)
	if [[ -z $v ]]; then
		printf '%-44s %10s\n' "$1" "-"
		return
	fi
	awk -v l="$1" '{a[NR] = $1} END {printf "%-44s %10.2f %10.2f %10.2f\n", l, a[1] / 1000, a[int((NR + 1) / 2)] / 1000, a[NR] / 1000}' <<<"$v"
}
printf '%-44s %10s %10s %10s\n' "fresh process, $STARTS runs (ms)" min median max
starts "direct: tk_slotmgr_new -> slot with card" direct.start first_slot_us
starts "direct: ... -> first APDU answered" direct.start first_apdu_us
starts "pcscd + libccid: tk_slotmgr_new -> slot" pcsc.start first_slot_us
starts "pcscd + libccid: ... -> first APDU answered" pcsc.start first_apdu_us
# C_Sign: milliseconds per signature over the run, signatures per second
sign_row() { # label file
	local n ms
	n=$(val "$2" signs)
	ms=$(val "$2" sign_ms)
	if [[ -z $n || -z $ms ]]; then
		printf '%-44s %10s\n' "$1" "-"
		sed 's/^/    /' "$W/$2" 2>/dev/null | tail -2
	else
		printf '%-44s %10.2f %10.1f\n' "$1" "$(bc -l <<<"$ms/$n")" "$(val "$2" signs_per_s)"
	fi
}
if [[ $SIGNS -gt 0 ]]; then
	printf '%-44s %10s %10s\n' "C_Sign through the module, $SIGNS each" "ms/sig" "sig/s"
	sign_row "direct: ECDSA P-256" direct.ecdsa
	sign_row "pcscd + libccid: ECDSA P-256" pcsc.ecdsa
	sign_row "direct: RSA-2048 PKCS#1 v1.5" direct.rsa
	sign_row "pcscd + libccid: RSA-2048 PKCS#1 v1.5" pcsc.rsa
	grep -q failed "$W/provision.log" 2>/dev/null && sed 's/^/    /' "$W/provision.log" | tail -5
fi
d=$(val direct.rtt rtt_median_us)
p=$(val pcsc.rtt rtt_median_us)
r=$(val raw.rtt rtt_median_us)
if [[ -n $d && -n $p && -n $r ]]; then
	printf 'direct / pcscd+libccid (slot manager both): %.2f x; direct / bare SCardTransmit: %.2f x (target <= 1.0)\n' \
		"$(bc -l <<<"$d/$p")" "$(bc -l <<<"$d/$r")"
fi
