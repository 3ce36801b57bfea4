#!/usr/bin/env bash
# Nothing secret in any log, even at the most verbose level: with
# TOKENKIT_LOG=trace everywhere, pkcs11-tool decrypts with RSA (9D) and
# derives with ECDH (82) through tokenkit-pkcs11.so, first under a real
# pcscd with tokenkit-vcard (whose own log is at trace too), then with the
# card in-process (TOKENKIT_READERS=vcard:...). The plaintext, the shared
# secret and the PIN must appear in no log, in hex of either case with any
# spacing or separator the logger may use, while the logs do show the APDU
# exchanges (so the test is not passing on an empty log).
#
# The plaintext is 245 bytes, the most RSA-2048 PKCS#1 v1.5 allows: the
# decrypted block 00 02 PS 00 M then has 8 bytes of padding, so the
# message starts in the first 64 bytes of the response, which is what an
# APDU dump shows.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
p11_require
tk_require_cmd pkcs11-tool od
# before the card starts: tokenkit-vcard logs at this level too
export TOKENKIT_LOG=trace
tk_env_start
tk_card_start 0
p11_provision 0 "9d:RSA2048 82:ECCP256"
P11=(pkcs11-tool --module "$TK_P11_MODULE")
cd "$TK_TMP"

# hex of a file, upper case, no separators
hexof() { od -An -v -tx1 "$1" | tr -d ' \n' | tr a-f A-F; }

# every 8-byte window of the secret as a fixed pattern
windows() {
	local h=$1 i
	for ((i = 0; i + 16 <= ${#h}; i += 2)); do
		echo "${h:i:16}"
	done
}

# check_log NAME FILE: FILE holds no window of any secret
check_log() {
	local name=$1 file=$2 norm
	norm=$TK_TMP/$name.norm
	# drop everything a hex dump may put between digits; join lines so a
	# dump cut across lines is still one string
	tr -d ' \t\r\n:.,_-' <"$file" | tr a-f A-F >"$norm"
	if grep -qFf "$TK_TMP/secrets.pat" "$norm"; then
		tk_log "$name: secret bytes found; the matching log lines:"
		grep -nFf <(windows "$(hexof plain.bin)" | sed 's/\(..\)/\1 /g; s/ $//') "$file" >&2 || true
		grep -n 'redacted\|<<\|>>' "$file" | head -40 >&2
		tk_fail "$name: a secret is in the log"
	fi
	tk_log "$name: no secret in $(wc -l <"$file") log lines"
}

# the secrets: a 245-byte plaintext, the ECDH secret, the PIN as VERIFY
# sends it (ASCII, padded with FF)
openssl rand 245 >plain.bin
openssl pkeyutl -encrypt -pubin -inkey pub9d.pem -in plain.bin -out enc.bin
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.key 2>/dev/null
openssl pkey -in peer.key -pubout -outform DER -out peer.der
openssl pkeyutl -derive -inkey peer.key -peerkey pub82.pem -out shared.bin
printf '%s\xff\xff' "$PIN" >pin.bin
{
	windows "$(hexof plain.bin)"
	windows "$(hexof shared.bin)"
	windows "$(hexof pin.bin)"
} >secrets.pat

# run_ops TAG: decrypt and derive through the module, log in TAG.log
run_ops() {
	local tag=$1
	tk_run "$tag: decrypt RSA-PKCS at trace" "${P11[@]}" --login --pin "$PIN" --decrypt \
		-m RSA-PKCS --id 03 -i enc.bin -o "dec-$tag.bin"
	printf '%s\n' "$TK_OUT" >"$tag.log"
	cmp plain.bin "dec-$tag.bin" || tk_fail "$tag: decryption differs"
	tk_run "$tag: derive ECDH1 at trace" "${P11[@]}" --login --pin "$PIN" --derive \
		-m ECDH1-DERIVE --id 05 -i peer.der -o "shared-$tag.bin"
	printf '%s\n' "$TK_OUT" >>"$tag.log"
	cmp shared.bin "shared-$tag.bin" || tk_fail "$tag: ECDH secrets differ"
	# the dumps are there (the test is not passing on an empty log)
	grep -q 'tokenkit: trace: card >> 00 87 ' "$tag.log" ||
		tk_fail "$tag: no GENERAL AUTHENTICATE in the trace log"
	check_log "$tag (module)" "$tag.log"
	# and the secret answers are there as their status words
	grep -Eq 'tokenkit: trace: card << <redacted [0-9]+ bytes> (90 00|61 [0-9A-F]{2})' \
		"$tag.log" || tk_fail "$tag: no redacted response in the trace log"
}

run_ops pcscd
check_log "tokenkit-vcard" "$TK_VPCD_DIR/card.0.log"
grep -q 'card << 00 87 ' "$TK_VPCD_DIR/card.0.log" ||
	tk_fail "tokenkit-vcard: no APDU in its trace log"

# the same card inside the client process (the library's own card session)
tk_card_stop 0
vpcd stop-pcscd
export TOKENKIT_READERS="vcard:state=$TK_TMP/card0.state"
unset PCSCLITE_CSOCK_NAME
run_ops vreader

tk_pass
