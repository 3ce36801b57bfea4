#!/usr/bin/env bash
# The harness itself: cards appear and vanish in a private pcscd, survive a
# pcscd restart and an outage, and the fault channel works. Needs only the
# card's ATR and SELECT, so it runs before anything else.
source "$(dirname "$0")/lib.sh"
tk_require_cmd opensc-tool

tk_env_start
tk_card_start 0
tk_wait 3 "card 0 present" tk_card_present 0
tk_card_start 1
tk_wait 3 "card 1 present" tk_card_present 1

tk_run "ATR of card 0" opensc-tool -r 0 -a
tk_expect '^3[Bb]'

tk_run "fault remove" vpcd card fault 0 remove
tk_wait 3 "card 0 gone after remove" tk_card_absent 0
tk_card_present 1 || tk_fail "card 1 vanished with card 0"
tk_run "fault insert" vpcd card fault 0 insert
tk_wait 3 "card 0 back after insert" tk_card_present 0

tk_run "status" vpcd card status 0
tk_expect '^ok connected=1'
tk_run_fails "bad fault spec" vpcd card fault 0 'delay=abc'
tk_expect 'error'

tk_run "restart pcscd" vpcd restart-pcscd
tk_wait 5 "card 0 back after pcscd restart" tk_card_present 0
tk_wait 5 "card 1 back after pcscd restart" tk_card_present 1

tk_run "stop pcscd" vpcd stop-pcscd
TK_OUT=$(opensc-tool -l 2>&1 || true)
tk_expect_not 'Virtual PCD'
tk_run "start pcscd" vpcd start-pcscd
tk_wait 5 "card 0 back after outage" tk_card_present 0

# a card that drops the connection with an APDU outstanding comes back
tk_run "fault close" vpcd card fault 0 'close=500 count=1'
opensc-tool -r 0 -s '00 A4 04 00 05 A0 00 00 03 08 00' >/dev/null 2>&1 || true
tk_wait 5 "card 0 back after close" tk_card_present 0

tk_card_stop 1
tk_wait 3 "card 1 gone after stop" tk_card_absent 1
vpcd stop
vpcd stop
tk_pass
