# TLS 1.3 handshakes with client-certificate authentication on 127.0.0.1,
# the client's key in a PKCS#11 token (sourced after lib.sh, in $TK_TMP or
# any directory the caller cd'ed to). The server is always `openssl
# s_server -Verify 1 -verify_return_error`: it refuses a client without a
# certificate its CA file vouches for, and its log (srv-NAME.log) is where
# a test sees that the client's certificate was checked.
#
#   tls_server_key                      # srv.pem / srv.key (P-256, CN=localhost)
#   tls_stop                            # in the EXIT trap: a server left running
#   tls_openssl NAME URI CERT CA        # OpenSSL s_client + libp11 (key by pkcs11: URI)
#   tls_nss NAME DB NICK PWFILE CA      # NSS tstclnt (the module in DB, key by nickname)
#   tls_client_checked NAME CN          # the handshake was TLS 1.3 and the server
#                                       # verified a client certificate with that CN
#   tls_client_sig NAME TYPE            # the client's CertificateVerify was TYPE
#                                       # (ECDSA, RSA-PSS), as the server saw it
# Each client function leaves the client's and server's logs in $TK_OUT and
# the client's exit status in TLS_RC (0: the data reached the server).
# (libp11 is loaded per command with -engine, never through a global
# OPENSSL_CONF: that breaks software EC in OpenSSL.)

TLS_ENGINE=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so

tls_server_key() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
		-out srv.pem -subj /CN=localhost -days 30 2>/dev/null
}

# tls_server NAME CA: one s_server for one connection, port in TLS_PORT,
# pid in TLS_SPID; its stdin stays open (s_server stops at EOF on stdin)
# through a FIFO on fd 7 until tls_server_done (fd 7 is ours alone: no
# program started meanwhile may keep it, or the server never sees EOF).
# The kernel picks the port (-accept :0, s_server says which): looking for
# a free port by connecting to it would take other tests' one-connection
# servers' connection (seen: a concurrent test's probe ended our server).
tls_server() {
	local name=$1 ca=$2 i
	TLS_PORT=""
	rm -f "srv-$name.in"
	mkfifo "srv-$name.in"
	exec 7<>"srv-$name.in"
	timeout 60 openssl s_server -accept 127.0.0.1:0 -cert srv.pem -key srv.key \
		-tls1_3 -Verify 1 -verify_return_error -CAfile "$ca" -naccept 1 \
		<"srv-$name.in" >"srv-$name.log" 2>&1 7>&- &
	TLS_SPID=$!
	for ((i = 0; i < 100; i++)); do
		# (the log may not be there yet: the server's shell opens it)
		TLS_PORT=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\)$/\1/p' "srv-$name.log" \
			2>/dev/null || true)
		[[ -n $TLS_PORT ]] && return 0
		sleep 0.1
	done
	tk_fail "$name: s_server did not start: $(cat "srv-$name.log")"
}

# tls_stop: the server of a test that failed half-way (for its EXIT trap)
tls_stop() {
	[[ -z ${TLS_SPID:-} ]] || kill "$TLS_SPID" 2>/dev/null || true
}

tls_server_done() {
	local name=$1
	exec 7>&-
	wait "$TLS_SPID" || true
	TLS_SPID=""
	TK_OUT=$(cat "cli-$name.log" "srv-$name.log")
}

# tls_openssl NAME URI CERT CA
tls_openssl() {
	local name=$1 uri=$2 cert=$3 ca=$4
	tk_require_file "$TLS_ENGINE"
	tls_server "$name" "$ca"
	TLS_RC=0
	echo "hello from $name" | PKCS11_MODULE_PATH=${PKCS11_MODULE_PATH:-$TK_P11_MODULE} \
		tk_host timeout 60 openssl s_client -connect "127.0.0.1:$TLS_PORT" -tls1_3 \
		-engine pkcs11 -keyform engine -key "$uri" -cert "$cert" -CAfile srv.pem \
		>"cli-$name.log" 2>&1 7>&- || TLS_RC=$?
	tls_server_done "$name"
}

# tls_nss NAME DB NICK PWFILE CA: tstclnt exits neither when its stdin ends
# nor when the server closes (it polls its ended stdin for ever, busy): once
# the client's line is at the server, or the client has ended, the server
# is told to close and the client is stopped — by its own pid (the
# background job is a subshell around it). TLS_RC is 0 when the line got
# through, else the client's exit status.
tls_nss() {
	local name=$1 db=$2 nick=$3 pwfile=$4 ca=$5 cpid i
	tls_server "$name" "$ca"
	echo "hello from $name" >"cli-$name.in"
	rm -f "cli-$name.pid"
	tk_host sh -c 'echo $$ >"$0"; exec timeout 60 "$@"' "cli-$name.pid" tstclnt -h 127.0.0.1 \
		-p "$TLS_PORT" -4 -d "$db" -n "$nick" -W "$pwfile" -V tls1.3:tls1.3 -o \
		<"cli-$name.in" >"cli-$name.log" 2>&1 7>&- &
	cpid=$!
	for ((i = 0; i < 600; i++)); do
		grep -q "^hello from $name" "srv-$name.log" && break
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.1
	done
	exec 7>&-
	for ((i = 0; i < 20; i++)); do
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.1
	done
	# timeout passes the signal on to tstclnt
	[[ ! -s "cli-$name.pid" ]] || kill "$(cat "cli-$name.pid")" 2>/dev/null || true
	TLS_RC=0
	wait "$cpid" || TLS_RC=$?
	grep -q "^hello from $name" "srv-$name.log" && TLS_RC=0
	[[ $TLS_RC != 0 ]] || grep -q "^hello from $name" "srv-$name.log" || TLS_RC=1
	tls_server_done "$name"
}

# tls_client_checked NAME CN: on the server's side, the client's certificate
# (subject CN) was received and verified, and the client's data came through
# a TLS 1.3 session (TLS_AES_* / TLS_CHACHA20_* are TLS 1.3's cipher suites)
tls_client_checked() {
	local name=$1 cn=$2 srv
	srv=$(cat "srv-$name.log")
	grep -q "^depth=0 CN = $cn\$" <<<"$srv" && grep -q '^Client certificate' <<<"$srv" &&
		grep -q "^subject=CN = $cn\$" <<<"$srv" && grep -q "^hello from $name" <<<"$srv" &&
		grep -Eq '^CIPHER is TLS_(AES|CHACHA20)_' <<<"$srv" && ! grep -q 'verify error' <<<"$srv" || {
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "$name: the server did not verify a client certificate for CN=$cn (above)"
	}
	tk_log "$name: TLS 1.3, client certificate CN=$cn verified by the server"
}

tls_client_sig() {
	grep -q "^Peer signature type: $2\$" "srv-$1.log" || {
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "$1: the server saw no $2 signature from the client"
	}
}
