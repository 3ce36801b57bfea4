#!/usr/bin/env bash
# Registry figures (README "Token registry"): registration-to-slot latency in
# a running PKCS#11 module and the write latency, on the file system of
# $TMPDIR (default /tmp) and on a tmpfs (/dev/shm). The test-only provider
# plugin serves the registrations.
#   bench/registry.sh [BUILD] [ROUNDS]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(realpath "${1:-$SRC/build}")
N=${2:-200}
for base in "${TMPDIR:-/tmp}" /dev/shm; do
	TMP=$(mktemp -d "$base/tk-registry-bench.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
	openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/key.pem" 2>/dev/null
	openssl req -new -x509 -key "$TMP/key.pem" -subj /CN=bench -days 1 -outform DER \
		-out "$TMP/c.der" 2>/dev/null
	echo "== store on $(df -T "$TMP" | awk 'NR==2 {print $2}') ($base), $N rounds"
	XDG_STATE_HOME=$TMP/state TOKENKIT_PLUGIN_PATH=$BUILD/test-plugins \
		PCSCLITE_CSOCK_NAME=$TMP/no-pcscd TOKENKIT_LOG=warn \
		"$BUILD/registry_latency" "$BUILD/tokenkit-pkcs11.so" "$TMP/state/tokenkit/registry" \
		"$TMP/c.der" "$TMP/key.pem" "$N"
	rm -rf "$TMP"
	trap - EXIT
done
