"""test_server_node: runs tests/node/openai_client.mjs (the official `openai` npm client) and
tests/node/structured_clients.mjs (structured output and tool calls through openai, LangChain
and the AI SDK) against a real `llamaserve serve`. Skipped (exit 77) when node or
tests/node/node_modules is missing; CI installs them with `npm ci --prefix tests/node`."""
import os
import shutil
import subprocess
import sys

from server_harness import SLOW, Runner, Server

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
KEY = "sk-node-test"


def main():
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "openai")):
        print("skip: node or tests/node/node_modules/openai missing "
              "(run: npm ci --prefix tests/node)")
        return 77
    runner = Runner("test_server_node")

    def openai_client():
        with Server("--alias", "kjv-node", "--parallel", "2",
                    env={"LLAMASERVE_API_KEY": KEY}) as s:
            env = dict(os.environ, LS_PORT=str(s.port), LS_API_KEY=KEY)
            p = subprocess.run([node, os.path.join(NODE_DIR, "openai_client.mjs")], cwd=NODE_DIR,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=120 * SLOW)
            out = p.stdout.decode("utf-8", "replace")
            print(out, end="")
            assert p.returncode == 0, "node exited %d" % p.returncode
            assert "FAIL" not in out
    runner.run(openai_client)

    def structured_clients():
        # room for the tool descriptions beyond the demo model's 256 positions
        with Server("--ctx-size", "2048", "--parallel", "2",
                    env={"LLAMASERVE_API_KEY": KEY}) as s:
            env = dict(os.environ, LS_PORT=str(s.port), LS_API_KEY=KEY)
            p = subprocess.run([node, os.path.join(NODE_DIR, "structured_clients.mjs")],
                               cwd=NODE_DIR, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=240 * SLOW)
            out = p.stdout.decode("utf-8", "replace")
            print(out, end="")
            assert p.returncode == 0, "node exited %d" % p.returncode
            assert "FAIL" not in out and out.count("ok   ") == 8, out
    for pkg in ("@langchain/openai", "ai", "@ai-sdk/openai-compatible", "zod", "ajv"):
        if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", pkg)):
            runner.fail("structured_clients", "tests/node/node_modules/%s is missing "
                        "(run scripts/test-deps.sh)" % pkg)
            runner.finish()
    runner.run(structured_clients)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
