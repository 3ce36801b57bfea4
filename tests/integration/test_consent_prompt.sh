#!/usr/bin/env bash
# The consent prompt that ships with tokenkitd (tools/tokenkitd/
# tokenkit-consent-prompt), run as tokenkitd runs it (the facts in its
# environment, its answer on standard output):
#  1. on a terminal (a real pty, util-linux script): o/a/d answer
#     once/always/deny, anything else is no answer; what the card says
#     (labels) is shown with its control characters taken out;
#  2. no display and no terminal (a headless broker): no answer, exit 1,
#     so tokenkitd refuses this use without storing it;
#  3. a display: the dialog program gets the question as plain text (zenity
#     --no-markup) and its choice is mapped. There is no display here: a
#     stand-in zenity on PATH records its arguments and answers.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tk_require_cmd script timeout setsid
PROMPT=$TK_BUILD/tokenkit-consent-prompt
[[ -x $PROMPT ]] || tk_fail "$PROMPT not built"
TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
trap 'rm -rf "$TK_TMP"' EXIT
cd "$TK_TMP"

export TOKENKIT_CONSENT_PROGRAM=/usr/bin/some-browser TOKENKIT_CONSENT_PID=4242
export TOKENKIT_CONSENT_UID=1000 TOKENKIT_CONSENT_KEY_ID=01 TOKENKIT_CONSENT_TOKEN_SERIAL=00c0ffee
export TOKENKIT_CONSENT_TOKEN="PIV card"
# a label that tries to clear the screen and to format the question
export TOKENKIT_CONSENT_KEY=$'Key\e[2J\e]0;owned\a<b>bold</b>'
unset DISPLAY WAYLAND_DISPLAY

# --- 1. a terminal -----------------------------------------------------------
on_tty() { # INPUT: the prompt on a pty fed INPUT; its whole screen in $TK_OUT
	TK_OUT=$(printf '%s\n' "$1" | script -qec "$PROMPT; echo \"exit \$?\"" /dev/null 2>&1 | tr -d '\r')
}
for pair in o:once a:always d:deny once:once D:deny; do
	on_tty "${pair%%:*}"
	# (the typed answer echoes before the question: the answer follows it)
	grep -Eq "(^|\? )${pair#*:}\$" <<<"$TK_OUT" || { printf '%s\n' "$TK_OUT" >&2; tk_fail "answer ${pair%%:*}: not ${pair#*:}"; }
	tk_expect 'exit 0'
done
tk_log "on a terminal: o, a, d, once, D answered"
tk_expect '/usr/bin/some-browser \(pid 4242, uid 1000\)'
tk_expect 'of the token "PIV card" \(serial 00c0ffee\)'
tk_expect 'Allow \[o\]nce, allow \[a\]lways, or \[d\]eny\?'
[[ $TK_OUT != *$'\e'* && $TK_OUT != *$'\a'* ]] || tk_fail "a control character of the label reached the terminal"
tk_expect 'use the key "Key\[2J\]0;owned<b>bold</b>"'
on_tty "maybe"
tk_expect 'exit 1'
tk_expect_not '(^|\? )(once|always|deny)$'

# --- 2. nobody to ask ------------------------------------------------------------
rc=0
out=$(setsid "$PROMPT" </dev/null 2>&1) || rc=$?
[[ $rc == 1 && -z $out ]] || tk_fail "headless: exit $rc, output '$out'"
tk_log "headless: no answer (exit 1)"

# --- 3. a display ----------------------------------------------------------------
mkdir bin
cat >bin/zenity <<'SH'
#!/bin/sh
# stand-in for the dialog: records its arguments, answers $ANSWER
for a in "$@"; do printf '%s\n' "$a"; done >"$ARGS"
[ -n "$ANSWER" ] || exit 1
printf '%s\n' "$ANSWER"
SH
chmod +x bin/zenity
for pair in "Allow once:once" "Allow always:always" "Deny:deny"; do
	out=$(ARGS=$TK_TMP/args ANSWER=${pair%%:*} DISPLAY=:99 PATH=$TK_TMP/bin:$PATH setsid "$PROMPT" </dev/null)
	[[ $out == "${pair#*:}" ]] || tk_fail "dialog answer '${pair%%:*}': '$out'"
done
grep -qx -- '--no-markup' args || tk_fail "zenity was not told --no-markup"
grep -q 'wants to use the key "Key\[2J\]0;owned<b>bold</b>"' args ||
	{ cat args >&2; tk_fail "the dialog's question"; }
! grep -q $'\e' args || tk_fail "a control character reached the dialog"
rc=0
out=$(ARGS=$TK_TMP/args ANSWER= DISPLAY=:99 PATH=$TK_TMP/bin:$PATH setsid "$PROMPT" </dev/null) || rc=$?
[[ $rc == 1 && -z $out ]] || tk_fail "a closed dialog: exit $rc, '$out'"
tk_log "dialog: the three answers mapped, a closed dialog is no answer"
tk_pass
