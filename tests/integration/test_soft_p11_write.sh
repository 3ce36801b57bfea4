#!/usr/bin/env bash
# The software token written through tokenkit-pkcs11.so by the programs a
# user has, everything checked with other programs (openssl, certtool):
#  - the token is writable (no "readonly" token flag) and an imported key
#    shows the attributes the import stored (a key that was in a PKCS#12
#    file in the clear has never been "always sensitive");
#  - pkcs11-tool --keypairgen makes RSA-2048, EC P-256, P-384, P-521 and
#    Ed25519 keys on the token (CKA_LOCAL: "local"); each signs, and openssl
#    verifies the signature with the public key read from the token;
#  - p11tool --generate-privkey makes a key there, certtool makes a
#    self-signed certificate with it through the module, openssl verifies
#    the certificate's signature;
#  - pkcs11-tool --write-object (certificate, data object), --read-object
#    gives the same bytes back, --set-id changes the CKA_ID,
#    --delete-object removes them; all of it in the store (a later process
#    sees it). The wrong session state is refused: a token key without the
#    user's login.
source "$(dirname "$0")/lib.sh"
tk_require_cmd pkcs11-tool p11tool certtool openssl

tk_soft_env
SLOT=0x40000000
PIN=246810
SOPIN=13579135
cd "$TK_TMP"

p11() { tk_host timeout 300 pkcs11-tool --module "$MOD" --slot $SLOT "$@"; }
p11u() { p11 --login --pin "$PIN" "$@"; }

tk_run "create" "$TK" soft create --label "writable" --pin-fd 3 --so-pin-fd 3 --kdf-cost 10 \
	3<<<"$PIN"$'\n'"$SOPIN"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout imp.key \
	-out imp.crt -subj /CN=imported -days 2 2>/dev/null
openssl pkcs12 -export -inkey imp.key -in imp.crt -name imported -out imp.p12 -passout pass:pw
tk_run "import" "$TK" soft import imp.p12 --pin-fd 3 --password-fd 3 3<<<"$PIN"$'\npw'

# ---- the token and its stored attributes -----------------------------------------------------
tk_run "token" p11 -T
tk_expect 'token label +: writable'
tk_expect_not "readonly|write.protected"
tk_run "objects" p11u -O --type privkey
tk_expect 'label: +imported'
tk_expect 'Access: +sensitive$'
tk_expect_not 'always sensitive|never extractable|local'

# ---- key pairs, signatures openssl verifies ----------------------------------------------
echo "signed by a generated key" >msg
gen() { # gen ID KEY-TYPE
	tk_run "keypairgen $2" p11u --keypairgen --key-type "$2" --id "$1" --label "gen-$1"
	tk_run "objects $1" p11u -O
	# the objects labelled gen-ID (pkcs11-tool -O lists all): a key pair, made here
	local mine
	mine=$(awk -v l="gen-$1" '/Object;/ {c = $0} $1 == "label:" && $2 == l {print c}
		$1 == "Access:" && c != "" {a[c] = a[c] $0} END {}' <<<"$TK_OUT")
	[[ $(grep -c 'Private Key Object' <<<"$mine") -eq 1 &&
		$(grep -c 'Public Key Object' <<<"$mine") -eq 1 ]] ||
		tk_fail "$2: not one key pair: $TK_OUT"
	[[ $(awk -v l="gen-$1" '$1 == "label:" {m = ($2 == l)} m && /Access:.*local/' \
		<<<"$TK_OUT" | wc -l) -eq 2 ]] || tk_fail "$2: not local: $TK_OUT"
}
gen 11 rsa:2048
gen 12 EC:prime256v1
gen 13 EC:secp384r1
gen 14 EC:secp521r1
gen 15 EC:edwards25519
# the public keys as GnuTLS reads them from the token (p11tool). Under the
# sanitizer build p11tool (with the ASan runtime preloaded) hangs in
# p11-kit's exit handler (freelocale), with main's module as with this one,
# and pkcs11-tool's --read-object of an EC key is a use-after-free of its
# own: there the RSA and P-256 keys are read with pkcs11-tool, and the
# other keys' signatures and the GnuTLS steps below are left out.
export GNUTLS_PIN=$PIN
url="pkcs11:token=writable"
GNUTLS=1
[[ ${#TK_HOST_ENV[@]} -eq 0 ]] || GNUTLS=0
pubkey() {
	if [[ $GNUTLS == 1 ]]; then
		tk_run "public key $1" tk_host p11tool --provider "$MOD" --login \
			--export-pubkey "$url;id=%$1;type=public" --outfile "pub$1.pem"
	elif [[ $1 == 11 ]]; then
		tk_run "public key $1" p11 --read-object --type pubkey --id "$1" -o "pub$1.der"
		openssl pkey -pubin -inform DER -in "pub$1.der" -out "pub$1.pem"
	else
		# P-256 (pkcs11-tool's own EC key reading is not ASan-clean): the
		# SubjectPublicKeyInfo around the CKA_EC_POINT pkcs11-tool shows
		tk_run "public key $1" p11 -O --type pubkey
		local pt
		pt=$(awk -v l="gen-$1" '$1 == "EC_POINT:" {p = $2} $1 == "label:" && $2 == l {print p}' \
			<<<"$TK_OUT" | sed 's/^0441//')
		[[ ${#pt} -eq 130 ]] || tk_fail "no P-256 point for key $1: $TK_OUT"
		echo "3059301306072a8648ce3d020106082a8648ce3d030107034200$pt" | xxd -r -p >"pub$1.der"
		openssl pkey -pubin -inform DER -in "pub$1.der" -out "pub$1.pem"
	fi
}
verify() { # verify ID MECH DGST
	tk_run "sign $1" p11u --sign -m "$2" --id "$1" -i msg -o "sig$1" --signature-format openssl
	pubkey "$1"
	openssl dgst "-$3" -verify "pub$1.pem" -signature "sig$1" msg >/dev/null ||
		tk_fail "the $2 signature of key $1 does not verify"
}
verify 11 SHA256-RSA-PKCS sha256
verify 12 ECDSA-SHA256 sha256
# the check can fail: another key's signature does not verify
! openssl dgst -sha256 -verify pub12.pem -signature sig11 msg >/dev/null 2>&1 ||
	tk_fail "verification passes with the wrong key"
if [[ $GNUTLS == 1 ]]; then
	verify 13 ECDSA-SHA384 sha384
	verify 14 ECDSA-SHA512 sha512
	tk_run "sign 15" p11u --sign -m EDDSA --id 15 -i msg -o sig15
	pubkey 15
	openssl pkeyutl -verify -pubin -inkey pub15.pem -rawin -in msg -sigfile sig15 >/dev/null ||
		tk_fail "the Ed25519 signature does not verify"
fi

# no login: no private key is made (5.7: private objects need the user)
tk_run_fails "keypairgen without login" p11 --keypairgen --key-type EC:prime256v1 --id 16
tk_expect 'CKR_USER_NOT_LOGGED_IN'

# ---- GnuTLS: p11tool makes a key, certtool signs a certificate with it --------------------
if [[ $GNUTLS == 1 ]]; then
tk_run "p11tool --generate-privkey" tk_host p11tool --provider "$MOD" --login \
	--generate-privkey=ECDSA --curve=secp256r1 --label=gnutls-key --id=21 \
	--outfile gnutls.pub "$url"
cat >tpl <<'EOF'
cn = "made with a generated key"
serial = 7
expiration_days = 2
signing_key
EOF
tk_run "certtool self-signed" tk_host certtool --provider "$MOD" --generate-self-signed \
	--load-privkey "$url;object=gnutls-key;type=private" \
	--load-pubkey "$url;object=gnutls-key;type=public" --template tpl --outfile gnutls.crt
openssl verify -CAfile gnutls.crt gnutls.crt >/dev/null ||
	tk_fail "openssl does not verify the certificate signed by the generated key"
# the certificate's key is the one p11tool wrote out
[[ $(openssl x509 -in gnutls.crt -pubkey -noout) == $(openssl pkey -pubin -in gnutls.pub) ]] ||
	tk_fail "the certificate is not for the generated key"
fi

# ---- objects: write, read back, change the id, delete -----------------------------------------
# (without GnuTLS: the imported certificate)
[[ $GNUTLS == 1 ]] || openssl x509 -in imp.crt -out gnutls.crt
openssl x509 -in gnutls.crt -outform DER -out gnutls.der
tk_run "write certificate" p11u --write-object gnutls.der --type cert --id 21 --label gnutls-cert
tk_run "read certificate" p11 --read-object --type cert --id 21 -o back.der
cmp -s gnutls.der back.der || tk_fail "the certificate read back is not the one written"
head -c 300 /dev/urandom >blob
tk_run "write data" p11u --write-object blob --type data --label blob --application-label tk-test
tk_run "read data" p11 --read-object --type data --label blob -o blob.back
cmp -s blob blob.back || tk_fail "the data object read back is not the one written"
tk_run "set id" p11u --set-id 22 --type cert --id 21
tk_run "objects" p11 -O --type cert
tk_expect 'ID: +22$'
tk_expect_not 'ID: +21$'
tk_run "delete certificate" p11u --delete-object --type cert --id 22
tk_run "delete data" p11u --delete-object --type data --label blob
tk_run "objects" p11u -O
tk_expect_not 'gnutls-cert|blob'
[[ $GNUTLS == 0 ]] || tk_expect 'gnutls-key'
# the store has it all: the tool (its own reading, no module) lists the keys
tk_run "tool list" "$TK" soft list
tk_expect 'gen-12'

tk_pass
