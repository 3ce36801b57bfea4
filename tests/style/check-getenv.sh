#!/usr/bin/env bash
# Every environment lookup in shipped code (core/, ccid/, drivers/, pkcs11/,
# tools/) goes through core/env.h: tk_env() is secure_getenv, so a set-uid
# or set-gid program never follows a variable its less privileged caller
# set. The one getenv() is tk_env_present() in core/env.c (presence only).
# Tests and benchmarks are not installed and may read their own variables.
set -euo pipefail
cd "$(dirname "$0")/../.."
dirs=()
for d in core ccid drivers pkcs11 tools; do [[ -d $d ]] && dirs+=("$d"); done
bad=$(grep -rnE '\b(secure_)?getenv[[:space:]]*\(|\benviron\b' --include='*.c' --include='*.h' \
	"${dirs[@]}" | grep -v '^core/env\.c:' | grep -vE '^[^:]+:[0-9]+:\s*(/\*|\*)' || true)
if [[ -n $bad ]]; then
	printf '%s\n' "$bad"
	echo "environment lookups outside core/env.c: use tk_env() (core/env.h)"
	exit 1
fi
echo "no environment lookup outside core/env.c"
