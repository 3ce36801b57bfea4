#!/usr/bin/env bash
# An out-of-tree driver: a copy of drivers/openpgp's sources, built against
# an installed tree (cmake --install) with nothing but its public headers
# and OpenSSL, as a driver author outside this repository would build it,
# is loaded by the installed tools as a driver plugin and drives a virtual
# OpenPGP card:
#   - the installed headers suffice (no core header, no tokenkit library:
#     the plugin calls tokenkit only through the host's services);
#   - the plugin exports tokenkit_plugin_v1 alone and needs only libcrypto
#     and libc, with no tk_* symbol left undefined;
#   - the installed CLI finds it through TOKENKIT_PLUGIN_PATH, says where it
#     loaded it from, and shows the card as an OpenPGP token with the key
#     generated on it through `tokenkit apdu`;
#   - a plain install puts the tree's own driver-openpgp.so in
#     <libdir>/tokenkit/plugins.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tk_require_cmd cc pkg-config nm objdump
TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
trap 'rm -rf "$TK_TMP"' EXIT
ROOT=$TK_TMP/root
P=$ROOT/opt/tokenkit

tk_run "install" env DESTDIR="$ROOT" cmake --install "$TK_BUILD" --prefix /opt/tokenkit
[[ -f $P/lib/tokenkit/plugins/driver-openpgp.so ]] || tk_fail "driver-openpgp.so not installed"
[[ -f $P/include/tokenkit/driver.h && -f $P/include/tokenkit/plugin.h ]] ||
	tk_fail "the driver headers are not installed"
tk_run "install the vcard component" env DESTDIR="$ROOT" cmake --install "$TK_BUILD" \
	--prefix /opt/tokenkit --component vcard

# the driver author's tree: the sources alone, far from this repository
SRC=$TK_TMP/author/openpgp
mkdir -p "$SRC" "$TK_TMP/out"
cp "$TK_SOURCE"/drivers/openpgp/*.c "$TK_SOURCE"/drivers/openpgp/*.h \
	"$TK_SOURCE"/drivers/openpgp/plugin.map "$SRC/"
export PKG_CONFIG_PATH=$P/lib/pkgconfig
tk_run "pkg-config --cflags" pkg-config --cflags tokenkit
read -r -a cflags <<<"$TK_OUT"
[[ ${#cflags[@]} -eq 1 && $(realpath "${cflags[0]#-I}") == "$(realpath "$P/include")" ]] ||
	tk_fail "pkg-config --cflags is not -I$P/include alone: ${cflags[*]}"
tk_run "build the driver" cc -std=c11 -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Werror -fPIC \
	-fvisibility=hidden -shared "${cflags[@]}" -o "$TK_TMP/out/driver-openpgp.so" \
	"$SRC"/*.c -lcrypto -Wl,--version-script="$SRC/plugin.map" -Wl,--no-undefined
chmod go-w "$TK_TMP/out" "$TK_TMP/out/driver-openpgp.so"

tk_run "exports" nm -D --defined-only "$TK_TMP/out/driver-openpgp.so"
exports=$(awk '$2 ~ /^[TDBRV]$/ {print $3}' <<<"$TK_OUT")
[[ $exports == tokenkit_plugin_v1 ]] || tk_fail "the plugin exports: $exports"
tk_run "undefined symbols" nm -D --undefined-only "$TK_TMP/out/driver-openpgp.so"
tk_expect_not ' tk_'
tk_run "needed libraries" objdump -p "$TK_TMP/out/driver-openpgp.so"
needed=$(awk '$1 == "NEEDED" {print $2}' <<<"$TK_OUT" | sort | tr '\n' ' ')
[[ $needed == "libc.so.6 libcrypto.so.3 " ]] || tk_fail "the plugin needs: $needed"

# the installed CLI (run as it is: its own sanitizer runtime, if any, and
# its library found from its place), the author's driver, a virtual
# OpenPGP card
cli=$P/bin/tokenkit
run_cli() { # description args...: output in $TK_OUT
	local what=$1 rc=0
	shift
	tk_log "$what: tokenkit $*"
	TK_OUT=$("$cli" "$@" 2>&1) || rc=$?
	if [[ $rc -ne 0 ]]; then
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "$what (exit $rc)"
	fi
}
STATE=$TK_TMP/card.state
export TOKENKIT_PLUGIN_PATH=$TK_TMP/out:$P/lib/tokenkit/plugins
export TOKENKIT_READERS="vcard:applet=openpgp,state=$STATE"
export XDG_CACHE_HOME=$TK_TMP/cache
unset TOKENKIT_DRIVERS
run_cli "tokens" --log info tokens
tk_expect "plugin: loaded $TK_TMP/out/driver-openpgp.so"
tk_expect_not "plugin: loaded $P/lib/tokenkit/plugins/driver-openpgp.so"
tk_expect 'driver: openpgp +label: OpenPGP card [0-9A-F]{8}'
# a key generated on the card (admin PIN, then GENERATE for the AUT key)
run_cli "generate through tokenkit apdu" apdu \
	"tokenkit virtual reader 0" 00A4040006D27600012401 00200083083132333435363738 \
	00DA00C30A162B06010401DA470F01 0047800002A40000
tk_expect '90 ?00'
run_cli "objects" objects
tk_expect 'private-key id 03 +Ed25519 +255 +OpenPGP authentication key'
tk_pass
