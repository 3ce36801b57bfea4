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
# first APDU (--starts runs). Target: direct <= 1.0 x pcscd + libccid.
#
#   bench/ccid.sh [--count N] [--level ext|short|tpdu] [--inserts N] [--starts N]
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
while [[ $# -gt 0 ]]; do
	case $1 in
	--count) COUNT=$2; shift 2 ;;
	--level) LEVEL=$2; shift 2 ;;
	--inserts) INSERTS=$2; shift 2 ;;
	--starts) STARTS=$2; shift 2 ;;
	*) echo "usage: bench/ccid.sh [--count N] [--level ext|short|tpdu] [--inserts N] [--starts N]" >&2; exit 2 ;;
	esac
done
SERVE=$B/tests/ccid/ccid-emu-serve
for f in "$SERVE" "$B/slot_rtt" "$B/apdu_rtt" "$B/plugins/reader-ccid.so"; do
	[[ -e $f ]] || { echo "bench/ccid.sh: $f not built" >&2; exit 1; }
done
# (under /tmp: umockdev's socket names must stay short)
W=$(mktemp -d /tmp/tk-ccid-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
export TOKENKIT_PLUGIN_PATH=$B/plugins TOKENKIT_LOG=error
with_pcscd=0
[[ $(id -u) -eq 0 ]] && command -v pcscd >/dev/null && command -v unshare >/dev/null && with_pcscd=1
: >"$W/reader.conf"

cat >"$W/inner.sh" <<EOC
#!/usr/bin/env bash
set -u
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
d=$(val direct.rtt rtt_median_us)
p=$(val pcsc.rtt rtt_median_us)
r=$(val raw.rtt rtt_median_us)
if [[ -n $d && -n $p && -n $r ]]; then
	printf 'direct / pcscd+libccid (slot manager both): %.2f x; direct / bare SCardTransmit: %.2f x (target <= 1.0)\n' \
		"$(bc -l <<<"$d/$p")" "$(bc -l <<<"$d/$r")"
fi
