#!/usr/bin/env bash
# tokenkit-pkcs11.so when cards leave and come back (issue 4, the module's
# side; pkcs11/README.md "Removal and return"), with the fault matrix's
# driver and cards (tests/fault/lib_fault.sh: A in reader 0, B in reader 1
# signing all the while, C a different card):
#  1. the same card taken out and put back: the session opened before
#     answers CKR_DEVICE_REMOVED while the card is out, then survives
#     (same handle, public state: CKR_USER_NOT_LOGGED_IN), C_Login on it,
#     same object handles, signing works;
#  2. another program resets the card: the login is gone (C_GetSessionInfo
#     says so, C_Login works again), signing after the login;
#  3. $TOKENKIT_TIMEOUT_MS: a card that stalls costs the caller that
#     deadline, not the default 5 s;
#  4. $TOKENKIT_P11_GRACE_MS: the same card back after the grace time is a
#     new token; the old session answers CKR_DEVICE_REMOVED once, then
#     CKR_SESSION_HANDLE_INVALID;
#  5. a card that keeps dropping out comes back as the same token 32
#     times (P11_MAX_RETURNS), then as a new one;
#  6. a different card in reader A: the old session ends the same way at
#     once; the new card works at once with handles never used for the old
#     one.
source "$(dirname "$0")/../fault/lib_fault.sh"
fault_setup

fault_run p11_same_card <<EOF
sign A expect CKR_OK
session A expect RO_USER
exec \$VPCD_ENV card fault 0 remove
token A absent within 3000
sign A expect CKR_DEVICE_REMOVED within 1000
session A expect CKR_DEVICE_REMOVED
exec \$VPCD_ENV card fault 0 insert
token A present within 5000
session A expect RO_PUBLIC
sign A expect CKR_USER_NOT_LOGGED_IN within 1000
login A
session A expect RO_USER
handles-same A
sign A expect CKR_OK
slot A same
serial A same
EOF

fault_run p11_reset <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV exec \$TK_BUILD/tk-pcsc-reset "Virtual PCD 00 00" warm
sign A expect CKR_USER_NOT_LOGGED_IN within 2000
session A expect RO_PUBLIC
login A
sign A expect CKR_OK
handles-same A
EOF

# Deadline 1500 ms: the stalled C_Sign must fail well before the 5 s default.
# (Its step 3 ended once after 4097 ms in ~40 loaded whole-suite runs, cause
# not found: the module logs at debug level with the clock here, which the
# driver's PID line gives too, to show where such a call waited.)
export TOKENKIT_TIMEOUT_MS=1500 TOKENKIT_LOG=debug TOKENKIT_LOG_TIME=1
fault_run p11_timeout <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card fault 0 stall
sign A expect CKR_DEVICE_ERROR within 2600
exec \$VPCD_ENV card fault 0 none
# the ladder may still reset the card after a first success (row 1)
sleep 1000
recover A within 20000 same-session
recover A within 5000 same-session
EOF
# It ended by that deadline, not earlier (a failure of its own) and not at the
# default (step 3's bound, 2600 ms): no tighter upper bound, a loaded machine
# (ASan, two builds' tests at once) has been seen to end it after 1668 ms.
grep -Eq 'step 3: sign A expect CKR_DEVICE_ERROR.* after (1[4-9]|2[0-5])[0-9][0-9] ms' "$TK_TMP/p11_timeout.out" ||
	tk_fail "p11_timeout: the stalled call did not end at the 1500 ms deadline"
grep -Eq '^tokenkit: \[[0-9]+\.[0-9]{3}\] warn: slotmgr: .*stuck in the reader driver' "$TK_TMP/p11_timeout.out" ||
	tk_fail "p11_timeout: the module's log lines without the clock (TOKENKIT_LOG_TIME=1)"
unset TOKENKIT_TIMEOUT_MS TOKENKIT_LOG TOKENKIT_LOG_TIME

# $TOKENKIT_P11_GRACE_MS=1000: the card back after 1.5 s is too late; its old
# session ends (once CKR_DEVICE_REMOVED, then invalid), the token is new.
export TOKENKIT_P11_GRACE_MS=1000
fault_run p11_grace <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card fault 0 remove
token A absent within 3000
sign A expect CKR_DEVICE_REMOVED
sleep 1500
exec \$VPCD_ENV card fault 0 insert
token A present within 5000
serial A same
sign A expect CKR_DEVICE_REMOVED
sign A expect CKR_SESSION_HANDLE_INVALID
open A
login A
find A
handles-new A
sign A expect CKR_OK
EOF
unset TOKENKIT_P11_GRACE_MS

# A card that keeps dropping out: 32 returns keep the session
# (P11_MAX_RETURNS), the 33rd makes a new token and the session ends.
{
	echo "sign A expect CKR_OK"
	for ((i = 1; i <= 33; i++)); do
		echo "exec \$VPCD_ENV card fault 0 remove"
		echo "token A absent within 3000"
		echo "exec \$VPCD_ENV card fault 0 insert"
		echo "token A present within 5000"
		((i == 32)) && echo "session A expect RO_PUBLIC"
	done
	echo "sign A expect CKR_DEVICE_REMOVED"
	echo "sign A expect CKR_SESSION_HANDLE_INVALID"
	echo "open A"
	echo "login A"
	echo "find A"
	echo "handles-new A"
	echo "sign A expect CKR_OK"
} | fault_run p11_returns

fault_run p11_other_card <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card stop 0
token A absent within 3000
exec \$VPCD_ENV card start 0 --state \$FAULT_STATE_C
token A present within 5000
serial A different
sign A expect CKR_DEVICE_REMOVED
sign A expect CKR_SESSION_HANDLE_INVALID
open A
login A
find A
handles-new A
sign A expect CKR_OK
EOF
tk_pass
