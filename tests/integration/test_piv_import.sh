#!/usr/bin/env bash
# tokenkit piv import and the PIN / touch policies, on the virtual PIV card
# through pcscd, each result checked by another program than tokenkit:
#  - a P-256 key from an encrypted PKCS#8 PEM file (passphrase from a
#    descriptor) and an RSA-2048 key from a PKCS#12 file (with its
#    certificate, into 9e) sign through OpenSC's PKCS#11 module, and openssl verifies
#    the signatures with the key FILE's public key; yubico-piv-tool reads the
#    PKCS#12 file's certificate back from the slot;
#  - an RSA-1024 key in the traditional ("BEGIN RSA PRIVATE KEY") form
#    imports into a retired slot (the card's own GET METADATA names it);
#  - the policies given to import and generate are the ones the card stores:
#    GET METADATA sent raw (tag 02: PIN policy, touch policy) and, for a
#    generated key, the policy extension of the attestation yubico-piv-tool
#    fetches (read by openssl);
#  - refused without touching the card: a wrong passphrase, no passphrase
#    source without a terminal (exit 7), RSA-3072 on firmware before 5.7,
#    a key a PIV card cannot hold (P-521), a bad policy name;
#  - RSA-3072 imports into a card that says firmware 5.7 (virtual card
#    option), and a request it signs verifies with the key file's key;
#    tokenkit piv generate makes RSA-3072 and 4096 there, RSA-1024 too, and
#    refuses RSA-4096 on firmware 5.4 without asking the card;
#  - policies are refused on firmware before 4 (cached touch before 4.3).
source "$(dirname "$0")/lib.sh"
tk_require_cmd yubico-piv-tool openssl pkcs11-tool setsid od
tk_require_file "$OPENSC_P11"
TK="$TK_BUILD/tokenkit"

tk_env_start
tk_card_start 0
T=$TK_TMP
R=$TK_READER0
PIV=(yubico-piv-tool -r "$R")
P11=(pkcs11-tool --module "$OPENSC_P11")
head -c 1000 /dev/urandom >"$T/data"
openssl dgst -sha256 -binary "$T/data" >"$T/h256"

# metadata REF: the card's GET METADATA of slot REF, as hex (raw APDU)
metadata() {
	tk_run "metadata of slot $1" "$TK" apdu "$R" 00A4040005A000000308 "00F700$1"
	tk_expect "SW=9000"
	META=$(tr -d ' \n' <<<"$TK_OUT" | tr 'a-f' 'A-F')
}
slot_empty() {
	tk_run "metadata of slot $1" "$TK" apdu "$R" 00A4040005A000000308 "00F700$1"
	tk_expect "SW=6A82"
}

# --- keys made by openssl --------------------------------------------------------------
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ec.pem" 2>/dev/null
openssl pkcs8 -topk8 -in "$T/ec.pem" -v2 aes-256-cbc -passout pass:"open sesame" -out "$T/ec.enc.pem"
grep -q "BEGIN ENCRYPTED PRIVATE KEY" "$T/ec.enc.pem" || tk_fail "ec.enc.pem is not encrypted"
openssl pkey -in "$T/ec.pem" -pubout -out "$T/ec.pub"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.pem" 2>/dev/null
openssl req -x509 -key "$T/rsa.pem" -subj "/CN=from pkcs12" -days 10 -out "$T/rsa.crt"
openssl pkcs12 -export -inkey "$T/rsa.pem" -in "$T/rsa.crt" -passout pass:p12pass -out "$T/rsa.p12"
openssl pkey -in "$T/rsa.pem" -pubout -out "$T/rsa.pub"
openssl genrsa -traditional -out "$T/rsa1024.pem" 1024 2>/dev/null
grep -q "BEGIN RSA PRIVATE KEY" "$T/rsa1024.pem" || tk_fail "rsa1024.pem is not traditional"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$T/rsa3072.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out "$T/p521.pem" 2>/dev/null

# --- refused before anything is written ---------------------------------------------------
tk_run_fails "wrong passphrase" "$TK" piv import "$R" 9a "$T/ec.enc.pem" --default-mgmt-key \
	--passphrase-fd 3 3< <(echo "open sesame?")
tk_expect "wrong passphrase"
slot_empty 9A
rc=0
timeout 60 setsid -w "$TK" piv import "$R" 9a "$T/ec.enc.pem" --default-mgmt-key </dev/null \
	>"$T/out" 2>&1 || rc=$?
TK_OUT=$(cat "$T/out")
[[ $rc -eq 7 ]] || { cat "$T/out" >&2; tk_fail "no passphrase source: exit $rc, not 7"; }
tk_expect "passphrase of the key file is needed"
tk_run_fails "RSA-3072 on firmware 5.4" "$TK" piv import "$R" 9a "$T/rsa3072.pem" --default-mgmt-key
tk_expect "5\.7"
tk_run_fails "P-521" "$TK" piv import "$R" 9a "$T/p521.pem" --default-mgmt-key
tk_expect "P-256 or P-384"
tk_run_fails "a bad PIN policy" "$TK" piv import "$R" 9a "$T/ec.pem" --pin-policy sometimes \
	--default-mgmt-key
tk_run_fails "a bad touch policy" "$TK" piv generate "$R" 9a --algorithm eccp256 \
	--touch-policy once --default-mgmt-key
tk_run_fails "a wrong management key" "$TK" piv import "$R" 9a "$T/ec.pem" --mgmt-key-fd 3 \
	3< <(echo 0102030405060708010203040506070801020304050607FF)
tk_expect "wrong management key"
slot_empty 9A

# --- P-256 from encrypted PKCS#8 into 9a, PIN always, touch cached ---------------------------
tk_run "import P-256 into 9a" "$TK" piv import "$R" 9a "$T/ec.enc.pem" --default-mgmt-key \
	--passphrase-fd 3 --pin-policy always --touch-policy cached -o "$T/ec.out" \
	3< <(echo "open sesame")
cmp <(openssl pkey -pubin -in "$T/ec.out" -outform DER) <(openssl pkey -pubin -in "$T/ec.pub" -outform DER) ||
	tk_fail "tokenkit wrote another public key than the file's"
metadata 9A
# 01 01 11 (P-256), 02 02 03 03 (PIN always, touch cached), 03 01 02 (imported)
[[ $META == *010111* ]] || tk_fail "9a metadata: not P-256: $META"
[[ $META == *0202030303* ]] || tk_fail "9a metadata: policies not always/cached: $META"
[[ $META == *030102* ]] || tk_fail "9a metadata: origin not 'imported': $META"
openssl req -x509 -key "$T/ec.pem" -subj "/CN=imported ec" -days 10 -out "$T/ec.crt"
tk_run "its certificate" "$TK" piv certificate "$R" 9a --import "$T/ec.crt" --default-mgmt-key
tk_run "sign with 9a through OpenSC" "${P11[@]}" --login --pin 123456 --sign --id 01 \
	-m ECDSA --signature-format openssl -i "$T/h256" -o "$T/sig9a"
tk_run "verify with the key file's public key (openssl)" openssl pkeyutl -verify -pubin \
	-inkey "$T/ec.pub" -in "$T/h256" -sigfile "$T/sig9a"

# --- RSA-2048 from PKCS#12 into 9e, its certificate with it ------------------------------------
tk_run "import RSA-2048 (PKCS#12) into 9e" "$TK" piv import "$R" 9e "$T/rsa.p12" \
	--default-mgmt-key --passphrase-fd 3 3< <(echo p12pass)
tk_expect "certificate written"
tk_run_piv "read the certificate (yubico-piv-tool)" "${PIV[@]}" -a read-certificate -s 9e \
	-o "$T/back9e.pem"
cmp <(openssl x509 -in "$T/rsa.crt" -outform DER) <(openssl x509 -in "$T/back9e.pem" -outform DER) ||
	tk_fail "the slot's certificate is not the PKCS#12 file's"
metadata 9E
[[ $META == *010107* ]] || tk_fail "9e metadata: not RSA-2048: $META"
tk_run "sign with 9e through OpenSC" "${P11[@]}" --login --pin 123456 --sign --id 04 \
	-m SHA256-RSA-PKCS -i "$T/data" -o "$T/sig9e"
tk_run "verify with the key file's public key (openssl)" openssl dgst -sha256 -verify "$T/rsa.pub" \
	-signature "$T/sig9e" "$T/data"

# --- RSA-1024, traditional PEM, into retired slot 82, without the certificate ------------------
tk_run "import RSA-1024 into 82" "$TK" piv import "$R" 82 "$T/rsa1024.pem" --default-mgmt-key \
	--pin-policy never
metadata 82
[[ $META == *010106* ]] || tk_fail "82 metadata: not RSA-1024: $META"
[[ $META == *020201* ]] || tk_fail "82 metadata: PIN policy not never: $META"
tk_run "a PKCS#12 key without its certificate (--no-certificate)" "$TK" piv import "$R" 83 \
	"$T/rsa.p12" --default-mgmt-key --passphrase-fd 3 --no-certificate 3< <(echo p12pass)
tk_expect_not "certificate written"
tk_run_fails "slot 83 has no certificate (yubico-piv-tool)" "${PIV[@]}" -a read-certificate -s 83

# --- policies on generate, read from the attestation (yubico-piv-tool + openssl) ----------------
tk_run "generate P-256 in 9d, PIN never, touch always" "$TK" piv generate "$R" 9d \
	--algorithm eccp256 --pin-policy never --touch-policy always --default-mgmt-key
metadata 9D
[[ $META == *0202010203* ]] || tk_fail "9d metadata: policies not never/always: $META"
# the Yubico policy extension: OID 1.3.6.1.4.1.41482.3.8, OCTET STRING { PIN, touch }
att_policy() {
	local der
	der=$(openssl x509 -in "$1" -outform DER | od -An -tx1 -v | tr -d ' \n')
	[[ $der =~ 060a2b0601040182c40a03080402(....) ]] || tk_fail "$1: no policy extension"
	echo "${BASH_REMATCH[1]}"
}
tk_run_piv "attest 9d (yubico-piv-tool)" "${PIV[@]}" -a attest -s 9d -o "$T/att9d.pem"
pol=$(att_policy "$T/att9d.pem")
[[ $pol == 0102 ]] || tk_fail "9d attestation policy: $pol, not 0102 (never, always)"
tk_run "generate P-384 in 9c, PIN once, touch cached" "$TK" piv generate "$R" 9c \
	--algorithm eccp384 --pin-policy once --touch-policy cached --default-mgmt-key
tk_run_piv "attest 9c (yubico-piv-tool)" "${PIV[@]}" -a attest -s 9c -o "$T/att9c.pem"
pol=$(att_policy "$T/att9c.pem")
[[ $pol == 0203 ]] || tk_fail "9c attestation policy: $pol, not 0203 (once, cached)"
# --- RSA-3072 on a card with firmware 5.7 (the virtual card told so) -------------------------
tk_card_start 1 --option firmware=5.7.1
R1=$TK_READER1
tk_run "version of card 1" "$TK" apdu "$R1" 00A4040005A000000308 00FD0000
tk_expect "< 05 07 01 SW=9000"
tk_run "import RSA-3072 into 9a on firmware 5.7" "$TK" piv import "$R1" 9a "$T/rsa3072.pem" \
	--default-mgmt-key
tk_run "metadata of slot 9A (card 1)" "$TK" apdu "$R1" 00A4040005A000000308 00F7009A
[[ $(tr -d ' \n' <<<"$TK_OUT" | tr 'a-f' 'A-F') == *010105* ]] || tk_fail "card 1 9a: not RSA-3072"
tk_run "a request signed with it" "$TK" piv certificate "$R1" 9a --csr /CN=rsa3072 -o "$T/req3072.pem" \
	--pin-fd 3 3< <(echo 123456)
tk_run "openssl req -verify" openssl req -in "$T/req3072.pem" -verify -noout
cmp <(openssl req -in "$T/req3072.pem" -noout -pubkey | openssl pkey -pubin -outform DER) \
	<(openssl pkey -in "$T/rsa3072.pem" -pubout -outform DER) || tk_fail "request for another key"
# generated on the card: RSA-3072 and 4096 on firmware 5.7, RSA-1024; the card's own
# GET METADATA names the algorithm, openssl the size of the public key printed
for g in 9c:rsa3072:05:3072 9d:rsa4096:16:4096 9e:rsa1024:06:1024; do
	IFS=: read -r s alg id bits <<<"$g"
	tk_run "generate $alg in $s on firmware 5.7" "$TK" piv generate "$R1" "$s" --algorithm "$alg" \
		--default-mgmt-key -o "$T/gen$s.pem"
	tk_run "its size (openssl)" openssl pkey -pubin -in "$T/gen$s.pem" -noout -text
	tk_expect "Public-Key: \($bits bit\)"
	tk_run "metadata of slot ${s^^} (card 1)" "$TK" apdu "$R1" 00A4040005A000000308 "00F700$s"
	[[ $(tr -d ' \n' <<<"$TK_OUT" | tr 'a-f' 'A-F') == *0101$id* ]] || tk_fail "card 1 $s: not $alg"
done
tk_run_fails "generate RSA-4096 on firmware 5.4" "$TK" piv generate "$R" 9d --algorithm rsa4096 \
	--default-mgmt-key
tk_expect "RSA-4096 needs a YubiKey with firmware 5\.7"
tk_run_fails "generate with an unknown algorithm" "$TK" piv generate "$R" 9d --algorithm rsa512 \
	--default-mgmt-key

# --- policies on older firmware: refused before the management key is even asked for -----------
tk_card_stop 1
tk_card_start 1 --state "$T/card1-fw42.state" --option firmware=4.2.0
tk_run_fails "touch cached on firmware 4.2" "$TK" piv generate "$R1" 9a --algorithm eccp256 \
	--touch-policy cached --default-mgmt-key
tk_expect "4\.3"
tk_run "PIN policy on firmware 4.2" "$TK" piv generate "$R1" 9a --algorithm eccp256 \
	--pin-policy never --touch-policy always --default-mgmt-key
tk_card_stop 1
tk_card_start 1 --state "$T/card1-fw34.state" --option firmware=3.4.0
tk_run_fails "a PIN policy on firmware 3.4" "$TK" piv import "$R1" 9a "$T/ec.pem" \
	--pin-policy once --default-mgmt-key
tk_expect "YubiKey 4 or later"
tk_run "metadata of slot 9A (card 1, 3.4)" "$TK" apdu "$R1" 00A4040005A000000308 00F7009A
tk_expect "SW=6A82"
tk_run "no policy on firmware 3.4" "$TK" piv import "$R1" 9a "$T/ec.pem" --default-mgmt-key
tk_pass
