# GnuPG with a private home for the OpenPGP card tests (sourced after lib.sh):
# scdaemon through the private pcscd (disable-ccid, pcsc-driver libpcsclite),
# the test pinentry (tests/integration/pinentry-test) for the PINs.
tk_require_cmd gpg gpg-agent gpgconf
tk_require_file /usr/lib/gnupg/scdaemon /usr/lib/x86_64-linux-gnu/libpcsclite.so.1

HOMES=()
new_gnupghome() { # NAME
	export GNUPGHOME=$TK_TMP/gnupg-$1
	HOMES+=("$GNUPGHOME")
	mkdir -m 700 "$GNUPGHOME"
	cat >"$GNUPGHOME/scdaemon.conf" <<EOC
disable-ccid
pcsc-driver /usr/lib/x86_64-linux-gnu/libpcsclite.so.1
log-file $GNUPGHOME/scdaemon.log
debug cardio
EOC
	echo "pinentry-program $TK_SOURCE/tests/integration/pinentry-test" >"$GNUPGHOME/gpg-agent.conf"
}

# gnupg_kill: the agent of $GNUPGHOME and its scdaemon gone. gpgconf --kill all
# only asks them to leave: GnuPG 2.2 returns before they have, and a client
# started at once can meet the old agent on its way out, start a new one that
# finds the socket still taken, and end with "can't connect to the agent: End
# of file" (once in a whole-suite loop run). Wait, at most 10 s, until no
# process of this home is left (a zombie no longer shows its arguments).
gnupg_kill() {
	local i
	gpgconf --kill all >/dev/null 2>&1 || true
	for ((i = 0; i < 100; i++)); do
		pgrep -f -- "--homedir $GNUPGHOME( |\$)" >/dev/null || return 0
		sleep 0.1
	done
	tk_fail "an agent or scdaemon of $GNUPGHOME still runs 10 s after gpgconf --kill all"
}

# every agent (and its scdaemon) the script started, whatever happened; the
# script's exit status goes on to tk_cleanup (trap 'stop_gnupg; tk_cleanup'
# EXIT), or a failed test would pass
stop_gnupg() {
	local rc=$? h
	for h in "${HOMES[@]}"; do
		GNUPGHOME=$h gpgconf --kill all >/dev/null 2>&1 || true
	done
	return "$rc"
}
