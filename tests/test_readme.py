#!/usr/bin/python3
"""test_readme: the README's quick start runs as written. Its `generate` command exits 0 and
prints text; its `serve` command starts (with --port 0 appended so the test owns a free port),
and every curl example in the README runs against it and succeeds (curl -f: any HTTP error
fails), with JSON or Server-Sent Events as the answer."""
import json
import os
import re
import subprocess
import sys

from checklib import BIN, TESTS, check, summary

ROOT = os.path.dirname(os.path.abspath(TESTS))



text = open(os.path.join(ROOT, "README.md")).read()
blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
commands = []
for b in blocks:
    joined = re.sub(r"\\\n\s*", " ", b)
    for line in joined.splitlines():
        line = line.split("  #")[0].strip()
        if line:
            commands.append(line)

check(commands[:2] == ["scripts/setup.sh", "scripts/test.sh"], f"the two set-up commands come first: {commands[:2]}")


def ours(cmd):
    """The README's build/llamaserve, as the build under test."""
    return cmd.replace("build/llamaserve", BIN, 1)


gen = [c for c in commands if c.startswith("build/llamaserve generate")]
check(len(gen) == 1, "one generate example")
for c in gen:
    p = subprocess.run(ours(c), shell=True, cwd=ROOT, capture_output=True, timeout=120)
    check(p.returncode == 0 and len(p.stdout.split()) >= 10, f"{c}: {p.returncode} {p.stderr!r}")

serve = [c for c in commands if c.startswith("build/llamaserve serve")]
check(len(serve) == 1, "one serve example")
curls = [c for c in commands if c.startswith("curl ")]
check(len(curls) >= 5, f"curl examples: {len(curls)}")
proc = subprocess.Popen("exec " + ours(serve[0]) + " --port 0", shell=True, cwd=ROOT, stderr=subprocess.PIPE,
                        stdout=subprocess.DEVNULL, text=True)
try:
    port = None
    for line in proc.stderr:
        m = re.search(r"listening on http://[^:]+:(\d+)", line)
        if m:
            port = m.group(1)
        if "ready: serving" in line or "llamaserve serve:" in line:
            break
    check(port is not None, "the server reports its port")
    for c in curls:
        p = subprocess.run(c.replace("localhost:8080", f"127.0.0.1:{port}"), shell=True,
                           capture_output=True, timeout=60)
        out = p.stdout.decode()
        ok = p.returncode == 0
        if ok and out.startswith("data: "):
            events = [e[6:] for e in out.split("\n\n") if e.startswith("data: ")]
            ok = events[-1] == "[DONE]" and all(json.loads(e) for e in events[:-1])
        elif ok and "/metrics" not in c:
            ok = isinstance(json.loads(out), dict)
        elif ok:
            ok = "llamaserve_requests_total" in out
        check(ok, f"{c}: rc {p.returncode}: {out[:200]!r}")
finally:
    proc.terminate()
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = -1
    check(rc == 0, f"the server exits 0 on SIGTERM ({rc})")

sys.exit(summary())
