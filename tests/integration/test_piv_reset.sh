#!/usr/bin/env bash
# tokenkit piv reset (Yubico RESET, INS FB) on the virtual PIV card through
# pcscd, every result checked with yubico-piv-tool:
#  - without --yes and without a terminal: refused (exit 2), nothing changed;
#    on a terminal (script(1)'s pty) an answer other than "yes" changes
#    nothing;
#  - with PIN and PUK not blocked the card refuses and tokenkit says why;
#    PIN, PUK and management key still work afterwards;
#  - PIN and PUK blocked by yubico-piv-tool, then `reset --yes`: default PIN
#    123456, PUK 12345678 and management key are back, the keys and
#    certificates are gone;
#  - `reset --yes --block` blocks PIN and PUK itself (changed ones tokenkit
#    does not know) and resets.
source "$(dirname "$0")/lib.sh"
tk_require_cmd yubico-piv-tool openssl setsid script
TK="$TK_BUILD/tokenkit"

tk_env_start
tk_card_start 0
T=$TK_TMP
R=$TK_READER0
PIV=(yubico-piv-tool -r "$R")
DEF=010203040506070801020304050607080102030405060708
KEY=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978

slot_empty() {
	tk_run "metadata of slot $1" "$TK" apdu "$R" 00A4040005A000000308 "00F700$1"
	tk_expect "SW=6A82"
}

# personalise: PIN, PUK, management key changed, a key and certificate in 9a
personalise() {
	tk_run "generate 9a" "$TK" piv generate "$R" 9a --algorithm eccp256 --default-mgmt-key
	tk_run "self-sign 9a" "$TK" piv certificate "$R" 9a --self-sign /CN=before --default-mgmt-key \
		--pin-fd 3 3< <(echo 123456)
	tk_run "change the PIN" "$TK" piv pin change "$R" --pin-fd 3 3< <(printf '123456\n24681357\n')
	tk_run "change the PUK" "$TK" piv puk change "$R" --puk-fd 3 3< <(printf '12345678\n87654321\n')
	tk_run "change the management key" "$TK" piv set-mgmt-key "$R" --new-algorithm 3des \
		--default-mgmt-key --new-mgmt-key-fd 3 3< <(echo $KEY)
}

# factory: the defaults work (yubico-piv-tool), 9a is empty
factory() {
	tk_run_piv "default PIN (yubico-piv-tool)" "${PIV[@]}" -a verify-pin -P 123456
	tk_run_piv "default PUK (yubico-piv-tool)" "${PIV[@]}" -a change-puk -P 12345678 -N 12345678
	tk_run_piv "default management key (yubico-piv-tool)" "${PIV[@]}" -k"$DEF" -a set-chuid
	tk_run_fails "no certificate in 9a (yubico-piv-tool)" "${PIV[@]}" -a read-certificate -s 9a
	slot_empty 9A
}

personalise
rc=0
timeout 60 setsid -w "$TK" piv reset "$R" </dev/null >"$T/out" 2>&1 || rc=$?
TK_OUT=$(cat "$T/out")
[[ $rc -eq 2 ]] || { cat "$T/out" >&2; tk_fail "reset without --yes, no terminal: exit $rc, not 2"; }
tk_expect "give --yes"
# on a terminal: "no" is no
rc=0
printf 'no\n' | timeout 60 script -qec "$TK piv reset '$R' --block" /dev/null >"$T/out" 2>&1 || rc=$?
TK_OUT=$(tr -d '\r' <"$T/out")
[[ $rc -eq 1 ]] || { cat "$T/out" >&2; tk_fail "reset answered 'no': exit $rc, not 1"; }
tk_expect "Reset the PIV application"
tk_expect "not confirmed"
tk_run_piv "the PIN is unchanged (yubico-piv-tool)" "${PIV[@]}" -a verify-pin -P 24681357

tk_run_fails "reset with PIN and PUK not blocked" "$TK" piv reset "$R" --yes
tk_expect "both blocked"
tk_run_piv "the PIN still works" "${PIV[@]}" -a verify-pin -P 24681357
tk_run_piv "the management key still works" "${PIV[@]}" -k"$KEY" -a set-chuid

# blocked by another tool, reset by tokenkit
for i in 1 2 3; do
	"${PIV[@]}" -a verify-pin -P 000000 >/dev/null 2>&1 || true
	"${PIV[@]}" -a change-puk -P 00000000 -N 11111111 >/dev/null 2>&1 || true
done
tk_run_fails "the PIN is blocked (yubico-piv-tool)" "${PIV[@]}" -a verify-pin -P 24681357
tk_run "reset --yes" "$TK" piv reset "$R" --yes
factory

# --block: tokenkit blocks them itself
personalise
tk_run "reset --yes --block" "$TK" piv reset "$R" --yes --block
factory
tk_pass
