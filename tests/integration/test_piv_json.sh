#!/usr/bin/env bash
# tokenkit piv --json and the RSA generation progress, on the virtual PIV
# card through pcscd. Each command's standard output is exactly one JSON
# object (jq parses it; no PEM beside it) with the documented field names,
# and the values are checked against other sources: the public key against
# the -o file and the key file, the serial against yubico-piv-tool, the
# policies and origin against what was asked, the request against openssl,
# the tries left against the card's counter as yubico-piv-tool reports it.
# The progress line appears on a terminal (script(1)'s pty) and not with
# --json nor when standard error is not a terminal.
source "$(dirname "$0")/lib.sh"
tk_require_cmd yubico-piv-tool openssl jq script
TK="$TK_BUILD/tokenkit"

tk_env_start
tk_card_start 0
T=$TK_TMP
R=$TK_READER0
PIV=(yubico-piv-tool -r "$R")

# json CMD...: run, stdout alone into $T/json (must be one object), stderr aside
json() {
	local rc=0
	tk_log "json: $*"
	"$@" >"$T/json" 2>"$T/err" || rc=$?
	[[ $rc -eq 0 ]] || { cat "$T/err" "$T/json" >&2; tk_fail "$* (exit $rc)"; }
	jq -e 'type == "object"' "$T/json" >/dev/null || { cat "$T/json" >&2; tk_fail "not one JSON object"; }
	[[ $(jq -s length "$T/json") == 1 ]] || tk_fail "more than one JSON value on stdout"
}
field() { jq -r ".$1" "$T/json"; }
expect_field() { # name value
	local got
	got=$(field "$1")
	[[ $got == "$2" ]] || { cat "$T/json" >&2; tk_fail "field $1: '$got', not '$2'"; }
}

tk_run_piv "serial (yubico-piv-tool)" "${PIV[@]}" -a status
serial=$(sed -n 's/^Serial Number:[[:space:]]*//p' <<<"$TK_OUT" | tr -d '[:space:]')
[[ $serial =~ ^[0-9]+$ ]] || tk_fail "yubico-piv-tool printed no serial: $TK_OUT"

json "$TK" piv generate "$R" 9a --algorithm eccp256 --pin-policy never --touch-policy never \
	--default-mgmt-key --json -o "$T/pub9a.pem"
expect_field command "piv generate"
expect_field reader "$R"
expect_field serial "$serial"
expect_field slot 9A
expect_field algorithm "ECC P-256"
expect_field pin_policy never
expect_field touch_policy never
expect_field origin generated
[[ $(field public_key) == "$(cat "$T/pub9a.pem")" ]] || tk_fail "public_key is not the -o file's key"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.pem" 2>/dev/null
json "$TK" piv import "$R" 9d "$T/rsa.pem" --pin-policy once --touch-policy cached \
	--default-mgmt-key --json
expect_field command "piv import"
expect_field slot 9D
expect_field algorithm RSA-2048
expect_field pin_policy once
expect_field touch_policy cached
expect_field origin imported
expect_field certificate_written false
cmp <(field public_key | openssl pkey -pubin -outform DER) \
	<(openssl pkey -in "$T/rsa.pem" -pubout -outform DER) || tk_fail "public_key is not the file's"

json "$TK" piv certificate "$R" 9a --csr /CN=json --pin-fd 3 --json 3< <(echo 123456)
expect_field slot 9A
field request >"$T/req.pem"
tk_run "openssl req -verify" openssl req -in "$T/req.pem" -verify -noout

json "$TK" piv certificate "$R" 9a --self-sign /CN=json --default-mgmt-key --pin-fd 3 --json \
	3< <(echo 123456)
expect_field object 5FC105
field certificate >"$T/cert.pem"
tk_run_piv "read the certificate (yubico-piv-tool)" "${PIV[@]}" -a read-certificate -s 9a \
	-o "$T/back.pem"
cmp <(openssl x509 -in "$T/cert.pem" -outform DER) <(openssl x509 -in "$T/back.pem" -outform DER) ||
	tk_fail "certificate in the JSON is not the slot's"

# one wrong PIN through yubico-piv-tool, then a change: tries back to the maximum
tk_run_fails "a wrong PIN (yubico-piv-tool)" "${PIV[@]}" -a verify-pin -P 999999
tk_expect "2 tries"
json "$TK" piv pin change "$R" --pin-fd 3 --json 3< <(printf '123456\n11223344\n')
expect_field command "piv pin change"
expect_field reference PIN
expect_field retries_left 3
json "$TK" piv puk change "$R" --puk-fd 3 --json 3< <(printf '12345678\n12345678\n')
expect_field reference PUK
expect_field retries_left 3
json "$TK" piv set-mgmt-key "$R" --new-algorithm 3des --default-mgmt-key --new-mgmt-key-fd 3 \
	--json 3< <(echo 010203040506070801020304050607080102030405060708)
expect_field algorithm 3des
json "$TK" piv reset "$R" --yes --block --json
expect_field reset true
expect_field pin_retries_left 3
expect_field puk_retries_left 3

# progress: on a terminal only, and not with --json
script -qec "$TK piv generate '$R' 9e --algorithm rsa2048 --default-mgmt-key" /dev/null \
	</dev/null >"$T/tty" 2>&1 || { cat "$T/tty" >&2; tk_fail "generate on a pty"; }
grep -q "generating an RSA key on the card" "$T/tty" || tk_fail "no progress on a terminal"
script -qec "$TK piv generate '$R' 9e --algorithm rsa2048 --default-mgmt-key --json" /dev/null \
	</dev/null >"$T/tty" 2>&1 || { cat "$T/tty" >&2; tk_fail "generate --json on a pty"; }
grep -q "generating" "$T/tty" && tk_fail "progress shown with --json"
tk_run "generate RSA, stderr not a terminal" "$TK" piv generate "$R" 9e --algorithm rsa2048 \
	--default-mgmt-key
tk_expect_not "generating"
tk_pass
