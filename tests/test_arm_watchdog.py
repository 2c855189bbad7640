#!/usr/bin/python3
"""test_arm_watchdog: scripts/test-arm.sh's hang watchdog, with stand-ins for the cross compiler
and qemu-user on PATH (no AArch64 code is built or run here): a guest that prints and exits
passes its status through; one that goes silent is killed and run once more, and a second
silence fails with 124; a guest that hangs once and then passes, passes. The silence limit is
1 s (TEST_ARM_QUIET_S) and the hanging stand-in never wakes up by itself, so no outcome depends
on timing. Standard library only."""
import os
import platform
import subprocess
import sys
import tempfile

from checklib import TESTS, check, summary

SCRIPT = os.path.join(TESTS, "..", "scripts", "test-arm.sh")

# the cross compiler and archiver: create the file named by -o, or the archive
FAKE_CC = """#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = -o ] && : > "$2"; shift; done
"""
FAKE_AR = """#!/bin/sh
: > "$2"
"""
# the guest, by mode: "pass" prints two lines and exits 0; "fail" prints a line and a partial
# one and exits 3; "hang" prints its first line and sleeps for good; "hang-once" hangs on its
# first run and passes on the next. Every run appends a line to runs.
FAKE_QEMU = """#!/bin/sh
dir=$(dirname "$0")
echo run >> "$dir/runs"
mode=$(cat "$dir/mode")
if [ "$mode" = hang-once ]; then
    [ "$(wc -l < "$dir/runs")" -eq 1 ] && mode=hang || mode=pass
fi
echo "SIMD kernels: neon"
case $mode in
pass) echo "1753 checks passed, 0 failed"; exit 0 ;;
fail) printf 'FAIL: a check\\npartial'; exit 3 ;;
hang) exec sleep 100000 ;;
esac
"""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


def run(mode, tmp):
    fake = os.path.join(tmp, "bin")
    write(os.path.join(fake, "mode"), mode)
    runs = os.path.join(fake, "runs")
    if os.path.exists(runs):
        os.remove(runs)
    env = dict(os.environ, PATH=fake + os.pathsep + os.environ["PATH"], TEST_ARM_QUIET_S="1")
    p = subprocess.run(["bash", SCRIPT, os.path.join(tmp, "out")], capture_output=True,
                       text=True, env=env, timeout=120)
    with open(runs) as f:
        n = len(f.read().splitlines())
    return p.returncode, p.stdout + p.stderr, n


def main():
    if platform.machine() == "aarch64":
        print("SKIP: native AArch64 (test-arm.sh skips itself there)")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        fake = os.path.join(tmp, "bin")
        os.mkdir(fake)
        write(os.path.join(fake, "aarch64-linux-gnu-gcc"), FAKE_CC)
        write(os.path.join(fake, "aarch64-linux-gnu-ar"), FAKE_AR)
        write(os.path.join(fake, "qemu-aarch64"), FAKE_QEMU)

        rc, out, n = run("pass", tmp)
        check(rc == 0 and n == 1 and "1753 checks passed" in out and "hung" not in out,
              f"a passing guest: rc {rc}, {n} runs, {out!r}")
        rc, out, n = run("fail", tmp)
        check(rc == 3 and n == 1 and "FAIL: a check" in out and out.rstrip().endswith("partial"),
              f"a failing guest keeps its status and last partial line: rc {rc}, {out!r}")
        rc, out, n = run("hang", tmp)
        check(rc == 124 and n == 2 and out.count("no output from qemu-user for 1 s") == 2,
              f"a guest silent twice fails with 124: rc {rc}, {n} runs, {out!r}")
        rc, out, n = run("hang-once", tmp)
        check(rc == 0 and n == 2 and out.count("no output from qemu-user") == 1 and
              "running it once more" in out and "1753 checks passed" in out,
              f"a guest that hangs once passes on its rerun: rc {rc}, {n} runs, {out!r}")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
