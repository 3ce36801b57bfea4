#!/usr/bin/env bash
# PENDING (not registered with ctest; run by hand: bash tests/fault/pending/test_fault_p11_row03.sh)
#
# Why it fails: this row cannot be produced on the vpcd stack. While the
# mute card holds an APDU, pcscd is blocked inside vpcd for that reader: an
# SCardConnect from any other process blocks too, so neither the module's
# ladder nor `tk-pcsc-reset ... cold` can power-cycle the card (measured:
# tk-pcsc-reset cold and warm both killed by timeout after 6 s, the card
# still "held=1"). The module does what it can (working tree of 05:00 UTC):
# C_Sign answers CKR_DEVICE_ERROR after the 5000 ms deadline ("stuck in the
# reader driver (deadline); worker abandoned, reader quarantined until the
# call returns"), then CKR_DEVICE_ERROR at once for ever (step "sign A until
# CKR_OK|CKR_USER_NOT_LOGGED_IN within 20000"); the worker stuck in
# pcsc-lite outlives C_Finalize (2 threads at the end instead of 1: "1
# reader worker(s) stuck in the backend, abandoned"). The issue says to
# produce such a row on the in-process virtual reader; tokenkit-pkcs11.so
# cannot use that backend yet (tk_slotmgr_opts_t has only `pcsc`).
# Also seen here, worth a look in the core: while A stays stuck, single B
# signatures took up to 3903 ms (one run; 557 ms in another; normally
# < 10 ms), i.e. B is not fully isolated from a wedged reader A during the
# quarantine re-probes.
#
# Fault matrix row 3 (issue 4): the card in reader A goes mute until it is
# powered off or reset. A: the caller gets CKR_DEVICE_ERROR by the deadline;
# the recovery ladder reaches the reset / power cycle and A works again
# without anyone touching the card (login again: the reset logged it out).
# B signs all the while; no leak; one process.
source "$(dirname "$0")/../lib_fault.sh"
fault_setup
fault_run row03 <<EOF
sign A expect CKR_OK
exec \$VPCD_ENV card fault 0 mute
sign A expect CKR_DEVICE_ERROR within $FAULT_BOUND_MS
sign A until CKR_OK|CKR_USER_NOT_LOGGED_IN within 20000
relogin A
sign A expect CKR_OK
slot A same
handles-same A
EOF
tk_pass
