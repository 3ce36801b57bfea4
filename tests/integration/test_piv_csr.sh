#!/usr/bin/env bash
# tokenkit piv certificate --csr: PKCS#10 requests the card signs, checked by
# openssl (`openssl req -verify`, the request's key against the slot's key
# from another source):
#  - P-256 generated in 9a (request written with -o; no management key
#    needed: none is given and there is no terminal), RSA-2048 generated in
#    9e (request on stdout), P-384 imported into 9c (PIN policy always: the
#    PIN verified right before the signature; SHA-384);
#  - a wrong PIN, a bad subject and an empty slot are refused.
source "$(dirname "$0")/lib.sh"
tk_require_cmd openssl setsid
TK="$TK_BUILD/tokenkit"

tk_env_start
tk_card_start 0
T=$TK_TMP
R=$TK_READER0

# req_ok FILE SUBJECT-REGEX PUBKEY: openssl verifies the request's own
# signature, its subject, and that it is for PUBKEY
req_ok() {
	tk_run "openssl req -verify $1" openssl req -in "$1" -verify -noout -subject
	tk_expect "verify OK|Certificate request self-signature verify OK"
	tk_expect "$2"
	cmp <(openssl req -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER) \
		<(openssl pkey -pubin -in "$3" -outform DER) || tk_fail "$1 is for another key"
}

tk_run "generate P-256 in 9a" "$TK" piv generate "$R" 9a --algorithm eccp256 --default-mgmt-key \
	-o "$T/pub9a.pem"
tk_run_fails "a request with a wrong PIN" "$TK" piv certificate "$R" 9a --csr "/CN=x" --pin-fd 3 \
	3< <(echo 654321)
tk_expect "wrong PIN"
rc=0
timeout 60 setsid -w "$TK" piv certificate "$R" 9a --csr "/CN=tokenkit csr/O=Example/C=DE" \
	-o "$T/req9a.pem" --pin-fd 3 </dev/null >"$T/out" 2>&1 3< <(echo 123456) || rc=$?
[[ $rc -eq 0 ]] || { cat "$T/out" >&2; tk_fail "request for 9a without a management key: exit $rc"; }
req_ok "$T/req9a.pem" "CN ?= ?tokenkit csr" "$T/pub9a.pem"
openssl req -in "$T/req9a.pem" -noout -text | grep -q "ecdsa-with-SHA256" ||
	tk_fail "req9a: not ecdsa-with-SHA256"

tk_run "generate RSA-2048 in 9e" "$TK" piv generate "$R" 9e --algorithm rsa2048 --default-mgmt-key \
	-o "$T/pub9e.pem"
tk_run "a request for 9e on stdout" "$TK" piv certificate "$R" 9e --csr "CN=card auth" \
	--pin-fd 3 3< <(echo 123456)
sed -n '/BEGIN CERTIFICATE REQUEST/,/END CERTIFICATE REQUEST/p' <<<"$TK_OUT" >"$T/req9e.pem"
req_ok "$T/req9e.pem" "CN ?= ?card auth" "$T/pub9e.pem"
openssl req -in "$T/req9e.pem" -noout -text | grep -q "sha256WithRSAEncryption" ||
	tk_fail "req9e: not sha256WithRSAEncryption"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$T/p384.pem" 2>/dev/null
openssl pkey -in "$T/p384.pem" -pubout -out "$T/p384.pub"
tk_run "import P-384 into 9c" "$TK" piv import "$R" 9c "$T/p384.pem" --default-mgmt-key \
	--pin-policy always
tk_run "a request for 9c" "$TK" piv certificate "$R" 9c --csr "/CN=signer" -o "$T/req9c.pem" \
	--pin-fd 3 3< <(echo 123456)
req_ok "$T/req9c.pem" "CN ?= ?signer" "$T/p384.pub"
openssl req -in "$T/req9c.pem" -noout -text | grep -q "ecdsa-with-SHA384" ||
	tk_fail "req9c: not ecdsa-with-SHA384"

rc=0
"$TK" piv certificate "$R" 9a --csr "no equals sign" --pin-fd 3 >"$T/out" 2>&1 3< <(echo 123456) ||
	rc=$?
[[ $rc -eq 2 ]] || { cat "$T/out" >&2; tk_fail "bad subject: exit $rc, not 2"; }
tk_run_fails "a request for an empty slot" "$TK" piv certificate "$R" 9d --csr "/CN=x" --pin-fd 3 \
	3< <(echo 123456)
tk_expect "empty"
tk_pass
