#!/usr/bin/env bash
# test-container.sh: builds the image from the repository's Dockerfile, unchanged, with podman and
# runs it for real, on loopback only. No Docker engine and no registry are needed: the base image
# (debian:bookworm-slim) is a minimal bookworm root made by debootstrap from this machine's apt
# mirror and imported with `podman import`, kept in podman's storage between runs.
#
# Checks: the image's size, user and healthcheck; with nothing mounted it serves the embedded
# demo model; with models mounted read-only it serves the one named by LLAMASERVE_MODEL (or the
# one .gguf in /models), with a read-only root, as uid 10001; /health, a completion, a stream
# ending in [DONE], the API key from the environment (401 without, 200 with), and `podman stop`
# during a stream: the stream drains to [DONE] and the container exits 0.
# Ends with "N passed, N failed"; exits non-zero on any failure. Needs root (rootful podman).
#
# Environment: LS_MODELS_DIR (default ../shared/models), LS_IMAGE_MAX_MB (default 100).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
MODELS=$(cd "${LS_MODELS_DIR:-$ROOT/../shared/models}" 2>/dev/null && pwd) || MODELS=""
MAX_MB=${LS_IMAGE_MAX_MB:-100}
BASE=debian:bookworm-slim
TAG=localhost/llamaserve:test
KEY=ls-container-test-key
TMP=$(mktemp -d /tmp/ls-container.XXXXXX)
NAMES=() # containers this run started, removed on exit

passed=0
failed=0
timings=()
ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
finish() {
    for n in "${NAMES[@]}"; do podman rm -f -t 0 "$n" >/dev/null 2>&1; done
    rm -rf "$TMP"
    echo "--- timings"
    for t in "${timings[@]}"; do echo "  $t"; done
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
trap finish EXIT
now() { date +%s.%N; }
phase_start=$(now)
phase() { # name: records the time since the previous phase ended
    local t
    t=$(now)
    timings+=("$(awk -v a="$t" -v b="$phase_start" -v n="$1" 'BEGIN { printf "%-16s %6.1f s", n, a - b }')")
    phase_start=$t
}

if [ "$(id -u)" -ne 0 ]; then
    bad "needs root: the image is built and run with rootful podman"
    exit 1
fi

# --- packages
packages=(podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns netavark aardvark-dns
          python3)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-container: installing ${missing[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"; } >"$TMP/apt.log" 2>&1; then
        cat "$TMP/apt.log"
        bad "installing ${missing[*]}"
        exit 1
    fi
fi
phase packages

# --- base image: debootstrap --variant=minbase, trimmed the way Debian's slim images are (no
# manuals, docs or translations, no apt lists), imported as debian:bookworm-slim
mirror_of() { # suite: the first apt source URI that serves it (deb822 or one-line lists)
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$suite" '
            /^[ \t]*$/ { if (uri != "" && hit) { print uri; exit } uri = ""; hit = 0; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
            END { if (uri != "" && hit) print uri }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed 's/\[[^]]*\]//' |
        awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2 }'
}
if podman image exists "$BASE"; then
    echo "test-container: base image $BASE cached"
else
    mirror=$(mirror_of bookworm | head -n 1)
    security=$(mirror_of bookworm-security | head -n 1)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "test-container: debootstrap --variant=minbase bookworm from $mirror"
    rootfs=$TMP/rootfs
    if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$TMP/debootstrap.log" 2>&1; then
        tail -n 20 "$TMP/debootstrap.log"
        bad "debootstrap"
        exit 1
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/etc/resolv.conf \
        "$rootfs"/etc/apt/sources.list
    find "$rootfs"/usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    # packages installed later stay as lean
    cat >"$rootfs"/etc/dpkg/dpkg.cfg.d/slim <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    {
        printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        if [ -n "$security" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        fi
    } >"$rootfs"/etc/apt/sources.list.d/debian.sources
    if ! tar -C "$rootfs" --numeric-owner -cf - . |
        podman import --change 'CMD ["bash"]' - "$BASE" >"$TMP/import.log" 2>&1; then
        cat "$TMP/import.log"
        bad "podman import"
        exit 1
    fi
    rm -rf "$rootfs"
fi
phase base-image

# --- build: the Dockerfile as it is. --network host: the build's apt-get needs the mirror, and
# podman's bridge network needs iptables, which this machine lacks. --format docker keeps the
# HEALTHCHECK (the OCI image format has none).
if podman build --pull=never --format docker --network host --iidfile "$TMP/iid" -t "$TAG" . \
    >"$TMP/build.log" 2>&1; then
    ok "podman build"
else
    tail -n 30 "$TMP/build.log"
    bad "podman build"
    exit 1
fi
IMAGE=$(cat "$TMP/iid")
phase build

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')
echo "test-container: image size $size_mb MB ($size bytes)"
if [ "$size" -le $((MAX_MB * 1000000)) ]; then ok "image size $size_mb MB <= $MAX_MB MB"; else
    bad "image size $size_mb MB > $MAX_MB MB"; fi
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
if [ "$user" = 10001:10001 ]; then ok "image user $user"; else bad "image user '$user', want 10001:10001"; fi
health=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
case $health in *"/health"*) ok "image has the HEALTHCHECK" ;; *) bad "no HEALTHCHECK: $health" ;; esac

# --- run. In this sandbox runc may lower but not raise rlimits (no CAP_SYS_RESOURCE), and podman
# would ask for more than conmon has: explicit, modest --ulimit values. slirp4netns publishes the
# port on 127.0.0.1 without iptables.
RUN_COMMON=(--runtime runc --read-only --ulimit nofile=8192:8192 --ulimit nproc=4096:4096)
RUN_PUBLISH=(--network slirp4netns:port_handler=slirp4netns -p 127.0.0.1::8080)

cat >"$TMP/ls_http_checks.py" <<'PY'
"""The HTTP side of test-container.sh: one check per call, stdlib only. Prints what it saw and
exits 0 when the check passed."""
import http.client
import json
import subprocess
import sys
import time

cmd, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3].lstrip("-")  # "-": no key
args = sys.argv[4:]


def request(method, path, body=None, key=key, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    c.request(method, path, json.dumps(body) if body is not None else None, h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def events(resp):
    """Yields each SSE data payload (parsed JSON, or the string "[DONE]")."""
    buf = b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if ev.startswith(b"data: "):
                yield "[DONE]" if ev == b"data: [DONE]" else json.loads(ev[6:])


def fail(msg):
    print(msg)
    sys.exit(1)


if cmd == "wait-health":  # deadline_s container: polls /health until 200 (bounded)
    deadline = time.monotonic() + float(args[0])
    last = None
    while time.monotonic() < deadline:
        try:
            st, data = request("GET", "/health", timeout=5)
            if st == 200:
                print("/health 200 %s" % data.decode())
                sys.exit(0)
            last = "status %d" % st
        except OSError as e:
            last = repr(e)
        state = subprocess.run(["podman", "inspect", "--format", "{{.State.Status}}", args[1]],
                               capture_output=True, text=True).stdout.strip()
        if state not in ("running", "created", "configured"):
            fail("container is %s before /health said 200" % state)
        time.sleep(0.1)  # a poll interval, not a synchronisation
    fail("/health not 200 within %ss: %s" % (args[0], last))
elif cmd == "model":  # id: /v1/models lists exactly it
    st, data = request("GET", "/v1/models")
    ids = [m["id"] for m in json.loads(data)["data"]] if st == 200 else data
    print("/v1/models %d %s" % (st, ids))
    sys.exit(0 if st == 200 and ids == [args[0]] else 1)
elif cmd == "status":  # method path want: the status code, with this key ("-": none)
    st, data = request(args[0], args[1], {"prompt": "In the beginning", "max_tokens": 4}
                       if args[0] == "POST" else None)
    print("%s %s -> %d %s" % (args[0], args[1], st, data[:120]))
    sys.exit(0 if st == int(args[2]) else 1)
elif cmd == "complete":
    st, data = request("POST", "/v1/completions",
                       {"prompt": "In the beginning God", "max_tokens": 16, "seed": 1})
    if st != 200:
        fail("completion %d %s" % (st, data[:200]))
    obj = json.loads(data)
    text, usage = obj["choices"][0]["text"], obj["usage"]
    print("completion %r, %s" % (text, usage))
    sys.exit(0 if text and usage["completion_tokens"] > 0 else 1)
elif cmd in ("stream", "drain"):  # drain: container: `podman stop` it after the first event
    n = 16 if cmd == "stream" else 2000
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions",
              json.dumps({"prompt": "And it came to pass", "max_tokens": n, "ignore_eos": True,
                          "stream": True, "stream_options": {"include_usage": True}}),
              {"Content-Type": "application/json", "Authorization": "Bearer " + key})
    r = c.getresponse()
    if r.status != 200:
        fail("stream status %d %s" % (r.status, r.read()[:200]))
    got, stop = [], None
    for ev in events(r):
        got.append(ev)
        if cmd == "drain" and stop is None:
            stop = subprocess.Popen(["podman", "stop", "--time", "90", args[0]],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    c.close()
    usage = [e["usage"] for e in got if isinstance(e, dict) and e.get("usage")]
    reasons = [ch["finish_reason"] for e in got if isinstance(e, dict)
               for ch in e.get("choices", []) if ch.get("finish_reason")]
    print("%d events, last %r, finish %s, usage %s" % (len(got), got[-1:], reasons, usage))
    good = got[-1:] == ["[DONE]"] and reasons == ["length"] and \
        len(usage) == 1 and usage[0]["completion_tokens"] == n
    if stop is not None:
        out, _ = stop.communicate(timeout=120)
        # podman's complaint that this machine has no systemd for healthcheck timers is noise
        out = [l for l in out.splitlines() if "systemd" not in l]
        print("podman stop: exit %d %s" % (stop.returncode, " ".join(out)))
        good = good and stop.returncode == 0
    sys.exit(0 if good else 1)
fail("unknown check " + cmd)
PY
http() { /usr/bin/python3 "$TMP/ls_http_checks.py" "$@"; }
check() { # description command...: counts the command's exit status, shows its output
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$what: $out"; else bad "$what: $out"; fi
}
start() { # name [podman run args...]: starts a container, prints its host port
    local name=$1
    shift
    NAMES+=("$name")
    # podman reports that it cannot set up the healthcheck's systemd timer here: not an error
    podman run -d --name "$name" "${RUN_COMMON[@]}" "${RUN_PUBLISH[@]}" "$@" >"$TMP/$name.run" 2>&1 ||
        { cat "$TMP/$name.run"; return 1; }
    podman port "$name" 8080/tcp | head -n 1 | sed 's/.*://'
}
uid_is() { # name uid: the container's process runs as uid
    local u
    u=$(podman exec "$1" id -u 2>&1)
    echo "id -u: $u"
    [ "$u" = "$2" ]
}
read_only() { # name: even root cannot write the container's root file system
    local out
    if out=$(podman exec --user 0 "$1" touch /llamaserve-write-test 2>&1); then
        echo "root wrote /llamaserve-write-test"
        return 1
    fi
    echo "$out"
    [[ $out == *"Read-only file system"* ]]
}
healthy() { # name: the image's own HEALTHCHECK command, run once (no systemd timer here)
    podman healthcheck run "$1" 2>&1 | grep -v systemd
    local rc=${PIPESTATUS[0]}
    echo "podman healthcheck run: exit $rc"
    return "$rc"
}
stop_rm() { podman rm -f -t 0 "$1" >/dev/null 2>&1; }
phase image-checks

# 1. nothing mounted: the embedded demo model, the image's defaults untouched
name=ls-ctest-$$-embedded
if port=$(start "$name" "$IMAGE"); then
    check "embedded: /health within 60 s" http wait-health "$port" - 60 "$name"
    check "embedded: serves kjv-demo-q8_0" http model "$port" - kjv-demo-q8_0
    check "embedded: a completion" http complete "$port" -
    check "embedded: runs as uid 10001" uid_is "$name" 10001
    check "embedded: the root file system is read-only" read_only "$name"
    check "embedded: the image's HEALTHCHECK passes" healthy "$name"
else
    bad "embedded: podman run"
fi
stop_rm "$name"
phase run-embedded

if [ -z "$MODELS" ] || [ ! -f "$MODELS/kjv-demo.gguf" ]; then
    bad "no $MODELS/kjv-demo.gguf (set LS_MODELS_DIR): the mounted-model runs are skipped"
    exit 1
fi

# 2. one .gguf mounted read-only in /models: served without naming it
name=ls-ctest-$$-dir
if port=$(start "$name" -v "$MODELS/kjv-demo.gguf:/models/kjv-demo.gguf:ro" "$IMAGE"); then
    check "models dir: /health within 60 s" http wait-health "$port" - 60 "$name"
    check "models dir: serves the one .gguf in /models" http model "$port" - kjv-demo
else
    bad "models dir: podman run"
fi
stop_rm "$name"
phase run-models-dir

# 3. the models folder mounted read-only, the model named by LLAMASERVE_MODEL, an API key
name=ls-ctest-$$-key
if port=$(start "$name" -v "$MODELS:/models:ro" -e LLAMASERVE_MODEL=/models/kjv-demo.gguf \
    -e LLAMASERVE_API_KEY="$KEY" "$IMAGE"); then
    check "api key: /health within 60 s" http wait-health "$port" - 60 "$name"
    check "api key: runs as uid 10001" uid_is "$name" 10001
    check "api key: 401 without a key" http status "$port" - POST /v1/completions 401
    check "api key: 401 with a wrong key" http status "$port" wrong-key POST /v1/completions 401
    check "api key: 200 with the key" http status "$port" "$KEY" POST /v1/completions 200
    check "api key: serves LLAMASERVE_MODEL" http model "$port" "$KEY" kjv-demo
    check "api key: a completion" http complete "$port" "$KEY"
    check "api key: a stream ends in [DONE]" http stream "$port" "$KEY"
else
    bad "api key: podman run"
fi
stop_rm "$name"
phase run-api-key

# 4. `podman stop` during a stream. In the host's network namespace, on 127.0.0.1 and a free
# port: the server exits once the stream's last bytes are in its socket, and a container's own
# namespace is torn down at exit, taking what slirp4netns had not yet forwarded with it (seen
# here under load: a stream cut short although the server had sent [DONE]). A longer context so
# that the stream is far from done when the SIGTERM comes (2000 tokens: seconds here, where the
# stop takes a fraction of one).
name=ls-ctest-$$-stop
NAMES+=("$name")
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if podman run -d --name "$name" "${RUN_COMMON[@]}" --network host -e LLAMASERVE_HOST=127.0.0.1 \
    -e LLAMASERVE_PORT="$port" -v "$MODELS:/models:ro" -e LLAMASERVE_MODEL=/models/kjv-demo.gguf \
    -e LLAMASERVE_API_KEY="$KEY" -e LLAMASERVE_CTX_SIZE=2048 -e LLAMASERVE_SHUTDOWN_TIMEOUT=60 \
    "$IMAGE" >"$TMP/$name.run" 2>&1; then
    check "stop: /health within 60 s" http wait-health "$port" - 60 "$name"
    check "podman stop during a stream: drained to [DONE]" http drain "$port" "$KEY" "$name"
    timeout 120 podman wait "$name" >/dev/null 2>&1
    state=$(podman inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$name")
    check "podman stop: exited with status 0" bash -c "echo $state; [ '$state' = 'exited 0' ]"
    # SIGTERM came while the stream ran: the drain line is logged before the request's own line
    podman logs "$name" >"$TMP/stop.log" 2>&1
    check "podman stop: SIGTERM arrived mid-stream" /usr/bin/python3 -c '
import sys
lines = open(sys.argv[1]).read().splitlines()
drain = [i for i, l in enumerate(lines) if "SIGTERM: draining" in l]
done = [i for i, l in enumerate(lines) if "route=/v1/completions" in l and
        ("completion_tokens=2000" in l or "tokens_out=2000" in l)]
print(lines[drain[0]] if drain else "no drain line", "/", lines[done[0]] if done else "no request line")
sys.exit(0 if drain and done and drain[0] < done[0] else 1)' "$TMP/stop.log"
    if grep -qE '(^|\s)stopped$' "$TMP/stop.log"; then ok "podman stop: the server says stopped"
    else bad "podman stop: no 'stopped' line: $(tail -n 3 "$TMP/stop.log")"; fi
else
    cat "$TMP/$name.run"
    bad "stop: podman run"
fi
stop_rm "$name"
phase stop-drain
