"""test_tmp_cleanup: a test killed by meson's timeout (SIGTERM) removes its temporary folder.
Two children are started and killed once they say their folder exists: tmp_holder (a C test's
check_tmp_path, check.h) and a Python script that imports checklib and holds a
TemporaryDirectory and a mkdtemp folder removed in a finally (the two ways the Python tests
use). Each must be gone after SIGTERM, and after a normal end."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checklib import TESTS, check, summary  # noqa: E402

HOLDER = sys.argv[1]
PY_CHILD = f"""
import os, shutil, sys, tempfile
sys.path.insert(0, {TESTS!r})
import checklib
made = tempfile.mkdtemp(prefix="ls-test-py-")
try:
    with tempfile.TemporaryDirectory(prefix="ls-test-py-") as d:
        print("holding", d, made, flush=True)
        sys.stdin.read()
finally:
    shutil.rmtree(made)
"""


def run(argv, what, sig):
    """Starts argv, waits for its "holding PATH..." line, ends it with sig (None: closes its
    stdin) and checks the folders of those paths are gone."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    check(line[:1] == ["holding"] and len(line) > 1, f"{what}: first line {line}")
    dirs = [x if os.path.isdir(x) else os.path.dirname(x) for x in line[1:]]
    check(dirs and all(os.path.isdir(d) for d in dirs), f"{what}: {dirs} exist while it holds")
    if sig is None:
        p.stdin.close()
    else:
        p.send_signal(sig)
    rc = p.wait(timeout=60)
    p.stdout.close()
    if sig is None:
        check(rc == 0, f"{what}: exit status {rc} at the end of its input")
    else:
        check(rc in (-sig, 128 + sig), f"{what}: exit status {rc} after signal {sig}")
    left = [d for d in dirs if os.path.exists(d)]
    check(not left, f"{what}, {'end' if sig is None else 'signal %d' % sig}: {left} left behind")


for sig in (signal.SIGTERM, signal.SIGINT, None):
    run([HOLDER], "tmp_holder (C)", sig)
for sig in (signal.SIGTERM, None):
    run([sys.executable, "-c", PY_CHILD], "checklib (Python)", sig)
sys.exit(summary())
