#!/usr/bin/env bash
# Every C source and header tracked by git is laid out as .clang-format says
# (STYLE.md rule 17). Fix with: git ls-files '*.c' '*.h' | xargs clang-format-14 -i
# One clang-format run for all files: one process per file took 200 s of a
# CI run on a loaded 2-core machine, this takes about 10.
set -euo pipefail
cd "$(dirname "$0")/../.."
CF=$(command -v clang-format-14 || command -v clang-format || true)
[[ -n "$CF" ]] || { echo "clang-format not installed (scripts/deps installs it)"; exit 77; }
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { echo "not a git checkout"; exit 77; }
n=$(git ls-files '*.c' '*.h' | wc -l)
((n > 0)) || { echo "no C files found"; exit 1; }
# --dry-run -Werror reports "FILE:LINE:COL: error: code should be
# clang-formatted" for each place and exits non-zero
if ! out=$(git ls-files -z '*.c' '*.h' | xargs -0 "$CF" --dry-run -Werror 2>&1); then
	bad=$(sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' <<<"$out" | sort -u)
	if [[ -z $bad ]]; then
		printf '%s\n' "$out" | head -20
		echo "$(basename "$CF") failed"
		exit 1
	fi
	printf 'not formatted: %s\n' $bad
	echo "fix with: git ls-files '*.c' '*.h' | xargs $(basename "$CF") -i"
	exit 1
fi
echo "all $n C files formatted"
