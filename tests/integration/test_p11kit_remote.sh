#!/usr/bin/env bash
# Tokens across machines with p11-kit's own remoting (issue 13): the virtual
# PIV card is served with `p11-kit remote tokenkit-pkcs11.so` behind socat
# (one p11-kit remote process per TCP connection) in network namespace
# "card"; in namespace "other", joined to it by a veth pair only, programs
# load p11-kit-client.so with P11_KIT_SERVER_ADDRESS='|socat - TCP:...'.
# (The namespaces share the file system, but nothing on the "other" side
# loads tokenkit or talks PC/SC: its only way to the card is the TCP
# connection.) Through the client: the token is listed with the card's
# serial, the objects are seen after a login, ECDSA (9A) and RSA (9C, PIN
# for every signature: PKCS#1 v1.5 and PSS) signatures verify with openssl
# against the certificates made at provisioning, a wrong PIN answers
# CKR_PIN_INCORRECT. A mechanism that p11-kit's client leaves out of the
# mechanism list is refused (CKR_MECHANISM_INVALID); one it lists works.
#
# Then the server side is stopped (every process in "card") and started
# again, under two long-running clients (tk-p11-remote-client) that had
# logged in and signed: once the connection is gone, every call of the one
# that ignores SIGPIPE answers CKR_DEVICE_ERROR, also after the server is
# back (p11-kit's client does not reconnect by itself); C_Finalize +
# C_Initialize in the same process reconnect, and a new session, login and
# signature work (the old session handle is gone). The one that keeps
# SIGPIPE's default action (as pkcs11-tool does) is killed by SIGPIPE at
# its first call. A new process works as soon as the server is back.
# Needs root (ip netns), socat, p11-kit and p11-kit-client.so.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"

P11KIT_CLIENT=${P11KIT_CLIENT:-/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so}
REMOTE_CLIENT=$TK_BUILD/tk-p11-remote-client
# the two "machines": private namespaces, so fixed addresses and port
NS_CARD=tk-p11r-card-$$
NS_OTHER=tk-p11r-other-$$
VETH_CARD=tkr$$c
VETH_OTHER=tkr$$o
ADDR_CARD=10.213.0.1
ADDR_OTHER=10.213.0.2
PORT=7711
T=20 # seconds any one step may take

[[ $(id -u) -eq 0 ]] || tk_skip "needs root (ip netns)"
tk_require_cmd ip socat p11-kit pkcs11-tool ss timeout
tk_require_file "$P11KIT_CLIENT"
p11_require
[[ -x $REMOTE_CLIENT ]] || tk_fail "$REMOTE_CLIENT not built"
# namespaces left by a run that was killed outright (its pid is in the name)
for ns in $(ip netns list | sed -n 's/^\(tk-p11r-[a-z]*-[0-9]*\).*/\1/p'); do
	kill -0 "${ns##*-}" 2>/dev/null || ip netns del "$ns" 2>/dev/null || true
done
ip netns add "$NS_CARD" 2>/dev/null || tk_skip "ip netns add not allowed here"
ip netns del "$NS_CARD"

NETNS_MADE=0
declare -A CL_FD CL_PID CL_LINES
p11r_cleanup() {
	local rc=$? p i ns
	set +e
	for p in "${CL_PID[@]}"; do kill "$p" 2>/dev/null; done
	if [[ $NETNS_MADE == 1 ]]; then
		for ns in "$NS_CARD" "$NS_OTHER"; do
			for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
			for ((i = 0; i < 50; i++)); do
				[[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && break
				sleep 0.1
			done
			ip netns del "$ns" 2>/dev/null
		done
	fi
	if [[ $rc -ne 0 && $rc -ne 77 && -n $TK_TMP ]]; then
		for f in "$TK_TMP"/*.log "$TK_TMP"/*.err; do
			[[ -s $f ]] || continue
			echo "===== $f (last 30 lines)" >&2
			tail -n 30 "$f" >&2
		done
	fi
	(exit "$rc")
	tk_cleanup
}

tk_env_start
trap p11r_cleanup EXIT
tk_card_start 0
p11_provision 0 "9a:ECCP256 9c:RSA2048"
cd "$TK_TMP"

# --- the two machines ---------------------------------------------------------
NETNS_MADE=1
ip netns add "$NS_CARD" || tk_fail "ip netns add $NS_CARD"
ip netns add "$NS_OTHER" || tk_fail "ip netns add $NS_OTHER"
ip link add "$VETH_CARD" type veth peer name "$VETH_OTHER" || tk_fail "veth pair"
ip link set "$VETH_CARD" netns "$NS_CARD"
ip link set "$VETH_OTHER" netns "$NS_OTHER"
ip -n "$NS_CARD" addr add "$ADDR_CARD/30" dev "$VETH_CARD"
ip -n "$NS_OTHER" addr add "$ADDR_OTHER/30" dev "$VETH_OTHER"
for ns in "$NS_CARD" "$NS_OTHER"; do ip -n "$ns" link set lo up; done
ip -n "$NS_CARD" link set "$VETH_CARD" up
ip -n "$NS_OTHER" link set "$VETH_OTHER" up
link_up() { ip -n "$1" -o link show dev "$2" | grep -q 'state UP'; }
tk_wait "$T" "the link is up on the card side" link_up "$NS_CARD" "$VETH_CARD"
tk_wait "$T" "the link is up on the other side" link_up "$NS_OTHER" "$VETH_OTHER"

# the card machine: one `p11-kit remote` (our module) per TCP connection
srv_listening() { ip netns exec "$NS_CARD" ss -Hltn "sport = :$PORT" | grep -q LISTEN; }
srv_start() {
	# (TK_HOST_ENV: p11-kit remote loads the sanitizer build's module)
	ip netns exec "$NS_CARD" "${TK_HOST_ENV[@]}" socat -d \
		TCP-LISTEN:$PORT,bind=$ADDR_CARD,fork,reuseaddr \
		EXEC:"p11-kit remote $TK_P11_MODULE" 2>>"$TK_TMP/server.log" &
	SRV_PID=$!
	tk_wait "$T" "server listening on $ADDR_CARD:$PORT" srv_listening
	tk_log "server up: socat pid $(ip netns pids "$NS_CARD" | tr '\n' ' ')"
}
# the card machine goes away: every process in its namespace (the listener,
# its per-connection socat children and their p11-kit remote processes)
srv_stop() {
	local p i left
	for ((i = 0; i < T * 10; i++)); do
		left=$(ip netns pids "$NS_CARD")
		[[ -z $left ]] && return 0
		for p in $left; do kill -TERM "$p" 2>/dev/null || true; done
		sleep 0.1
	done
	tk_fail "server processes still there after ${T}s: $(ip netns pids "$NS_CARD" | tr '\n' ' ')"
}

# the other machine: p11-kit's client module, nothing of ours. A shell
# function, so that tk_run does not preload the ASan runtime (the sanitizer
# build): these programs never load our module, and p11-kit 0.24's client
# reads one element past the caller's array when it drops a mechanism from
# C_GetMechanismList's answer (memmove off by one, fixed in p11-kit 0.25),
# which ASan reports as a heap-buffer-overflow in pkcs11-tool -M.
OTHER_ENV=(ip netns exec "$NS_OTHER" env -u PCSCLITE_CSOCK_NAME -u XDG_CACHE_HOME
	"P11_KIT_SERVER_ADDRESS=|socat - TCP:$ADDR_CARD:$PORT,connect-timeout=5")
other() { timeout "$T" "${OTHER_ENV[@]}" "$@"; }
RP11=(other pkcs11-tool --module "$P11KIT_CLIENT")

# --- no server yet: nothing to reach --------------------------------------------
rc=0
TK_OUT=$("${RP11[@]}" -L 2>&1) || rc=$?
tk_log "no server: pkcs11-tool -L: exit $rc: $(grep -m1 -E 'rv =|error' <<<"$TK_OUT" || true)"
[[ $rc -ne 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "a token listed with no server"; }
tk_expect_not 'Virtual PCD'

# --- the token across the link -------------------------------------------------
srv_start
tk_run "card side: the token" pkcs11-tool --module "$TK_P11_MODULE" -L
SERIAL=$(sed -n 's/^ *serial num *: *//p' <<<"$TK_OUT" | head -1)
[[ -n $SERIAL ]] || tk_fail "no serial on the card side"
tk_run "other side: the token" "${RP11[@]}" -L
tk_expect 'Virtual PCD 00 00'
tk_expect "serial num *: $SERIAL\$"
tk_expect 'token flags *: .*login required'

tk_run "other side: objects after login" "${RP11[@]}" --login --pin "$PIN" -O
tk_expect 'CN=tokenkit-9a'
tk_expect 'CN=tokenkit-9c'
tk_expect 'Private Key Object; EC'
tk_expect 'Private Key Object; RSA'

printf 'signed on one machine, with a card on another\n' >data.txt
openssl dgst -sha256 -binary data.txt >data.sha256
printf 'something else\n' | openssl dgst -sha256 -binary >other.sha256

# ECDSA: p11-kit 0.24 carries CKM_ECDSA (the hash made by the caller)
tk_run "other side: sign ECDSA (9A)" "${RP11[@]}" --login --pin "$PIN" --sign -m ECDSA --id 01 \
	--signature-format openssl -i data.sha256 -o sig01.der
tk_run "verify ECDSA (9A)" openssl pkeyutl -verify -pubin -inkey pub9a.pem -in data.sha256 \
	-sigfile sig01.der
tk_run_fails "the ECDSA signature is not one of other data" openssl pkeyutl -verify -pubin \
	-inkey pub9a.pem -in other.sha256 -sigfile sig01.der

# RSA with the 9C key (a PIN for every signature: CKU_CONTEXT_SPECIFIC goes across too)
tk_run "other side: sign SHA256-RSA-PKCS (9C)" "${RP11[@]}" --login --pin "$PIN" --sign \
	-m SHA256-RSA-PKCS --id 02 -i data.txt -o sig02.bin
tk_run "verify SHA256-RSA-PKCS (9C)" openssl dgst -sha256 -verify pub9c.pem -signature sig02.bin \
	data.txt
tk_run "other side: sign RSA-PKCS-PSS (9C)" "${RP11[@]}" --login --pin "$PIN" --sign -m RSA-PKCS-PSS \
	--hash-algorithm SHA256 --mgf MGF1-SHA256 --salt-len 32 --id 02 -i data.sha256 -o sig02pss.bin
tk_run "verify RSA-PKCS-PSS (9C)" openssl pkeyutl -verify -pubin -inkey pub9c.pem -in data.sha256 \
	-sigfile sig02pss.bin -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss \
	-pkeyopt rsa_pss_saltlen:32

# the mechanisms: ours, less those p11-kit's client does not carry; a
# mechanism it leaves out is refused before it reaches the server
tk_run "card side: mechanisms" pkcs11-tool --module "$TK_P11_MODULE" -M
LOCAL_MECHS=$TK_OUT
tk_run "other side: mechanisms" "${RP11[@]}" -M
for m in ECDSA RSA-PKCS RSA-PKCS-PSS SHA256-RSA-PKCS; do tk_expect "^ *$m, "; done
mech_names() { sed -n 's/^ *\([A-Z0-9_-]*\), .*/\1/p' | sort -u; }
tk_log "not carried by p11-kit's client: $(comm -23 <(mech_names <<<"$LOCAL_MECHS") \
	<(mech_names <<<"$TK_OUT") | tr '\n' ' ')"
grep -Eq '^ *ECDSA-SHA256, ' <<<"$LOCAL_MECHS" || tk_fail "the card side has no ECDSA-SHA256"
if grep -Eq '^ *ECDSA-SHA256, ' <<<"$TK_OUT"; then
	tk_run "other side: sign ECDSA-SHA256 (listed)" "${RP11[@]}" --login --pin "$PIN" --sign \
		-m ECDSA-SHA256 --id 01 --signature-format openssl -i data.txt -o sig01h.der
	tk_run "verify ECDSA-SHA256" openssl dgst -sha256 -verify pub9a.pem -signature sig01h.der data.txt
else
	tk_log "p11-kit's client does not carry ECDSA-SHA256"
	tk_run_fails "other side: sign ECDSA-SHA256 (not listed)" "${RP11[@]}" --login --pin "$PIN" \
		--sign -m ECDSA-SHA256 --id 01 --signature-format openssl -i data.txt -o sig01h.der
	tk_expect 'CKR_MECHANISM_INVALID'
fi

# a card error crosses unchanged
tk_run_fails "other side: wrong PIN" "${RP11[@]}" --login --pin 999999 -O
tk_expect 'CKR_PIN_INCORRECT'
tk_run "other side: the right PIN again" "${RP11[@]}" --login --pin "$PIN" -O
tk_expect 'Private Key Object; EC'

# --- the server side restarts under long-running clients -----------------------
# cl_start NAME [--sigpipe default]: a tk-p11-remote-client on the other side
cl_start() {
	local name=$1 fd
	shift
	mkfifo "$TK_TMP/$name.in"
	TK_PIN=$PIN "${OTHER_ENV[@]}" "$REMOTE_CLIENT" "$@" "$P11KIT_CLIENT" \
		<"$TK_TMP/$name.in" >"$TK_TMP/$name.out" 2>"$TK_TMP/$name.err" &
	CL_PID[$name]=$!
	exec {fd}>"$TK_TMP/$name.in"
	CL_FD[$name]=$fd
	CL_LINES[$name]=0
	cl_answer "$name"
	[[ $TK_OUT == "ready ${CL_PID[$name]}" ]] || tk_fail "$name: '$TK_OUT'"
}
# cl_answer NAME: the client's next answer line in TK_OUT (within T seconds)
cl_answer() {
	local name=$1 n i alive
	n=$((CL_LINES[$name] + 1))
	for ((i = 0; i < T * 10; i++)); do
		# read the liveness first: a client that answers and then exits
		# ("quit") must not be taken for one that died without an answer
		alive=0
		kill -0 "${CL_PID[$name]}" 2>/dev/null && alive=1
		if [[ $(wc -l <"$TK_TMP/$name.out") -ge $n ]]; then
			TK_OUT=$(sed -n "${n}p" "$TK_TMP/$name.out")
			CL_LINES[$name]=$n
			return 0
		fi
		((alive)) || tk_fail "$name exited before answering"
		sleep 0.1
	done
	tk_fail "$name: no answer within ${T}s"
}
# cl NAME EXPECTED CMD...: send CMD, the answer must be EXPECTED (exactly)
cl() {
	local name=$1 want=$2
	shift 2
	tk_log "$name: $*"
	echo "$*" >&"${CL_FD[$name]}"
	cl_answer "$name"
	[[ $TK_OUT == "$want" ]] || tk_fail "$name: $*: '$TK_OUT', expected '$want'"
}
# cl_sign NAME N: sign data.sha256 with 9A, verify with openssl
cl_sign() {
	local name=$1 n=$2
	cl "$name" "sign CKR_OK" sign 01 "$TK_TMP/data.sha256" "$TK_TMP/$name-sig$n.der"
	tk_run "verify $name's signature $n" openssl pkeyutl -verify -pubin -inkey pub9a.pem \
		-in data.sha256 -sigfile "$name-sig$n.der"
}
# cl_transport_gone NAME: the client's own socat (its way to the server) has
# ended (a zombie until p11-kit's client reaps it, or gone)
cl_transport_gone() {
	! ps -o stat= --ppid "${CL_PID[$1]}" | grep -qv '^Z'
}

cl_start keep
cl_start dies --sigpipe default
for c in keep dies; do
	cl "$c" "init CKR_OK" init
	cl "$c" "slot CKR_OK 1 $SERIAL" slot
	cl "$c" "open CKR_OK" open
	cl "$c" "login CKR_OK" login
	cl "$c" "sessioninfo CKR_OK RO_USER" sessioninfo
	cl_sign "$c" 1
done

tk_log "the card machine's server goes away"
srv_stop
for c in keep dies; do
	tk_wait "$T" "$c's connection ends" cl_transport_gone "$c"
done
rc=0
TK_OUT=$("${RP11[@]}" -L 2>&1) || rc=$?
tk_log "server down: a new pkcs11-tool -L: exit $rc"
[[ $rc -ne 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "a token listed with the server down"; }

# SIGPIPE ignored: every call answers CKR_DEVICE_ERROR
cl keep "sign C_FindObjectsInit CKR_DEVICE_ERROR" sign 01 "$TK_TMP/data.sha256" "$TK_TMP/x.der"
cl keep "sessioninfo C_GetSessionInfo CKR_DEVICE_ERROR" sessioninfo
# SIGPIPE's default action: the first call ends the process
tk_log "dies: sign (SIGPIPE expected)"
echo "sign 01 $TK_TMP/data.sha256 $TK_TMP/y.der" >&"${CL_FD[dies]}"
for ((i = 0; i < T * 10; i++)); do
	kill -0 "${CL_PID[dies]}" 2>/dev/null || break
	sleep 0.1
done
kill -0 "${CL_PID[dies]}" 2>/dev/null && tk_fail "dies: still running ${T}s after the call"
rc=0
wait "${CL_PID[dies]}" || rc=$?
unset 'CL_PID[dies]'
[[ $rc -eq $((128 + 13)) ]] || tk_fail "dies: exit status $rc, expected 141 (SIGPIPE)"
[[ $(wc -l <dies.out) -eq ${CL_LINES[dies]} ]] || tk_fail "dies answered: $(tail -1 dies.out)"
tk_log "dies: killed by SIGPIPE at its first call"

srv_start
# a new process works at once
tk_run "other side, new process: sign ECDSA" "${RP11[@]}" --login --pin "$PIN" --sign -m ECDSA \
	--id 01 --signature-format openssl -i data.sha256 -o sig01b.der
tk_run "verify its signature" openssl pkeyutl -verify -pubin -inkey pub9a.pem -in data.sha256 \
	-sigfile sig01b.der
# the old process does not reconnect by itself
cl keep "sign C_FindObjectsInit CKR_DEVICE_ERROR" sign 01 "$TK_TMP/data.sha256" "$TK_TMP/x.der"
cl keep "slot C_GetSlotList CKR_DEVICE_ERROR" slot
cl keep "login C_Login CKR_DEVICE_ERROR" login
# until it finalizes and initializes again; then a new session and login
cl keep "finalize CKR_OK" finalize
cl keep "init CKR_OK" init
cl keep "slot CKR_OK 1 $SERIAL" slot
cl keep "sessioninfo C_GetSessionInfo CKR_SESSION_HANDLE_INVALID" sessioninfo
cl keep "open CKR_OK" open
cl keep "sessioninfo CKR_OK RO_PUBLIC" sessioninfo
cl keep "login CKR_OK" login
cl_sign keep 2
cl keep "finalize CKR_OK" finalize
cl keep "quit" quit
wait "${CL_PID[keep]}" || tk_fail "keep: exit status $?"
unset 'CL_PID[keep]'
srv_stop
wait "$SRV_PID" 2>/dev/null || true

tk_pass
