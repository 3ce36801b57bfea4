#!/usr/bin/env bash
# The manual pages (doc/man/, configured into $TK_BUILD/man/): they format
# without a single groff or man warning, tokenkit(1) documents every command
# `tokenkit --help` lists (each with the options its usage line names) and
# every exit code it lists, and the environment variables the code reads
# are in the pages (every one in tokenkit-pkcs11(8); the TOKENKIT_ ones the
# CLI reads too in tokenkit(1)). A command, option, exit code or variable
# added without documentation fails here.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tk_require_cmd man groff
TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
trap 'rm -rf "$TK_TMP"' EXIT
MAN1=$TK_BUILD/man/tokenkit.1
MAN8=$TK_BUILD/man/tokenkit-pkcs11.8

for page in "$MAN1" "$MAN8" "$TK_BUILD/man/tokenkitd.8"; do
	[[ -s $page ]] || tk_fail "$page not built"
	grep -n '@[A-Z_]*@' "$page" && tk_fail "$page: a placeholder was not filled in"
	# man-db's own check (groff -ww, -rCHECKSTYLE) on the page as installed
	err=$(MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null) ||
		tk_fail "$page: man failed: $err"
	[[ -z $err ]] || tk_fail "$page: warnings: $err"
	tk_log "$(basename "$page"): no warnings"
done

# what the page says, with roff's escaped hyphens and quotes plain
plain() { sed -e 's/\\-/-/g' -e 's/\\\[dq\]/"/g' "$1"; }
plain "$MAN1" >"$TK_TMP/man1"
plain "$MAN8" >"$TK_TMP/man8"

tk_run "tokenkit --help" "$TK_BUILD/tokenkit" --help
help=$TK_OUT
commands=$(awk '/^commands:/ {on = 1; next} on && /^$/ {exit} on {print $1}' <<<"$help")
[[ $(wc -l <<<"$commands") -ge 5 ]] || tk_fail "could not read the commands from --help"
while read -r cmd; do
	if [[ $cmd == help ]]; then
		grep -Eq '^\.BR --help ", " -h ", " help' "$TK_TMP/man1" || tk_fail "help not documented"
		continue
	fi
	title=$(grep -E "^\.SS \"$cmd( |\"|$)" "$TK_TMP/man1" || true)
	[[ -n $title ]] || tk_fail "tokenkit.1: no subsection for the command '$cmd'"
	usage=$(awk -v c="$cmd" '$1 == c {print}' <<<"$help")
	for opt in $(grep -Eo -- '--[a-z][a-z-]*' <<<"$usage" || true); do
		grep -q -- "$opt" <<<"$title" || tk_fail "tokenkit.1: '$cmd' lacks $opt in its synopsis"
	done
	tk_log "command $cmd: documented"
done <<<"$commands"
for opt in $(awk '/^options:/,/^$/' <<<"$help" | grep -Eo -- '--[a-z][a-z-]*' | sort -u); do
	grep -Eq -- "^\.(B|BI|BR) $opt( |$)" "$TK_TMP/man1" || tk_fail "tokenkit.1: option $opt not documented"
done
codes=$(awk '/^exit codes:/ {on = 1; next} on && $1 ~ /^[0-9]+$/ {print $1}' <<<"$help")
[[ -n $codes ]] || tk_fail "could not read the exit codes from --help"
for code in $codes; do
	awk '/^\.SH "EXIT STATUS"/ {on = 1} /^\.SH ENVIRONMENT/ {on = 0} on' "$TK_TMP/man1" |
		grep -qx "\.B $code" || tk_fail "tokenkit.1: exit code $code not documented"
done

# every variable the code reads (core/env.h: tk_env*) is documented
vars=$(grep -rhoE 'tk_env(_[a-z_]+)?\("[A-Z_0-9]+"' "$TK_SOURCE"/core "$TK_SOURCE"/pkcs11 \
	"$TK_SOURCE"/drivers "$TK_SOURCE"/tools/tokenkit | grep -oE '"[A-Z_0-9]+"' | tr -d '"' | sort -u)
[[ $(wc -l <<<"$vars") -ge 5 ]] || tk_fail "could not find the variables the code reads"
for v in $vars; do
	grep -q "$v" "$TK_TMP/man8" || tk_fail "tokenkit-pkcs11.8: $v not documented"
	case $v in TOKENKIT_P11_* | TOKENKIT_BROKER* | TOKENKIT_TIMEOUT_MS) continue ;; esac
	grep -q "$v" "$TK_TMP/man1" || tk_fail "tokenkit.1: $v not documented"
done
# ... including the ones the module reads through its own helper
for v in $(grep -rhoE 'env_ms\("[A-Z_0-9]+"' "$TK_SOURCE"/pkcs11 | grep -oE '[A-Z_0-9]{4,}'); do
	grep -q "$v" "$TK_TMP/man8" || tk_fail "tokenkit-pkcs11.8: $v not documented"
done
tk_pass
