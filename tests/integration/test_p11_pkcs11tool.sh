#!/usr/bin/env bash
# tokenkit-pkcs11.so under OpenSC's pkcs11-tool, against the virtual PIV card
# under a real pcscd: list slots, objects and mechanisms; sign with ECDSA
# (P-256 and P-384), PKCS#1 v1.5 and PSS; decrypt (PKCS#1 v1.5 and OAEP);
# ECDH derive; pkcs11-tool --test; wrong PIN and its retry counter. Every
# signature and derived secret is checked with openssl against the
# certificate / public key.
#
# Also the provisioning library of the other test_p11_*.sh scripts: sourced
# with TK_P11_LIB=1 it only defines p11_provision and returns.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TK_P11_MODULE=${TK_P11_MODULE:-$TK_BUILD/tokenkit-pkcs11.so}
PIN=123456

# p11_provision [N [LAYOUT [DIR]]]: card N (default 0) gets, through
# yubico-piv-tool (default management key), the keys of LAYOUT, default
#   9a ECCP256 (sign)  9c RSA2048 (sign, PIN always)  9d RSA2048 (decrypt)
#   9e ECCP384 (sign, no PIN)  82 ECCP256 (ECDH)
# each with a certificate issued by a test CA ($TK_TMP/ca.pem) for the card's
# key. Files in DIR (default $TK_TMP): cert<slot>.pem, pub<slot>.pem.
P11_LAYOUT="9a:ECCP256 9c:RSA2048 9d:RSA2048 9e:ECCP384 82:ECCP256"
p11_provision() {
	local n=${1:-0} layout=${2:-$P11_LAYOUT} dir=${3:-$TK_TMP} s alg cn reader
	reader="Virtual PCD 00 0$n"
	mkdir -p "$dir"
	# our own object cache, not the user's
	export XDG_CACHE_HOME="$TK_TMP/cache"
	if [[ ! -e "$TK_TMP/ca.pem" ]]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout "$TK_TMP/ca.key" -out "$TK_TMP/ca.pem" -subj /CN=tokenkit-test-CA \
			-days 30 2>/dev/null || tk_fail "test CA"
	fi
	for s in $layout; do
		alg=${s#*:}
		s=${s%%:*}
		tk_run_piv "card $n: generate $alg in $s" yubico-piv-tool -r "$reader" -a generate -s "$s" \
			-A "$alg" -o "$dir/gen$s.pem"
		cn="tokenkit-$s"
		tk_run "certificate for $s" openssl x509 -new -subj "/CN=$cn/" -days 30 \
			-force_pubkey "$dir/gen$s.pem" -CA "$TK_TMP/ca.pem" -CAkey "$TK_TMP/ca.key" \
			-extfile <(printf 'keyUsage=digitalSignature,keyEncipherment,keyAgreement\nextendedKeyUsage=clientAuth\n') \
			-out "$dir/cert$s.pem"
		tk_run_piv "import certificate $s" yubico-piv-tool -r "$reader" -a import-certificate \
			-s "$s" -i "$dir/cert$s.pem"
		openssl x509 -in "$dir/cert$s.pem" -pubkey -noout >"$dir/pub$s.pem"
	done
	# retired slots exist for readers only as announced by the key history
	# object (SP 800-73-4): keysWithOnCardCerts = number of 82.. slots used
	local nret
	nret=$( (grep -oE '\b(8[2-9a-f]|9[0-5]):' <<<"$layout" || true) | wc -l)
	if [[ $nret -gt 0 ]]; then
		printf "\xC1\x01\x$(printf %02x "$nret")\xC2\x01\x00\xFE\x00" >"$dir/keyhistory.bin"
		tk_run_piv "key history: $nret retired" yubico-piv-tool -r "$reader" -a write-object \
			--id 0x5FC10C -f binary -i "$dir/keyhistory.bin"
	fi
	tk_log "card $n provisioned: $layout"
}

p11_require() {
	[[ -e "$TK_P11_MODULE" ]] || tk_fail "$TK_P11_MODULE not built"
	tk_require_cmd yubico-piv-tool openssl
}

if [[ ${TK_P11_LIB:-0} == 1 ]]; then
	return 0
fi

p11_require
tk_require_cmd pkcs11-tool
tk_env_start
tk_card_start 0
p11_provision
P11=(pkcs11-tool --module "$TK_P11_MODULE")
cd "$TK_TMP"
printf 'tokenkit signs this\n' >data.txt

tk_run "slots" "${P11[@]}" -L
tk_expect 'Virtual PCD 00 00'
tk_expect 'token flags *: .*login required.*readonly|token flags *: .*readonly.*login required'
tk_expect 'pin min/max *: 6/8'

tk_run "objects without login" "${P11[@]}" -O
for cn in 9a 9c 9d 9e 82; do tk_expect "CN=tokenkit-$cn"; done
tk_expect 'Public Key Object; EC'
tk_expect_not 'Private Key Object'     # private objects need the user logged in
tk_run "objects after login" "${P11[@]}" --login --pin $PIN -O
tk_expect 'Private Key Object; EC'
tk_expect 'Private Key Object; RSA'
tk_expect 'EC_PARAMS: *06082a8648ce3d030107'   # P-256 OID, DER
tk_expect 'EC_PARAMS: *06052b81040022'         # P-384 OID, DER
tk_expect 'EC_POINT: *04410'                   # DER OCTET STRING around 04||X||Y
tk_expect 'always authenticate'

tk_run "mechanisms" "${P11[@]}" -M
for m in RSA-PKCS RSA-X-509 RSA-PKCS-PSS RSA-PKCS-OAEP SHA256-RSA-PKCS SHA512-RSA-PKCS-PSS \
	ECDSA ECDSA-SHA256 ECDSA-SHA384 ECDH1-DERIVE; do
	tk_expect "^ *$m, "
done
tk_expect 'RSA-PKCS, keySize=\{2048,2048\}, hw, decrypt, sign, verify'
tk_expect 'ECDSA, keySize=\{256,384\}'

# ECDSA P-256 (9a, ID 01) and P-384 (9e, ID 04)
tk_run "sign ECDSA-SHA256" "${P11[@]}" --login --pin $PIN --sign -m ECDSA-SHA256 --id 01 \
	--signature-format openssl -i data.txt -o sig01.der
tk_run "verify ECDSA-SHA256" openssl dgst -sha256 -verify pub9a.pem -signature sig01.der data.txt
tk_run "sign ECDSA-SHA384 (P-384)" "${P11[@]}" --login --pin $PIN --sign -m ECDSA-SHA384 --id 04 \
	--signature-format openssl -i data.txt -o sig04.der
tk_run "verify ECDSA-SHA384" openssl dgst -sha384 -verify pub9e.pem -signature sig04.der data.txt
openssl dgst -sha256 -binary data.txt >data.sha256
tk_run "sign raw ECDSA over a hash" "${P11[@]}" --login --pin $PIN --sign -m ECDSA --id 01 \
	--signature-format openssl -i data.sha256 -o sig01raw.der
tk_run "verify raw ECDSA" openssl pkeyutl -verify -pubin -inkey pub9a.pem -in data.sha256 \
	-sigfile sig01raw.der

# RSA (9c, ID 02: PIN for every signature; pkcs11-tool does the context login)
tk_run "sign SHA256-RSA-PKCS" "${P11[@]}" --login --pin $PIN --sign -m SHA256-RSA-PKCS --id 02 \
	-i data.txt -o sig02.bin
tk_run "verify SHA256-RSA-PKCS" openssl dgst -sha256 -verify pub9c.pem -signature sig02.bin data.txt
tk_run "sign RSA-PKCS-PSS" "${P11[@]}" --login --pin $PIN --sign -m RSA-PKCS-PSS \
	--hash-algorithm SHA256 --mgf MGF1-SHA256 --salt-len 32 --id 02 -i data.sha256 -o sig02pss.bin
tk_run "verify RSA-PKCS-PSS" openssl pkeyutl -verify -pubin -inkey pub9c.pem -in data.sha256 \
	-sigfile sig02pss.bin -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss \
	-pkeyopt rsa_pss_saltlen:32
tk_run "sign SHA384-RSA-PKCS-PSS" "${P11[@]}" --login --pin $PIN --sign -m SHA384-RSA-PKCS-PSS \
	--salt-len 48 --mgf MGF1-SHA384 --id 02 -i data.txt -o sig02pss384.bin
tk_run "verify SHA384-RSA-PKCS-PSS" openssl dgst -sha384 -verify pub9c.pem -sigopt rsa_padding_mode:pss \
	-sigopt rsa_pss_saltlen:48 -signature sig02pss384.bin data.txt

# decryption with the 9d key (ID 03)
printf 'the secret message' >plain.txt
openssl pkeyutl -encrypt -pubin -inkey pub9d.pem -in plain.txt -out enc.bin
tk_run "decrypt RSA-PKCS" "${P11[@]}" --login --pin $PIN --decrypt -m RSA-PKCS --id 03 \
	-i enc.bin -o dec.txt
cmp plain.txt dec.txt || tk_fail "RSA-PKCS decryption differs"
openssl pkeyutl -encrypt -pubin -inkey pub9d.pem -in plain.txt -out enc-oaep.bin \
	-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
tk_run "decrypt RSA-PKCS-OAEP" "${P11[@]}" --login --pin $PIN --decrypt -m RSA-PKCS-OAEP \
	--hash-algorithm SHA256 --mgf MGF1-SHA256 --id 03 -i enc-oaep.bin -o dec-oaep.txt
cmp plain.txt dec-oaep.txt || tk_fail "OAEP decryption differs"
# a corrupted ciphertext is refused, not "decrypted"
cp enc.bin bad.bin
printf '\x00\x01' | dd of=bad.bin bs=1 seek=100 conv=notrunc 2>/dev/null
tk_run_fails "decrypt corrupted ciphertext" "${P11[@]}" --login --pin $PIN --decrypt -m RSA-PKCS \
	--id 03 -i bad.bin -o bad.txt

# ECDH with the key in 82 (ID 05): same secret as openssl with the peer key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.key 2>/dev/null
openssl pkey -in peer.key -pubout -outform DER -out peer.der
tk_run "derive ECDH1" "${P11[@]}" --login --pin $PIN --derive -m ECDH1-DERIVE --id 05 \
	-i peer.der -o shared-card.bin
openssl pkeyutl -derive -inkey peer.key -peerkey pub82.pem -out shared-ossl.bin
cmp shared-card.bin shared-ossl.bin || tk_fail "ECDH secrets differ"

# pkcs11-tool's own self test (signatures, verification, decryption)
tk_run "pkcs11-tool --test" "${P11[@]}" --login --pin $PIN --test
tk_expect 'all 4 signature functions seem to work'
tk_expect 'No errors'
tk_expect_not 'ERR:|FAILED'

# a wrong PIN: CKR_PIN_INCORRECT, and the token reports the spent try
tk_run_fails "wrong PIN" "${P11[@]}" --login --pin 999999 -O
tk_expect 'CKR_PIN_INCORRECT'
tk_run "token info after a wrong PIN" "${P11[@]}" -L
tk_expect 'user PIN count low'
tk_run "right PIN resets the counter" "${P11[@]}" --login --pin $PIN -O
tk_run "token info after the right PIN" "${P11[@]}" -L
tk_expect_not 'count low'
# (CKR_PIN_LEN_RANGE is no C_Login answer: a PIN of the wrong length is wrong)
tk_run_fails "PIN of the wrong length" "${P11[@]}" --login --pin 12 -O
tk_expect 'CKR_PIN_INCORRECT'

# write-protected token
tk_run_fails "no key generation" "${P11[@]}" --login --pin $PIN --keypairgen --key-type EC:prime256v1 \
	--id 99 --label x
tk_expect 'CKR_TOKEN_WRITE_PROTECTED|mechanism .* not supported'

tk_pass
