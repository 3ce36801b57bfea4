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
expect_eq "tokenkit consent <TAB>" "$(complete_words tokenkit consent '')" $'list\nreset'
expect_eq "tokenkit consent reset --<TAB>" "$(complete_words tokenkit consent reset --)" \
	$'--json\n--program\n--token'
expect_eq "tokenkit consent reset --token <TAB> (a serial or label: nothing)" \
	"$(complete_words tokenkit consent reset --token '')" ''
expect_eq "tokenkit consent reset --token T <TAB> (no more words)" \
	"$(complete_words tokenkit consent reset --token T '')" ''

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
expect_eq "tokenkit piv i<TAB>" "$(complete_words tokenkit piv i)" 'import'
expect_eq "tokenkit piv import READER 9<TAB>" \
	"$(complete_words tokenkit piv import x 9)" "$(printf '%s\n' 90 91 92 93 94 95 9a 9c 9d 9e | sort)"
expect_eq "tokenkit piv import READER 9a <TAB> (files)" \
	"$(cd "$TK_TMP" && touch piv-key.p12 && complete_words tokenkit piv import x 9a piv-k)" 'piv-key.p12'
expect_eq "tokenkit piv import --pin-policy <TAB>" \
	"$(complete_words tokenkit piv import --pin-policy '')" $'always\nnever\nonce'
expect_eq "tokenkit piv generate --touch-policy never x 9a --touch-policy <TAB>" \
	"$(complete_words tokenkit piv generate --touch-policy never x 9a --touch-policy '')" \
	$'always\ncached\nnever'
expect_eq "tokenkit piv import --pas<TAB>" "$(complete_words tokenkit piv import --pas)" \
	'--passphrase-fd'
expect_eq "tokenkit piv certificate --csr <TAB> (a subject: nothing)" \
	"$(complete_words tokenkit piv certificate --csr '')" ''
expect_eq "tokenkit piv certificate --csr /CN=x READER <TAB> (slots)" \
	"$(complete_words tokenkit piv certificate --csr /CN=x x 9)" \
	"$(printf '%s\n' 90 91 92 93 94 95 9a 9c 9d 9e | sort)"
expect_eq "tokenkit piv r<TAB>" "$(complete_words tokenkit piv r)" 'reset'
expect_eq "tokenkit piv reset --y<TAB>" "$(complete_words tokenkit piv reset --y)" '--yes'
expect_eq "tokenkit piv generate --js<TAB>" "$(complete_words tokenkit piv generate --js)" '--json'
expect_eq "tokenkit piv reset <TAB>" "$(complete_words tokenkit piv reset '')" "$readers"

# openpgp: subcommands, their words, its algorithms and options, readers
expect_eq "tokenkit openpgp <TAB>" "$(complete_words tokenkit openpgp '')" \
	$'certificate\ngenerate\nimport\npin\nreset\nset\nstatus'
expect_eq "tokenkit openpgp pin <TAB>" "$(complete_words tokenkit openpgp pin '')" \
	$'admin-change\nchange\nreset-code\nunblock'
expect_eq "tokenkit openpgp set <TAB>" "$(complete_words tokenkit openpgp set '')" \
	$'lang\nlogin\nname\nurl'
expect_eq "tokenkit openpgp pin change <TAB>" "$(complete_words tokenkit openpgp pin change '')" \
	"$readers"
expect_eq "tokenkit openpgp generate READER <TAB>" \
	"$(complete_words tokenkit openpgp generate 'tokenkit\ virtual\ reader\ 0' '')" $'aut\ndec\nsig'
expect_eq "tokenkit openpgp generate R sig --algorithm cv<TAB>" \
	"$(complete_words tokenkit openpgp generate x sig --algorithm cv)" 'cv25519'
expect_eq "tokenkit openpgp generate R sig --admin-pin-fd 3 <TAB> (nothing)" \
	"$(complete_words tokenkit openpgp generate x sig --admin-pin-fd 3 '')" ''
expect_eq "tokenkit openpgp reset --y<TAB>" "$(complete_words tokenkit openpgp reset --y)" '--yes'
expect_eq "tokenkit openpgp certificate READER <TAB>" \
	"$(complete_words tokenkit openpgp certificate x '')" $'aut\ndec\nsig'
expect_eq "tokenkit openpgp certificate R dec --import <TAB> (files)" \
	"$(cd "$TK_TMP" && touch c.pem && complete_words tokenkit openpgp certificate x dec --import c)" \
	'c.pem'
expect_eq "tokenkit openpgp certificate R sig --self-sign <TAB> (nothing)" \
	"$(complete_words tokenkit openpgp certificate x sig --self-sign '')" ''
expect_eq "tokenkit openpgp import READER sig <TAB> (files)" \
	"$(cd "$TK_TMP" && touch k.pem && complete_words tokenkit openpgp import x sig k)" 'k.pem'

# typed text is data, never code
complete_words tokenkit apdu "\$(touch $TK_TMP/pwned)" >/dev/null
complete_words tokenkit apdu "'\$(touch $TK_TMP/pwned)" >/dev/null
[[ ! -e $TK_TMP/pwned ]] || tk_fail "the completion ran typed text"
tk_pass
