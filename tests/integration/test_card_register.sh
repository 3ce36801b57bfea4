#!/usr/bin/env bash
# Card tokens register themselves when first seen (tk_token_register): a
# virtual PIV card provisioned by yubico-piv-tool under a real pcscd, seen by
# `tokenkit tokens` and by a PKCS#11 application (pkcs11-tool through the
# module), leaves one record flagged as a card's in the user's registry,
# whose items are the card's certificates and keys as openssl and
# yubico-piv-tool describe them; seeing it again writes nothing; a key
# generated on the card updates the record; a removed record comes back at
# the next sighting; TOKENKIT_REGISTER_CARDS=0 writes nothing; a
# registration of that name that is not a card's is left alone.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
tk_require_cmd jq yubico-piv-tool pkcs11-tool
tk_env_start
tk_card_start 0
p11_provision 0 "9a:ECCP256 9d:RSA2048"
TK=$TK_BUILD/tokenkit
export XDG_STATE_HOME=$TK_TMP/state

show() { "$TK" registry show "$1" --json; }
der_len() { openssl x509 -in "$1" -outform DER | wc -c; }

tk_run "no record before the card is seen" "$TK" registry list --json
[[ $(jq '.registrations | length' <<<"$TK_OUT") == 0 ]] || tk_fail "the store was not empty"

# 1. the tool sees the card
tk_run "tokenkit tokens" "$TK" tokens
tk_run "records" "$TK" registry list --json
[[ $(jq '.registrations | length' <<<"$TK_OUT") == 1 ]] || tk_fail "expected one record"
NAME=$(jq -r '.registrations[0] | .provider + "/" + .instance' <<<"$TK_OUT")
[[ $NAME == piv/piv:* ]] || tk_fail "record $NAME is not the PIV card's"
[[ $(jq -r '.registrations[0].card' <<<"$TK_OUT") == true ]] || tk_fail "not flagged as a card's"
tk_run "the record" show "$NAME"
REC=$TK_OUT
GEN=$(jq -r .generation <<<"$REC")
# items: what yubico-piv-tool made and openssl says about it
check_key() { # slot type bits
	local it
	it=$(jq -c --arg h "$1" '.items[] | select(.kind == "key" and (.handle | ascii_downcase) == $h)' <<<"$REC")
	[[ -n $it ]] || tk_fail "no key item for slot $1"
	[[ $(jq -r .type <<<"$it") == "$2" && $(jq -r .bits <<<"$it") == "$3" ]] ||
		tk_fail "key $1: $it, expected $2 $3"
	# the public key as the certificate openssl made carries it
	[[ $(jq -r .der_bytes <<<"$it") == $(openssl pkey -pubin -in "$TK_TMP/pub$1.pem" -outform DER | wc -c) ]] ||
		tk_fail "key $1: public key of another size than the card's"
}
check_key 9a ec 256
check_key 9d rsa 2048
# (attestations, ids F9 and F9xx, are certificates of the token too: the
# device certificate and one per key generated on the card)
CERT_LENS=$(jq -r '[.items[] | select(.kind == "certificate" and ((.id | ascii_downcase | startswith("f9")) | not)) | .der_bytes] | sort | join(" ")' <<<"$REC")
[[ $(jq -r '[.items[] | select(.kind == "certificate") | .id | ascii_downcase] | map(select(startswith("f9"))) | sort | join(" ")' <<<"$REC") == "f9 f99a f99d" ]] ||
	tk_fail "expected the attestations of 9a and 9d and the device certificate: $REC"
WANT_LENS=$(printf '%s\n' "$(der_len "$TK_TMP/cert9a.pem")" "$(der_len "$TK_TMP/cert9d.pem")" | sort -n | paste -sd' ')
[[ $CERT_LENS == "$WANT_LENS" ]] || tk_fail "certificate items $CERT_LENS, the card's $WANT_LENS"
# a key and its certificate share one id
for h in 9a 9d; do
	id=$(jq -r --arg h "$h" '.items[] | select(.kind == "key" and (.handle | ascii_downcase) == $h) | .id' <<<"$REC")
	[[ $(jq --arg id "$id" '[.items[] | select(.kind == "certificate" and .id == $id)] | length' <<<"$REC") == 1 ]] ||
		tk_fail "key $h (id $id) has no certificate item of its id"
done

# 2. seen again: nothing written
tk_run "tokenkit objects" "$TK" objects
tk_run "the record again" show "$NAME"
[[ $(jq -r .generation <<<"$TK_OUT") == "$GEN" ]] || tk_fail "a card seen again was written again"

# 3. the card changes: a key in 9e, made by yubico-piv-tool
tk_run_piv "generate 9e" yubico-piv-tool -r "$TK_READER0" -a generate -s 9e -A ECCP384 \
	-o "$TK_TMP/gen9e.pem"
tk_run "certificate for 9e" openssl x509 -new -subj /CN=tokenkit-9e/ -days 30 \
	-force_pubkey "$TK_TMP/gen9e.pem" -CA "$TK_TMP/ca.pem" -CAkey "$TK_TMP/ca.key" -out "$TK_TMP/cert9e.pem"
tk_run_piv "import certificate 9e" yubico-piv-tool -r "$TK_READER0" -a import-certificate -s 9e \
	-i "$TK_TMP/cert9e.pem"
cp "$TK_TMP/gen9e.pem" "$TK_TMP/pub9e.pem"
# 4. ... and is seen by a PKCS#11 application, which records it once it has
# checked the card's objects (in the background, right after publishing the
# cached ones: a pkcs11-tool that ends at once may finalize before that), so
# a long-lived application (tk-registry-test p11: C_Initialize, then it
# waits for commands on a FIFO) is used
REGT=$TK_BUILD/tk-registry-test
tk_require_file "$REGT"
app_start() {
	rm -f "$TK_TMP/app.in"
	mkfifo "$TK_TMP/app.in"
	"$REGT" p11 "$TK_P11_MODULE" <"$TK_TMP/app.in" >"$TK_TMP/app.out" 2>&1 &
	APP=$!
	exec 9>"$TK_TMP/app.in"
}
app_stop() {
	echo quit >&9
	exec 9>&-
	wait "$APP" || tk_fail "the PKCS#11 application failed: $(cat "$TK_TMP/app.out")"
}
gen_at_least() { (($(show "$NAME" 2>/dev/null | jq -r '.generation // 0') >= $1)); }
app_start
tk_wait 30 "the module records the changed card" gen_at_least $((GEN + 1))
app_stop
tk_run "the record after the change" show "$NAME"
REC=$TK_OUT
check_key 9e ec 384
check_key 9a ec 256

# 5. tokenkit's own provisioning leaves the cache and the record current: the
# very first listing of the next program shows the new key's certificate
# (before, a warm open took the stale cache on trust until its background
# check), and the record has the key without any other program running
GEN=$(show "$NAME" | jq -r .generation)
tk_run "tokenkit piv generate 9c" "$TK" piv generate "$TK_READER0" 9c --algorithm eccp256 \
	-o "$TK_TMP/pub9c.pem" --default-mgmt-key
tk_run "tokenkit piv certificate 9c" "$TK" piv certificate "$TK_READER0" 9c --self-sign /CN=tk-9c \
	--insecure-pin "$PIN" --default-mgmt-key
tk_run "the record after tokenkit piv" show "$NAME"
REC=$TK_OUT
(($(jq -r .generation <<<"$REC") > GEN)) || tk_fail "tokenkit piv did not update the record"
check_key 9c ec 256
tk_run "the first listing after it" pkcs11-tool --module "$TK_P11_MODULE" -O --type cert
tk_expect "CN=tk-9c"

# 6. removed by the user: back at the next sighting
tk_run "remove" "$TK" registry remove "$NAME"
tk_run "gone" "$TK" registry list --json
[[ $(jq '.registrations | length' <<<"$TK_OUT") == 0 ]] || tk_fail "the record was not removed"
app_start
tk_wait 30 "the module records the card again" gen_at_least 1
app_stop
tk_run "back" show "$NAME"
[[ $(jq -r .card <<<"$TK_OUT") == true ]] || tk_fail "the removed record did not come back"

# 7. turned off: nothing written
export XDG_STATE_HOME=$TK_TMP/state-off
TOKENKIT_REGISTER_CARDS=0 tk_run "tokens, registering off" "$TK" tokens
export TOKENKIT_REGISTER_CARDS=0
app_start
tk_run "the module has the token" pkcs11-tool --module "$TK_P11_MODULE" -L
tk_expect "token label"
sleep 2 # (the application's module checks the card meanwhile)
app_stop
unset TOKENKIT_REGISTER_CARDS
tk_run "no record" "$TK" registry list --json
[[ $(jq '.registrations | length' <<<"$TK_OUT") == 0 ]] || tk_fail "TOKENKIT_REGISTER_CARDS=0 wrote a record"
tk_pass
