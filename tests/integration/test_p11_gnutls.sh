#!/usr/bin/env bash
# tokenkit-pkcs11.so under GnuTLS's p11tool: the token, its certificates and
# keys are listed, and p11tool --test-sign signs with each signing key
# (ECDSA P-256, RSA with a PIN for every signature, ECDSA P-384) and verifies
# against the public key.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
p11_require
tk_require_cmd p11tool
tk_env_start
tk_card_start 0
p11_provision
export GNUTLS_PIN=$PIN
P11T=(p11tool --provider "$TK_P11_MODULE")

tk_run "tokens" "${P11T[@]}" --list-tokens
tk_expect 'Type: Hardware token'
tk_expect 'Requires login'
TOKEN_URL=$(sed -n 's/^[[:space:]]*URL: \(pkcs11:.*token=PIV.*\)$/\1/p' <<<"$TK_OUT" | head -1)
[[ -n "$TOKEN_URL" ]] || tk_fail "no token URL"
tk_log "token: $TOKEN_URL"

tk_run "certificates" "${P11T[@]}" --list-all-certs "$TOKEN_URL"
for label in 'PIV Authentication' 'Digital Signature' 'Key Management' 'Card Authentication' \
	'Retired Key 1'; do
	tk_expect "Label: Certificate for $label"
done
tk_expect 'X.509 Certificate \(EC/ECDSA-SECP256R1\)'
tk_expect 'X.509 Certificate \(EC/ECDSA-SECP384R1\)'
tk_expect 'X.509 Certificate \(RSA-2048\)'

# (p11tool exits non-zero when it finds nothing)
TK_OUT=$("${P11T[@]}" --list-all-privkeys "$TOKEN_URL" 2>&1 || true)
tk_expect_not 'type=private'
tk_run "private keys after login" "${P11T[@]}" --login --list-all-privkeys "$TOKEN_URL"
for id in 01 02 03 04; do tk_expect "id=%$id;.*type=private"; done

for id in 01 02 04; do
	tk_run "test-sign key $id" "${P11T[@]}" --login --test-sign "$TOKEN_URL;id=%$id;type=private"
	tk_expect 'Verifying against public key in the token\.\.\. ok'
done
tk_pass
