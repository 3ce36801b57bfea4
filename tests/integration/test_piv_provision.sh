#!/usr/bin/env bash
# tokenkit piv: provisioning the virtual PIV card through pcscd, each result
# checked by another program than tokenkit:
#  - a wrong management key (or none, without a terminal) is refused with a
#    clear message and the card is left as it was (GET METADATA: slot empty);
#  - keys tokenkit generates (P-256 in 9a, RSA-2048 in 9e, P-384 in 9c) sign
#    through OpenSC's PKCS#11 module, and openssl verifies the signatures with
#    the public key tokenkit wrote;
#  - the self-signed certificates tokenkit has the card make are read by
#    yubico-piv-tool, certify the generated key and carry the card's valid
#    signature (openssl); an imported one reads back as it was;
#  - the PIN tokenkit sets (change, and unblock with a PUK tokenkit set)
#    is the one yubico-piv-tool verifies;
#  - after set-mgmt-key yubico-piv-tool authenticates with the new 3DES key
#    and no longer with the default one; after set-mgmt-key to AES-192 OpenSC's
#    piv-tool authenticates with the AES key (yubico-piv-tool 2.2 has no AES
#    management keys) and not with the 3DES one, and tokenkit uses it too.
source "$(dirname "$0")/lib.sh"
tk_require_cmd yubico-piv-tool piv-tool openssl pkcs11-tool setsid
tk_require_file "$OPENSC_P11"
TK="$TK_BUILD/tokenkit"

tk_env_start
tk_card_start 0
T=$TK_TMP
R=$TK_READER0
PIV=(yubico-piv-tool -r "$R")
P11=(pkcs11-tool --module "$OPENSC_P11")
DEF=010203040506070801020304050607080102030405060708
NEWKEY=00112233445566778899aabbccddeeff0011223344556677
KEY3DES=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978
head -c 1000 /dev/urandom >"$T/data"

# slot_empty REF: GET METADATA of the slot answers 6A82 (no key)
slot_empty() {
	tk_run "metadata of slot $1" "$TK" apdu "$R" 00A4040005A000000308 "00F700$1"
	tk_expect "SW=6A82"
}

# nothing to read the management key from, and no terminal: exit 7, no prompt hang
rc=0
timeout 60 setsid -w "$TK" piv generate "$R" 9a --algorithm eccp256 </dev/null >"$T/out" 2>&1 || rc=$?
TK_OUT=$(cat "$T/out")
[[ $rc -eq 7 ]] || { cat "$T/out" >&2; tk_fail "no management key source: exit $rc, not 7"; }
tk_expect "management key is needed"

tk_run_fails "generate with a wrong management key" "$TK" piv generate "$R" 9a --algorithm eccp256 \
	--mgmt-key-fd 3 3< <(echo 0102030405060708010203040506070801020304050607FF)
tk_expect "wrong management key"
tk_expect "nothing was changed"
slot_empty 9A

# --- P-256 in 9a ----------------------------------------------------------------
tk_run "generate P-256 in 9a" "$TK" piv generate "$R" 9a --algorithm eccp256 --default-mgmt-key \
	-o "$T/pub9a.pem"
tk_expect "DEFAULT management key"
openssl pkey -pubin -in "$T/pub9a.pem" -noout -text 2>/dev/null | grep -q "NIST CURVE: P-256" ||
	tk_fail "pub9a.pem is not a P-256 public key"

tk_run "change the PIN" "$TK" piv pin change "$R" --pin-fd 3 3< <(printf '123456\n24681357\n')
tk_run_fails "old PIN" "${PIV[@]}" -a verify-pin -P 123456
tk_run_piv "new PIN (yubico-piv-tool)" "${PIV[@]}" -a verify-pin -P 24681357

tk_run_fails "self-sign with a wrong PIN" "$TK" piv certificate "$R" 9a --self-sign "/CN=nobody" \
	--default-mgmt-key --pin-fd 3 3< <(echo 123456)
tk_expect "wrong PIN"
tk_run "self-sign 9a" "$TK" piv certificate "$R" 9a --self-sign "/CN=tokenkit test/O=Example" \
	--default-mgmt-key --pin-fd 3 3< <(echo 24681357)

tk_run_piv "read the certificate (yubico-piv-tool)" "${PIV[@]}" -a read-certificate -s 9a \
	-o "$T/cert9a.pem"
openssl x509 -in "$T/cert9a.pem" -noout -subject | grep -q "CN = tokenkit test" ||
	tk_fail "certificate subject"
cmp <(openssl x509 -in "$T/cert9a.pem" -noout -pubkey | openssl pkey -pubin -outform DER) \
	<(openssl pkey -pubin -in "$T/pub9a.pem" -outform DER) || tk_fail "certificate is for another key"
tk_run "the card's signature on the certificate (openssl)" openssl verify -check_ss_sig \
	-CAfile "$T/cert9a.pem" "$T/cert9a.pem"

openssl dgst -sha256 -binary "$T/data" >"$T/h256"
tk_run "sign with 9a through OpenSC" "${P11[@]}" --login --pin 24681357 --sign --id 01 \
	-m ECDSA --signature-format openssl -i "$T/h256" -o "$T/sig9a"
tk_run "verify with the key tokenkit wrote" openssl pkeyutl -verify -pubin -inkey "$T/pub9a.pem" \
	-in "$T/h256" -sigfile "$T/sig9a"

# --- RSA-2048 in 9e -----------------------------------------------------------------
tk_run "generate RSA-2048 in 9e" "$TK" piv generate "$R" 9e --algorithm rsa2048 --default-mgmt-key
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' <<<"$TK_OUT" >"$T/pub9e.pem"
openssl pkey -pubin -in "$T/pub9e.pem" -noout -text 2>/dev/null | grep -q "Public-Key: (2048 bit)" ||
	tk_fail "the printed key is not RSA-2048"
tk_run "self-sign 9e" "$TK" piv certificate "$R" 9e --self-sign "CN=card auth" --days 30 \
	--default-mgmt-key --pin-fd 3 3< <(echo 24681357)
tk_run_piv "read the 9e certificate" "${PIV[@]}" -a read-certificate -s 9e -o "$T/cert9e.pem"
tk_run "RSA certificate signature (openssl)" openssl verify -check_ss_sig -CAfile "$T/cert9e.pem" \
	"$T/cert9e.pem"
tk_run "sign with 9e through OpenSC" "${P11[@]}" --login --pin 24681357 --sign --id 04 \
	-m SHA256-RSA-PKCS -i "$T/data" -o "$T/sig9e"
tk_run "verify with the key tokenkit printed" openssl dgst -sha256 -verify "$T/pub9e.pem" \
	-signature "$T/sig9e" "$T/data"

# --- an imported certificate ----------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/other.key" \
	-subj "/CN=imported" -days 10 -out "$T/other.pem" 2>/dev/null
tk_run "import a certificate into 9d" "$TK" piv certificate "$R" 9d --import "$T/other.pem" \
	--mgmt-key-fd 3 3< <(echo $DEF)
tk_run_piv "read it back" "${PIV[@]}" -a read-certificate -s 9d -o "$T/back9d.pem"
cmp <(openssl x509 -in "$T/other.pem" -outform DER) <(openssl x509 -in "$T/back9d.pem" -outform DER) ||
	tk_fail "imported certificate differs"

# --- PUK and unblock ---------------------------------------------------------------------
tk_run_fails "PUK change with a wrong PUK" "$TK" piv puk change "$R" --puk-fd 3 \
	3< <(printf '11111111\n22222222\n')
tk_expect "wrong PUK"
tk_run "change the PUK" "$TK" piv puk change "$R" --puk-fd 3 3< <(printf '12345678\n87654321\n')
tk_run_fails "unblock with the old PUK" "$TK" piv pin unblock "$R" --puk-fd 3 --new-pin-fd 4 \
	3< <(echo 12345678) 4< <(echo 13572468)
tk_run "unblock with the new PUK" "$TK" piv pin unblock "$R" --puk-fd 3 --new-pin-fd 4 \
	3< <(echo 87654321) 4< <(echo 13572468)
tk_run_piv "PIN set by unblock (yubico-piv-tool)" "${PIV[@]}" -a verify-pin -P 13572468

# --- the management key ------------------------------------------------------------------
tk_run "set a 3DES management key" "$TK" piv set-mgmt-key "$R" --new-algorithm 3des \
	--default-mgmt-key --new-mgmt-key-fd 3 3< <(echo $KEY3DES)
tk_run_piv "yubico-piv-tool authenticates with the new key" "${PIV[@]}" -k"$KEY3DES" -a set-chuid
tk_run_fails "... and not with the default one" "${PIV[@]}" -k"$DEF" -a set-chuid
tk_run "set an AES-192 management key (authenticated with the 3DES one)" "$TK" piv set-mgmt-key \
	"$R" --new-algorithm aes192 --mgmt-key-fd 3 --new-mgmt-key-fd 4 3< <(echo $KEY3DES) \
	4< <(echo $NEWKEY)
# yubico-piv-tool 2.2 knows only 3DES management keys; OpenSC's piv-tool
# authenticates mutually with an AES one (PIV_EXT_AUTH_KEY: the key in hex)
echo "$NEWKEY" >"$T/aes.key"
echo "${NEWKEY%??}00" >"$T/wrong.key"
tk_run "piv-tool authenticates with the new AES-192 key" env PIV_EXT_AUTH_KEY="$T/aes.key" \
	piv-tool -r 0 -A M:9B:0A
tk_expect_not "[Ff]ail|[Ee]rror"
tk_run_fails "... and not with another AES-192 key" env PIV_EXT_AUTH_KEY="$T/wrong.key" \
	piv-tool -r 0 -A M:9B:0A
tk_run_fails "tokenkit with the old default key" "$TK" piv generate "$R" 9c --algorithm eccp384 \
	--default-mgmt-key
tk_expect "wrong management key"
slot_empty 9C
tk_run "tokenkit with the new AES key: P-384 in 9c" "$TK" piv generate "$R" 9c --algorithm eccp384 \
	--mgmt-key-fd 3 -o "$T/pub9c.pem" 3< <(echo $NEWKEY)
openssl pkey -pubin -in "$T/pub9c.pem" -noout -text 2>/dev/null | grep -q "NIST CURVE: P-384" ||
	tk_fail "pub9c.pem is not a P-384 public key"
tk_pass
