#!/usr/bin/env bash
# tokenkit attest: PIV key attestation against the virtual card through pcscd.
#
# The card's attestation key (F9) and its certificate (5FFF01) are replaced
# with yubico-piv-tool by ones issued by a root made here with openssl, as a
# maker does at the factory. Then:
#  - a key generated on the card attests: `tokenkit attest --root` verifies,
#    and `openssl verify` (the independent check) agrees on the same chain;
#    serial, firmware and policies shown are the ones yubico-piv-tool reads
#    and the ones the key was generated with;
#  - without --root the tool verifies up to the device certificate and says so;
#  - forgeries fail (exit 1), each also refused by openssl verify where the
#    chain is what is wrong: another root (also one with the same name), a
#    device certificate whose key did not sign the attestation, a slot
#    certificate for another key than the attested one, an imported key.
source "$(dirname "$0")/lib.sh"
tk_require_cmd yubico-piv-tool openssl
TK="$TK_BUILD/tokenkit"

tk_env_start
tk_card_start 0
PIV=(yubico-piv-tool -r "$TK_READER0")
T=$TK_TMP

mkcert() { # mkcert OUT SUBJ KEY ISSUER_CERT|- ISSUER_KEY EXT
	local out=$1 subj=$2 key=$3 icert=$4 ikey=$5 ext=$6
	printf '[x]\n%s\n' "$ext" >"$T/ext.cnf"
	if [[ $icert == - ]]; then
		openssl req -new -x509 -key "$key" -subj "$subj" -days 3650 -sha256 \
			-extensions x -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n'; cat "$T/ext.cnf") \
			-out "$out" 2>/dev/null
	else
		openssl req -new -key "$key" -subj "$subj" -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n') \
			-out "$T/tmp.csr" 2>/dev/null
		openssl x509 -req -in "$T/tmp.csr" -CA "$icert" -CAkey "$ikey" -CAcreateserial -days 3650 \
			-sha256 -extfile "$T/ext.cnf" -extensions x -out "$out" 2>/dev/null
	fi
	[[ -s $out ]] || tk_fail "could not make $out"
}
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

CA_EXT='basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign'
newkey "$T/root.key"
mkcert "$T/root.pem" "/CN=Test PIV Root CA" "$T/root.key" - - "$CA_EXT"
# RSA-2048, as the attestation key of a real YubiKey
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/dev.key" 2>/dev/null
mkcert "$T/dev.pem" "/CN=Test PIV Attestation" "$T/dev.key" "$T/root.pem" "$T/root.key" "$CA_EXT"

tk_run_piv "import the attestation key into f9" "${PIV[@]}" -a import-key -s f9 -i "$T/dev.key"
tk_run_piv "import the device certificate into f9" "${PIV[@]}" -a import-certificate -s f9 \
	-i "$T/dev.pem"
tk_run_piv "generate ECCP256 in 9a (PIN always, touch cached)" "${PIV[@]}" -a generate -s 9a \
	-A ECCP256 --pin-policy=always --touch-policy=cached -o "$T/pub9a.pem"
tk_run_piv "generate ECCP256 in 9e (defaults)" "${PIV[@]}" -a generate -s 9e -A ECCP256 \
	-o "$T/pub9e.pem"
tk_run_piv "serial" "${PIV[@]}" -a status
SERIAL=$(sed -n 's/^Serial Number:[[:space:]]*//p' <<<"$TK_OUT" | head -1)
tk_run_piv "version" "${PIV[@]}" -a version
VERSION=$(grep -Eo '[0-9]+\.[0-9]+\.[0-9]+' <<<"$TK_OUT" | head -1)
[[ -n $SERIAL && -n $VERSION ]] || tk_fail "no serial or version from yubico-piv-tool"

# --- a good attestation -------------------------------------------------------
tk_run "attest 9a against the root" "$TK" attest "$TK_READER0" 9a --root "$T/root.pem"
tk_expect '^slot 9A: attestation verified'
tk_expect 'up to the root you gave \(CN=Test PIV Root CA\)'
tk_expect "serial: +$SERIAL\$"
tk_expect "firmware: +$VERSION\$"
tk_expect 'PIN policy: +always$'
tk_expect 'touch policy: +cached$'
tk_expect 'generated on the device'
tk_run "attest 9e (defaults: PIN never, touch never) as JSON" "$TK" attest "$TK_READER0" 9e \
	--root "$T/root.pem" --json
tk_expect '"verified": true'
tk_expect '"pin_policy": "never", "touch_policy": "never"'
tk_expect "\"serial\": $SERIAL[,}]"

# the same chain through openssl, from what yubico-piv-tool fetches
tk_run_piv "yubico-piv-tool attests 9a" "${PIV[@]}" -a attest -s 9a
printf '%s\n' "$TK_OUT" >"$T/att9a.pem"
tk_run "openssl verifies the chain" openssl verify -CAfile "$T/root.pem" -untrusted "$T/dev.pem" \
	"$T/att9a.pem"
tk_expect ': OK'
cmp -s <(openssl x509 -in "$T/att9a.pem" -pubkey -noout | openssl pkey -pubin -outform DER) \
	<(openssl pkey -pubin -in "$T/pub9a.pem" -outform DER) ||
	tk_fail "the attestation is not for the key yubico-piv-tool generated"

# without a root: verified up to the device certificate, and said so
tk_run "attest 9a without a root" "$TK" attest "$TK_READER0" 9a
tk_expect 'verified only up to the device.s attestation certificate'
tk_expect 'issued by CN=Test PIV Root CA'
tk_expect 'does not prove who made the device'
tk_run "the same as JSON" "$TK" attest "$TK_READER0" 9a --json
tk_expect '"root": null'

# --- forgeries --------------------------------------------------------------
# another root
newkey "$T/other.key"
mkcert "$T/other.pem" "/CN=Other Root" "$T/other.key" - - "$CA_EXT"
tk_run_fails "attest against another root" "$TK" attest "$TK_READER0" 9a --root "$T/other.pem"
tk_expect 'NOT verified'
tk_run_fails "openssl refuses that chain too" openssl verify -CAfile "$T/other.pem" \
	-untrusted "$T/dev.pem" "$T/att9a.pem"
# a root with the right name and another key
mkcert "$T/twin.pem" "/CN=Test PIV Root CA" "$T/other.key" - - "$CA_EXT"
tk_run_fails "attest against a look-alike root" "$TK" attest "$TK_READER0" 9a --root "$T/twin.pem"
tk_expect 'NOT verified'
tk_run_fails "openssl refuses the look-alike root" openssl verify -CAfile "$T/twin.pem" \
	-untrusted "$T/dev.pem" "$T/att9a.pem"
# the device certificate given as the root: not self-signed, so not a root;
# the chain does not end at a trust anchor (as for openssl verify)
tk_run_fails "attest with the device certificate as root" "$TK" attest "$TK_READER0" 9a \
	--root "$T/dev.pem"
tk_expect 'NOT verified'
tk_run_fails "openssl refuses it too" openssl verify -CAfile "$T/dev.pem" "$T/att9a.pem"

# a slot certificate for another key than the attested one
newkey "$T/stranger.key"
mkcert "$T/stranger.pem" "/CN=stranger" "$T/stranger.key" - - "basicConstraints=CA:FALSE"
tk_run_piv "put another key's certificate into 9a" "${PIV[@]}" -a import-certificate -s 9a \
	-i "$T/stranger.pem"
tk_run_fails "attest 9a with a certificate for another key" "$TK" attest "$TK_READER0" 9a \
	--root "$T/root.pem"
tk_expect "slot's certificate is not for the attested key"
# the right certificate: verifies, checked by both sources
openssl x509 -new -subj '/CN=9a/' -days 30 -force_pubkey "$T/pub9a.pem" -key "$T/stranger.key" \
	-out "$T/cert9a.pem" 2>/dev/null
tk_run_piv "put the key's own certificate into 9a" "${PIV[@]}" -a import-certificate -s 9a \
	-i "$T/cert9a.pem"
tk_run "attest 9a with its certificate" "$TK" attest "$TK_READER0" 9a --root "$T/root.pem" --json
tk_expect '"checked_by": \["metadata", "certificate"\]'

# an imported key cannot be attested
tk_run_piv "import a key into 9d" "${PIV[@]}" -a import-key -s 9d -i "$T/stranger.key"
tk_run_fails "attest an imported key" "$TK" attest "$TK_READER0" 9d --root "$T/root.pem"
tk_expect 'imported, not generated on the card'

# the attestation key replaced behind the device certificate's back: the
# attestation is signed by a key the certificate does not name
tk_run_piv "import another attestation key into f9 (certificate kept)" "${PIV[@]}" \
	-a import-key -s f9 -i "$T/other.key"
tk_run_fails "attest with a device certificate for another key" "$TK" attest "$TK_READER0" 9a \
	--root "$T/root.pem"
tk_expect "not signed by the device's attestation key"
tk_run_piv "yubico-piv-tool attests 9a (signed by the other key)" "${PIV[@]}" -a attest -s 9a
printf '%s\n' "$TK_OUT" >"$T/forged.pem"
tk_run_fails "openssl refuses it too" openssl verify -CAfile "$T/root.pem" \
	-untrusted "$T/dev.pem" "$T/forged.pem"

# usage errors
rc=0
"$TK" attest "$TK_READER0" 9b >/dev/null 2>&1 || rc=$?
[[ $rc == 2 ]] || tk_fail "slot 9b: exit $rc, expected 2"
rc=0
"$TK" attest "$TK_READER0" 9a --root "$T/missing.pem" >/dev/null 2>&1 || rc=$?
[[ $rc == 1 ]] || tk_fail "missing root file: exit $rc, expected 1"
tk_pass
