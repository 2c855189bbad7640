#!/usr/bin/python3
"""test_dockerfile: no Docker engine runs here, so this checks what can be checked without one:
the Dockerfile is multi-stage, runs scripts/setup.sh, every file it copies from the context
exists, the runtime stage runs as a non-root user, exposes 8080 and has a HEALTHCHECK on
/health, and its entrypoint command line (with the image's environment) is accepted by
`llamaserve serve` and listens on 0.0.0.0:8080."""
import json
import os
import shlex
import subprocess
import sys

from checklib import BIN, MODELS, TESTS, check, summary

ROOT = os.path.dirname(os.path.abspath(TESTS))



# join continuation lines into instructions
lines, cur = [], ""
for raw in open(os.path.join(ROOT, "Dockerfile")):
    s = raw.rstrip("\n")
    if not cur and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append((cur + s).strip())
    cur = ""
instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]

stages = [a for k, a in instr if k == "FROM"]
check(len(stages) >= 2, f"multi-stage: {stages}")
check(any(k == "RUN" and "scripts/setup.sh" in a for k, a in instr),
      "the build stage runs scripts/setup.sh")
for k, a in instr:
    if k == "COPY" and "--from" not in a:
        srcs = shlex.split(a)[:-1]
        for src in srcs:
            check(os.path.exists(os.path.join(ROOT, src)), f"COPY source {src} exists")
runtime = instr[max(i for i, (k, _) in enumerate(instr) if k == "FROM"):]
user = [a for k, a in runtime if k == "USER"]
check(user and user[-1] not in ("root", "0"), f"runtime runs as non-root: {user}")
check(any(k == "EXPOSE" and "8080" in a for k, a in runtime), "EXPOSE 8080")
check(any(k == "HEALTHCHECK" and "/health" in a for k, a in runtime), "HEALTHCHECK on /health")
check(any(k == "VOLUME" for k, a in runtime), "the model directory is a volume")

env = {}
for k, a in runtime:
    if k == "ENV":
        for kv in shlex.split(a):
            if "=" in kv:
                name, value = kv.split("=", 1)
                env[name] = value
check(env.get("LLAMASERVE_MODEL", "").startswith("/models/"), "LLAMASERVE_MODEL names the volume")

entry = [json.loads(a) for k, a in runtime if k == "ENTRYPOINT"][-1]
cmd = [json.loads(a) for k, a in runtime if k == "CMD"][-1]
check(entry == ["llamaserve"] and cmd[0] == "serve", f"entrypoint runs serve: {entry} {cmd}")

# the image's command line and environment, with the model swapped for a real file
run_env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMASERVE_")}
run_env.update(env)
run_env["LLAMASERVE_MODEL"] = os.path.join(MODELS, "kjv-demo.gguf")
p = subprocess.run([BIN] + cmd + ["--print-config"], env=run_env, capture_output=True,
                   timeout=30)
check(p.returncode == 0, f"serve accepts the image's command line: {p.stderr!r}")
if p.returncode == 0:
    conf = json.loads(p.stdout)
    check(conf["host"] == "0.0.0.0" and conf["port"] == 8080, f"listens on 0.0.0.0:8080: {conf}")
    check(conf["model"] == run_env["LLAMASERVE_MODEL"], "the model comes from LLAMASERVE_MODEL")

sys.exit(summary())
