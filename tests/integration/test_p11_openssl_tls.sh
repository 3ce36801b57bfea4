#!/usr/bin/env bash
# tokenkit-pkcs11.so under OpenSSL 3 through libp11 (the pkcs11 engine): TLS
# 1.3 handshakes on 127.0.0.1 where openssl s_client authenticates with the
# token's key, addressed by pkcs11: URI, to an openssl s_server -Verify 1
# that checks the client certificate against the test CA — once with a P-256
# key (card 0, slot 9a) and once with an RSA-2048 key (card 1, slot 9a; TLS
# 1.3 needs RSA-PSS from the module). Also openssl pkeyutl signatures.
# (libp11 is loaded per command with -engine, never through a global
# OPENSSL_CONF: that breaks software EC in OpenSSL.)
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
p11_require
ENGINE=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
tk_require_file "$ENGINE"
tk_env_start
tk_card_start 0
tk_card_start 1
p11_provision 0 "9a:ECCP256"
p11_provision 1 "9a:RSA2048" "$TK_TMP/card1"
export PKCS11_MODULE_PATH=$TK_P11_MODULE
cd "$TK_TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
	-out srv.pem -subj /CN=localhost -days 30 2>/dev/null

# serial numbers tell the two tokens apart in pkcs11: URIs
tk_run "tokens" pkcs11-tool --module "$TK_P11_MODULE" -L
SERIALS=($(sed -n 's/^ *serial num *: *//p' <<<"$TK_OUT"))
[[ ${#SERIALS[@]} == 2 ]] || tk_fail "expected two tokens"

free_port() {
	local p
	for p in $(seq 44300 44399); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	tk_fail "no free port"
}

# tls NAME URI CERT: one TLS 1.3 handshake with client authentication
tls() {
	local name=$1 uri=$2 cert=$3 port i rc=0
	port=$(free_port)
	# s_server stops at EOF on stdin: keep it open through a FIFO until we are done
	rm -f "srv-$name.in"
	mkfifo "srv-$name.in"
	exec 7<>"srv-$name.in"
	timeout 30 openssl s_server -accept "127.0.0.1:$port" -cert srv.pem -key srv.key \
		-tls1_3 -Verify 1 -verify_return_error -CAfile ca.pem -naccept 1 \
		<"srv-$name.in" >"srv-$name.log" 2>&1 &
	local spid=$!
	for ((i = 0; i < 50; i++)); do
		grep -q '^ACCEPT' "srv-$name.log" 2>/dev/null && break
		sleep 0.1
	done
	echo "hello from $name" | tk_host timeout 30 openssl s_client -connect "127.0.0.1:$port" -tls1_3 \
		-engine pkcs11 -keyform engine -key "$uri" -cert "$cert" -CAfile srv.pem \
		>"cli-$name.log" 2>&1 || rc=$?
	exec 7>&-
	wait "$spid" || true
	TK_OUT=$(cat "cli-$name.log" "srv-$name.log")
	[[ $rc == 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "$name: s_client exit $rc"; }
	tk_expect 'New, TLSv1\.3'
	tk_expect "hello from $name"               # the server got the data
	tk_expect 'depth=0 CN = tokenkit-9a'         # and checked our client certificate
	tk_expect_not 'verify error|ERROR'
	tk_log "$name: TLS 1.3 with client authentication by the token key"
}

tls ecc "pkcs11:serial=${SERIALS[0]};id=%01;type=private;pin-value=$PIN" cert9a.pem
tk_expect 'Peer signature type: ECDSA'
tls rsa "pkcs11:serial=${SERIALS[1]};id=%01;type=private;pin-value=$PIN" card1/cert9a.pem
tk_expect 'Peer signature type: RSA-PSS'

# pkeyutl signatures through libp11, verified with the certificate
printf 'data for pkeyutl\n' >data.txt
openssl dgst -sha256 -binary data.txt >data.sha256
tk_run "pkeyutl ECDSA" openssl pkeyutl -engine pkcs11 -keyform engine -sign \
	-inkey "pkcs11:serial=${SERIALS[0]};id=%01;type=private;pin-value=$PIN" -in data.sha256 -out ec.sig
tk_run "verify ECDSA" openssl pkeyutl -verify -pubin -inkey pub9a.pem -in data.sha256 -sigfile ec.sig
tk_run "pkeyutl RSA" openssl pkeyutl -engine pkcs11 -keyform engine -sign \
	-inkey "pkcs11:serial=${SERIALS[1]};id=%01;type=private;pin-value=$PIN" -in data.sha256 \
	-pkeyopt digest:sha256 -out rsa.sig
tk_run "verify RSA" openssl pkeyutl -verify -pubin -inkey card1/pub9a.pem -in data.sha256 \
	-sigfile rsa.sig -pkeyopt digest:sha256
tk_pass
