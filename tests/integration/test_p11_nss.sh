#!/usr/bin/env bash
# tokenkit-pkcs11.so in NSS (what Firefox and Chromium use): modutil adds the
# module to a fresh database; certutil lists the token's certificates (as user
# certificates: NSS found their private keys) and, with the PIN, the keys.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
p11_require
tk_require_cmd certutil modutil
tk_env_start
tk_card_start 0
p11_provision
DB="sql:$TK_TMP/nssdb"
mkdir -p "$TK_TMP/nssdb"
printf '%s\n' "$PIN" >"$TK_TMP/pin.txt"

tk_run "fresh NSS database" certutil -N -d "$DB" --empty-password
tk_run "add the module" sh -c "echo | modutil -dbdir '$DB' -add tokenkit -libfile '$TK_P11_MODULE' -force"
tk_run "module list" modutil -dbdir "$DB" -list
tk_expect 'slot: Virtual PCD 00 00'
tk_expect 'token: PIV '
tk_run "certificates" certutil -L -d "$DB" -h all
for label in 'PIV Authentication' 'Digital Signature' 'Key Management' 'Card Authentication'; do
	tk_expect "PIV [0-9A-Za-z]+:Certificate for $label +u,u,u"
done
tk_expect 'PIV [0-9A-Za-z]+:Certificate for Retired Key 1 +u,u,u'
NICK=$(sed -n 's/^\(PIV [^:]*:Certificate for PIV Authentication\) .*/\1/p' <<<"$TK_OUT")
tk_run "one certificate" certutil -L -d "$DB" -h "${NICK%%:*}" -f "$TK_TMP/pin.txt" -a -n "$NICK"
openssl x509 -in "$TK_TMP/cert9a.pem" -outform DER | openssl x509 -inform DER >"$TK_TMP/expect.pem"
diff <(openssl x509 -in "$TK_TMP/expect.pem" -noout -fingerprint -sha256) \
	<(openssl x509 -noout -fingerprint -sha256 <<<"$TK_OUT") || tk_fail "NSS shows another certificate"
tk_run "keys with the PIN" certutil -K -d "$DB" -h all -f "$TK_TMP/pin.txt"
tk_expect 'ec +01 '
tk_expect 'rsa +02 '
tk_pass
