#!/usr/bin/env bash
# tokenkit-pkcs11.so under OpenSSL 3 through libp11 (the pkcs11 engine): TLS
# 1.3 handshakes on 127.0.0.1 where openssl s_client authenticates with the
# token's key, addressed by pkcs11: URI, to an openssl s_server -Verify 1
# that checks the client certificate against the test CA — once with a P-256
# key (card 0, slot 9a) and once with an RSA-2048 key (card 1, slot 9a; TLS
# 1.3 needs RSA-PSS from the module). Also openssl pkeyutl signatures.
# (The handshake helpers are lib_tls.sh's, shared with test_soft_tls.sh.)
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_tls.sh"
p11_require
tk_require_file "$TLS_ENGINE"
tk_env_start
tk_card_start 0
tk_card_start 1
p11_provision 0 "9a:ECCP256"
p11_provision 1 "9a:RSA2048" "$TK_TMP/card1"
export PKCS11_MODULE_PATH=$TK_P11_MODULE
cd "$TK_TMP"
tls_server_key

# serial numbers tell the two tokens apart in pkcs11: URIs. (A fresh
# process's C_GetSlotList does not wait for a card whose exchanges are slow
# (issue 8 §1): on a loaded machine a first open may show one token and
# the other a moment later, with a slot event; ask again for up to 10 s.)
two_tokens() {
	tk_host pkcs11-tool --module "$TK_P11_MODULE" -L | tee /dev/stderr |
		[[ $(grep -c '^ *serial num *:') == 2 ]]
}
tk_wait 10 "two tokens" two_tokens
SERIALS=($(sed -n 's/^ *serial num *: *//p' <<<"$TK_OUT"))
[[ ${#SERIALS[@]} == 2 ]] || tk_fail "expected two tokens"

# tls NAME URI CERT: one TLS 1.3 handshake with client authentication
tls() {
	tls_openssl "$1" "$2" "$3" ca.pem
	[[ $TLS_RC == 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "$1: s_client exit $TLS_RC"; }
	tk_expect 'New, TLSv1\.3'
	tls_client_checked "$1" tokenkit-9a
}

tls ecc "pkcs11:serial=${SERIALS[0]};id=%01;type=private;pin-value=$PIN" cert9a.pem
tls_client_sig ecc ECDSA
tls rsa "pkcs11:serial=${SERIALS[1]};id=%01;type=private;pin-value=$PIN" card1/cert9a.pem
tls_client_sig rsa RSA-PSS

# pkeyutl signatures through libp11, verified with the certificate
printf 'data for pkeyutl\n' >data.txt
openssl dgst -sha256 -binary data.txt >data.sha256
tk_run "pkeyutl ECDSA" openssl pkeyutl -engine pkcs11 -keyform engine -sign \
	-inkey "pkcs11:serial=${SERIALS[0]};id=%01;type=private;pin-value=$PIN" -in data.sha256 -out ec.sig
tk_run "verify ECDSA" openssl pkeyutl -verify -pubin -inkey pub9a.pem -in data.sha256 -sigfile ec.sig
tk_run "pkeyutl RSA" openssl pkeyutl -engine pkcs11 -keyform engine -sign \
	-inkey "pkcs11:serial=${SERIALS[1]};id=%01;type=private;pin-value=$PIN" -in data.sha256 \
	-pkeyopt digest:sha256 -out rsa.sig
tk_run "verify RSA" openssl pkeyutl -verify -pubin -inkey card1/pub9a.pem -in data.sha256 \
	-sigfile rsa.sig -pkeyopt digest:sha256
tk_pass
