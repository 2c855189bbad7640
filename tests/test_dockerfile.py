#!/usr/bin/python3
"""test_dockerfile: what can be checked of the Dockerfile without a container engine (the image
is built and run for real by scripts/test-container.sh, in CI):
- both stages FROM debian:bookworm-slim; the build stage installs exactly scripts/setup.sh's
  packages, the runtime stage exactly libmicrohttpd12, libcjson1 and libpcre2-8-0 (no curl);
- the build context: .dockerignore keeps build folders, .git, node_modules and other model files
  out, yet nothing a COPY names; what the build stage copies is enough for `meson setup
  -Dtests=false` (done here, in a folder holding only those copies), and it builds only the
  binary, stripped, where the runtime stage copies it from;
- the runtime stage, laid out in a scratch root: with nothing in /models the binary finds the
  embedded model where the Dockerfile puts it; one .gguf in /models replaces it;
- a numeric non-root USER, EXPOSE 8080, a HEALTHCHECK on /health, no LLAMASERVE_MODEL, and the
  entrypoint command line, with the image's environment, accepted by `llamaserve serve` on
  0.0.0.0:8080."""
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from checklib import BIN, MODELS, TESTS, check, summary

ROOT = os.path.dirname(os.path.abspath(TESTS))
BASE = "debian:bookworm-slim"
DEMO = "kjv-demo-q8_0.gguf"


def instructions(path):
    """The Dockerfile as [(INSTRUCTION, arguments)], continuation lines joined."""
    lines, cur = [], ""
    for raw in open(path):
        s = raw.rstrip("\n")
        if not cur and (not s.strip() or s.lstrip().startswith("#")):
            continue
        if cur and s.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append((cur + s).strip())
        cur = ""
    return [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]


def apt_installs(stage):
    """The packages the stage's RUNs pass to apt-get install."""
    pkgs = set()
    for k, a in stage:
        if k != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", a):
            words = shlex.split(cmd)
            if "apt-get" in words and "install" in words:
                pkgs |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return pkgs


def ignore_rules(path):
    """The .dockerignore as [(regex, negated)]: '*' and '?' stop at '/', '**' crosses it."""
    rules = []
    for line in open(path):
        p = line.strip()
        if not p or p.startswith("#"):
            continue
        neg = p.startswith("!")
        p = os.path.normpath(p.lstrip("!").strip()).lstrip("/")
        rx, i = "", 0
        while i < len(p):
            if p.startswith("**/", i):
                rx, i = rx + "(.*/)?", i + 3
            elif p.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif p[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif p[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(p[i]), i + 1
        rules.append((re.compile(rx + r"\Z"), neg))
    return rules


def ignored(rules, rel):
    """Whether the context leaves rel out: the last rule matching it or a folder above it."""
    parts = rel.split("/")
    paths = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    out = False
    for rx, neg in rules:
        if any(rx.match(p) for p in paths):
            out = not neg
    return out


def copy_into(dest_root, workdir, args, rules):
    """Does what COPY args does (sources from the repository, as the context filters them) under
    dest_root; returns the context files it copied."""
    *srcs, dest = shlex.split(args)
    dest = dest if dest.startswith("/") else os.path.join(workdir, dest)
    copied = []
    for src in srcs:
        full = os.path.join(ROOT, src)
        check(os.path.exists(full), f"COPY source {src} exists")
        files = [src.rstrip("/")] if os.path.isfile(full) else [
            os.path.relpath(os.path.join(d, f), ROOT)
            for d, _, fs in os.walk(full) for f in fs]
        for rel in files:
            if ignored(rules, rel):
                continue
            if os.path.isfile(full):
                to = os.path.join(dest, os.path.basename(rel)) if dest.endswith("/") or \
                    len(srcs) > 1 else dest
            else:
                to = os.path.join(dest, os.path.relpath(rel, src.rstrip("/")))
            target = os.path.join(dest_root, to.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), target)
            copied.append(rel)
        check(any(c == src.rstrip("/") or c.startswith(src.rstrip("/") + "/") for c in copied),
              f"the context keeps COPY source {src} (.dockerignore)")
    return copied


def loaded_model(binary, argv, env, timeout=20):
    """Starts binary with argv on a free loopback port and returns the model path its
    'listening on' line names (None if it exits first); then stops it."""
    p = subprocess.Popen([binary] + argv + ["--host", "127.0.0.1", "--port", "0"], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    sel = selectors.DefaultSelector()
    sel.register(p.stderr, selectors.EVENT_READ)
    buf, model, deadline = b"", None, time.monotonic() + timeout
    try:
        while model is None and time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                break
            chunk = os.read(p.stderr.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            # "listening on URL, loading the model model_path=PATH ..." (or, in older
            # builds, "listening on URL (loading PATH, ...)")
            m = re.search(rb"listening on \S+ .*?(?:model_path=|\(loading )([^,)\s]+)", buf)
            if m:
                model = m.group(1).decode()
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if model is None:
        print(buf.decode("utf-8", "replace"))
    return model


instr = instructions(os.path.join(ROOT, "Dockerfile"))
froms = [i for i, (k, _) in enumerate(instr) if k == "FROM"]
check(len(froms) == 2, f"two stages: {len(froms)}")
build = instr[froms[0]:froms[-1]]
runtime = instr[froms[-1]:]
bases = [instr[i][1].split()[0] for i in froms]
check(bases == [BASE] * len(froms), f"every stage FROM {BASE} (one base image): {bases}")
stage_name = instr[froms[0]][1].split()[-1] if " as " in instr[froms[0]][1].lower() else "0"

# the build stage: the build packages, nothing for the tests
setup = open(os.path.join(ROOT, "scripts", "setup.sh")).read()
m = re.search(r"^packages=\(([^)]*)\)", setup, re.M)
want = set(m.group(1).split()) if m else set()
check(want and apt_installs(build) == want,
      f"the build stage installs scripts/setup.sh's packages: {sorted(apt_installs(build))} "
      f"vs {sorted(want)}")
build_runs = " && ".join(a for k, a in build if k == "RUN")
check(re.search(r"meson setup (\S+ )*build( \S+)* -Dtests=false", build_runs) is not None,
      "the build stage configures build/ with -Dtests=false")
check(re.search(r"ninja -C build llamaserve\b", build_runs) is not None,
      "the build stage builds only the binary (ninja -C build llamaserve)")
check("strip build/llamaserve" in build_runs, "the build stage strips the binary")
check(not any(k == "COPY" and re.search(r"(^|\s)(\./)?tests/?(\s|$)", a) for k, a in build),
      "the build stage does not copy tests/")

# the context, and the build stage's copies: enough for meson (with the tests left out)
dockerignore = os.path.join(ROOT, ".dockerignore")
check(os.path.isfile(dockerignore), ".dockerignore exists")
rules = ignore_rules(dockerignore) if os.path.isfile(dockerignore) else []
for rel in (".git", ".git/HEAD", "build/llamaserve", "build-asan/build.ninja",
            "tests/node/node_modules/openai/package.json", "node_modules/x/index.js",
            "tests/__pycache__/checklib.cpython-311.pyc", "other.gguf", "models/other.gguf"):
    check(ignored(rules, rel), f".dockerignore leaves {rel} out of the context")
check(not ignored(rules, "models/" + DEMO), f".dockerignore keeps models/{DEMO}")

scratch = tempfile.mkdtemp(prefix="ls-dockerfile-")
try:
    workdir = "/"
    ctx_root = os.path.join(scratch, "build-stage")
    for k, a in build:
        if k == "WORKDIR":
            workdir = os.path.join(workdir, a.strip())
        elif k == "COPY":
            check("--from" not in a, f"the build stage copies from the context: {a}")
            copy_into(ctx_root, workdir, a, rules)
    src = os.path.join(ctx_root, workdir.lstrip("/"))
    p = subprocess.run(["meson", "setup", os.path.join(scratch, "mesonbuild"), "-Dtests=false",
                        "--buildtype=release"], cwd=src, capture_output=True, text=True,
                       timeout=120)
    check(p.returncode == 0, "meson setup -Dtests=false works with only the build stage's copies:"
          f"\n{p.stdout[-1500:]}{p.stderr[-1500:]}")

    # the runtime stage in a scratch root: the binary (this build's, as the build stage's
    # output) and the context files where the Dockerfile puts them
    image = os.path.join(scratch, "image")
    binary_dest = None
    for k, a in runtime:
        if k == "COPY" and "--from" in a:
            words = shlex.split(a)
            frm = [w.split("=", 1)[1] for w in words if w.startswith("--from=")]
            srcs = [w for w in words if not w.startswith("--")]
            check(frm == [stage_name] and srcs[0] == os.path.join(workdir, "build/llamaserve"),
                  f"the runtime stage copies the build stage's binary: {a}")
            binary_dest = srcs[-1]
            os.makedirs(os.path.dirname(os.path.join(image, binary_dest.lstrip("/"))),
                        exist_ok=True)
            shutil.copy2(BIN, os.path.join(image, binary_dest.lstrip("/")))
        elif k == "COPY":
            copy_into(image, "/", a, rules)
    check(binary_dest == "/usr/local/bin/llamaserve",
          f"the binary goes to /usr/local/bin/llamaserve: {binary_dest}")
    check(os.path.isfile(os.path.join(image, "usr/local/share/llamaserve", DEMO)),
          f"the image carries /usr/local/share/llamaserve/{DEMO}")

    # the runtime stage's settings
    check(apt_installs(runtime) == {"libmicrohttpd12", "libcjson1", "libpcre2-8-0"},
          f"the runtime stage installs libmicrohttpd12, libcjson1 and libpcre2-8-0 only: "
          f"{sorted(apt_installs(runtime))}")
    check(not any(re.search(r"\b(curl|wget)\b", a) for k, a in runtime if k != "HEALTHCHECK")
          and not any(re.search(r'"(curl|wget)"|^(CMD )?(curl|wget)', a)
                      for k, a in runtime if k == "HEALTHCHECK"),
          "no curl or wget in the runtime stage")
    user = [a.strip() for k, a in runtime if k == "USER"]
    check(user and re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user[-1]) is not None,
          f"the runtime stage runs as a numeric non-root user: {user}")
    check(any(k == "EXPOSE" and "8080" in a.split() for k, a in runtime), "EXPOSE 8080")
    health = [a for k, a in runtime if k == "HEALTHCHECK"]
    check(health and "/health" in health[-1], "HEALTHCHECK on /health")
    env = {}
    for k, a in runtime:
        if k == "ENV":
            for kv in shlex.split(a):
                if "=" in kv:
                    name, value = kv.split("=", 1)
                    env[name] = value
    check(env.get("LLAMASERVE_MODELS_DIR") == "/models", f"LLAMASERVE_MODELS_DIR=/models: {env}")
    check("LLAMASERVE_MODEL" not in env,
          "no LLAMASERVE_MODEL in the image (it would hide the embedded model and /models)")
    entry = [json.loads(a) for k, a in runtime if k == "ENTRYPOINT"][-1]
    cmd = [json.loads(a) for k, a in runtime if k == "CMD"][-1]
    check(entry == ["llamaserve"] and cmd[:1] == ["serve"], f"entrypoint runs serve: {entry} {cmd}")

    # the image's command line and environment
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMASERVE_")}
    run_env.update(env)
    p = subprocess.run([BIN] + cmd + ["--print-config"], env=run_env, capture_output=True,
                       timeout=30)
    check(p.returncode == 0, f"serve accepts the image's command line: {p.stderr!r}")
    if p.returncode == 0:
        conf = json.loads(p.stdout)
        check(conf["host"] == "0.0.0.0" and conf["port"] == 8080,
              f"listens on 0.0.0.0:8080: {conf['host']}:{conf['port']}")
        check(conf["model"] == "", "no model named: the default applies")

    # the image's model choice, run in the scratch root: /models empty, then holding one .gguf
    if binary_dest:
        image_bin = os.path.join(image, binary_dest.lstrip("/"))
        models_dir = os.path.join(image, env.get("LLAMASERVE_MODELS_DIR", "/models").lstrip("/"))
        os.makedirs(models_dir, exist_ok=True)
        run_env["LLAMASERVE_MODELS_DIR"] = models_dir
        got = loaded_model(image_bin, cmd, run_env)
        want = os.path.join(image, "usr/local/share/llamaserve", DEMO)
        check(got is not None and os.path.realpath(got) == os.path.realpath(want),
              f"nothing in /models: the embedded model at {want}: {got}")
        os.symlink(os.path.join(os.path.abspath(MODELS), "kjv-demo.gguf"),
                   os.path.join(models_dir, "kjv-demo.gguf"))
        got = loaded_model(image_bin, cmd, run_env)
        check(got == os.path.join(models_dir, "kjv-demo.gguf"),
              f"one .gguf in /models is served instead: {got}")
finally:
    shutil.rmtree(scratch, ignore_errors=True)

sys.exit(summary())
