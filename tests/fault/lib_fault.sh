# Shared helpers for the fault matrix (tests/fault/test_fault_p11_*.sh, and
# bench/recovery.sh). Sourced, not run.
#
#   source "$(dirname "$0")/lib_fault.sh"
#   fault_setup                  # private pcscd; cards A (reader 0) and B (reader 1)
#   fault_run NAME <<'EOF'       # tk-p11-fault with this scenario; must pass
#   sign A expect CKR_OK
#   EOF
#
# Cards: three virtual PIV cards, each with its own P-256 key and certificate
# in 9A (CKA_ID 01) made with OpenSSL and imported with yubico-piv-tool
# (yubico-piv-tool 2.2 cannot self-sign with OpenSSL 3): A and B start in
# readers "Virtual PCD 00 00" and "00 01"; C ($FAULT_STATE_C) is a different
# card for row 6. Card states live in $TK_TMP/card{A,B,C}.state.
#
# Scenario lines may use $VPCD_ENV (the harness), $TK_BUILD, $FAULT_STATE_C:
# the driver runs its exec lines with /bin/sh -c in this environment.
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

FAULT_DRIVER=$TK_BUILD/tk-p11-fault
TK_P11_MODULE=${TK_P11_MODULE:-$TK_BUILD/tokenkit-pkcs11.so}
export VPCD_ENV TK_BUILD
# The module's per-APDU deadline: $TOKENKIT_TIMEOUT_MS (pkcs11/util.c), set
# explicitly so that the scenarios' bounds follow from it (row 10's slow card
# answers in 2 s, within it).
FAULT_DEADLINE_MS=5000
export TOKENKIT_TIMEOUT_MS=$FAULT_DEADLINE_MS
# "did not hang" bound for one call that meets a dead card: deadline + 1 s
FAULT_BOUND_MS=$((FAULT_DEADLINE_MS + 1000))

fault_require() {
	[[ -x "$FAULT_DRIVER" ]] || tk_fail "$FAULT_DRIVER not built"
	[[ -e "$TK_P11_MODULE" ]] || tk_fail "$TK_P11_MODULE not built"
	[[ -x "$TK_BUILD/tk-pcsc-reset" ]] || tk_fail "$TK_BUILD/tk-pcsc-reset not built"
	tk_require_cmd yubico-piv-tool openssl
}

# fault_provision N NAME: the card now in reader N gets key + certificate in 9A
fault_provision() {
	local n=$1 name=$2 reader="Virtual PCD 00 0$1" d=$TK_TMP/prov-$2
	mkdir -p "$d"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/key.pem" 2>/dev/null ||
		tk_fail "key for card $name"
	openssl req -x509 -new -key "$d/key.pem" -subj "/CN=tokenkit fault card $name" -days 30 \
		-out "$d/cert.pem" 2>/dev/null || tk_fail "certificate for card $name"
	tk_run "card $name: import key 9a" yubico-piv-tool -r "$reader" -a import-key -s 9a -i "$d/key.pem"
	tk_run "card $name: import certificate 9a" yubico-piv-tool -r "$reader" -a import-certificate \
		-s 9a -i "$d/cert.pem"
	cp "$d/cert.pem" "$TK_TMP/cert$name.pem"
}

# Private pcscd, three provisioned cards, A and B running.
fault_setup() {
	fault_require
	tk_env_start
	export XDG_CACHE_HOME=$TK_TMP/cache # the module's object cache, not the user's
	FAULT_STATE_A=$TK_TMP/cardA.state
	FAULT_STATE_B=$TK_TMP/cardB.state
	FAULT_STATE_C=$TK_TMP/cardC.state
	export FAULT_STATE_A FAULT_STATE_B FAULT_STATE_C
	tk_card_start 0 --state "$FAULT_STATE_C"
	tk_card_start 1 --state "$FAULT_STATE_B"
	fault_provision 0 C
	fault_provision 1 B
	tk_card_stop 0
	tk_card_start 0 --state "$FAULT_STATE_A"
	fault_provision 0 A
	tk_log "cards A, B, C provisioned; A in reader 0, B in reader 1"
}

# fault_setup_vreader: the same three cards, but A and B leave pcscd and
# become the module's in-process virtual readers (TOKENKIT_READERS=vcard:...,
# readers "tokenkit virtual reader 0" and "1"), for the rows a real pcscd
# with vpcd cannot produce. Scenario lines inject faults into A with
# `exec $VR_SEND_A SPEC` (a line to A's control socket). The module's
# recovery log is $TK_TMP/recovery.jsonl.
fault_setup_vreader() {
	fault_setup
	tk_card_stop 0
	tk_card_stop 1
	TOKENKIT_READERS="vcard:state=$FAULT_STATE_A,control=$TK_TMP/ctlA"
	TOKENKIT_READERS+=";state=$FAULT_STATE_B,control=$TK_TMP/ctlB"
	VR_SEND_A="$TK_BUILD/tokenkit-vcard --control $TK_TMP/ctlA --send"
	TOKENKIT_RECOVERY_LOG=$TK_TMP/recovery.jsonl
	export TOKENKIT_READERS VR_SEND_A TOKENKIT_RECOVERY_LOG
	FAULT_READERS=(--readers "tokenkit virtual reader 0" "tokenkit virtual reader 1")
	tk_log "A and B are now in-process virtual readers: $TOKENKIT_READERS"
}
FAULT_READERS=()

# fault_run NAME [driver options]: the scenario on stdin; output in
# $TK_TMP/NAME.out (and on stderr). Fails unless the driver passes, in one
# process from start to end.
fault_run() {
	local name=$1 rc=0 pid0 pid1
	shift
	cat >"$TK_TMP/$name.scenario"
	tk_log "scenario $name:"
	sed 's/^/    /' "$TK_TMP/$name.scenario" >&2
	timeout -k 5 400 "$FAULT_DRIVER" "${FAULT_READERS[@]}" "$@" "$TK_P11_MODULE" "$TK_TMP/$name.scenario" \
		>"$TK_TMP/$name.out" 2>&1 || rc=$?
	cat "$TK_TMP/$name.out" >&2
	TK_OUT=$(cat "$TK_TMP/$name.out")
	[[ $rc -eq 0 ]] || tk_fail "$name: driver exit $rc"
	tk_expect 'RESULT PASS'
	pid0=$(sed -n 's/.*\] PID \([0-9]*\) .*/\1/p' "$TK_TMP/$name.out")
	pid1=$(sed -n 's/.*\] END pid \([0-9]*\) .*/\1/p' "$TK_TMP/$name.out")
	[[ -n $pid0 && $pid0 == "$pid1" ]] || tk_fail "$name: not one process from start to end"
}
