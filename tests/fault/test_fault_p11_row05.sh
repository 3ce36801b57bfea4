#!/usr/bin/env bash
# Fault matrix row 5 (issue 4): the same card is taken out of reader A and
# put back. A: same slot, same token serial, same object handles; the
# session opened before the removal survives but is no longer logged in
# (C_GetSessionInfo RO_PUBLIC; the private key's handle answers
# CKR_USER_NOT_LOGGED_IN); after C_Login the private key has its old handle
# again and signing works (verified); a new session shares the login.
# B signs all the while; no leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row05 <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card fault 0 remove
token A absent within 3000
exec \$VPCD_ENV card fault 0 insert
token A present within 5000
slot A same
serial A same
session A expect RO_PUBLIC
handles-same A
sign A expect CKR_USER_NOT_LOGGED_IN within $FAULT_BOUND_MS
login A
handles-same A
sign A expect CKR_OK
open A
session A expect RO_USER
sign A expect CKR_OK
EOF
tk_pass
