#!/usr/bin/env bash
# tokenkit openpgp certificate: certificates for the keys of the virtual
# OpenPGP card under pcscd (cardholder certificate DO 7F21, one per key
# through SELECT DATA), each result checked by programs other than tokenkit:
#  - --self-sign for the sig key (ECDSA P-256, PSO:CDS) and the aut key
#    (Ed25519 then RSA-2048, INTERNAL AUTHENTICATE): openssl verifies the
#    card's signature with the public key `openpgp generate` wrote, and the
#    certificate's key is that key;
#  - --csr for the sig key: openssl req -verify, the request's key is the
#    card's; nothing is written, no admin PIN asked;
#  - --import for the dec key (X25519, it cannot sign): the certificate of a
#    test CA;
#  - the three certificates come back through our PKCS#11 module as the
#    certificates of the three keys (pkcs11-tool --read-object, byte for
#    byte) and, for the aut key, through GnuPG's scdaemon (READCERT
#    OPENPGP.3);
#  - a wrong admin PIN writes nothing; --self-sign for the dec key and two
#    actions at once are usage errors;
#  - `openpgp import` of an encrypted key file (passphrase from a
#    descriptor; a wrong one is refused): the certificate the card then
#    signs for the sig key carries the file's public key.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_gnupg.sh"
tk_require_cmd pkcs11-tool openssl gpg-connect-agent
tk_env_start
trap 'stop_gnupg; tk_cleanup' EXIT
MOD=$TK_BUILD/tokenkit-pkcs11.so
[[ -f $TK_BUILD/plugins/driver-openpgp.so ]] || tk_fail "driver-openpgp.so not built"
export XDG_CACHE_HOME=$TK_TMP/cache
TK="$TK_BUILD/tokenkit"
T=$TK_TMP
R=$TK_READER0
ADMIN=(--insecure-admin-pin 12345678)
PIN=(--insecure-pin 123456)
tk_card_start 0 --applet openpgp

der_of() { openssl x509 -in "$1" -outform DER; }
same_key() { # CERT PUB.pem
	cmp -s <(openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER) \
		<(openssl pkey -pubin -in "$2" -outform DER)
}

tk_run "generate sig (P-256)" "$TK" openpgp generate "$R" sig --algorithm nistp256 \
	-o "$T/sig.pem" "${ADMIN[@]}"
tk_run "generate aut (Ed25519)" "$TK" openpgp generate "$R" aut --algorithm ed25519 \
	-o "$T/aut.pem" "${ADMIN[@]}"
tk_run "generate dec (X25519)" "$TK" openpgp generate "$R" dec --algorithm cv25519 \
	-o "$T/dec.pem" "${ADMIN[@]}"

# usage errors and a wrong admin PIN: nothing written
rc=0
"$TK" openpgp certificate "$R" dec --self-sign /CN=x "${PIN[@]}" "${ADMIN[@]}" 2>/dev/null || rc=$?
[[ $rc == 2 ]] || tk_fail "--self-sign for the dec key: exit $rc, expected 2 (usage)"
rc=0
"$TK" openpgp certificate "$R" sig --self-sign /CN=x --csr /CN=y "${PIN[@]}" 2>/dev/null || rc=$?
[[ $rc == 2 ]] || tk_fail "two actions: exit $rc, expected 2 (usage)"
rc=0
"$TK" openpgp certificate "$R" sig --self-sign /CN=x "${PIN[@]}" --insecure-admin-pin 87654321 \
	2>"$T/err" || rc=$?
[[ $rc != 0 ]] || tk_fail "a wrong admin PIN wrote a certificate"
tk_run "after the wrong admin PIN: the module" pkcs11-tool --module "$MOD" -O --type cert
[[ $TK_OUT != *"Certificate Object"* ]] || tk_fail "a certificate is on the card: $TK_OUT"

# --csr: a request, nothing written
tk_run "request for sig" "$TK" openpgp certificate "$R" sig --csr "/CN=tokenkit pgp sig/O=test" \
	-o "$T/sig.csr" "${PIN[@]}"
tk_run "openssl req -verify" openssl req -in "$T/sig.csr" -verify -noout
tk_run "request subject" openssl req -in "$T/sig.csr" -noout -subject
tk_expect "CN *= *tokenkit pgp sig"
cmp -s <(openssl req -in "$T/sig.csr" -noout -pubkey | openssl pkey -pubin -outform DER) \
	<(openssl pkey -pubin -in "$T/sig.pem" -outform DER) || tk_fail "the request carries another key"

self_sign() { # KEY SUBJECT PUB.pem
	tk_run "self-signed certificate for $1" "$TK" openpgp certificate "$R" "$1" --self-sign "$2" \
		--days 30 -o "$T/$1.crt" "${PIN[@]}" "${ADMIN[@]}"
	tk_run "$1: openssl verifies the card's signature" \
		openssl verify -CAfile "$T/$1.crt" -check_ss_sig "$T/$1.crt"
	same_key "$T/$1.crt" "$3" || tk_fail "the $1 certificate carries another key than the card's"
}
self_sign sig "/CN=tokenkit sig" "$T/sig.pem"
self_sign aut "/CN=tokenkit aut" "$T/aut.pem"

# --import for dec: a test CA's certificate for the card's X25519 key
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ca.key" \
	-out "$T/ca.pem" -subj /CN=test-CA -days 30 2>/dev/null || tk_fail "test CA"
tk_run "certificate for dec" openssl x509 -new -subj "/CN=tokenkit dec/" -days 30 \
	-force_pubkey "$T/dec.pem" -CA "$T/ca.pem" -CAkey "$T/ca.key" -out "$T/dec.crt"
tk_run "import dec's certificate" "$TK" openpgp certificate "$R" dec --import "$T/dec.crt" \
	"${ADMIN[@]}"

# through the module: each key's certificate, by its id (01 sig, 02 dec, 03 aut)
for pair in 01:sig 02:dec 03:aut; do
	id=${pair%%:*} k=${pair#*:}
	tk_run "module: certificate $id" pkcs11-tool --module "$MOD" --read-object --type cert \
		--id "$id" -o "$T/mod.$k.der"
	cmp -s "$T/mod.$k.der" <(der_of "$T/$k.crt") ||
		tk_fail "the module's certificate $id is not the $k certificate tokenkit wrote"
done

# through GnuPG's scdaemon: the aut key's certificate (7F21, first occurrence)
new_gnupghome scd
tk_run "scdaemon READCERT OPENPGP.3" gpg-connect-agent "SCD SERIALNO" \
	"/datafile $T/scd.der" "SCD READCERT OPENPGP.3" /bye
cmp -s "$T/scd.der" <(der_of "$T/aut.crt") ||
	tk_fail "scdaemon reads another aut certificate than tokenkit wrote: $TK_OUT"
gnupg_kill

# a second aut certificate, RSA-2048 this time, replaces the first
tk_run "generate aut (RSA-2048)" "$TK" openpgp generate "$R" aut --algorithm rsa2048 \
	-o "$T/aut.pem" "${ADMIN[@]}"
self_sign aut "/CN=tokenkit aut rsa" "$T/aut.pem"
tk_run "module: the new aut certificate" pkcs11-tool --module "$MOD" --read-object --type cert \
	--id 03 -o "$T/mod.aut2.der"
cmp -s "$T/mod.aut2.der" <(der_of "$T/aut.crt") || tk_fail "the module shows an old aut certificate"
# an encrypted key file (PKCS#8, AES): the passphrase from a descriptor; a
# wrong one imports nothing
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-256-cbc \
	-pass pass:file-secret -out "$T/enc.key" 2>/dev/null || tk_fail "encrypted key"
openssl pkey -in "$T/enc.key" -passin pass:file-secret -pubout -out "$T/enc.pub"
rc=0
"$TK" openpgp import "$R" sig "$T/enc.key" --passphrase-fd 3 "${ADMIN[@]}" 3<<<"wrong" \
	2>"$T/err" || rc=$?
[[ $rc != 0 ]] && grep -q "wrong passphrase" "$T/err" || tk_fail "a wrong passphrase: exit $rc, $(cat "$T/err")"
tk_run "import the encrypted key" "$TK" openpgp import "$R" sig "$T/enc.key" --passphrase-fd 3 \
	"${ADMIN[@]}" 3<<<"file-secret"
self_sign sig "/CN=tokenkit imported" "$T/enc.pub"
tk_pass
