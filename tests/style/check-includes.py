#!/usr/bin/env python3
"""The include boundaries the build relies on (issue 9, section 4).

The build already keeps most of them: core's private headers are only on the
include path of tokenkit_internal's users, and tools/tokenkit links the shared
library, so a function without TK_EXPORT does not link. What an include path
cannot stop is a relative path; this check catches those:

  - nothing includes a .c file (tests link tokenkit_internal /
    tokenkit_p11_internal instead of compiling module or core sources in);
  - tools/tokenkit includes only its own headers and the public ones
    (<tokenkit/...>);
  - core/, ccid/ and drivers/ include only core's headers and their own
    directory's (core never depends on tools/ or pkcs11/);
  - a driver built as a plugin (drivers/NAME/ with a CMakeLists.txt) includes
    only its own directory's headers and the public ones: it is built the
    way an out-of-tree driver is, against the installed headers;
  - pkcs11/ includes only core's and its own headers;
  - the public headers include only public headers.

Exit 0 when clean, 1 with one line per violation."""
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]')
DIRS = ["core", "ccid", "drivers", "pkcs11", "tools", "include", "tests", "bench"]


def sources():
    for top in DIRS:
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    yield os.path.join(dirpath, f)


def resolves(name, dirs):
    return any(os.path.isfile(os.path.join(d, name)) for d in dirs)


def check(path):
    rel = os.path.relpath(path, ROOT)
    here = os.path.dirname(path)
    core = os.path.join(ROOT, "core")
    bad = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for no, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m is None:
                continue
            quoted, name = m.group(1) == '"', m.group(2)
            close = '"' if quoted else ">"
            where = f"{rel}:{no}: #include {m.group(1)}{name}{close}"
            if name.endswith(".c"):
                bad.append(f"{where}: includes a .c file (link the internal target instead)")
            elif not quoted:
                continue
            elif rel.startswith("tools/tokenkit/"):
                if "/" in name or not resolves(name, [here]):
                    bad.append(f"{where}: the CLI uses the public API only (<tokenkit/...>)")
            elif rel.count("/") >= 2 and rel.startswith("drivers/") and os.path.isfile(os.path.join(here, "CMakeLists.txt")):
                if "/" in name or not resolves(name, [here]):
                    bad.append(f"{where}: a plugin driver uses the public headers only (<tokenkit/...>)")
            elif rel.startswith(("core/", "ccid/", "drivers/")):
                if "/" in name or not resolves(name, [here, core]):
                    bad.append(f"{where}: core may include only core's and its own headers")
            elif rel.startswith("pkcs11/"):
                if "/" in name or not resolves(name, [here, core]):
                    bad.append(f"{where}: the module may include only core's and its own headers")
            elif rel.startswith("include/"):
                bad.append(f"{where}: a public header includes only <tokenkit/...> and system headers")
    return bad


def main():
    bad = []
    n = 0
    for path in sorted(sources()):
        n += 1
        bad.extend(check(path))
    for b in bad:
        print(b)
    if bad:
        return 1
    print(f"{n} C files: include boundaries kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
