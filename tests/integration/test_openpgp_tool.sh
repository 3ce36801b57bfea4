#!/usr/bin/env bash
# tokenkit openpgp: provisioning the virtual OpenPGP card through pcscd, each
# result checked by another program than tokenkit:
#  - without an admin PIN source (and no terminal) generate exits 7, a wrong
#    admin PIN is refused, and nothing is written (gpg --card-status: no key);
#  - keys tokenkit generates (two rounds: P-256 / Curve25519 / RSA-2048 and
#    Ed25519 / P-384 / P-384): gpg --card-status shows the fingerprints and
#    key attributes tokenkit printed, and GnuPG computes the same v4
#    fingerprints itself: it makes an OpenPGP key from the card's keys
#    (--full-gen-key / addkey "existing key from card") with its clock set to
#    the creation time the card holds (--faked-system-time);
#  - `tokenkit openpgp status` agrees with gpg --card-status (fingerprints,
#    PIN retry counters, signature counter, cardholder data);
#  - our PKCS#11 module signs with the generated keys (ECDSA, RSA) and
#    openssl verifies with the public key tokenkit wrote; the module's RSA
#    public key is tokenkit's;
#  - imported keys (RSA-2048 in the CRT-with-modulus import format, Ed25519,
#    X25519) sign through the module and verify against the key file, and
#    GnuPG computes the fingerprints tokenkit wrote;
#  - an RSA-4096 key tokenkit generates is the module's key 02;
#  - PIN change / admin-change / unblock (admin PIN and resetting code) are
#    what pkcs11-tool and OpenSC's openpgp-tool then accept;
#  - set name/url/login/lang show in gpg --card-status;
#  - after GnuPG's kdf-setup tokenkit hashes the PINs as the KDF-DO says:
#    the PIN it sets is the one GnuPG's scdaemon then verifies;
#  - reset --yes brings the card to its factory state (gpg: no keys, default
#    PINs work); without --yes and without a terminal nothing happens;
#  - progress shows on a terminal (script(1)) and not with --json.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_gnupg.sh"
tk_require_cmd pkcs11-tool openssl openpgp-tool script setsid
tk_env_start
trap 'stop_gnupg; tk_cleanup' EXIT
MOD=$TK_BUILD/tokenkit-pkcs11.so
[[ -f $TK_BUILD/plugins/driver-openpgp.so ]] || tk_fail "driver-openpgp.so not built"
export TK_PINENTRY_LOG=$TK_TMP/pinentry.log
export XDG_CACHE_HOME=$TK_TMP/cache
TK="$TK_BUILD/tokenkit"
T=$TK_TMP
R=$TK_READER0
echo "tokenkit openpgp message" >"$T/msg"

# the reader goes back from scdaemon to everyone else
scd_off() { gnupg_kill; }

gpg_status() { # description
	tk_run "$1: gpg --card-status" gpg --card-status
	GPG_STATUS=$TK_OUT
	tk_run "$1: gpg --card-status (colons)" gpg --with-colons --card-status
	GPG_COLONS=$TK_OUT
	scd_off
}

# the fingerprint of key N (1 sig, 2 dec, 3 aut) and its creation time as
# GnuPG reads them from the card
gpg_card_fpr() { awk -F: -v n="$1" '$1=="fpr" {print $(n+1)}' <<<"$GPG_COLONS"; }
gpg_card_time() { awk -F: -v n="$1" '$1=="fprtime" {print $(n+1)}' <<<"$GPG_COLONS"; }

# gpg --card-status prints a fingerprint in groups of four, two spaces in
# the middle
gpg_fmt() { sed -E 's/(.{4})/\1 /g; s/ $//; s/(.{24}) /\1  /' <<<"$1"; }

# fingerprint tokenkit printed: "... KEY key: ALG, fingerprint HEX"
tk_fpr() { sed -nE 's/.*fingerprint ([0-9A-F]{40}).*/\1/p' <<<"$1"; }

# One round of gpg_from_card (below) in GnuPG home NAME.
gpg_from_card_once() { # NAME FPR1 FPR2 FPR3; 2: GnuPG chose other creation times
	local name=$1 fpr
	new_gnupghome "$name"
	gpg_status "$name"
	local t1 t2 t3 times
	t1=$(gpg_card_time 1)
	t2=$(gpg_card_time 2)
	t3=$(gpg_card_time 3)
	[[ $(gpg_card_fpr 1) == "$2" && $(gpg_card_fpr 2) == "$3" && $(gpg_card_fpr 3) == "$4" ]] ||
		tk_fail "$name: gpg reads other fingerprints from the card than tokenkit wrote: $GPG_COLONS"
	# scdaemon learns the card again (the keys' grips) before GnuPG
	# offers "existing key from card"
	tk_run "$name: gpg --card-status" gpg --card-status
	printf '%s\n' 14 1 Q 0 "Card $name" "$name@tokenkit.test" "" >"$T/answers"
	tk_run "$name: gpg makes a key of card key 1" timeout 120 gpg --faked-system-time "$t1!" \
		--expert --no-tty --command-fd 0 --status-fd 1 --full-gen-key <"$T/answers"
	tk_expect "KEY_CREATED P $2"
	printf '%s\n' addkey 14 2 Q 0 save >"$T/answers"
	tk_run "$name: gpg adds card key 2" timeout 120 gpg --faked-system-time "$t2!" --expert \
		--no-tty --command-fd 0 --status-fd 1 --edit-key "$2" <"$T/answers"
	local add2=$TK_OUT
	printf '%s\n' addkey 14 3 Q 0 save >"$T/answers"
	tk_run "$name: gpg adds card key 3" timeout 120 gpg --faked-system-time "$t3!" --expert \
		--no-tty --command-fd 0 --status-fd 1 --edit-key "$2" <"$T/answers"
	local add3=$TK_OUT
	scd_off
	tk_run "$name: gpg lists the key" gpg --with-colons --list-keys "$2"
	# the creation times GnuPG gave the primary key and the two subkeys
	times=$(awk -F: '$1 == "pub" || $1 == "sub" {printf "%s%s", sep, $6; sep = " "}' <<<"$TK_OUT")
	if [[ $times != "$t1 $t2 $t3" ]]; then
		printf '%s\n' "$TK_OUT" "--- addkey 2:" "$add2" "--- addkey 3:" "$add3" >&2
		tk_log "$name: GnuPG made its keys at $times, not at the card's times $t1 $t2 $t3"
		gnupg_kill
		return 2
	fi
	for fpr in "$2" "$3" "$4"; do
		grep -q "^fpr:::::::::$fpr:" <<<"$TK_OUT" || {
			printf '%s\n' "$TK_OUT" >&2
			tk_fail "$name: GnuPG computes another fingerprint than $fpr for the card key"
		}
	done
	tk_log "$name: GnuPG computes the fingerprints tokenkit wrote"
	gnupg_kill
}

# GnuPG computes the card keys' fingerprints itself: a primary key from
# card key 1 and subkeys from 2 and 3 ("existing key from card"), each with
# the clock at the creation time the card holds. GnuPG's own v4 fingerprint
# code over the public keys it reads from the card. A fingerprint is only
# comparable when GnuPG made the key at the card's time: GnuPG 2.2 once in a
# while gives the last subkey one second more than its frozen clock (seen
# twice in whole-suite loops, under ASan load, card times 2 s apart; the
# cause is not found in its keygen.c / sign.c). Then the round is made
# again in a new GnuPG home (at most three rounds); a fingerprint that
# differs at the same creation time fails at once.
gpg_from_card() { # NAME FPR1 FPR2 FPR3
	local round rc
	for round in 1 2 3; do
		rc=0
		gpg_from_card_once "$1-$round" "$2" "$3" "$4" || rc=$?
		((rc == 0)) && return 0
		((rc == 2)) || tk_fail "$1: round $round failed (exit $rc)"
	done
	tk_fail "$1: GnuPG made its keys at other times than the card's, three rounds in a row"
}

# GnuPG moves a subkey's creation time past one its key already has, and
# a binding signature one second past its key's: card keys made in one
# second, or in two seconds in a row (seen in a loaded ASan run: card times
# 29 and 30, GnuPG made the second subkey at 31), give GnuPG other times
# than the card's. So each card key is made at least 2 s after the last one
# was written (key_done).
KEY_DONE=0
next_second() {
	while (($(date +%s) < KEY_DONE + 2)); do sleep 0.1; done
}
key_done() { KEY_DONE=$(date +%s); }

gen() { # KEY ALG [more options]: $FPR, public key in $T/KEY.pem
	local key=$1 alg=$2
	shift 2
	next_second
	tk_run "generate $key $alg" "$TK" openpgp generate "$R" "$key" --algorithm "$alg" \
		--admin-pin-fd 3 -o "$T/$key.pem" "$@" 3< <(echo 12345678)
	key_done
	if [[ $* == *--json* ]]; then
		FPR=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])' \
			<<<"$TK_OUT") || tk_fail "generate $key --json: $TK_OUT"
	else
		FPR=$(tk_fpr "$TK_OUT")
	fi
	[[ -n $FPR ]] || tk_fail "generate $key: no fingerprint printed"
	grep -q 'BEGIN PUBLIC KEY' "$T/$key.pem" || tk_fail "generate $key: no public key"
}

p11() { tk_run "$1" pkcs11-tool --module "$MOD" "${@:2}"; }

p11_sign_verify() { # ID MECH PUB.pem [PIN]
	local sig=$T/sig-$1 pin=${4:-123456}
	case $2 in
	ECDSA-SHA256)
		p11 "sign with key $1 ($2)" --login --pin "$pin" --sign --id "$1" -m "$2" \
			--signature-format openssl -i "$T/msg" -o "$sig"
		tk_run "openssl verifies key $1's signature" openssl dgst -sha256 -verify "$3" \
			-signature "$sig" "$T/msg"
		;;
	EDDSA)
		p11 "sign with key $1 ($2)" --login --pin "$pin" --sign --id "$1" -m "$2" \
			-i "$T/msg" -o "$sig"
		tk_run "openssl verifies key $1's signature" openssl pkeyutl -verify -pubin \
			-inkey "$3" -rawin -in "$T/msg" -sigfile "$sig"
		;;
	*)
		p11 "sign with key $1 ($2)" --login --pin "$pin" --sign --id "$1" -m "$2" \
			-i "$T/msg" -o "$sig"
		tk_run "openssl verifies key $1's signature" openssl dgst -sha256 -verify "$3" \
			-signature "$sig" "$T/msg"
		;;
	esac
	tk_expect 'Verified OK|Signature Verified Successfully'
}

tk_card_start 0 --applet openpgp

# ---- refusals: nothing written ---------------------------------------------------
rc=0
timeout 60 setsid -w "$TK" openpgp generate "$R" sig --algorithm nistp256 </dev/null \
	>"$T/out" 2>&1 || rc=$?
TK_OUT=$(cat "$T/out")
[[ $rc -eq 7 ]] || { cat "$T/out" >&2; tk_fail "no admin PIN source: exit $rc, not 7"; }
tk_expect "admin PIN is needed"
tk_run_fails "generate with a wrong admin PIN" "$TK" openpgp generate "$R" sig \
	--algorithm nistp256 --admin-pin-fd 3 3< <(echo 87654321)
tk_expect "wrong admin PIN \(2 tries left\)"
tk_expect "nothing was changed"
tk_run_fails "an algorithm the key cannot have" "$TK" openpgp generate "$R" dec \
	--algorithm ed25519 --admin-pin-fd 3 3< <(echo 12345678)
tk_expect "not an algorithm for the dec key"
new_gnupghome refusals
gpg_status refusals
grep -Eq 'Signature key \.+: \[none\]' <<<"$GPG_STATUS" || tk_fail "a key after refusals"
grep -Eq 'Key attributes \.+: rsa2048 rsa2048 rsa2048' <<<"$GPG_STATUS" ||
	tk_fail "attributes changed by a refused command"
# the wrong try counted, and the right PIN (in generate below) resets it
grep -Eq 'PIN retry counter : 3 0 2' <<<"$GPG_STATUS" || tk_fail "the wrong admin PIN not counted"
gnupg_kill

# ---- round 1: P-256, Curve25519, RSA-2048 --------------------------------------------
gen sig nistp256
F1=$FPR
gen dec cv25519
F2=$FPR
gen aut rsa2048
F3=$FPR
gpg_from_card gen1 "$F1" "$F2" "$F3"
grep -Eq 'Key attributes \.+: nistp256 cv25519 rsa2048' <<<"$GPG_STATUS" ||
	tk_fail "gen1: gpg --card-status shows other key attributes"
grep -q "Signature key ....: $(gpg_fmt "$F1")" <<<"$GPG_STATUS" || tk_fail "gen1: signature key"

# the module uses the keys tokenkit generated (the self-signatures GnuPG
# made above count on the signature counter too)
p11_sign_verify 01 ECDSA-SHA256 "$T/sig.pem"
p11_sign_verify 03 SHA256-RSA-PKCS "$T/aut.pem"
p11 "read the RSA public key" --read-object --type pubkey --id 03 -o "$T/aut-p11.der"
openssl pkey -pubin -in "$T/aut.pem" -outform DER -out "$T/aut.der" || tk_fail "openssl pkey"
cmp -s "$T/aut.der" "$T/aut-p11.der" || tk_fail "the module's key 03 is not the one tokenkit generated"

# ---- status against gpg --card-status ------------------------------------------------
tk_run "set name" "$TK" openpgp set name "$R" "Doe<<Jane" --admin-pin-fd 3 3< <(echo 12345678)
tk_run "set url" "$TK" openpgp set url "$R" https://keys.example/jane.asc --admin-pin-fd 3 \
	3< <(echo 12345678)
tk_run "set login" "$TK" openpgp set login "$R" jdoe --admin-pin-fd 3 3< <(echo 12345678)
tk_run "set lang" "$TK" openpgp set lang "$R" deen --admin-pin-fd 3 3< <(echo 12345678)
tk_run_fails "set lang (odd length)" "$TK" openpgp set lang "$R" den --admin-pin-fd 3 \
	3< <(echo 12345678)
tk_run "status" "$TK" openpgp status "$R"
STATUS=$TK_OUT
tk_run "status --json" "$TK" openpgp status "$R" --json
JSON=$TK_OUT
new_gnupghome status
gpg_status status
gnupg_kill
for want in 'Name of cardholder: Jane Doe' 'URL of public key : https://keys.example/jane.asc' \
	'Login data .......: jdoe' 'Language prefs ...: deen'; do
	grep -qF "$want" <<<"$GPG_STATUS" || { printf '%s\n' "$GPG_STATUS" >&2; tk_fail "gpg: no '$want'"; }
done
read -r -a retries < <(sed -nE 's/^PIN retry counter : ([0-9]+) ([0-9]+) ([0-9]+)$/\1 \2 \3/p' \
	<<<"$GPG_STATUS")
counter=$(sed -nE 's/^Signature counter : ([0-9]+)$/\1/p' <<<"$GPG_STATUS")
[[ ${#retries[@]} -eq 3 && -n $counter && $counter -ge 3 ]] ||
	tk_fail "gpg --card-status: no retries / counter: $GPG_STATUS"
TK_OUT=$STATUS
tk_expect "PIN retries: PW1 ${retries[0]}, RC ${retries[1]}, PW3 ${retries[2]}"
tk_expect "signature counter: $counter\$"
tk_expect "name: Doe<<Jane"
tk_expect "url: https://keys.example/jane.asc"
tk_expect "language: deen"
tk_expect "KDF: none"
for k in 1 2 3; do
	fpr=$(gpg_card_fpr $k)
	t=$(date -u -d "@$(gpg_card_time $k)" '+%Y-%m-%d %H:%M:%S UTC')
	name=$(sed -n "${k}p" <<<$'sig\ndec\naut')
	tk_expect "^$name key: [a-z0-9]+, fingerprint $fpr, created $t, generated on the card, fingerprint matches the key"
done
python3 - "$JSON" "$counter" "${retries[@]}" "$F1" "$F2" "$F3" <<'EOF' || tk_fail "status --json"
import json, sys
j = json.loads(sys.argv[1])
c, r1, rc, r3, f1, f2, f3 = sys.argv[2:]
assert j["signature_counter"] == int(c), j
assert j["retries"] == {"pw1": int(r1), "rc": int(rc), "pw3": int(r3)}, j
assert [j["keys"][k]["fingerprint"] for k in ("sig", "dec", "aut")] == [f1, f2, f3], j
assert all(j["keys"][k]["fingerprint_matches"] for k in ("sig", "dec", "aut")), j
assert j["name"] == "Doe<<Jane" and j["kdf"] is False, j
EOF

# ---- round 2: Ed25519, P-384 ----------------------------------------------------------
gen sig ed25519
F1=$FPR
gen dec nistp384 --json
F2=$FPR
gen aut nistp384
F3=$FPR
gpg_from_card gen2 "$F1" "$F2" "$F3"
grep -Eq 'Key attributes \.+: ed25519 nistp384 nistp384' <<<"$GPG_STATUS" ||
	tk_fail "gen2: gpg --card-status shows other key attributes"
p11_sign_verify 01 EDDSA "$T/sig.pem"

# ---- import ----------------------------------------------------------------------------
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.key" 2>/dev/null
openssl genpkey -algorithm X25519 -out "$T/x25519.key"
openssl genpkey -algorithm ED25519 -out "$T/ed25519.key"
for f in rsa x25519 ed25519; do
	openssl pkey -in "$T/$f.key" -pubout -out "$T/$f.pub" || tk_fail "openssl pkey $f"
done
# the signature key's attributes: RSA-2048, import format 3 (CRT with modulus)
tk_run "RSA attributes with import format 3" "$TK" apdu "$R" 00A4040006D27600012401 \
	00200083083132333435363738 00DA00C106010800002003
tk_expect "SW=9000"
next_second
tk_run "import RSA as sig" "$TK" openpgp import "$R" sig "$T/rsa.key" --admin-pin-fd 3 \
	3< <(echo 12345678)
key_done
F1=$(tk_fpr "$TK_OUT")
next_second
tk_run "import X25519 as dec" "$TK" openpgp import "$R" dec "$T/x25519.key" --admin-pin-fd 3 \
	3< <(echo 12345678)
key_done
F2=$(tk_fpr "$TK_OUT")
tk_run_fails "import X25519 as aut" "$TK" openpgp import "$R" aut "$T/x25519.key" \
	--admin-pin-fd 3 3< <(echo 12345678)
next_second
tk_run "import Ed25519 as aut" "$TK" openpgp import "$R" aut "$T/ed25519.key" --admin-pin-fd 3 \
	3< <(echo 12345678)
key_done
F3=$(tk_fpr "$TK_OUT")
p11_sign_verify 01 SHA256-RSA-PKCS "$T/rsa.pub"
p11_sign_verify 03 EDDSA "$T/ed25519.pub"
gpg_from_card import "$F1" "$F2" "$F3"
grep -Eq 'Key attributes \.+: rsa2048 cv25519 ed25519' <<<"$GPG_STATUS" ||
	tk_fail "import: gpg --card-status shows other key attributes"
# GnuPG's public keys are the files' (X25519: the card derived it from the
# scalar tokenkit sent, byte order and all)
tk_run "gpg: the key's public keys" gpg --with-colons --with-key-data --list-keys "$F1"
x25519=$(openssl pkey -pubin -in "$T/x25519.pub" -outform DER | tail -c 32 | od -An -tx1 |
	tr -d ' \n' | tr a-f A-F)
tk_expect "^pkd:1:263:40$x25519:"

# ---- RSA-4096: a public key longer than one short response ------------------------------
gen dec rsa4096
p11 "read the RSA-4096 public key" --read-object --type pubkey --id 02 -o "$T/dec-p11.der"
openssl pkey -pubin -in "$T/dec.pem" -outform DER -out "$T/dec.der" || tk_fail "openssl pkey"
cmp -s "$T/dec.der" "$T/dec-p11.der" || tk_fail "the module's key 02 is not tokenkit's RSA-4096 key"
tk_run "status: RSA-4096" "$TK" openpgp status "$R"
tk_expect "^dec key: rsa4096, fingerprint $FPR, .*, generated on the card, fingerprint matches the key"

# ---- PINs -------------------------------------------------------------------------------
tk_run "pin change" "$TK" openpgp pin change "$R" --pin-fd 3 3< <(printf '123456\n24681357\n')
p11_sign_verify 03 EDDSA "$T/ed25519.pub" 24681357
tk_run_fails "the old PIN no longer signs" pkcs11-tool --module "$MOD" --login --pin 123456 \
	--sign --id 03 -m EDDSA -i "$T/msg" -o "$T/x"
tk_run "pin admin-change" "$TK" openpgp pin admin-change "$R" --admin-pin-fd 3 \
	3< <(printf '12345678\n87654321\n')
tk_run "openpgp-tool verifies the new admin PIN" openpgp-tool --verify CHV3 --pin 87654321
tk_run_fails "openpgp-tool: the old admin PIN" openpgp-tool --verify CHV3 --pin 12345678
# block PW1 with three wrong PINs, then unblock with the admin PIN
for i in 1 2 3; do
	openpgp-tool --verify CHV2 --pin 99999999 >/dev/null 2>&1 || true
done
tk_run_fails "PW1 is blocked" openpgp-tool --verify CHV2 --pin 24681357
tk_run "pin unblock (admin PIN)" "$TK" openpgp pin unblock "$R" --admin-pin-fd 3 \
	--new-pin-fd 4 3< <(echo 87654321) 4< <(echo 11223344)
tk_run "openpgp-tool verifies the unblocked PIN" openpgp-tool --verify CHV2 --pin 11223344
tk_run "pin reset-code" "$TK" openpgp pin reset-code "$R" --admin-pin-fd 3 \
	3< <(printf '87654321\nreset-me-1\n')
for i in 1 2 3; do
	openpgp-tool --verify CHV2 --pin 99999999 >/dev/null 2>&1 || true
done
tk_run "pin unblock --reset-code" "$TK" openpgp pin unblock "$R" --reset-code-fd 3 \
	3< <(printf 'reset-me-1\n55667788\n')
tk_run "openpgp-tool verifies the PIN set with the resetting code" openpgp-tool --verify CHV2 \
	--pin 55667788

# ---- KDF-DO: GnuPG's kdf-setup, then PINs hashed by tokenkit ----------------------------
new_gnupghome kdf
printf '%s\n' admin kdf-setup quit >"$T/answers"
tk_run "gpg kdf-setup" env TK_PINENTRY_ADMIN=87654321 timeout 120 gpg --no-tty --command-fd 0 \
	--status-fd 1 --card-edit <"$T/answers"
scd_off
tk_run "status with a KDF-DO" "$TK" openpgp status "$R"
tk_expect "^KDF: iterated and salted S2K, SHA-256, [0-9]+ bytes"
# kdf-setup sets the PINs back to 123456 / 12345678 (as their hashes)
tk_run "pin change (hashed)" "$TK" openpgp pin change "$R" --pin-fd 3 3< <(printf '123456\n31415926\n')
tk_run "set name (admin PIN hashed)" "$TK" openpgp set name "$R" "Roe<<Rick" --admin-pin-fd 3 \
	3< <(echo 12345678)
gpg_status kdf
grep -Eq 'KDF setting \.+: on' <<<"$GPG_STATUS" || tk_fail "gpg: KDF not on"
grep -qF 'Name of cardholder: Rick Roe' <<<"$GPG_STATUS" || tk_fail "gpg: name not set under KDF"
# GnuPG hashes the PIN it is given the same way: the new one verifies
aid=$(sed -nE 's/^Reader .*//; s/^Application ID \.+: ([0-9A-F]+)$/\1/p' <<<"$GPG_STATUS")
[[ -n $aid ]] || tk_fail "gpg: no application id"
: >"$TK_PINENTRY_LOG"
tk_run "GnuPG verifies the PIN tokenkit set" env TK_PINENTRY_PIN=31415926 gpg-connect-agent \
	"scd checkpin $aid" /bye
tk_expect_not "ERR"
grep -q '^user$' "$TK_PINENTRY_LOG" || tk_fail "GnuPG did not ask for the PIN"
# a new scdaemon: nothing verified yet
gnupg_kill
tk_run "GnuPG: the old PIN is wrong" env TK_PINENTRY_PIN=123456 gpg-connect-agent \
	"scd checkpin $aid" /bye
tk_expect "ERR"
gnupg_kill

# ---- progress -----------------------------------------------------------------------------
# COMMAND on a pseudo-terminal (script(1)); run directly, not through
# tk_host: the sanitizer build's runtime must not be preloaded into tokenkit
on_tty() { # description command-line
	local rc=0
	tk_log "$1: $2"
	TK_OUT=$(SHELL=/bin/bash timeout 120 script -qec "$2" /dev/null 2>&1) || rc=$?
	[[ $rc -eq 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "$1 (exit $rc)"; }
}
on_tty "generate on a terminal" "$TK openpgp generate '$R' aut --algorithm nistp256 \
--admin-pin-fd 3 -o $T/p.pem 3<<<12345678"
tk_expect "aut key, nistp256, on the card\.\.\. done"
on_tty "generate on a terminal, --json" "$TK openpgp generate '$R' aut --algorithm nistp256 \
--json --admin-pin-fd 3 3<<<12345678"
tk_expect_not "on the card\.\.\."
tk_expect '"fingerprint":"[0-9A-F]{40}"'
tk_run "generate, not a terminal" "$TK" openpgp generate "$R" aut --algorithm nistp256 \
	--admin-pin-fd 3 -o "$T/p.pem" 3< <(echo 12345678)
tk_expect_not "on the card\.\.\."

# ---- reset ----------------------------------------------------------------------------------
rc=0
timeout 60 setsid -w "$TK" openpgp reset "$R" </dev/null >"$T/out" 2>&1 || rc=$?
TK_OUT=$(cat "$T/out")
[[ $rc -eq 2 ]] || { cat "$T/out" >&2; tk_fail "reset without --yes: exit $rc, not 2"; }
tk_expect "nothing was changed"
tk_run "status after the refused reset" "$TK" openpgp status "$R"
tk_expect "^sig key: rsa2048, fingerprint $F1"
tk_run "reset --yes" "$TK" openpgp reset "$R" --yes
new_gnupghome reset
gpg_status reset
gnupg_kill
for want in 'Signature key \.+: \[none\]' 'Encryption key\.+: \[none\]' \
	'Authentication key: \[none\]' 'Name of cardholder: \[not set\]' 'PIN retry counter : 3 0 3' \
	'Key attributes \.+: rsa2048 rsa2048 rsa2048' 'KDF setting \.+: off'; do
	grep -Eq "$want" <<<"$GPG_STATUS" || { printf '%s\n' "$GPG_STATUS" >&2; tk_fail "reset: gpg: no /$want/"; }
done
tk_run "the default PIN after reset" openpgp-tool --verify CHV2 --pin 123456
tk_run "the default admin PIN after reset" openpgp-tool --verify CHV3 --pin 12345678
tk_pass
