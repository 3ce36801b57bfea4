#!/usr/bin/env bash
# tokenkit-pkcs11.so as built and installed: named exactly so, no lib prefix,
# only C_* exported (C_GetFunctionList, C_GetInterfaceList, C_GetInterface
# and the other PKCS#11 3.0 functions), installed into <libdir>/pkcs11 with a
# p11-kit module file naming the installed path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
M="$TK_BUILD/tokenkit-pkcs11.so"
[[ -e "$M" ]] || tk_fail "$M not built"
tk_require_cmd nm
TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
trap 'rm -rf "$TK_TMP"' EXIT

tk_run "exported symbols" nm -D --defined-only "$M"
EXPORTS=$(awk '{print $3}' <<<"$TK_OUT" | sort)
others=$(grep -v '^C_' <<<"$EXPORTS" || true)
[[ -z "$others" ]] || tk_fail "exported besides C_*: $others"
n=$(grep -c '^C_' <<<"$EXPORTS")
[[ $n == 92 ]] || tk_fail "expected the 92 PKCS#11 3.0 functions, found $n"
for f in C_GetFunctionList C_GetInterfaceList C_GetInterface C_Initialize C_LoginUser \
	C_SessionCancel C_MessageVerifyFinal C_WaitForSlotEvent; do
	grep -qx "$f" <<<"$EXPORTS" || tk_fail "$f not exported"
done

tk_run "install the module" env DESTDIR="$TK_TMP/root" cmake -P "$TK_BUILD/pkcs11/cmake_install.cmake"
so=$(find "$TK_TMP/root" -path '*/pkcs11/tokenkit-pkcs11.so')
[[ -n "$so" ]] || tk_fail "module not installed into <libdir>/pkcs11"
mod=$(find "$TK_TMP/root" -name tokenkit.module)
[[ -n "$mod" ]] || tk_fail "p11-kit module file not installed"
dir=$(pkg-config --variable=p11_module_configs p11-kit-1 2>/dev/null || true)
if [[ -n "$dir" ]]; then
	[[ "$mod" == "$TK_TMP/root$dir/tokenkit.module" ]] || tk_fail "module file in $mod, not $dir"
fi
grep -qx "module: ${so#"$TK_TMP/root"}" "$mod" || { cat "$mod" >&2; tk_fail "module: line"; }

# p11-kit itself finds and loads it. As root p11-kit reads only the system
# module directory, so a module file naming the built module goes there for
# the length of this check.
sysdir=${dir:-/usr/share/p11-kit/modules}
if command -v p11-kit >/dev/null && [[ $(id -u) -eq 0 && -d "$sysdir" ]]; then
	name="tokenkit-test-$$"
	sysmod="$sysdir/$name.module"
	trap 'rm -f "$sysmod"; rm -rf "$TK_TMP"' EXIT
	printf 'module: %s\ncritical: no\n' "$M" >"$sysmod"
	# no pcscd behind this socket: the module must still load and answer
	tk_run "p11-kit list-modules" env PCSCLITE_CSOCK_NAME="$TK_TMP/none.comm" \
		timeout 60 p11-kit list-modules
	tk_expect "^$name:"
	tk_expect "library-description: *tokenkit"
	rm -f "$sysmod"
else
	tk_log "p11-kit check skipped (needs root and p11-kit)"
fi
tk_pass
