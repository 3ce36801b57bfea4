#!/usr/bin/env bash
# Cards that misreport extended length (issue 8 §5): the card's ATR
# announces extended Lc/Le but it parses short APDUs only and answers every
# extended APDU with 6700 or with 6A82 (tokenkit-vcard --option
# no-extended=...). The whole stack on it, cold and warm (the object cache
# remembers the card): `tokenkit objects` lists the certificates and says
# why it uses short APDUs; pkcs11-tool signs with ECDSA (9a) and RSA-2048
# (9c: a 256-byte input, chained over short APDUs), every signature checked
# with openssl. Under pcscd + vpcd, then in-process (TOKENKIT_READERS=vcard),
# then behind an in-process reader that carries short APDUs only.
#
# Before the fallback: the 6A82 card was a token with no objects and no
# warning; the 6700 card was no token at all.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
p11_require
tk_require_cmd pkcs11-tool
tk_env_start
tk_card_start 0
p11_provision 0 "9a:ECCP256 9c:RSA2048"
tk_card_stop 0
cd "$TK_TMP"
printf 'signed with short APDUs\n' >data.txt
P11=(pkcs11-tool --module "$TK_P11_MODULE")

# run CMD...: tk_run, and nothing was refused by a short-APDU reader
run() {
	tk_run "$@"
	tk_expect_not 'in extended form'
}

# check_stack READER WHAT: objects, then two signatures verified
check_stack() {
	local reader=$1 what=$2 n
	for n in cold warm; do
		run "$what, $n: tokenkit objects" "$TK_BUILD/tokenkit" objects "$reader"
		tk_expect 'CN=tokenkit-9a'
		tk_expect 'CN=tokenkit-9c'
		tk_expect_not 'token is empty'
		run "$what, $n: ECDSA" "${P11[@]}" --login --pin "$PIN" --sign -m ECDSA-SHA256 \
			--id 01 --signature-format openssl -i data.txt -o sig01.der
		run "$what, $n: verify ECDSA" openssl dgst -sha256 -verify pub9a.pem \
			-signature sig01.der data.txt
		run "$what, $n: RSA" "${P11[@]}" --login --pin "$PIN" --sign -m SHA256-RSA-PKCS \
			--id 02 -i data.txt -o sig02.bin
		run "$what, $n: verify RSA" openssl dgst -sha256 -verify pub9c.pem \
			-signature sig02.bin data.txt
		rm -f sig01.der sig02.bin
	done
}

for sw in 6700 6A82; do
	export XDG_CACHE_HOME="$TK_TMP/cache-$sw" # cold first, then warm
	tk_card_start 0 --option "no-extended=$sw"
	tk_run "pcscd, card answers extended APDUs with $sw: tokenkit objects" \
		"$TK_BUILD/tokenkit" objects "$TK_READER0"
	tk_expect 'CN=tokenkit-9a'
	tk_expect "answered an extended APDU with .*SW $sw"
	tk_expect 'using short APDUs'
	check_stack "$TK_READER0" "pcscd, $sw"
	tk_card_stop 0
done

# in-process: no pcscd at all
vpcd stop-pcscd
unset PCSCLITE_CSOCK_NAME
for sw in 6700 6a82; do
	export XDG_CACHE_HOME="$TK_TMP/cache-vr-$sw"
	export TOKENKIT_READERS="vcard:state=$TK_TMP/card0.state,no-extended=$sw"
	check_stack "tokenkit virtual reader 0" "in-process, $sw"
done
# a reader that carries short APDUs only (it refuses extended ones)
export XDG_CACHE_HOME="$TK_TMP/cache-short"
export TOKENKIT_READERS="vcard:state=$TK_TMP/card0.state,short-apdu"
check_stack "tokenkit virtual reader 0" "short-APDU reader"

tk_pass
