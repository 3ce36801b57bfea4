#!/usr/bin/env bash
# A full disk (a small tmpfs in a private mount namespace): the write that
# does not fit fails with TK_ERR_DISK_FULL (and `tokenkit` says "no space
# left"), the record it was to replace keeps its old content and
# generation, and the store keeps working for reads.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_registry.sh"
tk_require_cmd unshare
[[ $(id -u) == 0 ]] || tk_skip "needs root to mount a tmpfs"
reg_setup
mkdir -p "$TK_TMP/small"
cat >"$TK_TMP/inner.sh" <<EOS
set -e
mount -t tmpfs -o size=512k,mode=0700 tmpfs "$TK_TMP/small"
"$REGT" fill "$TK_TMP/small/registry"
"$TK_BUILD/tokenkit" registry list --store "$TK_TMP/small/registry" >/dev/null
echo "list: ok"
EOS
out=$(unshare -m --propagation private bash "$TK_TMP/inner.sh" 2>"$TK_TMP/fill.err") ||
	tk_fail "fill: $out $(cat "$TK_TMP/fill.err")"
tk_log "$(echo "$out" | tr '\n' ';')"
grep -q '^full: TK_ERR_DISK_FULL$' <<<"$out" || tk_fail "filling did not end in TK_ERR_DISK_FULL"
grep -q '^rewrite: TK_ERR_DISK_FULL$' <<<"$out" || tk_fail "the rewrite did not fail with TK_ERR_DISK_FULL"
grep -q '^keep: generation 1 label before the disk was full$' <<<"$out" ||
	tk_fail "the record being replaced lost its old content"
grep -q '^list: ok$' <<<"$out" || tk_fail "the full store cannot be listed"
grep -q 'no space left on the file system' "$TK_TMP/fill.err" ||
	tk_fail "no clear message in the log"
tk_log "PASS"
