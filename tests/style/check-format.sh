#!/usr/bin/env bash
# Every C source and header tracked by git is laid out as .clang-format says
# (STYLE.md rule 17). Fix with: git ls-files '*.c' '*.h' | xargs clang-format-14 -i
set -euo pipefail
cd "$(dirname "$0")/../.."
CF=$(command -v clang-format-14 || command -v clang-format || true)
[[ -n "$CF" ]] || { echo "clang-format not installed (scripts/deps installs it)"; exit 77; }
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { echo "not a git checkout"; exit 77; }
bad=()
while IFS= read -r f; do
	"$CF" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.c' '*.h')
if ((${#bad[@]})); then
	printf 'not formatted: %s\n' "${bad[@]}"
	echo "fix with: git ls-files '*.c' '*.h' | xargs $(basename "$CF") -i"
	exit 1
fi
echo "all $(git ls-files '*.c' '*.h' | wc -l) C files formatted"
