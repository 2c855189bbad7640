#!/usr/bin/env bash
# test.sh [BUILD_DIR] [meson test args...]: runs the whole test suite of one build (default
# build/) and ends with one line "N passed, N failed" counting the tests that ran. Installs the
# test-only packages first (scripts/test-deps.sh) when they are missing, and configures BUILD_DIR
# when scripts/setup.sh has not.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh || { echo "test: installing the test packages failed"; echo "0 passed, 1 failed"; exit 1; }
build=build
if [ $# -gt 0 ] && [ -d "$1" ]; then build=$1; shift; fi
[ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release >/dev/null ||
    { echo "test: meson setup failed"; echo "0 passed, 1 failed"; exit 1; }
ninja -C "$build" >/dev/null || { echo "test: build failed"; echo "0 passed, 1 failed"; exit 1; }
meson test -C "$build" --print-errorlogs "$@"
rc=$?
/usr/bin/python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("result") in ("OK", "EXPECTEDFAIL"): passed += 1
    elif r.get("result") == "SKIP": pass
    else: failed += 1
print(f"{passed} passed, {failed} failed")
PY
exit $rc
