#!/usr/bin/env bash
# Independent proof that the virtual card is a PIV card: provision it with
# yubico-piv-tool (generate an ECC P-256 key in 9a, self-sign, import the
# certificate), then list and sign with OpenSC's PKCS#11 module and verify the
# signature with openssl against the certificate. Then restart the card from
# its state file and check that the key and certificate are still there.
source "$(dirname "$0")/lib.sh"
tk_require_cmd yubico-piv-tool pkcs11-tool openssl
tk_require_file "$OPENSC_P11"

tk_env_start
tk_card_start 0
STATE="$TK_TMP/card0.state"
R=(-r "$TK_READER0")
PIV=(yubico-piv-tool "${R[@]}")
P11=(pkcs11-tool --module "$OPENSC_P11")

tk_run_piv "version" "${PIV[@]}" -a version
tk_run_piv "status of a fresh card" "${PIV[@]}" -a status

tk_run_piv "generate ECCP256 in 9a" "${PIV[@]}" -a generate -s 9a -A ECCP256 -o "$TK_TMP/pub.pem"
tk_run "public key parses" openssl pkey -pubin -in "$TK_TMP/pub.pem" -noout -text
tk_expect 'prime256v1|P-256'

# yubico-piv-tool 2.2.0 (Debian 12) cannot sign certificates with OpenSSL 3: it
# fails before sending any APDU (upstream issue #388). Then the certificate
# for the card's key is issued with openssl instead; signing with the card is
# proven below through OpenSC.
if "${PIV[@]}" -a verify-pin -P 123456 -a selfsign-certificate -s 9a \
	-S '/CN=test/' -i "$TK_TMP/pub.pem" -o "$TK_TMP/cert.pem" >"$TK_TMP/selfsign.log" 2>&1; then
	tk_log "self-signed by yubico-piv-tool"
else
	grep -q 'Successfully verified PIN' "$TK_TMP/selfsign.log" || {
		cat "$TK_TMP/selfsign.log" >&2
		tk_fail "verify-pin failed"
	}
	tk_log "yubico-piv-tool selfsign unavailable (OpenSSL 3); issuing the certificate with openssl"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TK_TMP/issuer.key" 2>/dev/null
	tk_run "certificate for the card key" openssl x509 -new -subj '/CN=test/' -days 30 \
		-force_pubkey "$TK_TMP/pub.pem" -key "$TK_TMP/issuer.key" -out "$TK_TMP/cert.pem"
	# With that certificate on the card OpenSC exposes the key, and the card
	# can self-sign the final certificate (OpenSSL pkcs11 engine + OpenSC).
	ENGINE=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
	if [[ -e $ENGINE ]]; then
		tk_run_piv "import the interim certificate" "${PIV[@]}" -a import-certificate -s 9a \
			-i "$TK_TMP/cert.pem"
		printf '%s\n' 'openssl_conf = openssl_init' '[openssl_init]' 'engines = engine_section' \
			'[engine_section]' 'pkcs11 = pkcs11_section' '[pkcs11_section]' 'engine_id = pkcs11' \
			"MODULE_PATH = $OPENSC_P11" 'init = 0' >"$TK_TMP/openssl.cnf"
		tk_run "card self-signs its certificate" env OPENSSL_CONF="$TK_TMP/openssl.cnf" \
			openssl req -new -x509 -days 30 -subj '/CN=test/' -sha256 -engine pkcs11 \
			-keyform engine -key 'pkcs11:id=%01;type=private;pin-value=123456' \
			-out "$TK_TMP/cert.pem"
		tk_run "self-signature verifies" openssl verify -CAfile "$TK_TMP/cert.pem" "$TK_TMP/cert.pem"
	fi
fi
tk_run_piv "import certificate" "${PIV[@]}" -a import-certificate -s 9a -i "$TK_TMP/cert.pem"
tk_run "certificate subject" openssl x509 -in "$TK_TMP/cert.pem" -noout -subject
tk_expect 'CN *= *test'
openssl x509 -in "$TK_TMP/cert.pem" -pubkey -noout >"$TK_TMP/certpub.pem"
cmp -s <(openssl pkey -pubin -in "$TK_TMP/pub.pem" -outform DER) \
	<(openssl pkey -pubin -in "$TK_TMP/certpub.pem" -outform DER) ||
	tk_fail "certificate key differs from the generated key"

tk_run_piv "status lists the certificate" "${PIV[@]}" -a status
tk_expect 'CN=test'

sign_and_verify() { # label
	local tag=$1
	head -c 1000 /dev/urandom >"$TK_TMP/data.$tag"
	tk_run "OpenSC lists the certificate ($tag)" "${P11[@]}" -O
	tk_expect 'Certificate Object'
	tk_expect 'CN=test|test'
	tk_run "OpenSC signs with key 01 ($tag)" "${P11[@]}" --login --pin 123456 --sign \
		-m ECDSA-SHA256 --id 01 --signature-format openssl \
		-i "$TK_TMP/data.$tag" -o "$TK_TMP/sig.$tag"
	tk_run "openssl verifies ($tag)" openssl dgst -sha256 -verify "$TK_TMP/certpub.pem" \
		-signature "$TK_TMP/sig.$tag" "$TK_TMP/data.$tag"
	tk_expect 'Verified OK'
}
sign_and_verify first

# a wrong PIN is refused and counted
tk_run_fails "wrong PIN" "${P11[@]}" --login --pin 654321 --sign -m ECDSA-SHA256 --id 01 \
	-i "$TK_TMP/data.first" -o "$TK_TMP/sig.bad"
tk_expect 'CKR_PIN_INCORRECT|PIN'

# the key survives a card restart (state file)
[[ -s "$STATE" ]] || tk_fail "state file $STATE missing"
tk_card_stop 0
tk_wait 3 "card gone" tk_card_absent 0
tk_card_start 0 --state "$STATE"
sign_and_verify restarted
tk_run_piv "certificate after restart" "${PIV[@]}" -a read-certificate -s 9a
cmp -s <(printf '%s\n' "$TK_OUT" | openssl x509 -outform DER) \
	<(openssl x509 -in "$TK_TMP/cert.pem" -outform DER) || tk_fail "certificate changed after restart"
tk_pass
