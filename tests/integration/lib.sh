# Shared helpers for integration tests (sourced, not run).
#
#   source "$(dirname "$0")/lib.sh"
#   tk_require_cmd opensc-tool
#   tk_env_start                 # private pcscd; PCSCLITE_CSOCK_NAME exported
#   tk_card_start 0              # card 0 with state $TK_TMP/card0.state
#   tk_run "what" cmd args...    # run, keep output in $TK_OUT, fail loudly
#
# ctest sets TK_BUILD and TK_SOURCE; run by hand they default to the
# repository and its build/. Exit 77 skips. On failure the pcscd and card
# logs are printed; everything started is stopped on exit.
set -euo pipefail

TK_SOURCE=${TK_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TK_BUILD=${TK_BUILD:-$TK_SOURCE/build}
# The in-process virtual reader (TOKENKIT_READERS=vcard:...) is a plugin
# built into $TK_BUILD/plugins, never part of the library or module: every
# script (and lib_fault.sh, lib_core.sh, bench/recovery.sh through them)
# finds it here.
TOKENKIT_PLUGIN_PATH=$TK_BUILD/plugins
export TK_SOURCE TK_BUILD TOKENKIT_PLUGIN_PATH
VPCD_ENV="$TK_SOURCE/tests/harness/vpcd-env"
TK_TEST=$(basename "$0" .sh)
TK_TMP=""
TK_OUT=""
OPENSC_P11=${OPENSC_P11:-/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so}
# the readers vpcd-env creates (card N is in reader N)
TK_READER0="Virtual PCD 00 00"
TK_READER1="Virtual PCD 00 01"

tk_log() { echo "[$TK_TEST] $*" >&2; }
tk_skip() { tk_log "SKIP: $*"; exit 77; }
tk_fail() { tk_log "FAIL: $*"; exit 1; }

tk_require_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || tk_skip "$c not installed (scripts/deps installs it)"
	done
}

tk_require_file() {
	local f
	for f in "$@"; do
		[[ -e "$f" ]] || tk_skip "$f not installed (scripts/deps installs it)"
	done
}

vpcd() { "$VPCD_ENV" "$@"; }

tk_cleanup() {
	local rc=$?
	set +e
	if [[ $rc -ne 0 && $rc -ne 77 && -n "${TK_VPCD_DIR:-}" ]]; then
		tk_log "exit $rc; harness logs follow"
		vpcd logs >&2
	fi
	vpcd stop
	[[ -n "$TK_TMP" && ${TK_KEEP:-0} != 1 ]] && rm -rf "$TK_TMP"
	exit "$rc"
}

# Start the private pcscd (no cards yet).
tk_env_start() {
	[[ -x "$TK_BUILD/tokenkit-vcard" ]] || tk_fail "$TK_BUILD/tokenkit-vcard not built"
	tk_require_cmd pcscd
	tk_require_file /usr/lib/pcsc/drivers/serial/libifdvpcd.so
	if [[ $(id -u) -ne 0 ]] && ! [[ -S /run/pcscd/pcscd.comm ]]; then
		tk_skip "needs root (namespaces) or a running system pcscd"
	fi
	TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
	export TK_VPCD_DIR="$TK_TMP/vpcd"
	trap tk_cleanup EXIT
	local out
	# --owner: the harness cleans up even if this script is killed (ctest timeout)
	out=$(vpcd start --dir "$TK_VPCD_DIR" --owner $$) || tk_fail "vpcd-env start failed"
	PCSCLITE_CSOCK_NAME=$(sed -n 's/^PCSCLITE_CSOCK_NAME=//p' <<<"$out")
	export PCSCLITE_CSOCK_NAME
	tk_log "pcscd up: $PCSCLITE_CSOCK_NAME"
}

# tk_card_start N [vpcd-env card start options]; state defaults to $TK_TMP/cardN.state
tk_card_start() {
	local n=$1
	shift
	local has_state=0 a
	for a in "$@"; do [[ $a == --state ]] && has_state=1; done
	if [[ $has_state == 0 ]]; then
		set -- --state "$TK_TMP/card$n.state" "$@"
	fi
	vpcd card start "$n" "$@" || tk_fail "card $n did not start"
}

tk_card_stop() { vpcd card stop "$1"; }

# tk_soft_env: set-up of the software token's tests: a temporary directory
# (removed at exit unless TK_KEEP=1; TK_SOFT_ON_EXIT, if set, is run first),
# the user's state under it (the registry store and its soft tokens), no
# PC/SC daemon (the module's slots are the registry's only); TK and MOD are
# the tool and the module.
tk_soft_env() {
	TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$TK_TEST.XXXXXX")
	trap tk_soft_cleanup EXIT
	export XDG_STATE_HOME=$TK_TMP/state
	export PCSCLITE_CSOCK_NAME=$TK_TMP/no-pcscd.sock
	TK=$TK_BUILD/tokenkit
	MOD=$TK_BUILD/tokenkit-pkcs11.so
}

tk_soft_cleanup() {
	local rc=$?
	set +e
	[[ -z ${TK_SOFT_ON_EXIT:-} ]] || $TK_SOFT_ON_EXIT
	[[ -n "$TK_TMP" && ${TK_KEEP:-0} != 1 ]] && rm -rf "$TK_TMP"
	exit "$rc"
}

# tk_run "description" cmd...: output in $TK_OUT (and printed on failure)
tk_run() {
	local what=$1 rc=0
	shift
	tk_log "$what: $*"
	TK_OUT=$(tk_host "$@" 2>&1) || rc=$?
	if [[ $rc -ne 0 ]]; then
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "$what (exit $rc)"
	fi
}

# tk_run_piv "description" yubico-piv-tool ...: tk_run for yubico-piv-tool,
# again (up to 3 times) when it could not even connect to the card: a card
# that vpcd has just put in the reader can refuse the first connect while
# pcscd finishes powering it (seen once in ~100 runs under load). A failed
# connect sent nothing to the card, so the retry cannot do anything twice.
tk_run_piv() {
	local what=$1 rc i
	shift
	for i in 1 2 3; do
		rc=0
		tk_log "$what: $*"
		TK_OUT=$(tk_host "$@" 2>&1) || rc=$?
		[[ $rc -eq 0 ]] && return 0
		grep -q 'Failed to connect' <<<"$TK_OUT" || break
		sleep 0.5
	done
	printf '%s\n' "$TK_OUT" >&2
	tk_fail "$what (exit $rc)"
}

# tk_run_fails "description" cmd...: the command must fail
tk_run_fails() {
	local what=$1 rc=0
	shift
	tk_log "$what (must fail): $*"
	TK_OUT=$(tk_host "$@" 2>&1) || rc=$?
	if [[ $rc -eq 0 ]]; then
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "$what: succeeded"
	fi
}

# tk_expect "pattern" (grep -E on $TK_OUT)
tk_expect() {
	if ! grep -Eq -- "$1" <<<"$TK_OUT"; then
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "expected /$1/ in the output above"
	fi
}

tk_expect_not() {
	if grep -Eq -- "$1" <<<"$TK_OUT"; then
		printf '%s\n' "$TK_OUT" >&2
		tk_fail "did not expect /$1/ in the output above"
	fi
}

tk_pass() { tk_log "PASS"; exit 0; }

# tk_wait SECONDS "description" cmd...: retry every 0.1 s until cmd succeeds
tk_wait() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 10; i++)); do
		if TK_OUT=$(tk_host "$@" 2>&1); then
			return 0
		fi
		sleep 0.1
	done
	printf '%s\n' "$TK_OUT" >&2
	tk_fail "$what: not within ${secs}s"
}

# tk_card_present N: reader N has a card, according to pcscd (opensc-tool -l)
tk_card_present() {
	opensc-tool -l 2>/dev/null | grep -Eq "^$1 +Yes +.*Virtual PCD"
}
tk_card_absent() {
	opensc-tool -l 2>/dev/null | grep -Eq "^$1 +No +.*Virtual PCD"
}

# Programs we do not build (pkcs11-tool, ssh, certutil, gnutls-cli, ...) cannot
# dlopen a module from the sanitizer build unless the ASan runtime is preloaded
# (clang links it only into executables). Run them as: tk_host pkcs11-tool ...
# (a no-op for the normal build). Leak checking is off for those hosts: their
# own leaks are not ours.
TK_HOST_ENV=()
TK_ASAN_RUNTIME=""
if grep -q '^TK_SANITIZE:BOOL=ON' "$TK_BUILD/CMakeCache.txt" 2>/dev/null; then
	TK_ASAN_RUNTIME=$(clang-14 -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null || true)
	if [[ -f "$TK_ASAN_RUNTIME" ]]; then
		TK_HOST_ENV=(env "LD_PRELOAD=$TK_ASAN_RUNTIME"
			"ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:verify_asan_link_order=0")
	fi
fi
# GnuTLS's tools (p11tool, certtool) cannot host the sanitizer build's module:
# with the ASan runtime preloaded, glibc's setlocale lock is already broken
# when their main() starts (one read unlock too many, before any module is
# loaded: seen with no --provider at all), and p11-kit's exit handler then
# waits on it for ever (freelocale). It happens in some runs and not in
# others, so a test that uses them under the sanitizer build could hang
# until ctest's timeout. tk_gnutls_ok says whether they can be used; the
# normal build runs every GnuTLS step.
tk_gnutls_ok() {
	[[ ${#TK_HOST_ENV[@]} -eq 0 ]]
}
tk_host() {
	# shell functions (vpcd, tk_*), builtins and our own programs (they
	# carry their sanitizer runtime already) run as they are
	local path
	path=$(type -P "$1" 2>/dev/null || true)
	if [[ ${#TK_HOST_ENV[@]} -eq 0 || $(type -t "$1") != file || $path == "$TK_BUILD"/* ]]; then
		"$@"
	else
		"${TK_HOST_ENV[@]}" "$@"
	fi
}
