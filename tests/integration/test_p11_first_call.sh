#!/usr/bin/env bash
# Issue 8 §1: every slot answers from the first call. Fresh processes call
# C_Initialize and at once, without C_GetSlotList, C_OpenSession (and
# C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList) on each known slot:
# no CKR_SLOT_ID_INVALID, ever (before: 4-6 of 10 runs failed). Both with
# the in-process virtual reader and with pcscd + vpcd. And a PC/SC daemon
# that does not answer (SIGSTOP): C_Initialize returns within its bound
# (P11_FIRST_SCAN_WAIT_MS, 2 s) and C_Finalize too (before: C_Finalize
# waited forever for the monitor stuck in pcsc-lite). A card whose first
# APDUs fail quickly (the reader recovered) is still in the first
# C_GetSlotList.
source "$(dirname "$0")/lib.sh"

STARTUP=$TK_BUILD/p11_startup
MODULE=$TK_BUILD/tokenkit-pkcs11.so
[[ -x $STARTUP && -e $MODULE ]] || tk_fail "$STARTUP or $MODULE not built"
RUNS=${TK_FIRST_CALL_RUNS:-100}

# The in-process virtual readers, set up in this one place.
VREADERS='vcard:latency=none;latency=none'
with_vreaders() { TOKENKIT_READERS=$VREADERS "$@"; }
# the first-call runs log at info level: judge() reads what the module met
info_log() { TOKENKIT_LOG=info "$@"; }

# slots_of OUTPUT: the slot ids with a token, from a "slotlist" action
tokens_of() { sed -n 's/^slots=.* tokens=\(.*\)$/\1/p' <<<"$1" | tr ',' ' '; }

# judge OUT EXPECTED_OK PATTERN: one run's first calls. Counted apart, and
# allowed in at most a tenth of the runs, two cases the module logs as it
# meets them (the runs log at info level): the reader service did not answer
# within C_Initialize's bound (P11_FIRST_SCAN_WAIT_MS; its readers come as
# slot events later: seen once in ~30 whole-suite runs with three suites on
# two cores), and a slot shown without its token because one exchange of
# its card's open had lasted P11_STALL_MS (the wedged-neighbour rule of
# README "Waiting for tokens"; its token follows with a slot event. Seen
# once in ~30 such runs: both pcscd slots without their tokens 135 ms after
# C_Initialize, under a warn-level log that could not say why; a stall is
# the likely cause, and any other one still fails). Anything else fails.
judge() {
	local ok tokenless=false
	ok=$(grep -c -- "$3" <<<"$1" || true)
	[[ $3 == '^slotinfo rv=CKR_OK' ]] && grep -q 'token=0' <<<"$1" && tokenless=true
	[[ $ok -eq $2 ]] && ! $tokenless && return 0
	printf '%s\n' "$1" >&2
	if grep -q 'no answer from the reader service within' <<<"$1"; then
		slow=$((slow + 1))
	elif [[ $ok -eq $2 ]] && grep -q 'the card makes no progress' <<<"$1"; then
		stalled=$((stalled + 1)) # every call answered; only a token was not shown
	else
		bad=$((bad + 1))
	fi
}

# first_calls LABEL [env...]: $RUNS fresh processes, each C_Initialize and
# at once C_OpenSession on every slot; then 20 runs each starting with
# C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList. Every call CKR_OK.
first_calls() {
	local label=$1 out ids id i bad=0 slow=0 stalled=0 first
	shift
	# the two token slots, from a first list; a list that missed a token
	# for one of the two cases judge() counts apart (logged) is asked again
	# (a whole-suite run with three suites on two cores once had an ASan
	# build's card open 142 ms into one exchange there)
	for ((i = 0; i < 5; i++)); do
		out=$("$@" "$STARTUP" "$MODULE" init slotlist finalize 2>&1)
		ids=$(tokens_of "$out")
		[[ $(wc -w <<<"$ids") -eq 2 ]] && break
		printf '%s\n' "$out" >&2
		grep -qE 'the card makes no progress|no answer from the reader service within' <<<"$out" ||
			break
	done
	[[ $(wc -w <<<"$ids") -eq 2 ]] || tk_fail "$label: two slots with a token expected"
	tk_log "$label: slots with a token: $ids; $RUNS runs of C_Initialize + C_OpenSession"
	for ((i = 0; i < RUNS; i++)); do
		out=$("$@" "$STARTUP" "$MODULE" init "open-all:${ids// /,}" finalize 2>&1)
		judge "$out" 2 '^open rv=CKR_OK'
	done
	for first in slotinfo tokeninfo mechs; do
		for ((i = 0; i < 20; i++)); do
			local acts=(init)
			for id in $ids; do acts+=("$first:$id"); done
			out=$("$@" "$STARTUP" "$MODULE" "${acts[@]}" finalize 2>&1)
			judge "$out" 2 "^$first rv=CKR_OK"
		done
	done
	tk_log "$label: $bad failed runs ($slow with the reader service slower than its bound," \
		"$stalled with a slot shown without its token after a slow exchange)"
	[[ $bad -eq 0 ]] || tk_fail "$label: $bad runs where a first call on a known slot failed"
	((slow * 10 <= RUNS)) || tk_fail "$label: the reader service missed its bound in $slow runs"
	((stalled * 10 <= RUNS)) || tk_fail "$label: a slot without its token after a slow exchange in $stalled runs"
}

first_calls "in-process readers" with_vreaders info_log

tk_env_start
tk_card_start 0
tk_card_start 1
first_calls "pcscd + vpcd" info_log

# A quick fault at a card's first APDUs: two short answers (the open's first
# command and its retry fail; the slot manager recovers the reader with a
# reconnect). The first C_GetSlotList still shows both tokens: the recovery
# is waited for like one exchange, and the open is tried again (before: the
# slot "recovering" showed no token in every run; pkcs11-tool's only card,
# seen in CI, "No slot with a token was found"). On a loaded machine one
# exchange of that recovery may outlast P11_STALL_MS, and then the token
# follows the first call (seen in 1 of 105 runs with three suites on two
# cores): so every run must see both tokens within a bound only a hang
# exceeds, and most runs at the first call (bench/slotlist.sh has figures).
QUICK_RUNS=5
first_ok=0
for ((i = 0; i < QUICK_RUNS; i++)); do
	vpcd card fault 0 'short count=2' >/dev/null
	out=$("$STARTUP" "$MODULE" init slotlist wait-token:1:20000 wait-token:2:20000 finalize 2>&1)
	vpcd card fault 0 none >/dev/null
	printf '%s\n' "$out" >&2
	grep -q 'recovering' <<<"$out" || tk_fail "quick fault, run $i: the fault did not reach the module"
	[[ $(grep -c '^wait-token rv=CKR_OK' <<<"$out") -eq 2 ]] ||
		tk_fail "quick fault, run $i: a token never came"
	[[ $(wc -w <<<"$(tokens_of "$out")") -eq 2 ]] && first_ok=$((first_ok + 1))
done
tk_log "quick fault at the first APDUs: both tokens at the first C_GetSlotList in $first_ok of $QUICK_RUNS runs"
((first_ok * 2 > QUICK_RUNS)) ||
	tk_fail "quick fault: both tokens at the first C_GetSlotList in only $first_ok of $QUICK_RUNS runs"

# A daemon that does not answer: pcsc-lite waits for it without a timeout.
PCSCD_PID=$(sed -n 's/^PCSCD_PID=//p' "$TK_VPCD_DIR/env")
[[ -n $PCSCD_PID ]] || tk_fail "no pcscd pid in $TK_VPCD_DIR/env"
wedge_cleanup() {
	local rc=$?
	kill -CONT "$PCSCD_PID" 2>/dev/null
	(exit $rc)
	tk_cleanup
}
kill -STOP "$PCSCD_PID"
trap wedge_cleanup EXIT
rc=0
out=$(timeout -k 5 60 "$STARTUP" "$MODULE" init slotlist open:1 finalize 2>&1) || rc=$?
kill -CONT "$PCSCD_PID"
trap tk_cleanup EXIT
printf '%s\n' "$out" >&2
[[ $rc -eq 0 ]] || tk_fail "wedged pcscd: the program did not finish (exit $rc)"
init_ms=$(sed -n 's/^init rv=CKR_OK ms=\([0-9]*\) .*/\1/p' <<<"$out")
fin_ms=$(sed -n 's/^finalize rv=CKR_OK ms=\([0-9]*\) .*/\1/p' <<<"$out")
[[ -n $init_ms && -n $fin_ms ]] || tk_fail "wedged pcscd: C_Initialize or C_Finalize failed"
# bounds: 2 s first-scan wait, 1 s for the stuck monitor; generous margins
((init_ms < 6000)) || tk_fail "wedged pcscd: C_Initialize took $init_ms ms"
((fin_ms < 6000)) || tk_fail "wedged pcscd: C_Finalize took $fin_ms ms"
TK_OUT=$out
tk_expect '^slotlist rv=CKR_OK'
# and once the daemon answers again, everything is back
tk_run "after the wedge" "$STARTUP" "$MODULE" init slotlist "open-all:1,2" finalize
[[ $(grep -c '^open rv=CKR_OK' <<<"$TK_OUT") -eq 2 ]] || tk_fail "sessions after the wedge"
tk_pass
