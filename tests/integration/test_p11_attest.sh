#!/usr/bin/env bash
# PIV attestation certificates through tokenkit-pkcs11.so, as independent
# PKCS#11 clients see them, against the virtual card under a real pcscd:
#  - with an empty object cache they appear (the module's background check
#    after the open asks the card for them);
#  - OpenSC pkcs11-tool lists "PIV Attestation 9A", "... 9C" and the device
#    certificate by label and reads them; openssl verifies each attestation
#    against the device certificate yubico-piv-tool reads from the card (F9),
#    and the attested key is the one yubico-piv-tool generated;
#  - they are not paired: their CKA_IDs are no private key's, NSS lists them
#    without the user-certificate trust (u,u,u) it gives the slots'
#    certificates, GnuTLS p11tool lists them as certificates;
#  - an imported key (9D) has no attestation object;
#  - a key generated anew in 9A: once a full open saw the card, its
#    attestation names the new key, not the old one the cache held.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
p11_require
tk_require_cmd pkcs11-tool certutil modutil p11tool
TK="$TK_BUILD/tokenkit"
tk_env_start
tk_card_start 0
p11_provision 0 "9a:ECCP256 9c:RSA2048"
PIV=(yubico-piv-tool -r "$TK_READER0")
P11=(pkcs11-tool --module "$TK_P11_MODULE")
cd "$TK_TMP"

# an imported key in 9d, with its certificate
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out imp.key 2>/dev/null
openssl req -new -x509 -key imp.key -subj /CN=tokenkit-imported/ -days 30 -out cert9d.pem \
	2>/dev/null || tk_fail "certificate for the imported key"
tk_run_piv "import a key into 9d" "${PIV[@]}" -a import-key -s 9d -i imp.key
tk_run_piv "its certificate" "${PIV[@]}" -a import-certificate -s 9d -i cert9d.pem
# the device's attestation certificate, read by yubico-piv-tool
tk_run_piv "device certificate (f9) by yubico-piv-tool" "${PIV[@]}" -a read-certificate -s f9 \
	-o dev.pem
spki() { openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum; }
pub_spki() { openssl pkey -pubin -in "$1" -outform DER | sha256sum; }

# --- listed by label, with their own ids --------------------------------------
# The module never has C_GetSlotList wait for the card's signatures: with a
# cold cache the attestations come with its background check after the
# open (kept in the cache for the next process), so a first client may list
# the token without them.
tk_wait 30 "the module lists the attestations" sh -c \
	"pkcs11-tool --module '$TK_P11_MODULE' -O --type cert | grep -q 'label: *PIV Attestation 9C'"
tk_run "certificates" "${P11[@]}" -O --type cert
tk_expect 'label: +PIV Attestation 9A$'
tk_expect 'label: +PIV Attestation 9C$'
tk_expect 'label: +PIV Attestation Device Certificate$'
tk_expect_not 'PIV Attestation 9D'
tk_expect 'label: +Certificate for Key Management$'
CERTS=$TK_OUT
ATT_IDS=$(awk '/label: +PIV Attestation/ {a=1} a && $1 == "ID:" {print $2; a=0}' <<<"$CERTS")
[[ $(wc -l <<<"$ATT_IDS") -eq 3 ]] || tk_fail "three attestation certificate ids expected: $ATT_IDS"

# --- read, verified against the device certificate ----------------------------
for s in 9a 9c; do
	S=${s^^}
	tk_run "read the attestation of $s" "${P11[@]}" --read-object --type cert \
		--label "PIV Attestation $S" -o "att$s.der"
	openssl x509 -inform DER -in "att$s.der" -out "att$s.pem" || tk_fail "att$s: no certificate"
	tk_run "openssl verifies the attestation of $s" openssl verify -partial_chain \
		-CAfile dev.pem "att$s.pem"
	tk_expect ': OK'
	[[ $(spki "att$s.pem") == $(pub_spki "gen$s.pem") ]] ||
		tk_fail "the attestation of $s is not for the key yubico-piv-tool generated"
done
tk_run "read the device certificate" "${P11[@]}" --read-object --type cert \
	--label "PIV Attestation Device Certificate" -o dev.der
[[ $(openssl x509 -inform DER -in dev.der -noout -fingerprint -sha256) == \
	$(openssl x509 -in dev.pem -noout -fingerprint -sha256) ]] ||
	tk_fail "the device certificate is not the one yubico-piv-tool reads"

# --- never paired -------------------------------------------------------------
tk_run "private keys" "${P11[@]}" --login --pin "$PIN" -O --type privkey
KEY_IDS=$(awk '$1 == "ID:" {print $2}' <<<"$TK_OUT")
[[ $(wc -l <<<"$KEY_IDS") -eq 3 ]] || tk_fail "three private keys expected: $KEY_IDS"
for id in $ATT_IDS; do
	grep -qx "$id" <<<"$KEY_IDS" && tk_fail "attestation id $id is a private key's"
done
mkdir -p nssdb
tk_run "fresh NSS database" certutil -N -d sql:nssdb --empty-password
tk_run "add the module" sh -c "echo | modutil -dbdir sql:nssdb -add tokenkit -libfile '$TK_P11_MODULE' -force"
tk_run "NSS certificates" certutil -L -d sql:nssdb -h all
tk_expect 'PIV [0-9A-Za-z]+:Certificate for PIV Authentication +u,u,u'
tk_expect 'PIV [0-9A-Za-z]+:PIV Attestation 9A '
tk_expect 'PIV [0-9A-Za-z]+:PIV Attestation Device Certificate '
tk_expect_not 'PIV Attestation.*u,u,u'
if tk_gnutls_ok; then
	tk_run "GnuTLS certificates" p11tool --provider "$TK_P11_MODULE" --list-all-certs
	tk_expect 'Label: PIV Attestation 9C'
	tk_expect 'Label: PIV Attestation Device Certificate'
else
	tk_log "GnuTLS certificates: not under the sanitizer build (lib.sh, tk_gnutls_ok)"
fi

# --- a new key in 9a: the cached attestation of the old one is stale ----------
tk_run_piv "generate 9a again" "${PIV[@]}" -a generate -s 9a -A ECCP256 -o gen9a2.pem
openssl x509 -new -subj /CN=tokenkit-9a-new/ -days 30 -force_pubkey gen9a2.pem -CA ca.pem \
	-CAkey ca.key -out cert9a2.pem 2>/dev/null || tk_fail "certificate for the new key"
tk_run_piv "its certificate" "${PIV[@]}" -a import-certificate -s 9a -i cert9a2.pem
# a full open (not the module's deferred one, which shows the cache until its
# background check) sees the new key and replaces the cached attestation
tk_run "tokenkit objects" "$TK" objects "$TK_READER0"
tk_expect 'PIV Attestation 9A'
tk_run "read the attestation of 9a again" "${P11[@]}" --read-object --type cert \
	--label "PIV Attestation 9A" -o att9a2.der
openssl x509 -inform DER -in att9a2.der -out att9a2.pem || tk_fail "att9a2: no certificate"
[[ $(spki att9a2.pem) == $(pub_spki gen9a2.pem) ]] ||
	tk_fail "the attestation of 9a is not for its new key"
tk_run "openssl verifies it" openssl verify -partial_chain -CAfile dev.pem att9a2.pem
tk_expect ': OK'
tk_pass
