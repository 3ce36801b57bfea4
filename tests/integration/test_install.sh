#!/usr/bin/env bash
# cmake --install: the library (exporting only tk_* symbols marked for
# export), the public headers, a working pkg-config file, the tools, the
# PKCS#11 module, the manual pages and the bash completion. A program built
# against the installed tree with pkg-config links and runs.
# What is installed carries no card emulator (issue 9): neither the library
# nor the module holds a symbol (exported or local), a string or the default
# management key of the virtual card; the virtual reader plugin is installed
# only on request (--component vcard), and then works with the installed
# CLI. The CLI uses the library's public API only (it links libtokenkit.so
# and carries no core code of its own); only public headers are installed;
# only the USB CCID reader plugin links libusb.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tk_require_cmd cc pkg-config nm objdump objcopy strings python3
TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
trap 'rm -rf "$TK_TMP"' EXIT
ROOT=$TK_TMP/root

tk_run "install" env DESTDIR="$ROOT" cmake --install "$TK_BUILD" --prefix /opt/tokenkit
for f in bin/tokenkit bin/tokenkit-vcard lib/pkcs11/tokenkit-pkcs11.so include/tokenkit/tokenkit.h \
	share/man/man1/tokenkit.1 share/man/man8/tokenkit-pkcs11.8 share/bash-completion/completions/tokenkit; do
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

P=$ROOT/opt/tokenkit
mod=$P/lib/pkcs11/tokenkit-pkcs11.so
cli=$P/bin/tokenkit

# ---- no virtual card in the product ----------------------------------------
# the virtual card's names: tk_vc_*, tk_vcard_*, tk_fault_*, its reader
# (vreader.c: vr_*, tk_reader_vcard_ops) and card internals (vc_*)
vc_re='^(tk_vc_|tk_vcard_|tk_fault_|tk_reader_vcard|vr_|vc_)|vreader|vcard'
for f in "$lib" "$mod"; do
	name=${f#"$P"/}
	# the local symbol table is there (not stripped), so its silence counts
	tk_run "$name: all symbols" nm "$f"
	grep -qw log_init <<<"$TK_OUT" || tk_fail "$name: no local symbols to check (stripped?)"
	found=$(awk '{print $NF}' <<<"$TK_OUT" | grep -E "$vc_re" || true)
	[[ -z "$found" ]] || tk_fail "$name: virtual card symbols (nm): $(tr '\n' ' ' <<<"$found")"
	tk_run "$name: objdump -t" objdump -t "$f"
	found=$(awk '{print $NF}' <<<"$TK_OUT" | grep -E "$vc_re" || true)
	[[ -z "$found" ]] || tk_fail "$name: virtual card symbols (objdump -t): $(tr '\n' ' ' <<<"$found")"
	tk_run "$name: strings" strings -a "$f"
	tk_expect_not 'tokenkit virtual reader|vreader:|tokenkit virtual card'
	# the virtual card's default 3DES management key, as bytes in .rodata
	objcopy -O binary --only-section=.rodata "$f" "$TK_TMP/rodata" || tk_fail "$name: no .rodata"
	python3 -c 'import sys; sys.exit(bytes.fromhex("0102030405060708" * 3) in open(sys.argv[1], "rb").read())' \
		"$TK_TMP/rodata" || tk_fail "$name: the virtual card's default management key is in .rodata"
	tk_run "$name: needed libraries" objdump -p "$f"
	tk_expect_not 'NEEDED +libusb'
done
# the one plugin of a plain install: USB CCID readers, the only code that
# links libusb, exporting its entry point alone
plugins=$(find "$ROOT" -name 'reader-*.so')
[[ $plugins == "$P/lib/tokenkit/plugins/reader-ccid.so" ]] ||
	tk_fail "a plain install installed other plugins than reader-ccid.so: $plugins"
tk_run "reader-ccid.so: needed libraries" objdump -p "$plugins"
tk_expect 'NEEDED +libusb-1\.0'
tk_run "reader-ccid.so: exports" nm -D --defined-only "$plugins"
[[ $(awk '$2 ~ /^[TDBRVW]$/ {print $3}' <<<"$TK_OUT") == tokenkit_plugin_v1 ]] ||
	tk_fail "reader-ccid.so exports more than its entry point: $TK_OUT"

# ---- the CLI: public API only, through the shared library ------------------
tk_run "CLI: needed libraries" objdump -p "$cli"
tk_expect 'NEEDED +libtokenkit\.so\.0'
tk_run "CLI: defined symbols" nm --defined-only "$cli"
found=$(awk '$2 ~ /^[TtDdBbRr]$/ && $3 ~ /^tk_/ {print $3}' <<<"$TK_OUT")
[[ -z "$found" ]] || tk_fail "the CLI carries core code of its own: $(head -5 <<<"$found" | tr '\n' ' ')"
# only the public headers
diff <(cd "$TK_SOURCE/include/tokenkit" && ls) <(cd "$P/include/tokenkit" && ls) >&2 ||
	tk_fail "installed headers differ from include/tokenkit"
[[ -z $(find "$P" -name reader.h -o -name card_priv.h -o -name slotmgr_priv.h -o -name x509.h) ]] ||
	tk_fail "a private header was installed"

# the installed CLI runs (relocatable: its library is found from its place)
run_cli() { # expected-exit args...: output in $TK_OUT
	local want=$1 rc=0
	shift
	TK_OUT=$("$cli" "$@" 2>&1) || rc=$?
	if [[ $rc -ne $want ]]; then
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "installed tokenkit $*: exit $rc, want $want"
	fi
}
run_cli 0 help
# without the plugin the virtual reader fails loudly, saying what to set
TOKENKIT_READERS=vcard TOKENKIT_PLUGIN_PATH= run_cli 2 readers
tk_expect 'set TOKENKIT_PLUGIN_PATH'
# the plugin, installed on request, on its own
VROOT=$TK_TMP/vroot
tk_run "install the vcard component" env DESTDIR="$VROOT" cmake --install "$TK_BUILD" \
	--prefix /opt/tokenkit --component vcard
files=$(cd "$VROOT" && find . -type f)
[[ $files == ./opt/tokenkit/lib/tokenkit/plugins/reader-vcard.so ]] ||
	tk_fail "the vcard component installed: $files"
TOKENKIT_READERS="vcard:empty;bwt=1000" TOKENKIT_PLUGIN_PATH=$VROOT/opt/tokenkit/lib/tokenkit/plugins \
	run_cli 0 readers
tk_expect 'empty +.*tokenkit virtual reader 0'
tk_expect 'valid +T=1 +vcard +tokenkit virtual reader 1'

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
