#!/usr/bin/env bash
# tokenkitd, the broker (issue 13), as a real process with the real pcscd and
# the virtual PIV card, and programs nobody here wrote as its clients:
#  1. its socket: a private directory (0700) and the socket 0600;
#  2. broker mode: the module finds the broker by itself (auto), pkcs11-tool
#     signs through it (ECDSA 9A; RSA-PSS 9C with its per-signature PIN),
#     openssl verifies; with TOKENKIT_BROKER=off the module stays embedded;
#     `tokenkit tokens`, `objects`, `readers` and `diag` ask the broker and
#     show what they show embedded (diag: the broker's counters), and give up at the deadline on a broker that never answers (apdu too);
#  3. per-application login through one broker: tk-p11-login's two-session,
#     two-process and threaded checks (a PIN-always login belongs to one
#     operation; another client's login makes nobody else logged in), and
#     a repeated C_SignInit whose failure must reach the C_Sign after it;
#     the connections go through memory shared with the broker (both
#     processes map it), and with TOKENKIT_BROKER_SHM=off through the
#     socket alone;
#     arguments refused by the client end the broker's operation as well,
#     and attribute buffers larger than an answer carries are answered
#     right (tk-p11-op-errors, the same answers as embedded);
#  4. NSS (modutil, certutil, tstclnt TLS 1.3 client authentication) and
#     OpenSSL through libp11 (s_client) with their keys in the broker;
#  5. crash-only: 100 kill -9 of the broker while a client signs: no call
#     past its deadline, every signature verifies, signing resumes, the
#     card's registration is still in the registry; a restart between
#     C_SignInit and C_Sign (the client pipelines a repeated init) fails
#     that C_Sign and never signs;
#  6. a client of another uid is refused (SO_PEERCRED), on a socket it can
#     reach (systemd's socket activation, systemd-socket-activate), and the
#     broker then serves its own user from the socket it was handed;
#  6b. the system instance (--system): uid 65534 finds it by itself (no
#     broker of its own), sees and signs with the card, and never sees a
#     software token of the broker's user;
#  6c. the software token's keys through the broker: its object list as
#     embedded; tk-p11-soft-keys (C_GenerateKey, C_WrapKey, C_UnwrapKey,
#     C_CopyObject: the copy of an unwrapped key signs, OpenSSL verifies;
#     20 too-small buffers of 59 KiB for a 60 KiB value answer
#     CKR_BUFFER_TOO_SMALL as embedded);
#  7. consent: deny, allow-always and reset round trip with a prompt
#     program; a denied use answers CKR_FUNCTION_REJECTED and is logged;
#     a person slower than the client's timeout is waited for (the broker's
#     "still working" answers); a decryption refused after a reset answers
#     at C_DecryptInit, not as a failed C_Decrypt; the tool's own commands
#     to the card (BP_CARD_OPEN) are asked for as a use of every key on it:
#     denied (exit 1, said), listed, reset, allowed;
#  8. a stopped broker and a stalled card: the application gets its error
#     at the deadline.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_broker.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_tls.sh"
p11_require
tk_require_cmd pkcs11-tool certutil modutil tstclnt systemd-socket-activate setpriv
[[ -x $TK_BUILD/tokenkitd && -x $TK_BUILD/tk-p11-login && -x $TK_BUILD/tk-p11-op-errors &&
	-x $TK_BUILD/tk-p11-soft-keys ]] ||
	tk_fail "tokenkitd or its test programs not built"
broker_env
SOCK=$XDG_RUNTIME_DIR/tokenkit/broker.sock
LOGIN=$TK_BUILD/tk-p11-login
BPID=""
P11=(pkcs11-tool --module "$TK_P11_MODULE")

on_exit() {
	broker_kill
	[[ ${TK_KEEP:-0} != 1 || ! -e $BLOG ]] || cp "$BLOG" /tmp/test_broker.log
}
trap 'rc=$?; on_exit; tls_stop; (exit $rc); tk_cleanup' EXIT

# --- 1. the socket ---------------------------------------------------------
broker_start
[[ $(stat -c %a "$XDG_RUNTIME_DIR/tokenkit") == 700 ]] || tk_fail "socket directory not 0700"
[[ -S $SOCK && $(stat -c %a "$SOCK") == 600 ]] || tk_fail "socket missing or not 0600"
tk_run_fails "a second broker on the same socket" "$TK_BUILD/tokenkitd"
tk_expect 'already answers'

# --- 2. broker mode --------------------------------------------------------
tk_run "slots through the broker (auto)" "${P11[@]}" -L
tk_expect 'token label +: PIV '
grep -q "client .*pkcs11-tool" "$BLOG" || tk_fail "the broker did not serve pkcs11-tool"
before=$(grep -c 'client .*pkcs11-tool (pid [0-9]*, uid' "$BLOG")
tk_run "embedded when told so" env TOKENKIT_BROKER=off "${P11[@]}" -L
tk_expect 'token label +: PIV '
[[ $(grep -c 'client .*pkcs11-tool (pid [0-9]*, uid' "$BLOG") == "$before" ]] ||
	tk_fail "TOKENKIT_BROKER=off still went to the broker"
tk_run "library info in broker mode" "${P11[@]}" -I
tk_expect '\(broker\)'

# the tool through the broker (BP_TOKENS): what `tokenkit tokens` and
# `objects` show comes from the broker's own tokens, and is what the tool
# shows when it opens the readers itself; the token's serial is the one
# pkcs11-tool reads through the module (a path that shares nothing with the
# tool's JSON)
TOOL=$TK_BUILD/tokenkit
tk_run "pkcs11-tool's token serial" "${P11[@]}" -L
p11serial=$(sed -n 's/.*serial num *: *\([^ ]*\).*/\1/p' <<<"$TK_OUT" | head -1)
[[ -n $p11serial ]] || tk_fail "no serial in pkcs11-tool -L"
before=$(grep -c 'client .*/tokenkit (pid' "$BLOG" || true)
tk_run "tokens through the broker" "$TOOL" tokens --json
via_broker=$TK_OUT
[[ $(grep -c 'client .*/tokenkit (pid' "$BLOG") -gt ${before:-0} ]] ||
	tk_fail "the tool did not ask the broker"
python3 - "$p11serial" "$via_broker" <<'PY' || tk_fail "tokens --json through the broker"
import json, sys
toks = json.loads(sys.argv[2])
assert len(toks) == 1, toks
t = toks[0]
assert t["driver"] == "piv" and t["serial"] == sys.argv[1], (t, sys.argv[1])
assert isinstance(t["pin_retries"], int) and t["pin_retries"] > 0, t
assert any(i["id"] == "01" and i["key_type"] == "EC" for i in t["identities"]), t
PY
TOKENKIT_BROKER=off tk_run "tokens, embedded" "$TOOL" tokens --json
[[ $TK_OUT == "$via_broker" ]] || {
	diff <(echo "$via_broker") <(echo "$TK_OUT") >&2
	tk_fail "tokens through the broker differ from embedded"
}
reader=$(python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["reader"])' <<<"$via_broker")
tk_run "objects through the broker" "$TOOL" objects "$reader" --json
via_broker=$TK_OUT
TOKENKIT_BROKER=off tk_run "objects, embedded" "$TOOL" objects "$reader" --json
# (an object's handle is its token's, and the two tokens are two opens of
# the card: the broker's took the cache first, its attestations after)
python3 - "$via_broker" "$TK_OUT" <<'PY' || tk_fail "objects through the broker differ from embedded"
import json, sys
def objs(text):
    (slot,) = json.loads(text)
    return sorted((dict(o, handle=None) for o in slot["objects"]), key=lambda o: sorted(o.items()))
a, b = objs(sys.argv[1]), objs(sys.argv[2])
if a != b:
    print("broker:  ", a, "\nembedded:", b, file=sys.stderr)
    sys.exit(1)
assert len(a) >= 8, a
PY
grep -q '"class": "certificate"' <<<"$via_broker" || tk_fail "no certificate among the objects"
# `tokenkit readers` through the broker (BP_READERS): the broker's readers
# as the tool shows them when it opens them itself, and as OpenSC's
# opensc-tool (its own PC/SC client) lists them
before=$(grep -c 'client .*/tokenkit (pid' "$BLOG" || true)
tk_run "readers through the broker" "$TOOL" readers --json
via_broker=$TK_OUT
[[ $(grep -c 'client .*/tokenkit (pid' "$BLOG") -gt ${before:-0} ]] ||
	tk_fail "the tool did not ask the broker for the readers"
tk_run "opensc-tool's readers" opensc-tool --list-readers
python3 - "$via_broker" "$TK_OUT" <<'PY' || tk_fail "readers through the broker differ"
import json, re, sys
broker = json.loads(sys.argv[1])
assert broker and any(r["card"] and r["state"] == "valid" and r["atr"] for r in broker), broker
for r in broker:
    assert r["backend"] == "pcsc" and r["protocol"] in ("T=0", "T=1", None), r
# opensc-tool: a header "Nr.  Card  Features  Name", then a line per reader
lines = sys.argv[2].splitlines()
head = next(i for i, l in enumerate(lines) if l.startswith("Nr.") and "Name" in l)
col = lines[head].index("Name")
theirs = {}
for line in lines[head + 1:]:
    m = re.match(r"\s*\d+\s+(Yes|No)\s", line)
    if m:
        theirs[line[col:].strip()] = m.group(1) == "Yes"
ours = {r["reader"]: r["card"] for r in broker}
assert ours == theirs, (ours, theirs)
PY
TOKENKIT_BROKER=off tk_run "readers, embedded" "$TOOL" readers --json
python3 - "$via_broker" "$TK_OUT" <<'PY' || tk_fail "readers through the broker differ from embedded"
import json, sys
def view(text):
    return [{k: v for k, v in r.items() if k != "slot"} for r in json.loads(text)]
a, b = view(sys.argv[1]), view(sys.argv[2])
if a != b:
    print("broker:  ", a, "\nembedded:", b, file=sys.stderr)
    sys.exit(1)
PY
tk_run "readers through the broker, as text" "$TOOL" readers
tk_expect '^[0-9]+  valid +T=[01] +pcsc +'
# `tokenkit diag` through the broker: the broker's counters (the APDUs of
# every signature above), not a fresh process's
before=$(grep -c 'client .*/tokenkit (pid' "$BLOG")
tk_run "diag through the broker" "$TOOL" diag --json "$reader"
via_broker=$TK_OUT
[[ $(grep -c 'client .*/tokenkit (pid' "$BLOG") -gt $before ]] ||
	tk_fail "the tool did not ask the broker for diag"
TOKENKIT_BROKER=off tk_run "diag, embedded" "$TOOL" diag --json "$reader"
python3 - "$via_broker" "$TK_OUT" "$reader" <<'PY' || tk_fail "diag through the broker"
import json, sys
b, e = json.loads(sys.argv[1]), json.loads(sys.argv[2])
(rb,), (re_,) = b["readers"], e["readers"]
assert rb["reader"] == re_["reader"] == sys.argv[3], (rb, re_)
assert rb["state"] == "valid" and rb["atr"] == re_["atr"], (rb, re_)
# the broker signed with this card before: more APDUs than a fresh open
assert rb["transmits"] > re_["transmits"] and rb["transmits"] >= 10, (rb, re_)
assert rb["latency_us"]["samples"] > 0, rb
assert b["log"] == e["log"], (b["log"], e["log"])
PY
rc=0
TK_OUT=$("$TOOL" diag "no such reader" 2>&1) || rc=$?
[[ $rc == 0 ]] || tk_fail "diag of an unknown reader through the broker: exit $rc"
tk_expect "no reader 'no such reader' now; showing its history"
rc=0
"$TOOL" objects "no such reader" >/dev/null 2>&1 || rc=$?
[[ $rc == 4 ]] || tk_fail "objects of an unknown reader through the broker: exit $rc, not 4"
rc=0
TOKENKIT_BROKER=on TOKENKIT_BROKER_SOCKET=$TK_TMP/none.sock "$TOOL" tokens >/dev/null 2>&1 || rc=$?
[[ $rc == 3 ]] || tk_fail "tokens with TOKENKIT_BROKER=on and no broker: exit $rc, not 3"
# a broker that takes the connection and never answers: the tool gives up
# at its deadline (exit 3), it does not hang (timeout's 124)
python3 - "$TK_TMP/mute.sock" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
held = []
while True:
    held.append(s.accept()[0])
PY
MUTE=$!
for ((i = 0; i < 100; i++)); do
	[[ -S $TK_TMP/mute.sock ]] && break
	sleep 0.05
done
rc=0
TOKENKIT_BROKER_SOCKET=$TK_TMP/mute.sock TOKENKIT_BROKER_TIMEOUT_MS=500 timeout 60 \
	"$TOOL" tokens >/dev/null 2>&1 || rc=$?
rc2=0
TOKENKIT_BROKER_SOCKET=$TK_TMP/mute.sock TOKENKIT_BROKER_TIMEOUT_MS=500 timeout 60 \
	"$TOOL" readers >/dev/null 2>&1 || rc2=$?
rc3=0
TOKENKIT_BROKER_SOCKET=$TK_TMP/mute.sock TOKENKIT_BROKER_TIMEOUT_MS=500 timeout 60 \
	"$TOOL" apdu "$TK_READER0" 00A4040009A0000003080000100000 >/dev/null 2>&1 || rc3=$?
kill "$MUTE" 2>/dev/null || true
wait "$MUTE" 2>/dev/null || true
[[ $rc == 3 ]] || tk_fail "tokens from a broker that never answers: exit $rc, not 3"
[[ $rc2 == 3 ]] || tk_fail "readers from a broker that never answers: exit $rc2, not 3"
[[ $rc3 == 3 ]] || tk_fail "apdu from a broker that never answers: exit $rc3, not 3"

# messages that are not ours close their own connection, with a reason in
# the log, and nothing else: oversize, truncated, not CBOR, an unknown
# function, no hello first
bad_client() {
	python3 - "$SOCK" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
s.shutdown(socket.SHUT_WR)
s.settimeout(5)
print("answer bytes:", len(s.recv(4096)))
PY
}
tk_run "an oversize length" bad_client 7fffffff
tk_run "not CBOR" bad_client 00000002ffff
tk_run "an unknown function" bad_client 0000000784011901f40180
tk_run "no hello first" bad_client 000000058401000180
tk_expect 'answer bytes: 0'
for why in 'oversize message' 'not one CBOR item' 'unknown function' 'no hello first'; do
	grep -q "closed: $why" "$BLOG" || { cat "$BLOG" >&2; tk_fail "no log line for: $why"; }
done
tk_run "the broker still serves" "${P11[@]}" -L
tk_expect 'token label +: PIV '

printf 'signed through the broker\n' >data.txt
tk_run "ECDSA 9A through the broker" "${P11[@]}" --login --pin "$PIN" --sign --id 01 \
	-m ECDSA-SHA256 --signature-format openssl -i data.txt -o ec.sig
tk_run "verify ECDSA" openssl dgst -sha256 -verify pub9a.pem -signature ec.sig data.txt
tk_run "RSA-PSS 9C (PIN always) through the broker" "${P11[@]}" --login --pin "$PIN" --sign \
	--id 02 -m SHA256-RSA-PKCS-PSS -i data.txt -o pss.sig
tk_run "verify RSA-PSS" openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt \
	rsa_pss_saltlen:-1 -verify pub9c.pem -signature pss.sig data.txt

# --- 3. per-application login through one broker ------------------------------
export TOKENKIT_BROKER=on
tk_run "two sessions, one PIN-always login" "$LOGIN" "$TK_P11_MODULE" two-sessions
tk_expect 'RESULT PASS'
tk_run "two processes, their own logins" "$LOGIN" "$TK_P11_MODULE" two-procs
tk_expect 'RESULT PASS'
tk_run "4 threads mixing 9A and 9C for 5 s" "$LOGIN" "$TK_P11_MODULE" threads 4 5
tk_expect 'bad 0, errors 0'
tk_expect 'RESULT PASS'
# the connections' messages go through memory the broker shares with each
# (bring.h), and without it (TOKENKIT_BROKER_SHM=off, the client's side) the
# same checks pass on the socket alone: the area is mapped in both
# processes only when asked for
shm_maps() { grep -c 'memfd:tokenkit-broker' "/proc/$1/maps" 2>/dev/null || true; }
for shm in on off; do
	TOKENKIT_BROKER_SHM=$shm "$LOGIN" "$TK_P11_MODULE" threads 2 3 >"$TK_TMP/shm.$shm" 2>&1 &
	cpid=$!
	sleep 1.5
	in_client=$(shm_maps "$cpid") in_broker=$(shm_maps "$BPID")
	wait "$cpid" || { cat "$TK_TMP/shm.$shm" >&2; tk_fail "threads with TOKENKIT_BROKER_SHM=$shm"; }
	grep -q 'bad 0, errors 0' "$TK_TMP/shm.$shm" || tk_fail "signatures with TOKENKIT_BROKER_SHM=$shm"
	if [[ $shm == on ]]; then
		[[ $in_client -ge 1 && $in_broker -ge 1 ]] ||
			tk_fail "no shared memory between the client and the broker ($in_client, $in_broker)"
	else
		[[ $in_client == 0 ]] || tk_fail "TOKENKIT_BROKER_SHM=off still mapped the broker's memory"
	fi
done
# the client sends a repeated C_SignInit with the next call: its failure
# reaches C_Sign (the same answers as embedded), never a signature
tk_run "the same init again and again" "$LOGIN" "$TK_P11_MODULE" repeat-init
tk_expect 'RESULT PASS'
TOKENKIT_BROKER=off tk_run "... and embedded" "$LOGIN" "$TK_P11_MODULE" repeat-init
tk_expect 'RESULT PASS'
# arguments the client refuses itself end the broker's operation too, as
# embedded (pkcs11test's DigestInvalid); C_SessionCancel; C_GenerateKey is
# carried (an invalid session before bad arguments); a certificate's
# attributes with buffers adding up to more than one answer carries (the
# broker asks for the sizes first) as when read one by one
tk_run "an error ends the operation, C_SessionCancel" "$TK_BUILD/tk-p11-op-errors" "$TK_P11_MODULE"
tk_expect_not '^FAIL'
tk_expect '^ok   C_GetAttributeValue, 300 KiB buffers, one type invalid'
TOKENKIT_BROKER=off tk_run "... and embedded" "$TK_BUILD/tk-p11-op-errors" "$TK_P11_MODULE"
tk_expect_not '^FAIL'
tk_expect '^ok   C_GetAttributeValue, 300 KiB buffers, one type invalid'

# --- 4. NSS and OpenSSL (libp11) through the broker ---------------------------
tls_server_key
DB="sql:$TK_TMP/nssdb"
mkdir -p "$TK_TMP/nssdb"
printf '%s\n' "$PIN" >pin.txt
tk_run "NSS database" certutil -N -d "$DB" --empty-password
tk_run "NSS: add the module" sh -c "echo | modutil -dbdir '$DB' -add tokenkit -libfile '$TK_P11_MODULE' -force"
tk_run "NSS: certificates" certutil -L -d "$DB" -h all
tk_expect 'PIV [0-9A-Za-z]+:Certificate for PIV Authentication +u,u,u'
NICK=$(sed -n 's/^\(PIV [^:]*:Certificate for PIV Authentication\) .*/\1/p' <<<"$TK_OUT")
tk_run "NSS: keys with the PIN" certutil -K -d "$DB" -h all -f pin.txt
tk_expect 'ec +01 '
tls_nss nss "$DB" "$NICK" pin.txt ca.pem
[[ $TLS_RC == 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "tstclnt through the broker: exit $TLS_RC"; }
tls_client_checked nss tokenkit-9a
tk_run "serial" "${P11[@]}" -L
SERIAL=$(sed -n 's/^ *serial num *: *//p' <<<"$TK_OUT" | head -1)
tls_openssl ossl "pkcs11:serial=$SERIAL;id=%01;type=private;pin-value=$PIN" cert9a.pem ca.pem
[[ $TLS_RC == 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "s_client through the broker: exit $TLS_RC"; }
tls_client_checked ossl tokenkit-9a

# --- 5. kill -9, 100 times, while a client signs --------------------------------
registered() {
	TOKENKIT_BROKER=off "$TK_BUILD/tokenkit" registry list 2>&1 | grep -c "piv:" || true
}
REG_BEFORE=$(registered)
[[ $REG_BEFORE -ge 1 ]] || {
	TOKENKIT_BROKER=off "$TK_BUILD/tokenkit" registry list >&2 || true
	ls -la "$XDG_STATE_HOME"/tokenkit* >&2 || true
	tk_fail "the card is not in the registry"
}
export TOKENKIT_BROKER_TIMEOUT_MS=3000
"$LOGIN" "$TK_P11_MODULE" restarts 45 3000 >restarts.log 2>&1 &
CPID=$!
sleep 1
for ((k = 1; k <= 100; k++)); do
	broker_kill
	broker_start
	sleep "0.$((RANDOM % 3 + 1))"
done
wait "$CPID" || { cat restarts.log >&2; tk_fail "the client failed across broker restarts"; }
TK_OUT=$(cat restarts.log)
tk_expect 'RESULT PASS'
tk_log "$(grep RESTARTS restarts.log)"
[[ $(registered) == "$REG_BEFORE" ]] || tk_fail "a registration was lost across the restarts"
unset TOKENKIT_BROKER_TIMEOUT_MS
# a broker restart between C_SignInit and C_Sign: C_Sign fails, no
# signature by a key the session no longer has, signing works again
mkfifo go.fifo
"$LOGIN" "$TK_P11_MODULE" repeat-init restart <go.fifo >repeat.log 2>&1 &
RPID=$!
exec {GO}>go.fifo
for ((i = 0; i < 300; i++)); do grep -q PAUSE repeat.log && break; sleep 0.1; done
broker_kill
broker_start
echo go >&"$GO"
exec {GO}>&-
wait "$RPID" || { cat repeat.log >&2; tk_fail "repeat-init across a broker restart"; }
TK_OUT=$(cat repeat.log)
tk_expect 'C_Sign across a broker restart: CKR_'
tk_expect 'RESULT PASS'
tk_log "$(grep 'across a broker restart' repeat.log)"

# --- 6. another uid; socket activation -------------------------------------------
broker_kill
PUB=$TK_TMP/pub
mkdir -m 0755 "$PUB"
# (it hands over only the environment named with -E)
systemd-socket-activate -l "$PUB/broker.sock" -E PCSCLITE_CSOCK_NAME -E XDG_STATE_HOME \
	-E XDG_CACHE_HOME -E TOKENKIT_PLUGIN_PATH -E TOKENKIT_BROKER=off "$TK_BUILD/tokenkitd" -v \
	>>"$BLOG" 2>&1 &
BPID=$!
for ((i = 0; i < 50; i++)); do [[ -S $PUB/broker.sock ]] && break; sleep 0.1; done
chmod 0777 "$PUB/broker.sock"
chmod 0755 "$TK_TMP"
tk_run "the user's client, socket-activated broker" env TOKENKIT_BROKER_SOCKET="$PUB/broker.sock" \
	"${P11[@]}" -L
tk_expect 'token label +: PIV '
grep -q 'tokenkitd: ready' <(tail -n 20 "$BLOG") || tk_fail "the activated broker did not start"
TK_OUT=$(tk_host setpriv --reuid=65534 --regid=65534 --clear-groups env TOKENKIT_BROKER=on \
	TOKENKIT_BROKER_SOCKET="$PUB/broker.sock" XDG_RUNTIME_DIR=/nonexistent \
	"${P11[@]}" -L 2>&1 || true)
tk_expect_not 'token label'
grep -q 'refused a client of uid 65534' "$BLOG" || tk_fail "the broker did not refuse uid 65534"
broker_kill

# --- 6b. the system instance: every user, readers only ---------------------------
# a software token of root's: the system instance must not give it to others
TOKENKIT_BROKER=off tk_run "a software token of root's" "$TK_BUILD/tokenkit" soft create \
	--label rootsoft --kdf-cost 10 --insecure-pin "$PIN" --insecure-so-pin 12345678
mkdir -m 0755 "$TK_TMP/sys"
broker_start --system --socket "$TK_TMP/sys/tokenkit/broker.sock"
[[ $(stat -c %a "$TK_TMP/sys/tokenkit") == 755 ]] || tk_fail "system socket directory not 0755"
[[ $(stat -c %a "$TK_TMP/sys/tokenkit/broker.sock") == 666 ]] || tk_fail "system socket not 0666"
mkdir -m 0700 "$TK_TMP/nobody"
chown 65534:65534 "$TK_TMP/nobody"
as_nobody() {
	tk_host setpriv --reuid=65534 --regid=65534 --clear-groups env TOKENKIT_BROKER=auto \
		TOKENKIT_BROKER_SYSTEM_SOCKET="$TK_TMP/sys/tokenkit/broker.sock" \
		XDG_RUNTIME_DIR=/nonexistent HOME="$TK_TMP/nobody" "$@"
}
TK_OUT=$(as_nobody "${P11[@]}" -L 2>&1 || true)
tk_expect 'token label +: PIV '
tk_expect_not 'rootsoft'
grep -q 'client .*pkcs11-tool (pid [0-9]*, uid 65534)' "$BLOG" ||
	tk_fail "the system instance did not serve uid 65534"
TK_OUT=$(as_nobody "${P11[@]}" --login --pin "$PIN" --sign --id 01 -m ECDSA-SHA256 \
	--signature-format openssl -i data.txt -o "$TK_TMP/nobody/sys.sig" 2>&1) ||
	{ printf '%s\n' "$TK_OUT" >&2; tk_fail "uid 65534 could not sign through the system instance"; }
tk_run "verify the signature of uid 65534" openssl dgst -sha256 -verify pub9a.pem \
	-signature "$TK_TMP/nobody/sys.sig" data.txt
# root's own broker would show root's software token; the system one does not
TOKENKIT_BROKER=off tk_run "root's software token, embedded" "${P11[@]}" -L
tk_expect 'rootsoft'
TOKENKIT_BROKER_SOCKET="$TK_TMP/sys/tokenkit/broker.sock" tk_run "root through the system instance" \
	"${P11[@]}" -L
tk_expect 'token label +: PIV '
tk_expect_not 'rootsoft'
chmod 0700 "$TK_TMP"
broker_kill

# --- 6c. the software token's keys through the broker ------------------------------
# a vendor's attribute type with the array bit set is just a number (pkcs11-tool
# asks for one: the broker closed the connection, and every handle went
# stale); C_GenerateKey, C_WrapKey, C_UnwrapKey and C_CopyObject are
# carried: a copy of a key unwrapped in the broker signs, and OpenSSL
# verifies the signature with the public key of the key that was wrapped
broker_start
refused=$(grep -c 'arguments do not parse' "$BLOG" || true)
SOFT=("${P11[@]}" --token-label rootsoft --login --pin "$PIN")
TOKENKIT_BROKER=off tk_run "objects, embedded" "${SOFT[@]}" -O
embedded_objects=$TK_OUT
tk_run "objects, through the broker" "${SOFT[@]}" -O
[[ $TK_OUT == "$embedded_objects" ]] || {
	diff <(printf '%s\n' "$embedded_objects") <(printf '%s\n' "$TK_OUT") >&2
	tk_fail "the broker lists the software token's objects otherwise"
}
tk_run "generate, wrap, unwrap, copy, sign" "$TK_BUILD/tk-p11-soft-keys" "$TK_P11_MODULE" \
	rootsoft "$PIN"
tk_expect_not '^FAIL'
TOKENKIT_BROKER=off tk_run "... and embedded" "$TK_BUILD/tk-p11-soft-keys" "$TK_P11_MODULE" \
	rootsoft "$PIN"
tk_expect_not '^FAIL'
[[ $(grep -c 'arguments do not parse' "$BLOG") == "$refused" ]] ||
	tk_fail "the broker refused a client's arguments"
broker_kill

# --- 7. consent --------------------------------------------------------------
cat >prompt <<EOF
#!/bin/sh
echo "\$TOKENKIT_CONSENT_PROGRAM \$TOKENKIT_CONSENT_KEY_ID" >>"$TK_TMP/prompted"
sleep "\$(cat "$TK_TMP/delay" 2>/dev/null || echo 0)"
cat "$TK_TMP/answer"
EOF
chmod +x prompt
broker_start --consent-prompt "$TK_TMP/prompt"
echo deny >answer
tk_run_fails "sign, the prompt says deny" "${P11[@]}" --login --pin "$PIN" --sign --id 01 \
	-m ECDSA-SHA256 -i data.txt -o denied.sig
tk_expect 'C_Sign(Final)? failed: rv = .*\(0x200\)' # CKR_FUNCTION_REJECTED
grep -q 'refused key' "$BLOG" || tk_fail "the denial was not logged"
[[ $(wc -l <prompted) == 1 ]] || tk_fail "the prompt was not asked once"
tk_run_fails "sign again: the stored deny, no prompt" "${P11[@]}" --login --pin "$PIN" --sign \
	--id 01 -m ECDSA-SHA256 -i data.txt -o denied.sig
[[ $(wc -l <prompted) == 1 ]] || tk_fail "a stored deny asked again"
tk_run "consent list" "$TK_BUILD/tokenkit" consent list
tk_expect 'deny.*pkcs11-tool'
tk_run "consent reset" "$TK_BUILD/tokenkit" consent reset --program "$(command -v pkcs11-tool)"
tk_run "consent list after reset" "$TK_BUILD/tokenkit" consent list
tk_expect_not 'pkcs11-tool'
echo always >answer
tk_run "sign, the prompt says always" "${P11[@]}" --login --pin "$PIN" --sign --id 01 \
	-m ECDSA-SHA256 --signature-format openssl -i data.txt -o ok.sig
tk_run "verify" openssl dgst -sha256 -verify pub9a.pem -signature ok.sig data.txt
tk_run "sign again, no prompt" "${P11[@]}" --login --pin "$PIN" --sign --id 01 \
	-m ECDSA-SHA256 -i data.txt -o ok2.sig
tk_run "sign a third time" "${P11[@]}" --login --pin "$PIN" --sign --id 01 \
	-m ECDSA-SHA256 -i data.txt -o ok2.sig
[[ $(wc -l <prompted) == 2 ]] || tk_fail "the prompt was not asked exactly twice"
# the stored "always" is read once, then remembered while the store does
# not change (logged at debug only); the reset below must still be seen
# (the slow prompt is asked)
[[ $(grep -c 'always (stored)' "$BLOG") == 1 ]] || tk_fail "a stored always was read at every use"
tk_run "consent list" "$TK_BUILD/tokenkit" consent list
tk_expect 'always.*pkcs11-tool'
# a person takes longer than the client's timeout: the broker's "still
# working" answers keep the call alive, and the answer counts
tk_run "consent reset" "$TK_BUILD/tokenkit" consent reset --program "$(command -v pkcs11-tool)"
echo 4 >delay
echo once >answer
t0=$(date +%s%N)
tk_run "a 4 s answer, a 2 s client timeout" env TOKENKIT_BROKER_TIMEOUT_MS=2000 "${P11[@]}" \
	--login --pin "$PIN" --sign --id 01 -m ECDSA-SHA256 --signature-format openssl -i data.txt \
	-o slow.sig
tk_log "a slow consent answer: signed after $((($(date +%s%N) - t0) / 1000000)) ms"
tk_run "verify" openssl dgst -sha256 -verify pub9a.pem -signature slow.sig data.txt
[[ $(wc -l <prompted) == 3 ]] || tk_fail "the slow prompt was not asked"
rm delay
# a consent withdrawn between two decryptions of one program: the third
# C_DecryptInit answers the refusal (a client that sent a repeated init with
# the next call answered CKR_OK, then CKR_FUNCTION_FAILED at C_Decrypt)
echo always >answer
mkfifo decrypt.fifo
"$LOGIN" "$TK_P11_MODULE" decrypt-consent <decrypt.fifo >decrypt.log 2>&1 &
DPID=$!
exec {GO}>decrypt.fifo
for ((i = 0; i < 300; i++)); do grep -q PAUSE decrypt.log && break; sleep 0.1; done
tk_run "consent reset" "$TK_BUILD/tokenkit" consent reset --program "$(realpath "$LOGIN")"
echo deny >answer
echo go >&"$GO"
exec {GO}>&-
wait "$DPID" || { cat decrypt.log >&2; tk_fail "a decryption after the consent was withdrawn"; }
TK_OUT=$(cat decrypt.log)
tk_expect 'C_DecryptInit after the consent was withdrawn: CKR_KEY_FUNCTION_NOT_PERMITTED'
[[ $(wc -l <prompted) == 5 ]] || tk_fail "the prompt was not asked once before and once after the reset"
# the tool's own commands to the card reach every key on it: asked for as
# such (key id ca4d), denied, listed, forgotten, allowed
TOOLPATH=$(realpath "$TK_BUILD/tokenkit")
echo deny >answer
rc=0
"$TOOLPATH" apdu "$TK_READER0" 00A4040009A0000003080000100000 >apdu.out 2>&1 || rc=$?
[[ $rc == 1 ]] && grep -q 'refused this program the card' apdu.out ||
	{ cat apdu.out >&2; tk_fail "apdu with its consent denied: exit $rc"; }
grep -q "^$TOOLPATH ca4d\$" prompted || { cat prompted >&2; tk_fail "the card's consent was not asked"; }
tk_run "consent list" "$TOOLPATH" consent list
tk_expect "deny.*$TOOLPATH"
tk_run "consent reset" "$TOOLPATH" consent reset --program "$TOOLPATH"
echo always >answer
tk_run "apdu, its consent given" "$TOOLPATH" apdu "$TK_READER0" 00A4040009A0000003080000100000
tk_expect 'SW=9000'
[[ $(wc -l <prompted) == 7 ]] || tk_fail "the card's consent was not asked once before and once after the reset"
broker_kill

# --- 8. a stalled card: the error at the deadline --------------------------------
broker_start
export TOKENKIT_BROKER_TIMEOUT_MS=2000
# a stopped broker: every call ends at its deadline
kill -STOP "$BPID"
t0=$(date +%s%N)
TK_OUT=$(tk_host "${P11[@]}" -L 2>&1 || true)
ms=$((($(date +%s%N) - t0) / 1000000))
kill -CONT "$BPID"
tk_log "a stopped broker: pkcs11-tool -L ended after $ms ms: $(tail -1 <<<"$TK_OUT")"
tk_expect_not 'token label'
tk_expect 'No slots|Available slots'
# (it did wait for the broker: at least one deadline)
((ms >= 1900)) || tk_fail "pkcs11-tool -L ended after $ms ms: not on the stopped broker"
((ms < 15000)) || tk_fail "the application waited $ms ms on a stopped broker"
tk_run "a session works" "${P11[@]}" -L
vpcd card fault 0 stall
t0=$(date +%s%N)
TK_OUT=$(tk_host "${P11[@]}" --login --pin "$PIN" --sign --id 01 -m ECDSA-SHA256 -i data.txt \
	-o stalled.sig 2>&1) && tk_fail "signing on a stalled card succeeded"
ms=$((($(date +%s%N) - t0) / 1000000))
tk_log "stalled card: pkcs11-tool gave up after $ms ms: $(tail -1 <<<"$TK_OUT")"
# each call waits at most its deadline: pkcs11-tool makes a few before it stops
((ms < 15000)) || tk_fail "the application waited $ms ms on a stalled card"
((ms >= 1900)) || tk_fail "pkcs11-tool gave up after $ms ms: not on the stalled card"
vpcd card fault 0 none
tk_pass
