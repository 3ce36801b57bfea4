#!/usr/bin/env bash
# Fault matrix row 6 (issue 4): another card (C) is put into reader A.
# A: the old card's session is gone; the slot (same id) holds a new token
# (another serial) that works at once: open, login, find, sign, verified
# against the certificate read from the new token. The new card's objects
# get fresh handles: none is a handle the old card's objects had. B signs
# all the while; no leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row06 <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card stop 0
token A absent within 3000
exec \$VPCD_ENV card start 0 --state \$FAULT_STATE_C
token A present within 5000
slot A same
serial A different
sign A expect CKR_DEVICE_REMOVED|CKR_SESSION_HANDLE_INVALID
open A
login A
find A
handles-new A
sign A expect CKR_OK
EOF
tk_pass
