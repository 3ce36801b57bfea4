#!/usr/bin/env bash
# The in-process virtual reader (TOKENKIT_READERS=vcard:...) under clients
# nobody here wrote: a card provisioned by yubico-piv-tool under a real pcscd
# is taken out of pcscd and served inside the client process instead. OpenSC's
# pkcs11-tool lists the reader and token and signs with ECDSA (verified with
# openssl against the certificate yubico-piv-tool imported); GnuTLS p11tool
# lists the token; `tokenkit readers` shows the card and the empty reader.
# No pcscd is needed by the clients: it is stopped before they run.
# The virtual reader is a plugin (reader-vcard.so, TOKENKIT_PLUGIN_PATH from
# lib.sh): without it the tool and the module fail loudly, saying what to set,
# instead of falling back to PC/SC.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
p11_require
tk_require_cmd pkcs11-tool p11tool
tk_env_start
tk_card_start 0
p11_provision 0 "9a:ECCP256"
tk_card_stop 0
vpcd stop-pcscd
export TOKENKIT_READERS="vcard:state=$TK_TMP/card0.state;empty"
unset PCSCLITE_CSOCK_NAME
cd "$TK_TMP"
printf 'signed inside the client process\n' >data.txt

rc=0
TK_OUT=$(TOKENKIT_PLUGIN_PATH= "$TK_BUILD/tokenkit" readers 2>&1) || rc=$?
[[ $rc -eq 2 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "tokenkit without the plugin: exit $rc, want 2"; }
tk_expect 'set TOKENKIT_PLUGIN_PATH'
tk_run_fails "pkcs11-tool -L without the plugin" env TOKENKIT_PLUGIN_PATH= pkcs11-tool \
	--module "$TK_BUILD/tokenkit-pkcs11.so" -L
tk_expect 'C_Initialize failed.*CKR_GENERAL_ERROR'
tk_expect 'set TOKENKIT_PLUGIN_PATH'

tk_run "tokenkit readers" "$TK_BUILD/tokenkit" readers
tk_expect 'valid +T=1 +vcard +tokenkit virtual reader 0'
tk_expect 'empty +.*tokenkit virtual reader 1'

P11=(pkcs11-tool --module "$TK_BUILD/tokenkit-pkcs11.so")
tk_run "pkcs11-tool -L" "${P11[@]}" -L
tk_expect 'tokenkit virtual reader 0'
tk_expect 'tokenkit virtual reader 1'
tk_expect 'token label *: PIV'
tk_run "pkcs11-tool -O" "${P11[@]}" -O
tk_expect 'CN=tokenkit-9a'
tk_run "pkcs11-tool sign" "${P11[@]}" --login --pin "$PIN" --sign -m ECDSA-SHA256 --id 01 \
	--signature-format openssl -i data.txt -o sig.der
tk_run "openssl verify" openssl dgst -sha256 -verify pub9a.pem -signature sig.der data.txt

if tk_gnutls_ok; then
	tk_run "p11tool --list-tokens" p11tool --provider "$TK_BUILD/tokenkit-pkcs11.so" --list-tokens
	tk_expect 'Label: PIV'
	tk_expect 'Manufacturer:'
else
	tk_log "p11tool: not under the sanitizer build (lib.sh, tk_gnutls_ok)"
fi

tk_pass
