#!/usr/bin/env bash
# cmake --install: the library (exporting only tk_* symbols marked for
# export), the public headers, a working pkg-config file, the tools and the
# PKCS#11 module. A program built against the installed tree with pkg-config
# links and runs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tk_require_cmd cc pkg-config nm
TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
trap 'rm -rf "$TK_TMP"' EXIT
ROOT=$TK_TMP/root

tk_run "install" env DESTDIR="$ROOT" cmake --install "$TK_BUILD" --prefix /opt/tokenkit
for f in bin/tokenkit bin/tokenkit-vcard lib/pkcs11/tokenkit-pkcs11.so include/tokenkit/tokenkit.h; do
	[[ -e "$ROOT/opt/tokenkit/$f" ]] || tk_fail "$f not installed"
done
lib=$(find "$ROOT/opt/tokenkit" -name 'libtokenkit.so.0' | head -1)
[[ -n "$lib" ]] || tk_fail "libtokenkit.so.0 not installed"
pc=$(find "$ROOT/opt/tokenkit" -name tokenkit.pc | head -1)
[[ -n "$pc" ]] || tk_fail "tokenkit.pc not installed"

# exports: tk_* only, and the ones the headers promise
tk_run "exported symbols" nm -D --defined-only "$lib"
others=$(awk '$2 ~ /^[TDBRV]$/ {print $3}' <<<"$TK_OUT" | grep -v '^tk_' || true)
[[ -z "$others" ]] || tk_fail "exported besides tk_*: $others"
for f in tk_strerror tk_slotmgr_new tk_token_open tk_card_transmit tk_atr_parse tk_ber_get tk_wipe; do
	grep -qw "$f" <<<"$TK_OUT" || tk_fail "$f not exported"
done

# a consumer, built with pkg-config against the installed tree
cat >"$TK_TMP/use.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <tokenkit/tokenkit.h>

int
main(void)
{
	static const unsigned char atr[] = { 0x3B, 0x02, 0x14, 0x50 };
	tk_atr_t a;

	if (strcmp(tk_strerror(TK_ERR_TIMEOUT), "timed out") != 0)
		return 1;
	if (tk_atr_parse(atr, sizeof(atr), &a) != TK_OK)
		return 2;
	puts("consumer ok");
	return 0;
}
C
# the .pc file is relocatable (prefix from its own place)
export PKG_CONFIG_PATH=$(dirname "$pc")
tk_run "pkg-config" pkg-config --cflags --libs tokenkit
read -r -a flags <<<"$TK_OUT"
cc=(cc)
# the sanitizer build's library needs the sanitizer runtimes in the program
[[ -n "$TK_ASAN_RUNTIME" ]] && cc=(clang-14 -fsanitize=address,undefined -shared-libasan)
tk_run "build a consumer" "${cc[@]}" -std=c11 -Wall -Werror -o "$TK_TMP/use" "$TK_TMP/use.c" "${flags[@]}"
tk_run "run it" env LD_LIBRARY_PATH="$(dirname "$lib")" "$TK_TMP/use"
tk_expect "consumer ok"
tk_pass
