#!/usr/bin/env bash
# Fault matrix row 7 (issue 4): another program resets the card in reader A
# (shared access: SCardConnect + SCardReconnect(SCARD_RESET_CARD), by
# tk-pcsc-reset). A: the next private-key operation answers
# CKR_USER_NOT_LOGGED_IN (on the same session: it survives); after C_Login
# signing works with the same handles. B signs all the while; no leak; one
# process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row07 <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV exec \$TK_BUILD/tk-pcsc-reset "Virtual PCD 00 00" warm
sign A expect CKR_USER_NOT_LOGGED_IN within $FAULT_BOUND_MS
login A
sign A expect CKR_OK
handles-same A
slot A same
EOF
tk_pass
