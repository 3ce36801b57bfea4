#!/usr/bin/env bash
# Fault matrix row 5 (issue 4): the same card is taken out of reader A and
# put back. A: same slot, same token serial, same object handles; a session
# opened afterwards is not logged in (C_GetSessionInfo; the private key's
# handle answers CKR_USER_NOT_LOGGED_IN, or CKR_KEY_HANDLE_INVALID while the
# private object is invisible); after C_Login the private key has its old
# handle again and signing works (signature verified).
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
open A
session A expect RO_PUBLIC
handles-same A
sign A expect CKR_USER_NOT_LOGGED_IN|CKR_KEY_HANDLE_INVALID within $FAULT_BOUND_MS
login A
handles-same A
sign A expect CKR_OK
EOF
tk_pass
