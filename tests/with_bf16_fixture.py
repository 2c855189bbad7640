#!/usr/bin/python3
"""with_bf16_fixture TEST_EXE: makes the forward test's fixture, a BF16 copy of
../shared/models/kjv-demo.gguf (tests/reference/write_gguf.py), in a temporary folder, runs
TEST_EXE with its path and returns TEST_EXE's exit status. The fixture is made when the test
runs, never by the build, so that the default build needs nothing outside the repository."""
import os
import shutil
import subprocess
import sys
import tempfile

from checklib import MODELS, TESTS

tmp = tempfile.mkdtemp(prefix="ls_bf16_")
try:
    out = os.path.join(tmp, "kjv-demo-bf16.gguf")
    subprocess.run([sys.executable, "-B", os.path.join(TESTS, "reference", "write_gguf.py"),
                    os.path.join(MODELS, "kjv-demo.gguf"), out], check=True)
    sys.exit(subprocess.run([sys.argv[1], out]).returncode)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
