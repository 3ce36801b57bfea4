#!/usr/bin/env bash
# The bash completion script (tools/tokenkit/tokenkit.bash), sourced into
# bash as bash-completion would: "tokenkit " offers exactly the commands
# `tokenkit --help` lists, "tokenkit re" exactly readers, registry and reset,
# options come from each command's usage, attest's second argument is a PIV
# slot, and reader names (with spaces, quoted for the shell) come from the
# readers tokenkit sees: two in-process virtual readers here (one with a
# card, one empty), so no pcscd.
# Typed text is never evaluated.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
trap 'rm -rf "$TK_TMP"' EXIT
export PATH="$TK_BUILD:$PATH"
export TOKENKIT_READERS="vcard:state=$TK_TMP/a.state;empty"
# shellcheck source=/dev/null
source "$TK_SOURCE/tools/tokenkit/tokenkit.bash"
[[ $(complete -p tokenkit) == *"-F _tokenkit"* ]] || tk_fail "no completion registered for tokenkit"

# complete WORDS...: the last word is the one being completed; prints the
# candidates sorted, one a line
complete_words() {
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_tokenkit
	printf '%s\n' "${COMPREPLY[@]}" | sort
}
expect_eq() { # what got want
	[[ $2 == "$3" ]] || tk_fail "$1: got [$(tr '\n' ' ' <<<"$2")], want [$(tr '\n' ' ' <<<"$3")]"
	tk_log "$1: ok"
}

want=$(tokenkit --help | awk '/^commands:/ {on = 1; next} on && /^$/ {exit} on {print $1}' | sort)
[[ $(wc -l <<<"$want") -ge 5 ]] || tk_fail "no commands from --help"
expect_eq "tokenkit <TAB>" "$(complete_words tokenkit '')" "$want"
expect_eq "tokenkit re<TAB>" "$(complete_words tokenkit re)" $'readers\nregistry\nreset'
expect_eq "tokenkit --log debug re<TAB>" "$(complete_words tokenkit --log debug re)" \
	$'readers\nregistry\nreset'
expect_eq "tokenkit --log <TAB>" "$(complete_words tokenkit --log '')" \
	"$(printf '%s\n' debug error info trace warn)"
expect_eq "tokenkit attest --<TAB>" "$(complete_words tokenkit attest --)" $'--json\n--root'
expect_eq "tokenkit readers --<TAB>" "$(complete_words tokenkit readers --)" $'--atr\n--json'
expect_eq "tokenkit registry s<TAB>" "$(complete_words tokenkit registry s)" 'show'

readers=$'tokenkit\\ virtual\\ reader\\ 0\ntokenkit\\ virtual\\ reader\\ 1'
expect_eq "tokenkit apdu <TAB>" "$(complete_words tokenkit apdu '')" "$readers"
expect_eq "tokenkit attest tok<TAB>" "$(complete_words tokenkit attest tok)" "$readers"
expect_eq "tokenkit attest tokenkit\\ virtual\\ reader\\ 1<TAB>" \
	"$(complete_words tokenkit attest 'tokenkit\ virtual\ reader\ 1')" 'tokenkit\ virtual\ reader\ 1'
expect_eq "tokenkit diag 'tokenkit virtual reader 0<TAB>" \
	"$(complete_words tokenkit diag "'tokenkit virtual reader 0")" 'tokenkit virtual reader 0'
expect_eq "tokenkit attest READER 9<TAB>" \
	"$(complete_words tokenkit attest 'tokenkit\ virtual\ reader\ 0' 9)" "$(printf '%s\n' 90 91 92 93 94 95 9a 9c 9d 9e | sort)"
expect_eq "tokenkit attest READER 9a --root <TAB> (files)" \
	"$(cd "$TK_TMP" && touch root.pem && complete_words tokenkit attest x 9a --root ro)" 'root.pem'
expect_eq "tokenkit apdu READER <TAB> (no more readers)" \
	"$(complete_words tokenkit apdu 'tokenkit\ virtual\ reader\ 0' '')" ''

# typed text is data, never code
complete_words tokenkit apdu "\$(touch $TK_TMP/pwned)" >/dev/null
complete_words tokenkit apdu "'\$(touch $TK_TMP/pwned)" >/dev/null
[[ ! -e $TK_TMP/pwned ]] || tk_fail "the completion ran typed text"
tk_pass
