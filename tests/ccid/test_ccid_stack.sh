#!/usr/bin/env bash
# The full stack over the emulated USB reader, per reader variant, in two
# ccid-emu-serve runs over one card state file (--state):
#   1. a private pcscd with Debian's libccid holds the reader; yubico-piv-tool
#      imports a P-256 key and its certificate into 9A through it; while
#      pcscd holds it, `tokenkit readers` with TOKENKIT_READERS=pcsc+ccid
#      lists each slot once, through PC/SC, and the ccid backend names the
#      reader it left alone, once; on the PIN-pad reader the PKCS#11 module
#      logs in on the pad through PC/SC (FEATURE_VERIFY_PIN_DIRECT) and signs;
#   2. no pcscd: with TOKENKIT_READERS=ccid `tokenkit readers` shows the
#      direct reader (backend, exchange level, slot count, PIN pad, T=0 for
#      the T=0 card), `tokenkit objects` the certificate, and pkcs11-tool
#      signs through the module (PIN given, or on the pad: C_Login with a
#      NULL PIN); on the first variant then a tokenkitd holds the reader:
#      `tokenkit readers` shows it through the broker, `piv generate` and
#      `piv certificate` write 9C through it, a process of its own cannot
#      use the reader, pkcs11-tool signs with 9C through the broker; on the
#      PIN-pad variant the tool changes the PIN on the pad through the broker
#      (there and back: two more PIN modifications on the emulator).
# On the PIN-pad reader both runs also change the PIN on the pad through the
# module (C_SetPIN with NULL PINs: MODIFY_PIN_DIRECT through pcscd in run 1,
# PC_to_RDR_Secure in run 2); yubico-piv-tool checks the card's PIN state.
# On the first variant `tokenkit watch` also shows card removal and insertion
# from the PC/SC backend (run 1), and those plus unplug and replug from the
# ccid backend (run 2), driven through the emulator's control FIFO.
# openssl verifies every signature against the certificate; the emulator's
# counters prove the pads were used (Secure) and the T=0 card was driven at
# T=0 (GET RESPONSE). yubico-piv-tool connects with T=1 only, so the T=0
# card is provisioned as a T=1 card and gets its T=0 ATR in the second run.
# (Two runs: under umockdev, pcscd's claim of the reader was seen to outlive
# pcscd, so the direct backend gets a reader no one has opened.)
set -euo pipefail

B=${TK_BUILD:-build}
B=$(cd "$B" && pwd)
SERVE=$B/tests/ccid/ccid-emu-serve
TOOL=$B/tokenkit
MOD=$B/tokenkit-pkcs11.so
PLIST=/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist
TIMEOUT=${TK_CCID_TIMEOUT:-20}

for f in "$SERVE" "$TOOL" "$MOD" "$B/plugins/reader-ccid.so"; do
	[[ -e $f ]] || { echo "build first: $f (TK_BUILD=$B)"; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "skipped: needs root for pcscd's namespace"; exit 77; }
for p in pcscd unshare yubico-piv-tool pkcs11-tool openssl; do
	command -v $p >/dev/null || { echo "skipped: $p not installed"; exit 77; }
done
[[ -f $PLIST ]] || { echo "skipped: libccid not installed"; exit 77; }

# Programs we do not build load our sanitized module in the ASan build: the
# runtime goes first, before umockdev's preload; their own leaks are not ours.
HOST_PRELOAD=libumockdev-preload.so.0
HOST_ASAN=
if grep -q '^TK_SANITIZE:BOOL=ON' "$B/CMakeCache.txt" 2>/dev/null; then
	rt=$(clang-14 -print-file-name=libclang_rt.asan-x86_64.so)
	HOST_PRELOAD=$rt:$HOST_PRELOAD
	HOST_ASAN=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0
fi

# (under /tmp: socket names must stay short; see ccid_emu.c)
W=$(mktemp -d /tmp/tk-ccid-stack.XXXXXX)
cleanup() { rm -rf "$W"; }
trap cleanup EXIT
: >"$W/reader.conf"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/key.pem" 2>/dev/null
openssl req -x509 -new -key "$W/key.pem" -subj "/CN=tokenkit ccid stack" -days 30 \
	-out "$W/cert.pem" 2>/dev/null
openssl x509 -in "$W/cert.pem" -pubkey -noout >"$W/pub.pem"
head -c 1000 /dev/urandom >"$W/data"

common='set -u
fail() { echo "FAIL: $*"; [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null; exit 1; }
host() { env LD_PRELOAD="$HOST_PRELOAD" ${HOST_ASAN:+ASAN_OPTIONS=$HOST_ASAN} "$@"; }
export TOKENKIT_PLUGIN_PATH=$B/plugins TOKENKIT_RECOVERY_LOG= XDG_CACHE_HOME=$W/cache
# watch_events BACKEND CONTROL-LINE...: `tokenkit watch --json` sees, from
# BACKEND, what the lines sent to the emulator do (each line then waits for
# its event: "remove 0 0" card-removed, "insert 0 0" card-inserted,
# "unplug" reader-removed, "replug" reader-added)
watch_events() {
	local backend=$1 line ev want=1 end wp
	shift
	rm -f "$W/watch.out" # (lines of an earlier run are no answer)
	"$TOOL" watch --json >"$W/watch.out" 2>&1 &
	wp=$!
	end=$((SECONDS + TIMEOUT))
	until grep -q "\"backend\": \"$backend\".*\"state\": \"valid\"" "$W/watch.out" 2>/dev/null; do
		((SECONDS < end)) || { kill $wp; cat "$W/watch.out"; fail "watch: no valid card"; }
		sleep 0.1
	done
	for line in "$@"; do
		case $line in
		remove*) ev=card-removed ;;
		insert*) ev=card-inserted ;;
		unplug) ev=reader-removed ;;
		replug) ev=reader-added ;;
		esac
		want=$(($(grep -c "\"event\": \"$ev\", \"backend\": \"$backend\"" "$W/watch.out") + 1))
		echo "$line" >"$W/ctl"
		until (($(grep -c "\"event\": \"$ev\", \"backend\": \"$backend\"" "$W/watch.out") >= want)); do
			((SECONDS < end)) || { kill $wp; cat "$W/watch.out"; fail "watch: no $ev from $backend after: $line"; }
			sleep 0.1
		done
	done
	kill $wp
	wait $wp 2>/dev/null
	return 0
}
# ctl LINE: send LINE to the emulator and wait until it carried it out
ctl() {
	local n end
	n=$(cat "$W/ctl.done" 2>/dev/null | wc -l)
	echo "$1" >"$W/ctl"
	end=$((SECONDS + TIMEOUT))
	until (($(cat "$W/ctl.done" 2>/dev/null | wc -l) > n)); do
		((SECONDS < end)) || fail "the emulator did not take: $1"
		sleep 0.05
	done
}
# p11_pad setpin|login: C_SetPIN / C_Login with NULL PINs through the module
# (pkcs11-tool --change-pin, --login on a token with
# CKF_PROTECTED_AUTHENTICATION_PATH); $W/out gets the CKR_ name. With
# P11_PAD=ours, ccid-p11-pad makes the same calls and always finalizes
# (tests/ccid/p11_pad.c: pkcs11-tool leaves without C_Finalize after
# --change-pin or a failure, and under umockdev the emulated reader keeps the
# claim of such a process, which the direct run cannot have)
p11_pad() {
	if [[ ${P11_PAD:-} == ours ]]; then
		"$B/tests/ccid/ccid-p11-pad" "$MOD" "$1" >"$W/out" 2>&1
	elif [[ $1 == setpin ]]; then
		host pkcs11-tool --module "$MOD" --change-pin >"$W/out" 2>&1
	else
		host pkcs11-tool --module "$MOD" --login --sign -m ECDSA-SHA256 --id 01 \
			-i "$W/data" -o "$W/sig.bad" >"$W/out" 2>&1
	fi
}
# pad_change WHAT OLD NEW: change the user PIN on the pad through the module
# (the emulated user types OLD, NEW, NEW), then: the new PIN typed on the pad
# logs in and signs, the old one is refused with CKR_PIN_INCORRECT; a wrong
# old PIN on the pad is CKR_PIN_INCORRECT too and costs a try (the token
# flags say "count low" until a good login)
pad_change() {
	local what=$1 old=$2 new=$3
	ctl "pin 0 enter $old $new"
	p11_pad setpin || { cat "$W/out"; fail "$what: C_SetPIN on the pad"; }
	ctl "pin 0 enter $old"
	! p11_pad login || { cat "$W/out"; fail "$what: the old PIN still works"; }
	grep -q CKR_PIN_INCORRECT "$W/out" || { cat "$W/out"; fail "$what: old PIN: not CKR_PIN_INCORRECT"; }
	ctl "pin 0 enter $new"
	sign "$what: the new PIN" "$W/sig.new"
	host pkcs11-tool --module "$MOD" -T >"$W/out" 2>&1 || { cat "$W/out"; fail "$what: token info"; }
	! grep -qi "count low" "$W/out" || { cat "$W/out"; fail "$what: count low after a good login"; }
	ctl "pin 0 enter 111111 22222222"
	! p11_pad setpin || { cat "$W/out"; fail "$what: a wrong old PIN changed it"; }
	grep -q CKR_PIN_INCORRECT "$W/out" || { cat "$W/out"; fail "$what: wrong old PIN: not CKR_PIN_INCORRECT"; }
	host pkcs11-tool --module "$MOD" -T >"$W/out" 2>&1 || { cat "$W/out"; fail "$what: token info"; }
	grep -qi "count low" "$W/out" || { cat "$W/out"; fail "$what: no try spent by a wrong old PIN"; }
}
# sign DESCRIPTION OUTPUT PKCS11-TOOL-LOGIN-OPTIONS...: sign with 9A, verify
sign() {
	local what=$1 sig=$2
	shift 2
	host pkcs11-tool --module "$MOD" --login "$@" --sign -m ECDSA-SHA256 --id 01 \
		--signature-format openssl -i "$W/data" -o "$sig" >"$W/out" 2>&1 ||
		{ cat "$W/out"; fail "$what: sign"; }
	openssl dgst -sha256 -verify "$W/pub.pem" -signature "$sig" "$W/data" >/dev/null ||
		fail "$what: the signature does not verify"
}
'

# Run 1, inside ccid-emu-serve. Arguments: readers (interfaces × slots), pinpad (0/1),
# watch (0/1).
cat >"$W/with_pcscd.sh" <<EOC
#!/usr/bin/env bash
$common
EOC
cat >>"$W/with_pcscd.sh" <<'EOC'
readers=$1 pad=$2 watch=$3
export PCSCLITE_CSOCK_NAME="$W/run/pcscd/pcscd.comm"
rm -rf "$W/run"; mkdir -p "$W/run/pcscd"
unshare -m -n --propagation private -- bash -c 'mount --bind "$W/run" /run && exec pcscd -f -c "$W/reader.conf"' >"$W/pcscd.log" 2>&1 &
pid=$!
end=$((SECONDS + TIMEOUT))
until [[ -S $PCSCLITE_CSOCK_NAME ]] && yubico-piv-tool -r EMU0001 -a status >"$W/out" 2>&1; do
	((SECONDS < end)) || { cat "$W/out"; fail "pcscd + libccid never showed the reader"; }
	sleep 0.2
done
yubico-piv-tool -r EMU0001 -a import-key -s 9a -i "$W/key.pem" >"$W/out" 2>&1 ||
	{ cat "$W/out"; fail "import key"; }
yubico-piv-tool -r EMU0001 -a import-certificate -s 9a -i "$W/cert.pem" >"$W/out" 2>&1 ||
	{ cat "$W/out"; fail "import certificate"; }

# pcscd holds the reader: listed once, through PC/SC; the ccid backend says why
TOKENKIT_READERS=pcsc+ccid "$TOOL" readers --json >"$W/out" 2>"$W/err" ||
	{ cat "$W/out" "$W/err"; fail "readers, pcsc+ccid"; }
n_pcsc=$(grep -c '"backend": "pcsc"' "$W/out" || true)
n_ccid=$(grep -c '"backend": "ccid"' "$W/out" || true)
[[ $n_pcsc == "$readers" && $n_ccid == 0 ]] ||
	{ cat "$W/out"; fail "pcsc+ccid: $n_pcsc PC/SC and $n_ccid ccid readers, want $readers and 0"; }
# named once per interface pcscd holds
n_named=$(grep -c 'EMU0001.*is in use by' "$W/err" || true)
((n_named >= 1 && n_named <= readers)) && ! grep 'is in use by' "$W/err" | sort | uniq -d | grep -q . ||
	{ cat "$W/err"; fail "the reader in use is not named once"; }
if [[ $pad == 1 ]]; then
	grep -q '"pin_pad": true' "$W/out" || { cat "$W/out"; fail "PC/SC: no PIN pad"; }
	TOKENKIT_READERS=pcsc sign "PC/SC PIN pad" "$W/sig.pcsc"
	# PIN change on the pad through pcscd + libccid (FEATURE_MODIFY_PIN_DIRECT)
	TOKENKIT_READERS=pcsc pad_change "PC/SC PIN pad change" 123456 87654321
	# ... and what the card says to another program: a try spent by the wrong
	# old PIN, the old PIN refused, the new one good
	yubico-piv-tool -r EMU0001 -a status >"$W/out" 2>&1 || { cat "$W/out"; fail "status"; }
	grep -Eq 'PIN tries left:[[:space:]]*2' "$W/out" || { cat "$W/out"; fail "yubico-piv-tool: not 2 tries left"; }
	! yubico-piv-tool -r EMU0001 -a verify-pin -P 123456 >"$W/out" 2>&1 ||
		{ cat "$W/out"; fail "yubico-piv-tool: the old PIN verifies"; }
	yubico-piv-tool -r EMU0001 -a verify-pin -P 87654321 >"$W/out" 2>&1 ||
		{ cat "$W/out"; fail "yubico-piv-tool: the new PIN does not verify"; }
fi
[[ $watch == 1 ]] && TOKENKIT_READERS=pcsc+ccid watch_events pcsc "remove 0 0" "insert 0 0"
kill "$pid"
wait "$pid" 2>/dev/null
exit 0
EOC

# Run 2, inside ccid-emu-serve. Arguments: level, slots per reader, pinpad, T=0, watch (0/1),
# readers (interfaces × slots), broker (0/1).
cat >"$W/direct.sh" <<EOC
#!/usr/bin/env bash
$common
EOC
cat >>"$W/direct.sh" <<'EOC'
level=$1 slots=$2 pad=$3 t0=$4 watch=$5 readers=$6 broker=${7:-0}
export TOKENKIT_READERS=ccid
"$TOOL" readers --json >"$W/out" 2>&1 || { cat "$W/out"; fail "readers"; }
n=$(grep -c "\"backend\": \"ccid\", \"exchange\": \"$level\", \"reader_slots\": $slots" "$W/out" || true)
[[ $n == "$readers" ]] || { cat "$W/out"; fail "$n readers with level $level and $slots slots, want $readers"; }
if [[ $pad == 1 ]]; then
	grep -q '"pin_pad": true' "$W/out" || { cat "$W/out"; fail "no PIN pad"; }
fi
if [[ $t0 == 1 ]]; then
	grep -q '"protocol": "T=0"' "$W/out" || { cat "$W/out"; fail "not T=0"; }
fi
"$TOOL" objects >"$W/out" 2>&1 || { cat "$W/out"; fail "objects"; }
grep -q 'tokenkit ccid stack' "$W/out" || { cat "$W/out"; fail "objects: no certificate"; }
[[ $watch == 1 ]] && watch_events ccid "remove 0 0" "insert 0 0" unplug replug
if [[ $pad == 1 ]]; then
	# run 1 left the PIN changed on the pad
	ctl "pin 0 enter 87654321"
	sign "direct PIN pad" "$W/sig"
	# PIN change on the pad through the direct backend (PC_to_RDR_Secure), back
	P11_PAD=ours pad_change "direct PIN pad change" 87654321 123456
	# the CLI on the pad: a change, a wrong old PIN (tries left said), back
	ctl "pin 0 enter 123456 87654321"
	"$TOOL" piv pin change EMU0001 --pad >"$W/out" 2>&1 || { cat "$W/out"; fail "tokenkit piv pin change --pad"; }
	ctl "pin 0 enter 123456 11111111"
	! "$TOOL" piv pin change EMU0001 --pad >"$W/out" 2>&1 &&
		grep -q 'wrong PIN (2 tries left)' "$W/out" || { cat "$W/out"; fail "tokenkit piv pin change --pad, wrong PIN"; }
	ctl "pin 0 enter 87654321 123456"
	"$TOOL" piv pin change EMU0001 --pad >"$W/out" 2>&1 || { cat "$W/out"; fail "tokenkit piv pin change --pad, back"; }
	ctl "pin 0 enter 123456"
	sign "direct PIN pad, after the CLI's changes" "$W/sig"
	# a read-only session may not change it (nothing asked on the pad)
	! "$B/tests/ccid/ccid-p11-pad" "$MOD" setpin-ro >"$W/out" 2>&1 &&
		grep -q CKR_SESSION_READ_ONLY "$W/out" || { cat "$W/out"; fail "C_SetPIN on the pad, R/O session"; }
else
	# no pad: NULL PINs are no PINs
	! "$B/tests/ccid/ccid-p11-pad" "$MOD" setpin >"$W/out" 2>&1 &&
		grep -q CKR_ARGUMENTS_BAD "$W/out" || { cat "$W/out"; fail "C_SetPIN with NULL PINs, no pad"; }
	sign "direct" "$W/sig" --pin 123456
fi
if [[ $broker == 1 ]]; then
	# the broker holds the USB reader (claimed by one process only): the
	# tool's card commands go through it, and nothing else can claim it
	export XDG_RUNTIME_DIR=$W/xrt
	rm -rf "$XDG_RUNTIME_DIR"
	mkdir -m 0700 "$XDG_RUNTIME_DIR"
	TOKENKIT_BROKER=off "$B/tokenkitd" -v >"$W/broker.log" 2>&1 &
	bpid=$!
	end=$((SECONDS + TIMEOUT))
	until grep -q 'tokenkitd: ready' "$W/broker.log"; do
		((SECONDS < end)) && kill -0 $bpid 2>/dev/null || { cat "$W/broker.log"; fail "the broker did not start"; }
		sleep 0.1
	done
	tk() { env -u TOKENKIT_READERS "$TOOL" "$@"; }
	tk readers --json >"$W/out" 2>&1 && grep -q '"backend": "ccid"' "$W/out" ||
		{ cat "$W/out"; fail "readers through the broker"; }
fi
if [[ $broker == 1 && $pad == 1 ]]; then
	# the tool's PIN change on the pad of the reader the broker holds
	# (BP_CARD_PINPAD), there and back
	ctl "pin 0 enter 123456 87654321"
	tk piv pin change EMU0001 --pad >"$W/out" 2>&1 || { cat "$W/out"; fail "piv pin change --pad through the broker"; }
	ctl "pin 0 enter 87654321 123456"
	tk piv pin change EMU0001 --pad >"$W/out" 2>&1 || { cat "$W/out"; fail "piv pin change --pad through the broker, back"; }
	grep -q 'opened the card in .*EMU0001.* for its own commands' "$W/broker.log" ||
		{ cat "$W/broker.log"; fail "the pad change did not go through the broker"; }
elif [[ $broker == 1 ]]; then
	tk piv generate EMU0001 9c --algorithm eccp256 --default-mgmt-key -o "$W/pub9c.pem" >"$W/out" 2>&1 ||
		{ cat "$W/out"; fail "piv generate through the broker"; }
	tk piv certificate EMU0001 9c --self-sign "/CN=ccid through the broker" --insecure-pin 123456 \
		--default-mgmt-key >"$W/out" 2>&1 || { cat "$W/out"; fail "piv certificate through the broker"; }
	grep -q 'opened the card in .*EMU0001.* for its own commands' "$W/broker.log" ||
		{ cat "$W/broker.log"; fail "the tool did not go through the broker"; }
	# a process of its own cannot have the reader the broker holds
	! TOKENKIT_BROKER=off "$TOOL" apdu EMU0001 00A4040009A0000003080000100000 >"$W/out" 2>&1 ||
		{ cat "$W/out"; fail "another process used the reader the broker holds"; }
	env -u TOKENKIT_READERS LD_PRELOAD="$HOST_PRELOAD" ${HOST_ASAN:+ASAN_OPTIONS=$HOST_ASAN} \
		pkcs11-tool --module "$MOD" --login --pin 123456 --sign -m ECDSA-SHA256 --id 02 \
		--signature-format openssl -i "$W/data" -o "$W/sig9c" >"$W/out" 2>&1 ||
		{ cat "$W/out"; fail "sign with 9C through the broker"; }
	openssl dgst -sha256 -verify "$W/pub9c.pem" -signature "$W/sig9c" "$W/data" >/dev/null ||
		fail "the 9C signature through the broker does not verify"
fi
if [[ $broker == 1 ]]; then
	kill $bpid
	wait $bpid 2>/dev/null
fi
exit 0
EOC
chmod +x "$W/with_pcscd.sh" "$W/direct.sh"
export B W TIMEOUT TOOL MOD HOST_PRELOAD HOST_ASAN

count() { # FILE NAME: the emulator's counter NAME of interface 0
	awk -v k="$2" '$1 == "iface0" && $2 == k {print $3}' "$1"
}

fail=0
# variant NAME "serve options" level slots pad t0 watch [interfaces]
variant() {
	local name=$1 opts=$2 level=$3 slots=$4 pad=$5 t0=$6 watch=$7 ifaces=${8:-1} v bad=0
	local direct_opts=$opts readers=$((slots * ${8:-1}))
	echo "== $name"
	[[ $t0 == 1 ]] && direct_opts="$opts --t0"
	rm -f "$W/card.state"
	# shellcheck disable=SC2086
	if ! "$SERVE" $opts --state "$W/card.state" --log "$W/counts1" --control "$W/ctl" -- \
		"$W/with_pcscd.sh" "$readers" "$pad" "$watch" 2>"$W/serve.err" ||
		! "$SERVE" $direct_opts --state "$W/card.state" --log "$W/counts2" --control "$W/ctl" -- \
			"$W/direct.sh" "$level" "$slots" "$pad" "$t0" "$watch" "$readers" "${BROKER_RUN:-0}" \
			2>>"$W/serve.err"; then
		echo "FAIL: $name"
		tail -20 "$W/serve.err" "$W/pcscd.log" 2>/dev/null || true
		fail=1
		return
	fi
	if [[ $pad == 1 ]]; then
		# Secure in each run: PC/SC's pad login and the direct one; and the
		# PIN modifications: through the module the change and the wrong old
		# PIN in each run, in the direct run also the CLI's three
		# (two more in the direct run through the broker)
		for c in "counts1 2" "counts2 $((${BROKER_RUN:-0} == 1 ? 7 : 5))"; do
			set -- $c
			v=$(count "$W/$1" secure)
			[[ -n $v && $v -ge 1 ]] || { echo "FAIL: $name: $1: Secure ${v:-none}"; bad=1; }
			v=$(count "$W/$1" modify_secure)
			[[ $v == "$2" ]] || { echo "FAIL: $name: $1: PIN modifications ${v:-none}, want $2"; bad=1; }
		done
	fi
	if [[ $t0 == 1 ]]; then
		v=$(count "$W/counts2" t0_get_response)
		[[ -n $v && $v -ge 1 ]] || { echo "FAIL: $name: T=0 GET RESPONSE ${v:-none}"; bad=1; }
	fi
	if [[ $bad == 1 ]]; then fail=1; else echo "ok: $name"; fi
}

BROKER_RUN=1 variant "extended APDU" "--level ext" "extended APDU" 1 0 0 1
variant "short APDU" "--level short" "short APDU" 1 0 0 0
variant "TPDU, T=1" "--level tpdu" TPDU 1 0 0 0
variant "TPDU, T=0 card" "--level tpdu" TPDU 1 0 1 0
variant "two slots" "--level tpdu --slots 2" TPDU 2 0 0 0
BROKER_RUN=1 variant "PIN pad" "--level ext --pinpad 123456" "extended APDU" 1 1 0 0
variant "composite device, two interfaces" "--level ext --ifaces 2" "extended APDU" 1 0 0 0 2
exit $fail
