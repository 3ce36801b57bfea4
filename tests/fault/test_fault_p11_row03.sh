#!/usr/bin/env bash
# Fault matrix row 3 (issue 4): the card in reader A goes mute until it is
# powered off ("mute=cold": not even a warm reset wakes it). A: C_Sign gets
# CKR_DEVICE_ERROR by the deadline; the recovery ladder goes reconnect ->
# warm reset -> cold reset (power cycle) and A works again without anyone
# touching the card or restarting the process: same slot, same handles, not
# logged in (the power cycle logged it out; the PIN is never cached). B signs
# all the while; no leak; one process. `tokenkit diag` then shows the cure.
#
# Produced on the in-process virtual reader (TOKENKIT_READERS=vcard:...), as
# the issue allows: under pcscd + vpcd a held APDU blocks pcscd's whole
# reader (an SCardConnect or SCardReconnect from any process blocks too), so
# no reset can ever reach a mute card there; that half is covered by
# test_fault_core_ladder.sh (deadline error, quarantine, B unaffected).
source "$(dirname "$0")/lib_fault.sh"
fault_setup_vreader
fault_run row03 <<EOF
sign A expect CKR_OK
exec \$VR_SEND_A mute=cold
sign A expect CKR_DEVICE_ERROR within $FAULT_BOUND_MS
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 20000
relogin A
sign A expect CKR_OK
slot A same
handles-same A
EOF
tk_run "tokenkit diag" "$TK_BUILD/tokenkit" diag "tokenkit virtual reader 0"
echo "$TK_OUT" >&2
tk_expect 'fault TK_ERR_UNRESPONSIVE \(transmit\)'
tk_expect 'warm-reset TK_ERR_UNRESPONSIVE'
tk_expect 'cured by cold-reset'
tk_pass
