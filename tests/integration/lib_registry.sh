# Shared set-up of the registry's tests (sourced after lib.sh): a private
# state directory (the user's registry store under it), the test-only
# provider plugin (provider-tktest.so), no reader service, an EC key and
# two certificates for it (C1, C2), and helpers for the long-lived
# programs of tk-registry-test (a provider, PKCS#11 applications) fed
# through FIFOs.

reg_setup() {
	tk_require_file "$TK_BUILD/tk-registry-test"
	tk_require_file "$TK_BUILD/test-plugins/provider-tktest.so"
	TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
	trap reg_cleanup EXIT
	export XDG_STATE_HOME=$TK_TMP/state
	export TOKENKIT_PLUGIN_PATH=$TK_BUILD/test-plugins
	# no PC/SC daemon: the module's readers are none, its slots the registry's
	export PCSCLITE_CSOCK_NAME=$TK_TMP/no-pcscd.sock
	export TOKENKIT_LOG=info
	STORE=$XDG_STATE_HOME/tokenkit/registry
	REGT=$TK_BUILD/tk-registry-test
	openssl ecparam -name prime256v1 -genkey -noout -out "$TK_TMP/key.pem" 2>/dev/null
	openssl req -new -x509 -key "$TK_TMP/key.pem" -subj /CN=C1 -days 1 -outform DER \
		-out "$TK_TMP/c1.der" 2>/dev/null
	openssl req -new -x509 -key "$TK_TMP/key.pem" -subj /CN=C2 -days 2 -outform DER \
		-out "$TK_TMP/c2.der" 2>/dev/null
	# what a certificate looks like in `slots` output: its SHA-256, 8 bytes
	C1=$(openssl dgst -sha256 -binary "$TK_TMP/c1.der" | head -c 8 | od -An -tx1 | tr -d ' \n')
	C2=$(openssl dgst -sha256 -binary "$TK_TMP/c2.der" | head -c 8 | od -An -tx1 | tr -d ' \n')
	REG_PIDS=()
}

reg_cleanup() {
	local rc=$?
	set +e
	for fd in "${REG_FDS[@]:-}"; do [[ -n $fd ]] && eval "exec $fd>&-"; done
	for p in "${REG_PIDS[@]:-}"; do [[ -n $p ]] && kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [[ $rc -ne 0 && $rc -ne 77 ]]; then
		for f in "$TK_TMP"/*.out "$TK_TMP"/*.err; do
			[[ -f $f ]] && { tk_log "--- $f"; tail -n 40 "$f" >&2; }
		done
	fi
	[[ -n "$TK_TMP" && ${TK_KEEP:-0} != 1 ]] && rm -rf "$TK_TMP"
	exit "$rc"
}

# reg_start NAME FD CMD...: run CMD with stdin from a FIFO held open on
# file descriptor FD, stdout in $TK_TMP/NAME.out, stderr in NAME.err.
REG_FDS=()
reg_start() {
	local name=$1 fd=$2
	shift 2
	mkfifo "$TK_TMP/$name.in"
	"$@" <"$TK_TMP/$name.in" >"$TK_TMP/$name.out" 2>"$TK_TMP/$name.err" &
	REG_PIDS+=($!)
	eval "exec $fd>\"$TK_TMP/$name.in\""
	REG_FDS+=("$fd")
	reg_wait_line "$name" '^ready$' 10
}

# reg_wait_line NAME REGEX SECONDS: until NAME's output has a line matching
reg_wait_line() {
	local name=$1 re=$2 end=$((SECONDS + $3))
	until grep -qE "$re" "$TK_TMP/$name.out" 2>/dev/null; do
		((SECONDS < end)) || tk_fail "$name: no line matching '$re' within $3 s"
		sleep 0.02
	done
}

# reg_ask NAME FD COMMAND: send COMMAND, echo the answer (the next line)
reg_ask() {
	local name=$1 fd=$2 before
	before=$(wc -l <"$TK_TMP/$name.out")
	echo "$3" >&"$fd"
	local end=$((SECONDS + 20))
	until (($(wc -l <"$TK_TMP/$name.out") > before)); do
		((SECONDS < end)) || tk_fail "$name: no answer to '$3'"
		sleep 0.01
	done
	sed -n "$((before + 1))p" "$TK_TMP/$name.out"
}
