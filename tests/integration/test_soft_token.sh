#!/usr/bin/env bash
# The software token end to end, with the programs a user has: PKCS#12
# files made by `openssl req` + `openssl pkcs12 -export` (RSA and EC P-256
# with the default AES/PBKDF2, EC with -legacy: 3DES/RC2 and a SHA-1 MAC;
# one with no MAC) go into a token made by `tokenkit soft create`; the
# token is a slot of tokenkit-pkcs11.so (registered slots from 0x40000000)
# without any other step, and `pkcs11-tool --login --sign` makes RSA PKCS#1
# v1.5, RSA-PSS and ECDSA P-256 signatures that `openssl` verifies with the
# certificate taken from the .p12 file. Refusals: a wrong password, a file
# that is not PKCS#12, the same identity twice: each its own message, and
# the store unchanged byte for byte. No way to ask for the PIN: exit 7 at
# once. Keys never in the clear in the store (an RSA prime, the private
# exponent, the EC scalars, the Ed25519 seed; no PEM). The wrong-PIN
# counter is durable: every try is its own pkcs11-tool process, and the
# count and the lock-out hold across them; the SO PIN (`tokenkit soft
# init-pin`) unlocks.
source "$(dirname "$0")/lib.sh"
tk_require_cmd pkcs11-tool openssl setsid

tk_soft_env
SLOT=0x40000000
PIN=246810
SOPIN=13579135
PASS='p12 pass'
cd "$TK_TMP"

# ---- files as a user makes them ---------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.crt -subj /CN=soft-rsa \
	-days 2 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key \
	-out ec.crt -subj /CN=soft-ec -days 2 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ecl.key \
	-out ecl.crt -subj /CN=soft-ec-legacy -days 2 2>/dev/null
openssl req -x509 -newkey ed25519 -nodes -keyout ed.key -out ed.crt -subj /CN=soft-ed25519 \
	-days 2 2>/dev/null
openssl pkcs12 -export -inkey ed.key -in ed.crt -out ed.p12 -passout "pass:$PASS"
openssl pkcs12 -export -inkey rsa.key -in rsa.crt -name "rsa identity" -out rsa.p12 \
	-passout "pass:$PASS"
openssl pkcs12 -export -inkey ec.key -in ec.crt -nomac -out ec.p12 -passout "pass:$PASS"
openssl pkcs12 -export -legacy -inkey ecl.key -in ecl.crt -out ecl.p12 -passout "pass:$PASS"
info=$(openssl pkcs12 -legacy -in ecl.p12 -info -noout -passin "pass:$PASS" 2>&1)
grep -q 'MAC: sha1' <<<"$info" && grep -q 'pbeWithSHA1And40BitRC2-CBC' <<<"$info" ||
	tk_fail "openssl pkcs12 -legacy did not make a SHA-1 MAC, RC2 file: $info"
head -c 2000 /dev/urandom >junk.p12
# the same from the other libraries' tools: NSS (pk12util, from a database that imported the
# key) and GnuTLS (certtool); both write PBES2/AES with a SHA-256 MAC and 600000 iterations
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout nss.key \
	-out nss.crt -subj /CN=soft-nss -days 2 2>/dev/null
openssl pkcs12 -export -inkey nss.key -in nss.crt -name soft-nss -out nss-in.p12 -passout pass:x
mkdir nssdb
certutil -N -d sql:nssdb --empty-password
pk12util -i nss-in.p12 -d sql:nssdb -W x -K "" >/dev/null
pk12util -o nss.p12 -n soft-nss -d sql:nssdb -W "$PASS" -K "" >/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout gnutls.key -out gnutls.crt \
	-subj /CN=soft-gnutls -days 2 2>/dev/null
certtool --load-privkey gnutls.key --load-certificate gnutls.crt --to-p12 --outder \
	--outfile gnutls.p12 --p12-name soft-gnutls --password "$PASS" >/dev/null 2>&1
[[ -s nss.p12 && -s gnutls.p12 ]] || tk_fail "pk12util or certtool made no file"
# the certificates the verifier trusts: from the .p12 files, not from the token
for f in rsa ec ecl ed nss gnutls; do
	openssl pkcs12 -legacy -in $f.p12 -nokeys -clcerts -passin "pass:$PASS" -out $f.p12.crt 2>/dev/null
	openssl x509 -in $f.p12.crt -pubkey -noout >$f.pub
done

store_sum() { find "$XDG_STATE_HOME" -type f -print0 | sort -z | xargs -0 sha256sum; }

# ---- create, import ---------------------------------------------------------------------
tk_run "create" "$TK" soft create --label "soft test" --max-tries 3 --pin-fd 3 --so-pin-fd 3 \
	3<<<"$PIN"$'\n'"$SOPIN"
tk_expect '^created software token [0-9a-f]+ \(soft test\)'
before=$(store_sum)

# no PIN and nothing to ask it on: at once, exit 7, nothing written
rc=0
out=$(setsid -w timeout 20 "$TK" soft import rsa.p12 </dev/null 2>&1) || rc=$?
[[ $rc -eq 7 ]] || tk_fail "import with no way to ask for the PIN: exit $rc ($out)"
grep -q 'token locked, needs the user PIN' <<<"$out" || tk_fail "no 'needs the user PIN': $out"

tk_run_fails "wrong password" "$TK" soft import rsa.p12 --pin-fd 3 --password-fd 3 \
	3<<<"$PIN"$'\nnot the password'
tk_expect 'rsa\.p12: wrong password'
tk_run_fails "wrong password, no MAC" "$TK" soft import ec.p12 --pin-fd 3 --password-fd 3 \
	3<<<"$PIN"$'\nnot the password'
tk_expect 'ec\.p12: wrong password'
tk_run_fails "not PKCS#12" "$TK" soft import junk.p12 --pin-fd 3 --password-fd 3 \
	3<<<"$PIN"$'\n'"$PASS"
tk_expect 'junk\.p12: not a PKCS#12 file'
[[ $(store_sum) == "$before" ]] || tk_fail "a refused import changed the store"

for f in rsa ec ecl nss gnutls ed; do
	tk_run "import $f.p12" "$TK" soft import $f.p12 --pin-fd 3 --password-fd 3 \
		3<<<"$PIN"$'\n'"$PASS"
	tk_expect '^imported (RSA-2048|EC-256|EC-384|Ed25519-255) key with its certificate'
done
tk_expect "label 'soft-ed25519'"
before=$(store_sum)
tk_run_fails "the same identity again" "$TK" soft import rsa.p12 --pin-fd 3 --password-fd 3 \
	3<<<"$PIN"$'\n'"$PASS"
tk_expect 'on the token already; nothing changed'
[[ $(store_sum) == "$before" ]] || tk_fail "a refused duplicate changed the store"
tk_run "list" "$TK" soft list
tk_expect 'soft test +\(PIN: 3 of 3 tries left\)'
[[ $(grep -c ' identity ' <<<"$TK_OUT") -eq 6 ]] || tk_fail "six identities expected: $TK_OUT"

# ---- keys never in the clear ---------------------------------------------------------------
# hex of the store, and of each secret: an RSA prime and private exponent,
# the EC private scalars, the Ed25519 seed
store_hex=$(find "$XDG_STATE_HOME" -type f -exec cat {} + | od -An -tx1 -v | tr -d ' \n')
ints() { openssl asn1parse -in "$1" | sed -n 's/.*INTEGER *:\([0-9A-F]*\)$/\1/p'; }
octets() { openssl asn1parse -in "$1" | sed -n 's/.*OCTET STRING *\[HEX DUMP\]:\([0-9A-F]*\)$/\1/p'; }
openssl rsa -in rsa.key -traditional -out rsa.trad 2>/dev/null
secrets=$(
	ints rsa.trad | sed -n '4p;5p'
	openssl ec -in ec.key -out ec.trad 2>/dev/null && octets ec.trad
	openssl ec -in ecl.key -out ecl.trad 2>/dev/null && octets ecl.trad
	# an Ed25519 PKCS#8 ends with the 32-byte seed
	openssl pkey -in ed.key -outform DER | tail -c 32 | od -An -tx1 -v | tr -d ' \n'
	echo
)
[[ $(wc -l <<<"$secrets") -eq 5 ]] || tk_fail "could not take the keys' secrets apart: $secrets"
while read -r s; do
	s=${s,,}
	[[ ${#s} -ge 64 ]] || tk_fail "a secret too short to look for: $s"
	[[ $store_hex != *"$s"* ]] || tk_fail "a private key's secret is in the store in the clear"
done <<<"$secrets"
! grep -rq 'PRIVATE KEY' "$XDG_STATE_HOME" || tk_fail "PEM in the store"

# ---- PKCS#11: the slot, signatures openssl verifies -------------------------------------------
p11() { tk_host timeout 120 pkcs11-tool --module "$MOD" "$@"; }
tk_run "slot list" p11 -L
tk_expect "\\($SLOT\\): registered token soft/"
tk_expect 'token label +: soft test'
echo "signed by the software token" >msg
# a certificate's CKA_ID (hex) on the token, by its label
id_of() { "$TK" soft list | awk -v l="$1" \
	'$1 == "certificate" && substr($0, length($0) - length(l) - 1) == "  " l {print $4}'; }
sign() { # sign NAME MECH KEY-LABEL [pkcs11-tool options]
	local name=$1 mech=$2 id
	id=$(id_of "$3")
	[[ -n $id ]] || tk_fail "no certificate labelled $3 on the token"
	shift 3
	tk_run "sign $name" p11 --slot $SLOT --login --pin "$PIN" --sign -m "$mech" --id "$id" \
		-i msg -o "$name.sig" "$@"
}
sign rsa-pkcs SHA256-RSA-PKCS "rsa identity"
openssl dgst -sha256 -verify rsa.pub -signature rsa-pkcs.sig msg >/dev/null ||
	tk_fail "RSA PKCS#1 v1.5 signature does not verify"
sign rsa-pss SHA256-RSA-PKCS-PSS "rsa identity"
openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
	-verify rsa.pub -signature rsa-pss.sig msg >/dev/null || tk_fail "RSA-PSS does not verify"
sign ecdsa ECDSA-SHA256 soft-ec --signature-format openssl
openssl dgst -sha256 -verify ec.pub -signature ecdsa.sig msg >/dev/null ||
	tk_fail "ECDSA P-256 signature does not verify"
sign ecdsa-legacy ECDSA-SHA256 soft-ec-legacy --signature-format openssl
openssl dgst -sha256 -verify ecl.pub -signature ecdsa-legacy.sig msg >/dev/null ||
	tk_fail "ECDSA P-256 (legacy .p12) signature does not verify"
sign nss ECDSA-SHA384 soft-nss --signature-format openssl
openssl dgst -sha384 -verify nss.pub -signature nss.sig msg >/dev/null ||
	tk_fail "ECDSA P-384 (NSS pk12util file) signature does not verify"
sign gnutls SHA256-RSA-PKCS soft-gnutls
openssl dgst -sha256 -verify gnutls.pub -signature gnutls.sig msg >/dev/null ||
	tk_fail "RSA (GnuTLS certtool file) signature does not verify"
# the wrong key's certificate does not verify it (the check can fail)
! openssl dgst -sha256 -verify ecl.pub -signature ecdsa.sig msg >/dev/null 2>&1 ||
	tk_fail "verification passes with the wrong certificate"

# Ed25519: the module signs with CKM_EDDSA (PureEdDSA); openssl verifies
tk_run "mechanisms" p11 --slot $SLOT -M
tk_expect '^ *EDDSA'
sign eddsa EDDSA soft-ed25519
openssl pkeyutl -verify -pubin -inkey ed.pub -rawin -in msg -sigfile eddsa.sig >/dev/null ||
	tk_fail "Ed25519 signature does not verify"

# ---- the wrong-PIN counter: durable across processes, lock-out, SO reset --------------------------
for left in 2 1; do
	tk_run_fails "wrong PIN" p11 --slot $SLOT --login --pin 000000 -O
	tk_expect 'CKR_PIN_INCORRECT'
	tk_run "list" "$TK" soft list
	tk_expect "\\(PIN: $left of 3 tries left\\)"
done
tk_run_fails "third wrong PIN" p11 --slot $SLOT --login --pin 000000 -O
tk_expect 'CKR_PIN_(INCORRECT|LOCKED)'
tk_run "list" "$TK" soft list
tk_expect '\(PIN: 0 of 3 tries left, locked\)'
tk_run_fails "the right PIN, locked" p11 --slot $SLOT --login --pin "$PIN" -O
tk_expect 'CKR_PIN_LOCKED'
tk_run_fails "the tool, locked" "$TK" soft import rsa.p12 --replace --pin-fd 3 --password-fd 3 \
	3<<<"$PIN"$'\n'"$PASS"
tk_expect 'the user PIN is locked'
tk_run "SO PIN sets a new user PIN" "$TK" soft init-pin --so-pin-fd 3 --pin-fd 4 \
	3<<<"$SOPIN" 4<<<"112233"
tk_run "list" "$TK" soft list
tk_expect '\(PIN: 3 of 3 tries left\)'
PIN=112233
sign after-reset ECDSA-SHA256 soft-ec --signature-format openssl
openssl dgst -sha256 -verify ec.pub -signature after-reset.sig msg >/dev/null ||
	tk_fail "signature after the SO reset does not verify"

tk_pass
