#!/usr/bin/env bash
# The registry's acceptance scenario (shared/design/REGISTRY.md), end to end:
# a long-lived provider registers instance "setoken" with certificate C1 and
# a key; a running PKCS#11 module shows it (a slot event, the certificate, a
# signature that verifies); the provider renews to C2 with compare-and-swap
# on the generation it holds; the running module and a fresh one show C2.
# Then the store is replaced, restored from a backup and wiped under the
# provider's long-lived handle: its next read or write lands, or fails with
# TK_ERR_STORE_CHANGED (never a success that did not reach the store); the
# running module follows each change (slot gone, slot back) and logs its
# resync; `tokenkit registry watch` reports a resync each time.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_registry.sh"
reg_setup
SLOT=1073741824 # the first registered token's slot (P11_REGSLOT_BASE)
MOD=$TK_BUILD/tokenkit-pkcs11.so

expect() { # expect WHAT GOT WANT-REGEX
	[[ $2 =~ $3 ]] || tk_fail "$1: got '$2', want /$3/"
	tk_log "$1: $2"
}

reg_start prov 7 "$REGT" provider "$STORE"
reg_start app 8 "$REGT" p11 "$MOD"
"$TK_BUILD/tokenkit" registry watch --json >"$TK_TMP/watch.out" 2>"$TK_TMP/watch.err" &
REG_PIDS+=($!)
sleep 0.3

# 1. registered: the running module gets a slot event and the identity
expect "app: no registered token yet" "$(reg_ask app 8 slots)" '^slots$'
expect "provider registers C1" "$(reg_ask prov 7 "register $TK_TMP/c1.der $TK_TMP/key.pem")" '^ok 1$'
expect "app: slot event" "$(reg_ask app 8 'wait 2000')" "^event $SLOT\$"
expect "app: the token shows C1" "$(reg_ask app 8 slots)" "^slots $SLOT:setoken :$C1\$"
expect "app: signs with the provider's key" "$(reg_ask app 8 "sign $SLOT")" "^sign 0x0 verified cert $C1\$"

# 2. renewed with compare-and-swap: the running module and a fresh one show C2
expect "provider renews to C2" "$(reg_ask prov 7 "renew $TK_TMP/c2.der")" '^ok 2$'
expect "app: slot event" "$(reg_ask app 8 'wait 2000')" "^event $SLOT\$"
expect "app: the token shows C2" "$(reg_ask app 8 slots)" "^slots $SLOT:setoken :$C2\$"
reg_start fresh 9 "$REGT" p11 "$MOD"
expect "a fresh module shows C2" "$(reg_ask fresh 9 slots)" "^slots $SLOT:setoken :$C2\$"
expect "a fresh module signs" "$(reg_ask fresh 9 "sign $SLOT")" "^sign 0x0 verified cert $C2\$"
echo quit >&9

# the app keeps a session on the token through what follows
expect "app: a session" "$(reg_ask app 8 "open $SLOT")" '^open 0x0$'
cp -a "$STORE" "$TK_TMP/backup" # generation 2 (C2)

# 3a. the store replaced (moved away, a new one made in its place)
mv "$STORE" "$TK_TMP/old-store"
"$TK_BUILD/tokenkit" registry list >/dev/null
expect "provider: read after the store was replaced" "$(reg_ask prov 7 get)" '^TK_ERR_STORE_CHANGED '
expect "provider: write after the store was replaced" "$(reg_ask prov 7 "renew $TK_TMP/c1.der")" '^TK_ERR_STORE_CHANGED '
expect "app: slot event (its registration is gone)" "$(reg_ask app 8 'wait 3000')" "^event $SLOT\$"
expect "app: no registered token" "$(reg_ask app 8 slots)" '^slots$'
expect "app: its session is told" "$(reg_ask app 8 session)" '^session 0x32$' # CKR_DEVICE_REMOVED
expect "provider: reopens (another store)" "$(reg_ask prov 7 reopen)" '^ok 1$'
expect "provider: the new store has no setoken" "$(reg_ask prov 7 get)" '^TK_ERR_NOT_FOUND '
expect "provider: registers again, lands" "$(reg_ask prov 7 "register $TK_TMP/c1.der $TK_TMP/key.pem")" '^ok 1$'
expect "app: slot event" "$(reg_ask app 8 'wait 3000')" "^event $SLOT\$"
expect "app: the token is back, C1" "$(reg_ask app 8 slots)" "^slots $SLOT:setoken :$C1\$"

# 3b. restored from the backup (C2, generation 2)
rm -rf "$STORE"
cp -a "$TK_TMP/backup" "$STORE"
expect "provider: write after the restore" "$(reg_ask prov 7 "renew $TK_TMP/c1.der")" '^TK_ERR_STORE_CHANGED '
expect "app: slot event" "$(reg_ask app 8 'wait 3000')" "^event $SLOT\$"
expect "app: shows the restored C2" "$(reg_ask app 8 slots)" "^slots $SLOT:setoken :$C2\$"
expect "provider: reopens (the same store as before the move)" "$(reg_ask prov 7 reopen)" '^ok [01]$'
# its renewal was based on generation 1 of the store it had: refused, not merged
expect "provider: stale renewal is a conflict" "$(reg_ask prov 7 "renew $TK_TMP/c1.der")" '^TK_ERR_CONFLICT '
expect "provider: reads generation 2" "$(reg_ask prov 7 get)" '^ok 2$'

# 3c. wiped
rm -rf "$STORE"
expect "provider: read after the wipe" "$(reg_ask prov 7 get)" '^TK_ERR_STORE_CHANGED '
expect "app: slot event" "$(reg_ask app 8 'wait 3000')" "^event $SLOT\$"
expect "app: nothing registered" "$(reg_ask app 8 slots)" '^slots$'
expect "provider: reopens (a new, empty store)" "$(reg_ask prov 7 reopen)" '^ok 1$'
expect "provider: registers, lands" "$(reg_ask prov 7 "register $TK_TMP/c2.der $TK_TMP/key.pem")" '^ok 1$'
expect "app: slot event" "$(reg_ask app 8 'wait 3000')" "^event $SLOT\$"
expect "app: shows C2" "$(reg_ask app 8 slots)" "^slots $SLOT:setoken :$C2\$"

# 4. the module said what it re-read; the watcher never went silent (the
# reasons depend on what inotify saw first: the store moved away, gone, a new
# identity, back)
grep -q 'its slots follow the store as re-read' "$TK_TMP/app.err" ||
	tk_fail "the module did not log its resync"
grep -q 're-reading the store' "$TK_TMP/app.err" || tk_fail "the module did not say it re-read"
n=$(grep -c '"event":"resync"' "$TK_TMP/watch.out" || true)
((n >= 3)) || tk_fail "watch: $n resync events for 3 discontinuities"
grep -q '"event":"resync","reason":"store gone"' "$TK_TMP/watch.out" ||
	tk_fail "watch: no resync for the wiped store"
grep -q '"event":"added".*"generation":1' "$TK_TMP/watch.out" || tk_fail "watch: no added event"
grep -q '"event":"changed".*"generation":2' "$TK_TMP/watch.out" || tk_fail "watch: no changed event"
tk_log "watch saw $(grep -c . "$TK_TMP/watch.out") events"
echo quit >&8
tk_log "PASS"
