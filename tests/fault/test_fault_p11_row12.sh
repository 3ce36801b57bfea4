#!/usr/bin/env bash
# Fault matrix row 12 (issue 4): the process forks while sessions are open
# (and B is signing). The child gets CKR_CRYPTOKI_NOT_INITIALIZED (slot list
# and the parent's session) until it calls C_Initialize, then finds A, logs
# in and signs (verified); the parent's sessions are unaffected: A still
# logged in and signing, B never failed. No leak; one process.
#
# (Once parked: in the ASan build a child sometimes hung in malloc, because
# clang 14's sanitizer runtime takes no allocator lock around fork(); its
# token threads hung inside a card transaction, so the parent's reader B
# stalled until the child exited. The driver now holds the runtime's locks
# across its fork; the module and core/pcsc.c handle their own locks.)
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row12 <<EOF
sign A expect CKR_OK
fork-check
session A expect RO_USER
sign A expect CKR_OK
fork-check
sign A expect CKR_OK
EOF
tk_pass
