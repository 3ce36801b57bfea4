#!/usr/bin/env bash
# A second local user attacks tokenkit's files, its logs and a set-uid
# program that uses it. The test creates the user (tk-attacker, useradd -r,
# idempotent) and drops to it with setpriv; everything runs in a private
# mount namespace with its own /tmp (a tmpfs without nosuid, so set-uid
# works, and /tmp/tokenkit-0 is not the one other tests share), and with
# /run/pcscd bound to the harness's pcscd (the socket a set-uid program
# uses: it must ignore PCSCLITE_CSOCK_NAME). The victim is root.
#
# Set-uid / set-gid (tk-setuid-probe installed 4755 or 2755 root, run by the
# attacker with TOKENKIT_LOG=trace and TOKENKIT_RECOVERY_LOG, XDG_CACHE_HOME,
# XDG_RUNTIME_DIR, XDG_STATE_HOME, HOME, TOKENKIT_READERS pointing into
# directories the attacker made world-writable, /tmp/tokenkit-<attacker>
# made first, and TOKENKIT_TIMEOUT_MS / TOKENKIT_P11_GRACE_MS out of range):
#   S1 the probe opens the token and forces a recovery: no file appears or
#      changes anywhere the attacker controls (the reported finding: the
#      recovery log went into /tmp/tokenkit-<attacker uid>), no trace/debug
#      output, no warning about the timeouts (they were not read);
#   S2 the same with PCSCLITE_CSOCK_NAME at a socket the attacker listens
#      on: nobody connects to it (pcsc-lite itself reads that variable);
#   S3 a FIFO planted as /tmp/tokenkit-<attacker>/recovery.jsonl: the
#      recovery does not block on it;
#   S4 S1 set-gid instead of set-uid;
#   S5 the PKCS#11 module loaded by the set-uid probe: no file, no log
#      (already true since secure_getenv, d7b5c7a: a regression guard).
# Root as an ordinary victim:
#   V1 /tmp/tokenkit-0 made first by the attacker (a symlink to the victim's
#      file planted in it): `tokenkit reset` writes nothing there, warns
#      once and logs to ~/.local/state/tokenkit; `tokenkit diag` reads it
#      there;
#   V2 /tmp/tokenkit-0 is the attacker's symlink to a directory of theirs:
#      the same;
#   V3 XDG_CACHE_HOME/tokenkit made first by the attacker (world-writable):
#      `tokenkit tokens` writes no cache there and warns;
#   V4 `tokenkit diag` on a recovery log with ANSI sequences, C1 and bidi
#      controls, invalid UTF-8 and an over-long line: nothing raw reaches
#      the terminal, --json is valid UTF-8 JSON; a 64 MiB log is not read.
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"

ATK_USER=tk-attacker
PROBE=$TK_BUILD/tk-setuid-probe

# ---------------------------------------------------------------- outside
if [[ ${1:-} != --inner ]]; then
	[[ $(id -u) -eq 0 ]] || tk_skip "needs root: creates a user, mounts a private /tmp"
	tk_require_cmd useradd setpriv unshare python3 mount
	[[ -x $PROBE ]] || tk_fail "$PROBE not built"
	p11_require
	unshare -m --propagation private -- true 2>/dev/null ||
		tk_skip "no mount namespaces here (the CI machine has them)"
	if ! id -u "$ATK_USER" >/dev/null 2>&1; then
		# another test may be creating it at the same moment
		useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$ATK_USER" 2>/dev/null ||
			id -u "$ATK_USER" >/dev/null || tk_fail "cannot create $ATK_USER"
	fi
	tk_env_start
	tk_card_start 0
	p11_provision 0 "9a:ECCP256"
	rc=0
	TK_HOSTILE_TMP=$TK_TMP unshare -m --propagation private -- \
		bash "${BASH_SOURCE[0]}" --inner || rc=$?
	[[ $rc -eq 0 ]] || tk_fail "inner part failed (exit $rc)"
	tk_pass
fi

# ---------------------------------------------------------------- inside
# (TK_TMP, TK_VPCD_DIR and PCSCLITE_CSOCK_NAME come from the outer part;
# its EXIT trap stops the harness, so none is set here)
TK_TMP=$TK_HOSTILE_TMP
ATK_UID=$(id -u "$ATK_USER")
ATK_GID=$(id -g "$ATK_USER")
as_atk() { setpriv --reuid="$ATK_UID" --regid="$ATK_GID" --clear-groups -- "$@"; }

# a private /tmp that still shows $TK_TMP where it was, and the source and
# build trees when they are under /tmp too (a clone in /tmp: the programs
# and the module under test run from there)
stage=$TK_TMP/stage
mkdir "$stage"
mount -t tmpfs -o mode=1777,size=256m tk-hostile-tmp "$stage"
for keep in "$TK_TMP" "$TK_SOURCE" "$TK_BUILD"; do
	keep=$(realpath "$keep")
	[[ $keep == /tmp/* && ! -e "$stage/${keep#/tmp/}/." ]] || continue
	mkdir -p "$stage/${keep#/tmp/}"
	mount --bind "$keep" "$stage/${keep#/tmp/}"
done
mount --move "$stage" /tmp
# /run/pcscd/pcscd.comm: the harness's pcscd
mount -t tmpfs -o mode=0755 tk-hostile-run /run
mkdir -p /run/pcscd
mount --bind "$TK_VPCD_DIR/run/pcscd" /run/pcscd
[[ $(findmnt -no OPTIONS -T /tmp) != *nosuid* ]] || tk_fail "private /tmp is nosuid"

# the set-uid and set-gid copies
mkdir -m 0755 /tmp/suid
cp "$PROBE" /tmp/suid/probe-uid
cp "$PROBE" /tmp/suid/probe-gid
cp "$TK_P11_MODULE" /tmp/suid/tokenkit-pkcs11.so
chown root:root /tmp/suid/*
chmod 4755 /tmp/suid/probe-uid
chmod 2755 /tmp/suid/probe-gid
chmod 0644 /tmp/suid/tokenkit-pkcs11.so

# the attacker's places
ATK=/tmp/atk
OBS=/tmp/atk-obs # the listener's record: not part of what is compared
as_atk mkdir -m 0755 "$ATK" "$OBS"
for d in cache/tokenkit run/tokenkit state/tokenkit home/.cache/tokenkit reclog; do
	as_atk mkdir -p "$ATK/$d"
done
as_atk chmod -R 0777 "$ATK"
as_atk mkdir -m 0700 "/tmp/tokenkit-$ATK_UID"

atk_env() {
	local e=(PATH=/usr/bin:/bin TOKENKIT_LOG=trace
		TOKENKIT_RECOVERY_LOG="$ATK/reclog/recovery.jsonl"
		XDG_CACHE_HOME="$ATK/cache" XDG_RUNTIME_DIR="$ATK/run" XDG_STATE_HOME="$ATK/state"
		HOME="$ATK/home" TOKENKIT_READERS="vcard:state=$ATK/card.state"
		TOKENKIT_TIMEOUT_MS=999999999 TOKENKIT_P11_GRACE_MS=999999999)
	# (the sanitizer build: the probe turns LeakSanitizer off itself, a
	# set-gid process cannot read its own /proc/self/environ)
	printf '%s\n' "${e[@]}"
}

snapshot() { find "$ATK" "/tmp/tokenkit-$ATK_UID" -printf '%p %y %U %s %T@\n' 2>/dev/null | sort; }

# run_probe TAG PROGRAM ARGS...: as the attacker, environment from atk_env
# plus $EXTRA_ENV; judged afterwards
run_probe() {
	local tag=$1 rc=0
	shift
	local -a env
	mapfile -t env < <(atk_env)
	snapshot >"$TK_TMP/$tag.before"
	tk_log "$tag: $*"
	as_atk timeout 60 env -i "${env[@]}" ${EXTRA_ENV:-} "$@" >"$TK_TMP/$tag.out" 2>"$TK_TMP/$tag.err" ||
		rc=$?
	snapshot >"$TK_TMP/$tag.after"
	if [[ $rc -ne 0 ]]; then
		cat "$TK_TMP/$tag.out" "$TK_TMP/$tag.err" >&2
		tk_fail "$tag: exit $rc$([[ $rc == 124 ]] && echo ' (hung: timeout)')"
	fi
	grep -q '^secure 1 ' "$TK_TMP/$tag.out" ||
		tk_fail "$tag: not a privileged process: $(head -1 "$TK_TMP/$tag.out")"
	if ! diff -u "$TK_TMP/$tag.before" "$TK_TMP/$tag.after" >&2; then
		tk_fail "$tag: the set-uid program changed files in places the attacker controls"
	fi
	if grep -Eq 'tokenkit: (trace|debug|info):' "$TK_TMP/$tag.err"; then
		head -5 "$TK_TMP/$tag.err" >&2
		tk_fail "$tag: TOKENKIT_LOG was honoured"
	fi
	if grep -q 'TOKENKIT_TIMEOUT_MS\|TOKENKIT_P11_GRACE_MS' "$TK_TMP/$tag.err"; then
		tk_fail "$tag: the timeouts from the environment were read"
	fi
	[[ ! -e $ATK/card.state ]] || tk_fail "$tag: TOKENKIT_READERS was honoured"
	tk_log "$tag: $(tr '\n' ';' <"$TK_TMP/$tag.out")"
}

# S1: the token is opened and a recovery forced, so the cache and the log
# would both be written if they were on
run_probe S1 /tmp/suid/probe-uid api
grep -q '^token [0-9]* TK_OK' "$TK_TMP/S1.out" || tk_fail "S1: no token opened (no card?)"
grep -q '^reset [0-9]* TK_OK' "$TK_TMP/S1.out" || tk_fail "S1: no recovery forced"

# S2: a socket of the attacker's
# (setpriv itself, not the as_atk function: $! must be the listener)
setpriv --reuid="$ATK_UID" --regid="$ATK_GID" --clear-groups -- \
	/usr/bin/python3 - "$ATK/pcscd.comm" "$OBS/connections" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
s.settimeout(0.2)
end = time.time() + 90
with open(sys.argv[2], "a") as log:
    while time.time() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        log.write("connect\n")
        log.flush()
        c.close()
EOF
LISTENER=$!
for ((i = 0; i < 50; i++)); do [[ -S $ATK/pcscd.comm ]] && break; sleep 0.1; done
[[ -S $ATK/pcscd.comm ]] || tk_fail "S2: listener did not start"
EXTRA_ENV="PCSCLITE_CSOCK_NAME=$ATK/pcscd.comm" run_probe S2 /tmp/suid/probe-uid api
EXTRA_ENV="PCSCLITE_CSOCK_NAME=$ATK/pcscd.comm" run_probe S2m /tmp/suid/probe-uid module \
	/tmp/suid/tokenkit-pkcs11.so
kill "$LISTENER" 2>/dev/null || true
wait "$LISTENER" 2>/dev/null || true
if [[ -s $OBS/connections ]]; then
	tk_fail "S2: the set-uid program connected to the attacker's socket $(wc -l <"$OBS/connections") time(s)"
fi
as_atk rm -f "$ATK/pcscd.comm"

# S3: a FIFO where the recovery log of the attacker's uid goes
as_atk rm -f "/tmp/tokenkit-$ATK_UID/recovery.jsonl"
as_atk mkfifo -m 0666 "/tmp/tokenkit-$ATK_UID/recovery.jsonl"
run_probe S3 /tmp/suid/probe-uid api
# a writer blocked on the FIFO would hold the recovery past its deadline
grep -q '^reset [0-9]* TK_OK' "$TK_TMP/S3.out" || tk_fail "S3: the recovery did not finish"
as_atk rm -f "/tmp/tokenkit-$ATK_UID/recovery.jsonl"

# S4: set-gid
run_probe S4 /tmp/suid/probe-gid api
grep -q '^reset [0-9]* TK_OK' "$TK_TMP/S4.out" || tk_fail "S4: no recovery forced"

# S5: the module in a set-uid program
run_probe S5 /tmp/suid/probe-uid module /tmp/suid/tokenkit-pkcs11.so
grep -q '^p11 init 0x0' "$TK_TMP/S5.out" || tk_fail "S5: the module did not initialise"

# ---- root as an ordinary victim: tokenkit with a plain environment
VHOME=$TK_TMP/victim-home
mkdir -m 0700 "$VHOME"
printf 'precious\n' >"$TK_TMP/victim-file"
victim() {
	env -u XDG_RUNTIME_DIR -u XDG_STATE_HOME -u TOKENKIT_RECOVERY_LOG -u TOKENKIT_LOG \
		HOME="$VHOME" XDG_CACHE_HOME="$VHOME/.cache" "$@"
}
atk_tree() { find "$1" -printf '%p %y %U %s %T@\n' 2>/dev/null | sort; }

# V1: /tmp/tokenkit-0 made first, with a symlink to the victim's file in it
as_atk mkdir -m 0777 /tmp/tokenkit-0
as_atk ln -s "$TK_TMP/victim-file" /tmp/tokenkit-0/recovery.jsonl
atk_tree /tmp/tokenkit-0 >"$TK_TMP/V1.before"
tk_run "V1: tokenkit reset with /tmp/tokenkit-0 the attacker's" victim "$TK_BUILD/tokenkit" \
	reset "$TK_READER0"
atk_tree /tmp/tokenkit-0 >"$TK_TMP/V1.after"
diff -u "$TK_TMP/V1.before" "$TK_TMP/V1.after" >&2 || tk_fail "V1: the attacker's directory changed"
[[ $(cat "$TK_TMP/victim-file") == precious ]] || tk_fail "V1: the victim's file was written"
[[ $(grep -c 'recovery log: .*/tmp/tokenkit-0/recovery.jsonl is refused' <<<"$TK_OUT") == 1 ]] ||
	tk_fail "V1: no single warning about the refused directory"
tk_expect "using $VHOME/.local/state/tokenkit/recovery.jsonl"
[[ $(wc -l <"$VHOME/.local/state/tokenkit/recovery.jsonl") == 1 ]] ||
	tk_fail "V1: the recovery is not in the fallback log"
tk_run "V1: tokenkit diag reads the fallback" victim "$TK_BUILD/tokenkit" diag "$TK_READER0"
tk_expect "recovery history \\($VHOME/.local/state/tokenkit/recovery.jsonl\\), oldest first"
tk_expect 'cured by (warm-reset|reconnect|cold-reset)'

# V2: /tmp/tokenkit-0 a symlink to a directory of the attacker's
rm -rf /tmp/tokenkit-0
as_atk mkdir -m 0700 "$ATK/theirs"
as_atk ln -s "$ATK/theirs" /tmp/tokenkit-0
tk_run "V2: tokenkit reset with /tmp/tokenkit-0 a symlink" victim "$TK_BUILD/tokenkit" \
	reset "$TK_READER0"
[[ -z $(ls -A "$ATK/theirs") ]] || tk_fail "V2: something was written through the symlink"
tk_expect 'recovery log: .*/tmp/tokenkit-0/recovery.jsonl is refused'
[[ $(wc -l <"$VHOME/.local/state/tokenkit/recovery.jsonl") == 2 ]] ||
	tk_fail "V2: the recovery is not in the fallback log"

# V3: the cache directory made first by the attacker
as_atk mkdir -p -m 0777 /tmp/shared-cache/tokenkit
as_atk chmod 0777 /tmp/shared-cache/tokenkit
tk_run "V3: tokenkit tokens with XDG_CACHE_HOME/tokenkit the attacker's" victim \
	env XDG_CACHE_HOME=/tmp/shared-cache "$TK_BUILD/tokenkit" tokens
tk_expect 'PIV'
[[ -z $(ls -A /tmp/shared-cache/tokenkit) ]] || tk_fail "V3: a cache file was written there"
tk_expect 'cache: /tmp/shared-cache/tokenkit refused'

# V4: hostile text in the recovery log `tokenkit diag` shows
mkdir -m 0700 "$TK_TMP/diaglog"
LOG=$TK_TMP/diaglog/recovery.jsonl
{
	printf '{"v":1,"time_ms":1764300000123,"pid":42,"prog":"ev\\u001b]0;owned\\u0007il",'
	printf '"reader":"Reader \\u001b[2J\\u001b[31mX\xc2\x9b1m \xe2\x80\xaeevil\xff",'
	printf '"id":1,"fault":-205,"fault_name":"TK_ERR_TIMEOUT","what":"line1\\nline2\\r\\u007f",'
	printf '"steps":[{"step":"warm-reset","result":0,"us":1000}],"nsteps":1,'
	printf '"cured_by":"warm-reset","outcome":0,"outcome_name":"TK_OK","duration_us":2000,"probes":0}\n'
	printf '{"reader":"%s"}\n' "$(head -c 5000 /dev/zero | tr '\0' x)"
} >"$LOG"
tk_run "V4: diag on a hostile log" "$TK_BUILD/tokenkit" diag --log "$LOG"
printf '%s' "$TK_OUT" >"$TK_TMP/V4.txt"
if LC_ALL=C grep -qP '[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]' "$TK_TMP/V4.txt"; then
	od -c "$TK_TMP/V4.txt" | head -30 >&2
	tk_fail "V4: control characters reached the terminal"
fi
python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$TK_TMP/V4.txt" ||
	tk_fail "V4: the text output is not UTF-8"
tk_expect 'Reader \\x1B\[2J\\x1B\[31mX\\u009B1m \\u202Eevil\\xFF'
tk_expect 'ev\\x1B\]0;owned\\x07il'
tk_expect 'line1\\nline2\\r\\x7F'
tk_expect '1 unreadable line'
tk_run "V4: diag --json on a hostile log" "$TK_BUILD/tokenkit" diag --log "$LOG" --json
printf '%s' "$TK_OUT" >"$TK_TMP/V4.json"
python3 - "$TK_TMP/V4.json" <<'EOF' || tk_fail "V4: --json is not valid JSON of what the log says"
import json, sys
raw = open(sys.argv[1], "rb").read()
d = json.loads(raw.decode("utf-8"))  # strict: invalid UTF-8 or raw controls fail
h = d["history"][0]
assert h["reader"] == "Reader \x1b[2J\x1b[31mX\u009b1m \u202eevil\ufffd", repr(h["reader"])
assert h["prog"] == "ev\x1b]0;owned\x07il", repr(h["prog"])
assert d["unreadable_lines"] == 1, d["unreadable_lines"]
for b in raw:
    assert b >= 0x20 or b in (0x0a,), b
EOF
# a log far over the reader's cap: refused by its size, not read
truncate -s 64M "$LOG"
# (timeout directly, not through tk_run: under ASan tk_run would preload
# the runtime into timeout, and tokenkit carries its own)
TK_OUT=$(timeout 20 "$TK_BUILD/tokenkit" diag --log "$LOG" 2>&1) ||
	tk_fail "V4: diag on a 64 MiB log: exit $?"
tk_expect "recovery log: .*recovery.jsonl not read: data too long"
tk_log "all attacks failed"
exit 0
