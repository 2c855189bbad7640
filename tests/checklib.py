"""checklib: what the script tests of the binary share: the paths meson passes in the
environment (LS_BIN, LS_MODELS_DIR, LS_TESTS_DIR), a check() that counts instead of stopping at
the first failure, and the closing line with the exit status."""
import os

BIN = os.environ.get("LS_BIN", "build/llamaserve")
MODELS = os.environ.get("LS_MODELS_DIR", "../shared/models")
TESTS = os.environ.get("LS_TESTS_DIR", "tests")

counts = {"passed": 0, "failed": 0}


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
