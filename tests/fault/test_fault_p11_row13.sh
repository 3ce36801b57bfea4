#!/usr/bin/env bash
# Fault matrix row 13: another program's reset of the card in reader A,
# caught half-way. pcsc-lite answers SCardTransmit with
# SCARD_E_PROTO_MISMATCH while the card's protocol is undefined, between
# another client's reset and the next negotiation, and may not have flagged
# the reset to us yet (seen once in test_p11_login: a C_Sign failed with a
# device error). That window is too narrow to hit on purpose, so
# tk-pcsc-shim.so answers one signature's GENERAL AUTHENTICATE so. It is a
# reset, as in row 7: the signature answers CKR_USER_NOT_LOGGED_IN on the
# same session, and after C_Login signing works with the same handles; with
# TOKENKIT_P11_PIN_CACHE=1 the kept PIN logs in again and the signature
# works at once. B signs all the while; no leak; one process.
source "$(dirname "$0")/lib_fault.sh"
fault_setup
SHIM=$TK_BUILD/tk-pcsc-shim.so
[[ -f $SHIM ]] || tk_fail "$SHIM not built"
export TK_PCSC_SHIM_TRIGGER=$TK_TMP/shim.trigger TK_PCSC_SHIM_INS=87
export TK_PCSC_SHIM_READER="Virtual PCD 00 00"
export LD_PRELOAD=$SHIM${LD_PRELOAD:+:$LD_PRELOAD}
fault_run row13 <<EOF
sign A expect CKR_OK
exec touch \$TK_PCSC_SHIM_TRIGGER
sign A expect CKR_USER_NOT_LOGGED_IN within $FAULT_BOUND_MS
exec test ! -e \$TK_PCSC_SHIM_TRIGGER
login A
sign A expect CKR_OK
handles-same A
slot A same
EOF
tk_expect 'tk-pcsc-shim: INS 87: SCARD_E_PROTO_MISMATCH'
TOKENKIT_P11_PIN_CACHE=1 fault_run row13_kept <<EOF
sign A expect CKR_OK
exec touch \$TK_PCSC_SHIM_TRIGGER
sign A expect CKR_OK within $FAULT_BOUND_MS
exec test ! -e \$TK_PCSC_SHIM_TRIGGER
sign A expect CKR_OK
handles-same A
EOF
tk_expect 'tk-pcsc-shim: INS 87: SCARD_E_PROTO_MISMATCH'
unset LD_PRELOAD
tk_pass
