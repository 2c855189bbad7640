#!/usr/bin/python3
"""test_clean_clone: a user's first steps work in a fresh clone with nothing beside it. Clones
the committed tree (HEAD) into an empty temporary folder (so there is no ../shared), runs the
README's first set-up command there (scripts/setup.sh: build packages, release build), and then
the README's quick start (generate, serve, every curl example) with that clone's own binary and
its embedded demo model, by running the clone's tests/test_readme.py against it. Skipped (77)
when the source is not a git checkout."""
import os
import shutil
import subprocess
import sys
import tempfile

from checklib import TESTS, check, summary

ROOT = os.path.dirname(os.path.abspath(TESTS))

if subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True).returncode:
    print("SKIP: not a git checkout")
    sys.exit(77)

tmp = tempfile.mkdtemp(prefix="ls_clone_")
try:
    clone = os.path.join(tmp, "llamaserve")
    p = subprocess.run(["git", "clone", "-q", "--no-hardlinks", ROOT, clone], capture_output=True,
                       text=True, timeout=120)
    check(p.returncode == 0, f"git clone: {p.stderr}")
    check(not os.path.exists(os.path.join(tmp, "shared")), "nothing beside the clone")
    p = subprocess.run(["scripts/setup.sh"], cwd=clone, capture_output=True, text=True, timeout=900)
    check(p.returncode == 0, f"scripts/setup.sh in a clean clone: {p.returncode}\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    binary = os.path.join(clone, "build", "llamaserve")
    check(os.access(binary, os.X_OK), "the clone's build made build/llamaserve")
    check(not os.path.exists(os.path.join(clone, "build", "tests", "kjv-demo-bf16.gguf")),
          "the default build makes no test fixture")
    if os.access(binary, os.X_OK):
        env = dict(os.environ, LS_BIN=binary, LS_TESTS_DIR=os.path.join(clone, "tests"),
                   LS_MODELS_DIR=os.path.join(tmp, "no-models-here"))
        # the quick start must not depend on anything the environment could name
        for k in list(env):
            if k.startswith("LLAMASERVE_"):
                del env[k]
        p = subprocess.run(["/usr/bin/python3", os.path.join(clone, "tests", "test_readme.py")],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=300)
        print(p.stdout)
        check(p.returncode == 0, f"the README's quick start in the clean clone: {p.stdout[-1500:]}{p.stderr[-1500:]}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

sys.exit(summary())
