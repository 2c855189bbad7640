"""test_webui: the chat page at / in a real browser. Starts two servers on the demo model (one
open, with room for a long answer; one that wants an API key) and runs tests/node/webui_test.mjs,
which drives Debian's headless Chromium with puppeteer-core: model name, streaming, Stop and
the freed slot, the prompt cache on a second turn, server errors, the key field on 401, markup
kept as text. Leaves webui-screenshot.png (a finished conversation) in the build folder.
Skipped (exit 77) only when Chromium, node or tests/node/node_modules/puppeteer-core is
missing; scripts/test-deps.sh installs them."""
import os
import shutil
import subprocess
import sys
import time

from server_harness import BIN, Runner, Server

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
CHROMIUM = "/usr/bin/chromium"
KEY = "sk-webui-test"
ALIAS = "kjv-webui"


def main():
    node = shutil.which("node")
    missing = [what for what, ok in [
        (CHROMIUM, os.access(CHROMIUM, os.X_OK)),
        ("node", node is not None),
        ("tests/node/node_modules/puppeteer-core",
         os.path.isdir(os.path.join(NODE_DIR, "node_modules", "puppeteer-core"))),
    ] if not ok]
    if missing:
        print("skip: missing %s (scripts/test-deps.sh installs them)" % ", ".join(missing))
        return 77
    runner = Runner("test_webui")
    shot = os.path.join(os.path.dirname(os.path.abspath(BIN)), "webui-screenshot.png")

    def browser():
        # one slot, so that the second turn surely finds the first in its cache; a 32768-token
        # slot, so that an answer runs long enough (seconds, even on an idle machine) to be
        # watched growing and stopped before it ends by itself
        with Server("--alias", ALIAS, "--parallel", "1", "--ctx-size", "32768",
                    "--max-tokens-limit", "32000") as s, \
                Server("--alias", ALIAS, "--parallel", "1",
                       env={"LLAMASERVE_API_KEY": KEY}) as k:
            env = dict(os.environ, LS_PORT=str(s.port), LS_KEY_PORT=str(k.port), LS_API_KEY=KEY,
                       LS_ALIAS=ALIAS, LS_CHROMIUM=CHROMIUM, LS_SCREENSHOT=shot)
            t0 = time.monotonic()
            p = subprocess.run([node, os.path.join(NODE_DIR, "webui_test.mjs")], cwd=NODE_DIR,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=180)
            out = p.stdout.decode("utf-8", "replace")
            print(out, end="")
            print("browser test: %.1f s; screenshot: %s" % (time.monotonic() - t0, shot))
            assert p.returncode == 0 and "FAIL" not in out, "node exited %d" % p.returncode
    runner.run(browser)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
