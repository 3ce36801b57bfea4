#!/usr/bin/env bash
# The tokenkit tool's own card commands through the broker (issue 13: a
# reader the broker holds, a direct-USB one above all, is no other
# process's): with a tokenkitd running, `tokenkit apdu`, `piv generate` and
# `piv certificate` send their APDUs through it (BP_CARD_OPEN, BP_CARD_IO),
# shown by a tool that cannot reach pcscd itself:
#  1. apdu: SELECT PIV and GET DATA through the broker answer what OpenSC's
#     opensc-tool reads straight from pcscd; the broker logged the session;
#     with TOKENKIT_BROKER=off the same tool has no card (exit 3); a VERIFY
#     through it is in the broker's trace log redacted, the PIN nowhere;
#  2. provisioning: a key generated and a certificate written through the
#     broker are in the broker's token at once (pkcs11-tool through the
#     broker lists the certificate and signs, openssl verifies with the
#     public key the tool wrote), and on the card: OpenSC's own PKCS#11
#     module, straight over pcscd, reads the same certificate;
#  3. one program's transaction at a time: two loops of `piv certificate
#     --self-sign` (management-key challenge and response, an on-card
#     signature, PUT DATA: any command of the other in between breaks them)
#     and a signer through the broker, all at once: every command works and
#     every signature verifies;
#  4. a program that takes the card's transaction and is killed: while it
#     holds it, a signature through the broker gets its error at the
#     deadline (no hang); once it is gone, signing works at once;
#  5. `tokenkit reset` (warm by name and by the broker's slot number, and
#     cold with --json) through the broker: the recovery's record, the
#     broker's counters count all three, an unknown reader exits 4, and
#     signing works after;
#  6. a program beside the broker: while two programs sign through the
#     broker without a pause, opensc-tool (straight over pcscd, taking the
#     card's transaction for its APDU) gets the card before they finish;
#     with --carry-transactions the broker's counters show transactions
#     carried over from turn to turn, and when the signers stop the card is
#     free again at once.
# (A broker that never answers: test_broker, the tool's apdu among the
# others.)
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_broker.sh"
p11_require
tk_require_cmd pkcs11-tool opensc-tool python3
tk_require_file "$OPENSC_P11"
[[ -x $TK_BUILD/tokenkitd && -x $TK_BUILD/tk-p11-login ]] || tk_fail "tokenkitd or tk-p11-login not built"
broker_env
TOOL=$TK_BUILD/tokenkit
P11=(pkcs11-tool --module "$TK_P11_MODULE")
R=$TK_READER0
SELECT_PIV="00A4040009A0000003080000100000"
# the tool alone cannot reach pcscd: what it does with the card went
# through the broker
nopcsc() { PCSCLITE_CSOCK_NAME=$TK_TMP/no-pcscd.sock "$@"; }
trap 'rc=$?; broker_kill; (exit $rc); tk_cleanup' EXIT
# (its log at trace: every APDU it sends, for the secrets check in 1)
BROKER_TRACE=1 broker_start

# --- 1. apdu ------------------------------------------------------------------
tk_run "apdu through the broker" nopcsc "$TOOL" apdu "$R" "$SELECT_PIV" 00CB3FFF055C035FC10200
tk_expect 'SW=9000'
[[ $(grep -c 'SW=9000' <<<"$TK_OUT") == 2 ]] || tk_fail "apdu: not two answers of 9000"
grep -q "opened the card in $R for its own commands" "$BLOG" ||
	tk_fail "the broker did not open the card for the tool"
# the CHUID's bytes, as OpenSC reads them straight from the card
ours=$(sed -n '4s/^< //p' <<<"$TK_OUT" | sed 's/ SW=.*//' | tr -d ' ')
tk_run "the same through opensc-tool" opensc-tool -r 0 -s '00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00' \
	-s '00 CB 3F FF 05 5C 03 5F C1 02 00'
theirs=$(python3 - "$TK_OUT" <<'PY'
import re, sys
# opensc-tool prints each answer as hex rows after "Received (SW1=..)"
blocks = sys.argv[1].split("Sending:")
last = blocks[-1]
hexes = re.findall(r"^((?:[0-9A-F]{2} )+)", last.split("Received", 1)[1], re.M)
print("".join(h.replace(" ", "") for h in hexes))
PY
)
[[ -n $ours && $ours == "$theirs" ]] || tk_fail "the CHUID through the broker ($ours) is not opensc-tool's ($theirs)"
rc=0
TOKENKIT_BROKER=off nopcsc "$TOOL" apdu "$R" "$SELECT_PIV" >/dev/null 2>&1 || rc=$?
[[ $rc == 3 ]] || tk_fail "the tool reached the card without the broker (exit $rc, not 3)"
# a PIN the tool sends through the broker is never in the broker's log,
# even at trace (its VERIFY logged redacted)
tk_run "VERIFY through the broker" nopcsc "$TOOL" apdu "$R" "$SELECT_PIV" 0020008008313233343536FFFF
tk_expect 'SW=9000'
grep -q '00 20 00 80 <redacted 9 bytes>' "$BLOG" || tk_fail "the broker did not log the VERIFY redacted"
! grep -Eiq '31 ?32 ?33 ?34 ?35 ?36' "$BLOG" || tk_fail "the PIN is in the broker's log"

# --- 2. provisioning ------------------------------------------------------------
tk_run "generate 9E through the broker" nopcsc "$TOOL" piv generate "$R" 9e --algorithm eccp256 \
	--default-mgmt-key -o "$TK_TMP/9e.pem"
tk_run "certificate 9E through the broker" nopcsc "$TOOL" piv certificate "$R" 9e \
	--self-sign "/CN=through the broker" --insecure-pin 123456 --default-mgmt-key
# at once: the broker's token shows it (no wait, no restart)
tk_run "the broker's token" "${P11[@]}" -O --type cert
tk_expect 'subject: +DN: CN=through the broker'
printf 'signed through the broker\n' >"$TK_TMP/data"
tk_run "sign with 9E through the broker" "${P11[@]}" -l -p 123456 -s -m ECDSA-SHA256 --id 04 \
	--signature-format openssl -i "$TK_TMP/data" -o "$TK_TMP/sig9e"
tk_run "verify" openssl dgst -sha256 -verify "$TK_TMP/9e.pem" -signature "$TK_TMP/sig9e" "$TK_TMP/data"
tk_run "OpenSC reads the certificate from the card" pkcs11-tool --module "$OPENSC_P11" \
	--read-object --type cert --id 04 -o "$TK_TMP/9e.der"
openssl x509 -inform DER -in "$TK_TMP/9e.der" -noout -subject | grep -q 'CN *= *through the broker' ||
	tk_fail "OpenSC read another certificate from 9E"
[[ $(openssl x509 -inform DER -in "$TK_TMP/9e.der" -pubkey -noout) == "$(cat "$TK_TMP/9e.pem")" ]] ||
	tk_fail "the certificate's key is not the one the broker's generate wrote"

# --- 3. one transaction at a time ---------------------------------------------
"$TK_BUILD/tk-p11-login" "$TK_P11_MODULE" steady 8 >"$TK_TMP/steady.out" 2>&1 &
steady=$!
loop() { # slot: five self-signed certificates in a row
	local i
	for ((i = 0; i < 5; i++)); do
		nopcsc "$TOOL" piv certificate "$R" "$1" --self-sign "/CN=loop $1 $i" --insecure-pin 123456 \
			--default-mgmt-key >>"$TK_TMP/loop$1.out" 2>&1 || { echo "FAILED $i" >>"$TK_TMP/loop$1.out"; return 1; }
	done
}
nopcsc "$TOOL" piv generate "$R" 82 --algorithm eccp256 --default-mgmt-key >/dev/null 2>&1 ||
	tk_fail "generate 82 through the broker"
loop 9e &
l1=$!
loop 82 &
l2=$!
rc1=0 rc2=0 rc3=0
wait $l1 || rc1=$?
wait $l2 || rc2=$?
wait $steady || rc3=$?
[[ $rc1 == 0 && $rc2 == 0 ]] || { cat "$TK_TMP"/loop*.out >&2; tk_fail "a provisioning loop failed beside the other"; }
cat "$TK_TMP/steady.out" >&2
[[ $rc3 == 0 ]] && grep -q 'RESULT PASS' "$TK_TMP/steady.out" || tk_fail "the signer beside them failed"
grep -Eq 'STEADY 8 s: signatures [1-9]' "$TK_TMP/steady.out" || tk_fail "the signer signed nothing"
tk_run "the last certificates, through the broker" "${P11[@]}" -O --type cert
tk_expect 'CN=loop 9e 4'

# --- 4. a transaction's holder killed ---------------------------------------------
# a client of our own: hello, BP_CARD_OPEN, BP_CARD_IO BEGIN, then it waits
# (pkcs11/bproto.h: 4-byte length, CBOR [1, function, id, [arguments]];
# the broker writes its results as an indefinite-length array)
python3 - "$XDG_RUNTIME_DIR/tokenkit/broker.sock" "$R" >"$TK_TMP/holder.out" 2>&1 <<'PY' &
import os, socket, struct, sys, time
def u(v):
    if v < 24: return bytes([v])
    if v < 256: return bytes([0x18, v])
    if v < 65536: return bytes([0x19]) + v.to_bytes(2, "big")
    return bytes([0x1a]) + v.to_bytes(4, "big")
def b(x):
    return (bytes([0x40 + len(x)]) if len(x) < 24 else bytes([0x58, len(x)])) + x
def arr(items):
    return bytes([0x80 + len(items)]) + b"".join(items)
def call(s, fn, i, args):
    m = arr([u(1), u(fn), u(i), arr(args)])
    s.sendall(struct.pack(">I", len(m)) + m)
    n = struct.unpack(">I", s.recv(4))[0]
    got = b""
    while len(got) < n:
        got += s.recv(n - len(got))
    return got
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
call(s, 1000, 0, [b(os.urandom(16)), u(0)])
a = call(s, 1003, 1, [b(sys.argv[2].encode())])
assert a[4:6] == b"\x9f\x00", a  # [error 0, ...]: the card is open
a = call(s, 1004, 2, [u(2), b"\xf6", u(0), u(5000)])
assert a[-3:] == b"\x00\xf6\xff", a  # BEGIN: [error 0, null]
print("HOLDING", flush=True)
time.sleep(600)
PY
holder=$!
tk_wait 10 "the holder takes the transaction" grep -q HOLDING "$TK_TMP/holder.out"
t0=$SECONDS
rc=0
TOKENKIT_BROKER_TIMEOUT_MS=1500 timeout 60 "${P11[@]}" -l -p 123456 -s -m ECDSA-SHA256 --id 01 \
	-i "$TK_TMP/data" -o "$TK_TMP/sig.held" >"$TK_TMP/held.out" 2>&1 || rc=$?
[[ $rc != 0 && $rc != 124 ]] || { cat "$TK_TMP/held.out" >&2; tk_fail "a signature while another program holds the card: exit $rc"; }
((SECONDS - t0 < 30)) || tk_fail "the signature's error came after $((SECONDS - t0)) s"
kill -9 $holder
wait $holder 2>/dev/null || true
tk_run "signing once the holder is gone" timeout 60 "${P11[@]}" -l -p 123456 -s -m ECDSA-SHA256 \
	--id 01 --signature-format openssl -i "$TK_TMP/data" -o "$TK_TMP/sig9a"
tk_run "verify" openssl dgst -sha256 -verify "$TK_TMP/pub9a.pem" -signature "$TK_TMP/sig9a" "$TK_TMP/data"

# --- 5. reset ----------------------------------------------------------------------
# a forced recovery of the broker's reader (BP_READER_RESET): its record,
# and the broker's counters count it
before=$(nopcsc "$TOOL" diag --json "$R" | python3 -c 'import json,sys; print(json.load(sys.stdin)["readers"][0]["recoveries"])')
tk_run "reset through the broker" nopcsc "$TOOL" reset "$R"
tk_expect 'fault none \(forced\)'
tk_expect 'cured by warm-reset'
# a slot number is the broker's slot, as `tokenkit readers` shows it
slot=$(nopcsc "$TOOL" diag --json "$R" | python3 -c 'import json,sys; print(json.load(sys.stdin)["readers"][0]["slot"])')
tk_run "reset of slot $slot through the broker" nopcsc "$TOOL" reset "$slot"
tk_expect 'fault none \(forced\)'
grep -q "a forced warm reset of $R: success" "$BLOG" || tk_fail "the broker did not reset $R for slot $slot"
tk_run "cold reset through the broker" nopcsc "$TOOL" reset "$R" --cold --json
python3 - "$TK_OUT" <<'PY' || tk_fail "the cold reset's record"
import json, sys
r = json.loads(sys.argv[1])
assert r["result"] == "TK_OK" and r["what"] == "forced-cold", r
assert r["steps"][0]["step"] == "cold-reset" and r["cured_by"] == "cold-reset", r
PY
after=$(nopcsc "$TOOL" diag --json "$R" | python3 -c 'import json,sys; print(json.load(sys.stdin)["readers"][0]["recoveries"])')
[[ $after == $((before + 3)) ]] || tk_fail "the broker counted $before then $after recoveries, not three more"
grep -q "a forced cold reset of $R: success" "$BLOG" || tk_fail "the broker did not log the reset"
rc=0
nopcsc "$TOOL" reset "no such reader" >/dev/null 2>&1 || rc=$?
[[ $rc == 4 ]] || tk_fail "reset of an unknown reader through the broker: exit $rc, not 4"
# the card works after the resets: signing through the broker
tk_run "signing after the resets" "${P11[@]}" -l -p 123456 -s -m ECDSA-SHA256 --id 01 \
	--signature-format openssl -i "$TK_TMP/data" -o "$TK_TMP/sig9a.2"
tk_run "verify" openssl dgst -sha256 -verify "$TK_TMP/pub9a.pem" -signature "$TK_TMP/sig9a.2" "$TK_TMP/data"

# --- 6. a program beside the broker ---------------------------------------------------
# start_signers SECONDS: two programs signing through the broker, their pids in
# $signers
start_signers() {
	signers=()
	for i in 1 2; do
		"$TK_BUILD/tk-p11-login" "$TK_P11_MODULE" steady "$1" >"$TK_TMP/busy$i.out" 2>&1 &
		signers+=($!)
	done
	sleep 2 # (they log in and sign from then on)
}
stop_signers() {
	local rc=0 p
	for p in "${signers[@]}"; do wait "$p" || rc=$?; done
	[[ $rc == 0 ]] || { cat "$TK_TMP"/busy*.out >&2; tk_fail "a signer through the broker failed"; }
}
start_signers 30
t0=$(date +%s%N)
tk_run "opensc-tool's APDU while the broker is busy" timeout 60 opensc-tool -r 0 -s "$SELECT_PIV"
tk_expect 'SW1=0x(90|61)'
for p in "${signers[@]}"; do
	kill -0 "$p" 2>/dev/null || tk_fail "opensc-tool got the card only after the signers were done"
done
tk_log "opensc-tool beside the busy broker: $((($(date +%s%N) - t0) / 1000000)) ms"
for p in "${signers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done

broker_kill
BROKER_TRACE=0 broker_start --carry-transactions 250
start_signers 3
stop_signers
carried=$(nopcsc "$TOOL" diag --json "$R" |
	python3 -c 'import json,sys; r=json.load(sys.stdin)["readers"][0]; print(r["txn_carried"], r["txn_begun"])')
read -r carried begun <<<"$carried"
tk_log "with --carry-transactions 250: $begun transactions begun, $carried carried over"
[[ $carried -gt 0 && $carried -gt $begun ]] || tk_fail "the broker carried $carried transactions over, began $begun"
tk_run "opensc-tool's APDU once the signers stopped" timeout 10 opensc-tool -r 0 -s "$SELECT_PIV"
tk_expect 'SW1=0x(90|61)'

tk_pass
