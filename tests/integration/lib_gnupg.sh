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
