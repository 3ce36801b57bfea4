# A broker of the test's own (sourced by the broker tests, after lib.sh):
# BLOG its log, BPID its pid.
#
# broker_env: pcscd with the virtual card 0 provisioned (p11_provision),
# the user's runtime directory (0700) and state under $TK_TMP, the working
# directory there
broker_env() {
	tk_env_start
	tk_card_start 0
	p11_provision
	cd "$TK_TMP"
	export XDG_RUNTIME_DIR=$TK_TMP/run XDG_STATE_HOME=$TK_TMP/state
	mkdir -m 0700 "$XDG_RUNTIME_DIR"
	BLOG=$TK_TMP/broker.log
	BPID=""
}
#
# broker_start [OPTIONS]: tokenkitd in the foreground (ours to kill), ready
# when it says so; its log at info (-v), or at trace with BROKER_TRACE=1
broker_start() {
	local n i
	n=$(grep -c 'tokenkitd: ready' "$BLOG" 2>/dev/null || true)
	if [[ ${BROKER_TRACE:-0} == 1 ]]; then
		TOKENKIT_BROKER=off TOKENKIT_LOG=trace "$TK_BUILD/tokenkitd" "$@" >>"$BLOG" 2>&1 &
	else
		TOKENKIT_BROKER=off "$TK_BUILD/tokenkitd" -v "$@" >>"$BLOG" 2>&1 &
	fi
	BPID=$!
	for ((i = 0; i < 100; i++)); do
		[[ $(grep -c 'tokenkitd: ready' "$BLOG" 2>/dev/null) -gt ${n:-0} ]] && return 0
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$BLOG" >&2
	tk_fail "the broker did not start"
}
broker_kill() {
	[[ -z $BPID ]] || kill -9 "$BPID" 2>/dev/null || true
	[[ -z $BPID ]] || wait "$BPID" 2>/dev/null || true
	BPID=""
}
