#!/usr/bin/env bash
# GnuPG against the virtual OpenPGP card through a private pcscd, and the
# same keys through our PKCS#11 module (the OpenPGP driver plugin).
#
# For each of three cards (RSA-2048; Curve 25519: Ed25519 + X25519; NIST
# P-256), GnuPG's scdaemon (disable-ccid, pcsc-driver libpcsclite) with a
# private GNUPGHOME and a test pinentry:
#   gpg --card-status, key generation on the card (gpg --card-edit: admin,
#   [key-attr,] generate, scripted through --command-fd), gpg --detach-sign
#   + gpg --verify, gpg --encrypt to the card's key + gpg --decrypt.
# Then, scdaemon stopped, the module (tokenkit-pkcs11.so) over the same
# pcscd publishes the same keys:
#   pkcs11-tool lists them; the public keys equal GnuPG's (--with-key-data);
#   pkcs11-tool signs (RSA SHA256-RSA-PKCS, ECDSA-SHA256, EDDSA) and
#   openssl verifies; pkcs11-tool decrypts (RSA-PKCS) what openssl
#   encrypted; ssh-keygen -D lists the authentication key exactly as
#   gpg --export-ssh-key does (RSA and ECDSA; Ed25519 through the module is
#   compared by its public key).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_gnupg.sh"
tk_require_cmd pkcs11-tool openssl ssh-keygen
tk_env_start
MOD=$TK_BUILD/tokenkit-pkcs11.so
[[ -f $TK_BUILD/plugins/driver-openpgp.so ]] || tk_fail "driver-openpgp.so not built"
export TK_PINENTRY_LOG=$TK_TMP/pinentry.log
export XDG_CACHE_HOME=$TK_TMP/cache

trap 'stop_gnupg; tk_cleanup' EXIT

# card-edit with answers on --command-fd; pinentry-test gives the PINs;
# --expert: GnuPG 2.2 offers the NIST curves for card keys to experts only
card_edit() { # ANSWERS...
	local rc=0
	printf '%s\n' "$@" >"$TK_TMP/answers"
	TK_OUT=$(timeout 300 gpg --no-tty --expert --command-fd 0 --status-fd 1 --card-edit \
		<"$TK_TMP/answers" 2>&1) || rc=$?
	if [[ $rc -ne 0 ]]; then
		printf '%s\n' "$TK_OUT" >&2
		tail -40 "$GNUPGHOME/scdaemon.log" >&2 || true
		tk_fail "gpg --card-edit (exit $rc)"
	fi
}

# the fingerprint of the key of usage U (s, e, a) of the key created last
fpr_of() { # USAGE
	gpg --with-colons --list-keys "$UID_EMAIL" |
		awk -F: -v u="$1" '($1=="pub"||$1=="sub") && index($12,u) {want=1; next}
			want && $1=="fpr" {print $10; exit}'
}

# the public key GnuPG has for the key of usage U, hex: the modulus of an
# RSA key (its first MPI), the point of an EC key (its second: the first
# is the curve's OID)
gpg_pkd() { # USAGE
	gpg --with-colons --with-key-data --list-keys "$UID_EMAIL" |
		awk -F: -v u="$1" '($1=="pub"||$1=="sub") {want=index($12,u)>0; n=($4=="1")?"0":"1"; next}
			want && $1=="pkd" && $2==n {print toupper($4); exit}'
}

gnupg_round() { # NAME ATTRIBUTES ATTR_ANSWERS...
	local name=$1 attrs=$2
	shift 2
	UID_EMAIL=$name@tokenkit.test
	new_gnupghome "$name"
	: >"$TK_PINENTRY_LOG"
	tk_run "$name: gpg --card-status" gpg --card-status
	tk_expect 'Application type \.: OpenPGP'
	tk_expect 'Version \.+: 3\.4'
	tk_expect 'Signature key \.+: \[none\]'
	card_edit admin "$@" generate n 0 "Card $name" "$UID_EMAIL" "" quit
	tk_expect 'KEY_CREATED B [0-9A-F]{40}'
	# the admin PIN for generation, the user PIN for the self-signatures
	grep -q '^admin$' "$TK_PINENTRY_LOG" || tk_fail "$name: no admin PIN asked"
	grep -q '^user$' "$TK_PINENTRY_LOG" || tk_fail "$name: no user PIN asked"
	tk_run "$name: gpg --card-status" gpg --card-status
	tk_expect "Key attributes \.+: $attrs"
	local sigfpr
	sigfpr=$(fpr_of s)
	[[ -n $sigfpr ]] || tk_fail "$name: no signing key"
	tk_expect "Signature key \.+: $(sed -E 's/(.{4})/\1 /g; s/ $//; s/(.{24}) /\1  /' <<<"$sigfpr")"
	echo "tokenkit $name message" >"$TK_TMP/$name.txt"
	tk_run "$name: gpg --detach-sign" gpg --batch --yes -u "$UID_EMAIL" --detach-sign \
		-o "$TK_TMP/$name.sig" "$TK_TMP/$name.txt"
	tk_run "$name: gpg --verify" gpg --verify "$TK_TMP/$name.sig" "$TK_TMP/$name.txt"
	tk_expect "Good signature from \"Card $name"
	# a signature over other data does not verify
	echo "other" >"$TK_TMP/$name.other"
	tk_run_fails "$name: gpg --verify (other data)" gpg --verify "$TK_TMP/$name.sig" "$TK_TMP/$name.other"
	tk_run "$name: gpg --encrypt" gpg --batch --yes --trust-model always -r "$UID_EMAIL" \
		-e -o "$TK_TMP/$name.gpg" "$TK_TMP/$name.txt"
	tk_run "$name: gpg --decrypt" gpg --batch --yes -o "$TK_TMP/$name.dec" -d "$TK_TMP/$name.gpg"
	cmp -s "$TK_TMP/$name.txt" "$TK_TMP/$name.dec" || tk_fail "$name: decrypted text differs"
	tk_run "$name: gpg --card-status" gpg --card-status
	tk_expect 'Signature counter : [1-9]'
	# the reader goes back to pcscd's other clients; the agent is not
	# needed any more (the rest reads the public keyring)
	gnupg_kill
}

p11() { tk_run "$1" pkcs11-tool --module "$MOD" "${@:2}"; }

# the modulus (RSA) or point (EC) of a public key file, hex upper case
pub_hex() { # PEM
	if openssl pkey -pubin -in "$1" -noout -text 2>/dev/null | grep -q 'Modulus'; then
		openssl rsa -pubin -in "$1" -noout -modulus | sed 's/^Modulus=//'
	else
		openssl pkey -pubin -in "$1" -noout -text |
			awk '/^pub:/ {on=1; next} /^[A-Za-z]/ {on=0} on' | tr -d ' :\n' | tr a-f A-F
	fi
}

# The public key of CKA_ID id as PEM. EC keys through GnuTLS's p11tool:
# pkcs11-tool 0.23 reads freed memory when it writes an EC public key out
# (its own bug, seen under ASan with the sanitizer build's module).
p11_pubkey() { # ID OUT.pem KIND
	if [[ ${3:-} == ec ]]; then
		tk_run "read public key $1 (p11tool)" env GNUTLS_PIN=123456 p11tool --provider "$MOD" \
			--export-pubkey --outfile "$2" "pkcs11:id=%$1;type=public"
		grep -q 'BEGIN PUBLIC KEY' "$2" || tk_fail "p11tool exported no public key for $1"
	else
		p11 "read public key $1" --read-object --type pubkey --id "$1" -o "$2"
	fi
}

# CKA_EC_POINT of the public key with CKA_ID id as pkcs11-tool -O shows it
# (hex, upper case; empty when there is none); extra arguments go to -O.
p11_ec_point() { # NAME ID [pkcs11-tool options]
	p11 "$1: objects" -O "${@:3}"
	awk -v id="$2" '/^Public Key Object/ {pt=""} /EC_POINT:/ {pt=$2}
		/ID:/ && $2==id && pt!="" {print toupper(pt); exit}' <<<"$TK_OUT"
}

check_same_key() { # NAME ID USAGE [ec]
	local mine gnupg
	if [[ ${4:-} == ec ]] && ! tk_gnutls_ok; then
		# no p11tool under the sanitizer build (lib.sh, tk_gnutls_ok): the
		# point as pkcs11-tool shows CKA_EC_POINT, a DER OCTET STRING
		# (04 LEN || point, LEN < 128 for these curves)
		mine=$(p11_ec_point "$1" "$2" --type pubkey)
		[[ ${mine:0:4} == 0441 && ${#mine} -eq 134 ]] ||
			tk_fail "$1: no P-256 point for key $2: $TK_OUT"
		mine=${mine:4}
		# the key file the signature checks below verify with: the
		# SubjectPublicKeyInfo of a P-256 point
		echo "3059301306072a8648ce3d020106082a8648ce3d030107034200$mine" | xxd -r -p |
			openssl pkey -pubin -inform DER -out "$TK_TMP/$1-$2.pem" ||
			tk_fail "$1: key $2: no public key file"
	else
		p11_pubkey "$2" "$TK_TMP/$1-$2.pem" "${4:-}"
		mine=$(pub_hex "$TK_TMP/$1-$2.pem")
	fi
	gnupg=$(gpg_pkd "$3")
	# GnuPG keeps EC points with their format byte (04 for NIST, 40 for 25519)
	[[ $gnupg == "$mine" || $gnupg == "04$mine" || $gnupg == "40$mine" || "04${gnupg#04}" == "$mine" ]] ||
		tk_fail "$1: key $2 through PKCS#11 is not GnuPG's ($3): $mine vs $gnupg"
	tk_log "$1: key $2 is GnuPG's $3 key"
}

# The X25519 key: pkcs11-tool 0.23 cannot write CKK_EC_MONTGOMERY keys out,
# but shows CKA_EC_POINT (a DER OCTET STRING, 04 20 || key).
check_same_point() { # NAME ID USAGE
	local mine gnupg
	mine=$(p11_ec_point "$1" "$2")
	gnupg=$(gpg_pkd "$3")
	[[ -n $mine && "0420${gnupg#40}" == "$mine" ]] ||
		tk_fail "$1: key $2 through PKCS#11 is not GnuPG's ($3): $mine vs $gnupg"
	tk_log "$1: key $2 is GnuPG's $3 key"
}

p11_sign_verify() { # NAME ID MECH [openssl-digest]
	local f=$TK_TMP/$1.txt sig=$TK_TMP/$1-$2.p11sig
	p11 "$1: sign with key $2 ($3)" --login --pin 123456 --sign --id "$2" -m "$3" \
		-i "$f" -o "$sig"
	if [[ $3 == EDDSA ]]; then
		tk_run "$1: openssl verifies the EdDSA signature" openssl pkeyutl -verify -pubin \
			-inkey "$TK_TMP/$1-$2.pem" -rawin -in "$f" -sigfile "$sig"
	elif [[ $3 == ECDSA-SHA256 ]]; then
		# PKCS#11 gives r||s; openssl wants DER
		p11 "$1: sign with key $2 ($3, DER)" --login --pin 123456 --sign --id "$2" -m "$3" \
			--signature-format openssl -i "$f" -o "$sig.der"
		tk_run "$1: openssl verifies the ECDSA signature" openssl dgst -sha256 \
			-verify "$TK_TMP/$1-$2.pem" -signature "$sig.der" "$f"
	else
		tk_run "$1: openssl verifies the RSA signature" openssl dgst -sha256 \
			-verify "$TK_TMP/$1-$2.pem" -signature "$sig" "$f"
	fi
	tk_expect 'Verified OK|Signature Verified Successfully'
}

ssh_same_key() { # NAME
	local want
	want=$(gpg --export-ssh-key "$UID_EMAIL" | awk '{print $1, $2}')
	[[ -n $want ]] || tk_fail "$1: gpg --export-ssh-key gave nothing"
	tk_run "$1: ssh-keygen -D" ssh-keygen -D "$MOD"
	grep -qF "$want" <<<"$TK_OUT" || {
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "$1: the authentication key ($want) is not among ssh-keygen -D's keys"
	}
	tk_log "$1: ssh-keygen -D lists the authentication key as gpg --export-ssh-key does"
}

p11_round() { # NAME
	p11 "$1: token" -L
	tk_expect 'token label +: OpenPGP card [0-9A-F]{8}'
	tk_expect 'token model +: OpenPGP 3\.4'
	p11 "$1: objects" -O
	tk_expect 'label: +OpenPGP signature public key'
	tk_expect 'label: +OpenPGP decryption public key'
	tk_expect 'label: +OpenPGP authentication public key'
}

# ---- 1: RSA-2048 (the card's default attributes) --------------------------
tk_card_start 0 --applet openpgp
gnupg_round rsa 'rsa2048 rsa2048 rsa2048'
p11_round rsa
check_same_key rsa 01 s
check_same_key rsa 02 e
check_same_key rsa 03 a
p11_sign_verify rsa 01 SHA256-RSA-PKCS
p11_sign_verify rsa 03 SHA256-RSA-PKCS
openssl pkeyutl -encrypt -pubin -inkey "$TK_TMP/rsa-02.pem" -in "$TK_TMP/rsa.txt" \
	-out "$TK_TMP/rsa.enc" || tk_fail "openssl encrypt"
p11 "rsa: decrypt with key 02" --login --pin 123456 --decrypt --id 02 -m RSA-PKCS \
	-i "$TK_TMP/rsa.enc" -o "$TK_TMP/rsa.p11dec"
cmp -s "$TK_TMP/rsa.txt" "$TK_TMP/rsa.p11dec" || tk_fail "rsa: PKCS#11 decryption differs"
tk_run_fails "rsa: PSS is refused (no raw RSA on the card)" pkcs11-tool --module "$MOD" \
	--login --pin 123456 --sign --id 01 -m SHA256-RSA-PKCS-PSS -i "$TK_TMP/rsa.txt" \
	-o "$TK_TMP/rsa.pss"
ssh_same_key rsa
tk_card_stop 0

# ---- 2: Curve 25519 (Ed25519 signing and authentication, X25519) ----------
tk_card_start 0 --applet openpgp --state "$TK_TMP/card25519.state"
gnupg_round c25519 'ed25519 cv25519 ed25519' key-attr 2 1 2 1 2 1
p11_round c25519
check_same_key c25519 01 s
check_same_point c25519 02 e
check_same_key c25519 03 a
p11_sign_verify c25519 01 EDDSA
p11_sign_verify c25519 03 EDDSA
tk_card_stop 0

# ---- 3: NIST P-256 (ECDSA, ECDH) -------------------------------------------
tk_card_start 0 --applet openpgp --state "$TK_TMP/cardp256.state"
gnupg_round p256 'nistp256 nistp256 nistp256' key-attr 2 3 2 3 2 3
p11_round p256
check_same_key p256 01 s ec
check_same_key p256 02 e ec
check_same_key p256 03 a ec
p11_sign_verify p256 01 ECDSA-SHA256
p11_sign_verify p256 03 ECDSA-SHA256
ssh_same_key p256
tk_card_stop 0
tk_pass
