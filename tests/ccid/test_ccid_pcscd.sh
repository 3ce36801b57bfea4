#!/usr/bin/env bash
# Independent check of the emulated reader: pcscd with Debian's libccid
# drives it through its own libusb (umockdev's preload and $UMOCKDEV_DIR in
# its environment, inherited from ccid-emu-serve), and a PC/SC client
# exchanges APDUs with the virtual PIV card behind it. The emulated device
# is 04E6:5116, a reader libccid's Info.plist lists (SCM SCR 3310), so
# pcscd's udev hotplug hands it to libccid; libccid then reads our class
# descriptor and speaks CCID at whatever level we announce.
#
# pcscd 1.9.9 always binds /run/pcscd/pcscd.comm, so it runs in a private
# mount namespace with a directory of ours over /run (as
# tests/harness/vpcd-env does), and in a private network namespace with an
# empty reader.conf so no serial/network driver (vpcd) loads.
set -euo pipefail

B=${TK_BUILD:-build}
SERVE=$B/tests/ccid/ccid-emu-serve
PROBE=$B/tests/ccid/ccid-pcsc-probe
PLIST=/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist
TIMEOUT=${TK_CCID_TIMEOUT:-20}

[[ -x $SERVE && -x $PROBE ]] || { echo "build first (TK_BUILD=$B)"; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "skipped: needs root for pcscd's namespace"; exit 77; }
for p in pcscd unshare; do
	command -v $p >/dev/null || { echo "skipped: $p not installed"; exit 77; }
done
[[ -f $PLIST ]] || { echo "skipped: libccid not installed"; exit 77; }
grep -q '<string>0x5116</string>' "$PLIST" || { echo "libccid does not list 04E6:5116"; exit 1; }

# (under /tmp: socket names must stay short; see ccid_emu.c)
W=$(mktemp -d /tmp/tk-ccid-pcscd.XXXXXX)
cleanup() { rm -rf "$W"; }
trap cleanup EXIT
: >"$W/reader.conf"

# Runs inside ccid-emu-serve: a private pcscd, then the probe (retried
# until pcscd has added the reader, at most $TIMEOUT seconds).
cat >"$W/inner.sh" <<EOC
#!/usr/bin/env bash
set -u
rm -rf "$W/run"; mkdir -p "$W/run/pcscd"
unshare -m -n --propagation private -- bash -c 'mount --bind "$W/run" /run && exec pcscd -f -d -c "$W/reader.conf"' >"$W/pcscd.log" 2>&1 &
pid=\$!
export PCSCLITE_CSOCK_NAME="$W/run/pcscd/pcscd.comm"
rc=1
end=\$((SECONDS + $TIMEOUT))
while ((SECONDS < end)); do
	if [[ -S \$PCSCLITE_CSOCK_NAME ]] && "$PROBE" "\$@" >"$W/probe.out" 2>&1; then rc=0; break; fi
	sleep 0.2
done
kill \$pid 2>/dev/null; wait \$pid 2>/dev/null
exit \$rc
EOC
chmod +x "$W/inner.sh"

fail=0
# variant NAME "serve options" "probe arguments" "counter checks"
variant() {
	local name=$1 opts=$2 args=$3 checks=$4 c v
	echo "== $name"
	# shellcheck disable=SC2086
	if ! "$SERVE" $opts --log "$W/counts" -- "$W/inner.sh" $args; then
		echo "FAIL: $name"; cat "$W/probe.out" 2>/dev/null || true
		tail -30 "$W/pcscd.log" || true
		fail=1; return
	fi
	cat "$W/probe.out"
	for c in $checks; do
		# "name>=N" on iface0's counters
		v=$(awk -v k="${c%%>=*}" '$1 == "iface0" && $2 == k {print $3}' "$W/counts")
		if [[ -z $v || $v -lt ${c##*>=} ]]; then
			echo "FAIL: $name: ${c%%>=*} = ${v:-none}, want >= ${c##*>=}"; fail=1
		fi
	done
}

variant "TPDU, T=1" "--level tpdu" "EMU0001 1" "pps>=1 set_params>=1 t1_ifs_req>=1 t1_blocks>=2"
variant "TPDU, T=0" "--level tpdu --t0" "EMU0001 1" "pps>=1 t0_get_response>=1"
variant "extended APDU" "--level ext" "EMU0001 1" "apdus>=2"
variant "short APDU" "--level short" "EMU0001 1" "apdus>=2"
variant "two slots" "--level tpdu --slots 2" "EMU0001 2" "apdus>=4"
variant "two interfaces" "--level ext --ifaces 2" "EMU0001 2" "apdus>=2"
variant "PIN pad, extended APDU" "--level ext --pinpad 123456" "EMU0001 1 --pinpad" "secure>=1"
variant "PIN pad, TPDU T=1" "--level tpdu --pinpad 123456" "EMU0001 1 --pinpad" "secure>=1"
exit $fail
