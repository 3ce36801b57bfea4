#!/usr/bin/env bash
# tokenkit-pkcs11.so under OpenSSH: ssh-keygen -D prints the token's public
# keys, equal to the keys of the certificates on the card.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
p11_require
tk_require_cmd ssh-keygen
tk_env_start
tk_card_start 0
p11_provision
tk_run "ssh-keygen -D" ssh-keygen -D "$TK_P11_MODULE"
for s in 9a 9c 9e; do
	key=$(ssh-keygen -i -m PKCS8 -f "$TK_TMP/pub$s.pem" | awk '{print $1" "$2}')
	[[ -n "$key" ]] || tk_fail "ssh-keygen -i $s"
	grep -qF "$key" <<<"$TK_OUT" || { printf '%s\n' "$TK_OUT" >&2; tk_fail "key of $s not listed"; }
done
tk_expect '^ecdsa-sha2-nistp256 '
tk_expect '^ecdsa-sha2-nistp384 '
tk_expect '^ssh-rsa '
tk_pass
