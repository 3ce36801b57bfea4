#!/usr/bin/env bash
# The browser path of the software token: a PKCS#12 identity made by
# `openssl req -x509` + `openssl pkcs12 -export` (default AES/PBKDF2) and
# imported with `tokenkit soft import` is, with no other step, the client
# certificate of a TLS 1.3 handshake on 127.0.0.1 — through OpenSSL 3 +
# libp11 (s_client, key by pkcs11: URI) and through NSS (a fresh database,
# `modutil -add`, tstclnt -n NICKNAME) — against `openssl s_server -Verify 1
# -verify_return_error`, whose own output must show it received and
# verified the client's certificate. Once with EC P-256 and once with
# RSA-2048 (TLS 1.3 with RSA needs CKM_RSA_PKCS_PSS from the module).
# The key files and the .p12 are deleted after the import: the token is
# the only place the private keys are. The same handshakes with a wrong PIN
# must fail, and the server must then have seen no client certificate.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_tls.sh"
tk_require_cmd openssl certutil modutil tstclnt
tk_require_file "$TLS_ENGINE"

TK_SOFT_ON_EXIT=tls_stop
tk_soft_env
TK_P11_MODULE=$MOD
PIN=246810
SOPIN=13579135
LABEL="soft tls"
cd "$TK_TMP"

tls_server_key
tk_run "create" "$TK" soft create --label "$LABEL" --kdf-cost 10 --insecure-pin "$PIN" \
	--insecure-so-pin "$SOPIN"
# ec: P-256, rsa: RSA-2048; each certificate is its own CA file for the server
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key \
	-out ec.crt -subj /CN=soft-tls-ec -days 2 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.crt -subj /CN=soft-tls-rsa \
	-days 2 2>/dev/null
for k in ec rsa; do
	openssl pkcs12 -export -inkey $k.key -in $k.crt -name "tls $k" -out $k.p12 -passout pass:pw
	openssl pkcs12 -in $k.p12 -info -noout -passin pass:pw 2>&1 | grep -q 'PBES2.*AES-256-CBC' ||
		tk_fail "openssl pkcs12 -export did not use PBES2/AES by default"
	tk_run "import $k" "$TK" soft import $k.p12 --insecure-pin "$PIN" --password-fd 3 3<<<pw
	rm -f $k.key $k.p12
done
tk_run "list" "$TK" soft list
tk_expect "certificate .*  tls ec\$"
tk_expect "certificate .*  tls rsa\$"
id_of() { "$TK" soft list | awk -v l="$1" \
	'$1 == "certificate" && substr($0, length($0) - length(l) - 1) == "  " l {print $4}'; }
EC_ID=$(id_of "tls ec")
RSA_ID=$(id_of "tls rsa")
[[ -n $EC_ID && -n $RSA_ID ]] || tk_fail "no CKA_ID for the imported identities"
urlhex() { sed 's/../%&/g' <<<"$1"; }

# ---- OpenSSL + libp11 ---------------------------------------------------------------------------
uri() { echo "pkcs11:token=soft%20tls;id=$(urlhex "$1");type=private;pin-value=$2"; }
tls_openssl ossl-ec "$(uri "$EC_ID" "$PIN")" ec.crt ec.crt
[[ $TLS_RC == 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "ossl-ec: s_client exit $TLS_RC"; }
tls_client_checked ossl-ec soft-tls-ec
tls_client_sig ossl-ec ECDSA
tls_openssl ossl-rsa "$(uri "$RSA_ID" "$PIN")" rsa.crt rsa.crt
[[ $TLS_RC == 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "ossl-rsa: s_client exit $TLS_RC"; }
tls_client_checked ossl-rsa soft-tls-rsa
tls_client_sig ossl-rsa RSA-PSS
# the wrong PIN: libp11 cannot log in, no key, no client authentication
tls_openssl ossl-badpin "$(uri "$EC_ID" 999999)" ec.crt ec.crt
[[ $TLS_RC != 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "ossl-badpin: handshake passed"; }
! grep -q '^Client certificate' srv-ossl-badpin.log || tk_fail "ossl-badpin: a client certificate"
tk_expect 'PIN incorrect'

# ---- NSS ----------------------------------------------------------------------------------------
DB="sql:$TK_TMP/nssdb"
mkdir nssdb
printf '%s\n' "$PIN" >pin.txt
printf '999999\n' >badpin.txt
tk_run "fresh NSS database" certutil -N -d "$DB" --empty-password
tk_run "add the module" sh -c \
	"echo | modutil -dbdir '$DB' -add tokenkit -libfile '$TK_P11_MODULE' -force"
tk_run "certificates" certutil -L -d "$DB" -h all
# user certificates (u,u,u): NSS found their private keys on the token
tk_expect "^$LABEL:tls ec +u,u,u"
tk_expect "^$LABEL:tls rsa +u,u,u"
tls_nss nss-ec "$DB" "$LABEL:tls ec" pin.txt ec.crt
[[ $TLS_RC == 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "nss-ec: tstclnt exit $TLS_RC"; }
tls_client_checked nss-ec soft-tls-ec
tls_client_sig nss-ec ECDSA
tls_nss nss-rsa "$DB" "$LABEL:tls rsa" pin.txt rsa.crt
[[ $TLS_RC == 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "nss-rsa: tstclnt exit $TLS_RC"; }
tls_client_checked nss-rsa soft-tls-rsa
tls_client_sig nss-rsa RSA-PSS
# the wrong PIN: NSS cannot use the key, sends no certificate, the server refuses
tls_nss nss-badpin "$DB" "$LABEL:tls ec" badpin.txt ec.crt
! grep -q '^Client certificate' srv-nss-badpin.log || tk_fail "nss-badpin: a client certificate"
! grep -q '^hello from' srv-nss-badpin.log || tk_fail "nss-badpin: data without client auth"
grep -q 'peer did not return a certificate' srv-nss-badpin.log ||
	tk_fail "nss-badpin: the server did not refuse a client without a certificate: $TK_OUT"
tk_pass
