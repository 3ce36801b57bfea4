#!/usr/bin/env bash
# Two writers race on one record, both based on the same generation, 200
# times: exactly one wins (and gets the next generation), the other is told
# (TK_ERR_CONFLICT with the winner's generation). Never two successes (a lost
# update), never two failures.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_registry.sh"
reg_setup
out=$("$REGT" race "$STORE" "${TK_RACE_ROUNDS:-200}") || tk_fail "$out"
tk_log "$out"
tk_log "PASS"
