#!/usr/bin/env bash
# Fault matrix row 10 (issue 4): a slow card in reader A (every response
# 2 s late; the module's deadline is 5 s per APDU). A: signing works, and no
# false recovery happens: the session stays logged in (a reset would have
# logged it out) and signing works at once when the delay ends. B signs all
# the while; no leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
fault_run row10 <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card fault 0 delay=2000
sign A expect CKR_OK within 30000
sign A expect CKR_OK within 30000
exec \$VPCD_ENV card fault 0 none
session A expect RO_USER
sign A expect CKR_OK within 1000
handles-same A
EOF
tk_pass
