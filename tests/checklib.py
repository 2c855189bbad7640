"""checklib: what the script tests of the binary share: the paths meson passes in the
environment (LS_BIN, LS_MODELS_DIR, LS_TESTS_DIR), a check() that counts instead of stopping at
the first failure, and the closing line with the exit status. Importing it makes SIGTERM (what
meson's timeout sends) and SIGHUP raise SystemExit, so that a killed test still runs its finally
blocks, atexit hooks and TemporaryDirectory cleanups, and leaves nothing under /tmp."""
import os
import signal
import sys

BIN = os.environ.get("LS_BIN", "build/llamaserve")
MODELS = os.environ.get("LS_MODELS_DIR", "../shared/models")
TESTS = os.environ.get("LS_TESTS_DIR", "tests")

counts = {"passed": 0, "failed": 0}


def _exit_on_signal(sig, _frame):
    sys.exit(128 + sig)


def exit_on_signals():
    """SIGTERM and SIGHUP raise SystemExit(128 + signal) in the main thread (KeyboardInterrupt
    already does it for SIGINT). Idempotent; called on import."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)


exit_on_signals()


def check(cond, what):
    """Counts one check; prints what failed."""
    if cond:
        counts["passed"] += 1
    else:
        counts["failed"] += 1
        print("FAIL:", what)


def summary():
    """Prints the counts; returns the exit status (1 when anything failed)."""
    print(f"{counts['passed']} checks passed, {counts['failed']} failed")
    return 1 if counts["failed"] else 0
