#!/usr/bin/env bash
# C_Finalize joins every thread the module started (reader workers, token
# opens, the slot manager's monitor and event threads): with two virtual
# cards in a private pcscd, the process has as many threads right after
# C_Finalize as before C_Initialize, over several rounds, finalizing both at
# once and after using the tokens; and a fork right after C_Initialize
# (workers connecting) leaves a child that initialises, sees both tokens and
# finalizes (tests/unit/test_p11.c, test_finalize_joins_threads and
# test_fork_while_connecting, with TK_P11_TEST_READERS=1).
source "$(dirname "$0")/lib.sh"
tk_env_start
tk_card_start 0
tk_card_start 1
export XDG_CACHE_HOME=$TK_TMP/cache # the module's object cache, not the user's
export TK_P11_TEST_READERS=1 TK_P11_MODULE="$TK_BUILD/tokenkit-pkcs11.so"
# a failure cmocka meets outside its runner (another thread, a child) would
# otherwise end the program with status 255 and no message
export CMOCKA_TEST_ABORT=1
tk_run "threads across C_Initialize/C_Finalize, fork while connecting" "$TK_BUILD/tests/test_p11"
tk_log "$TK_OUT"
tk_pass
