#!/usr/bin/python3
"""test_server_ux: what a user meets first, black-box against `llamaserve serve`.

- CORS off (the default): OPTIONS is answered as before (405) and no response has CORS headers.
- CORS on for a list: a preflight from a listed origin gets 204 with the allowed methods and
  headers (Authorization among them) without an API key; every response to a listed origin,
  errors and streams included, carries Access-Control-Allow-Origin and Vary: Origin; an origin
  not listed gets no CORS header at all. With "*": Access-Control-Allow-Origin: * everywhere.
- Logs: in text every line starts with a UTC millisecond timestamp and a level; with
  --log-format json every line (startup, summary, requests, shutdown, a startup error) is one
  JSON object with ts, level and msg; --log-file appends there and leaves stderr empty.
- The startup summary's numbers, checked against `llamaserve inspect` of the same file.
- Memory: a KV cache that cannot fit is refused with the largest setting that does.
- llama.cpp's flags: -np and -c (the total context, divided among the slots), and a hint for
  one we do not take.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading

from server_harness import BIN, MODEL, MODELS, READY, Runner, Server

TS_LEVEL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (info |warn |error) ")
SIMPLE = {"prompt": "In the beginning", "max_tokens": 4, "temperature": 0}


def cors_headers(hd):
    return {k: v for k, v in hd.items() if k.startswith("access-control-")}


def preflight(s, origin, path="/v1/chat/completions", headers="authorization, content-type"):
    h = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return s.request("OPTIONS", path, headers=h)


# --- CORS ---

def test_cors_off(s):
    st, hd, _ = preflight(s, "http://ok.test")
    assert st == 405, "OPTIONS without --cors-origin: %d" % st
    assert not cors_headers(hd) and "vary" not in hd, hd
    st, hd, _ = s.request("GET", "/v1/models", headers={"Origin": "http://ok.test",
                                                        "Authorization": "Bearer k"})
    assert st == 200 and not cors_headers(hd), hd


def test_cors_preflight(s):
    for origin in ("http://ok.test", "https://two.test:8443"):
        st, hd, body = preflight(s, origin, headers="authorization, content-type, x-stainless-os")
        assert st == 204 and body == b"", (origin, st, body)
        assert hd.get("access-control-allow-origin") == origin, hd
        assert "Origin" in hd.get("vary", ""), hd
        methods = [m.strip() for m in hd.get("access-control-allow-methods", "").split(",")]
        assert "POST" in methods and "GET" in methods, hd
        allowed = [x.strip().lower() for x in hd.get("access-control-allow-headers", "").split(",")]
        assert {"authorization", "content-type", "x-stainless-os"} <= set(allowed), hd
        assert int(hd.get("access-control-max-age", "0")) > 0, hd
    # a preflight names no key (browsers send none): still 204 although the server has one
    st, hd, _ = preflight(s, "http://ok.test", path="/v1/models", headers=None)
    assert st == 204 and "authorization" in hd["access-control-allow-headers"].lower(), (st, hd)


def test_cors_not_allowed(s):
    st, hd, _ = preflight(s, "http://evil.test")
    assert st == 405 and not cors_headers(hd), (st, hd)
    st, hd, _ = preflight(s, "http://ok.test.evil.test")
    assert not cors_headers(hd), hd
    st, hd, _ = s.request("GET", "/v1/models", headers={"Origin": "http://evil.test",
                                                        "Authorization": "Bearer k"})
    assert st == 200 and not cors_headers(hd), hd


def test_cors_every_response(s):
    o = {"Origin": "http://ok.test"}
    key = {"Authorization": "Bearer k"}
    cases = [("GET", "/health", {}, 200), ("GET", "/v1/models", key, 200),
             ("GET", "/v1/models", {}, 200), ("GET", "/metrics", {}, 401),
             ("GET", "/nowhere", key, 404),
             ("DELETE", "/v1/models", key, 405), ("GET", "/metrics", key, 200),
             ("POST", "/v1/completions", key, 400)]
    for method, path, h, want in cases:
        body = {"prompt": 5} if method == "POST" else None
        st, hd, _ = s.request(method, path, body=body, headers={**o, **h})
        assert st == want, (method, path, st)
        assert hd.get("access-control-allow-origin") == "http://ok.test", (method, path, hd)
        assert "Origin" in hd.get("vary", ""), (method, path, hd)
    st, obj, hd = s.json("POST", "/v1/completions", SIMPLE, headers={**o, **key})
    assert st == 200 and hd.get("access-control-allow-origin") == "http://ok.test", hd
    stream = s.stream("/v1/completions", {**SIMPLE, "stream": True}, headers={**o, **key})
    assert stream.status == 200 and stream.events[-1] == "[DONE]", stream.status
    assert stream.headers.get("access-control-allow-origin") == "http://ok.test", stream.headers


def test_cors_star(s):
    st, hd, _ = preflight(s, "http://anything.test")
    assert st == 204 and hd.get("access-control-allow-origin") == "*", (st, hd)
    st, hd, _ = s.request("GET", "/health")  # no Origin at all: still "*"
    assert hd.get("access-control-allow-origin") == "*", hd
    stream = s.stream("/v1/completions", {**SIMPLE, "stream": True},
                      headers={"Origin": "http://x.test"})
    assert stream.headers.get("access-control-allow-origin") == "*" and \
        stream.events[-1] == "[DONE]", stream.headers


# --- logs and the summary ---

def inspect_totals(path):
    """Parameters, bytes and tensors per type, from `llamaserve inspect`'s tensor table."""
    out = subprocess.run([BIN, "inspect", path], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    params = size = 0
    types = {}
    for line in out.split("tensors:")[1].splitlines()[2:]:
        m = re.match(r"\s*(\S+)\s+(\S+)\s+\[([\d, ]+)\]\s+\d+\s+(\d+)$", line)
        if not m:
            continue
        n = 1
        for d in m.group(3).split(","):
            n *= int(d)
        params += n
        size += int(m.group(4))
        types[m.group(2)] = types.get(m.group(2), 0) + 1
    return params, size, types


def test_text_logs():
    with Server("--parallel", "2", "--ctx-size", "128", "--threads", "2") as s:
        s.post("/v1/completions", SIMPLE)
        s.request("GET", "/nowhere")
    lines = s.stderr_lines
    bad = [l for l in lines if not TS_LEVEL.match(l)]
    assert not bad, "lines without timestamp and level: %s" % bad
    text = "\n".join(lines)
    for want in (r"info  listening on http://127\.0\.0\.1:\d+", r"info  ready: serving 'kjv-demo'",
                 r"info    model      kjv-demo .*llama, [\d.]+ M parameters",
                 r"info    slots      2 x 128 tokens", r"info    kv cache   512\.0 KiB of f16",
                 r"info    compute    2 threads, \S+ kernels",
                 r"info  request route=/v1/completions status=200 .*prompt_tokens=\d+",
                 r"info  request route=other status=404", r"info  SIGTERM: draining",
                 r"info  stopped$"):
        assert re.search(want, text, re.M), "no line matching %r in:\n%s" % (want, text)


def json_lines(lines):
    out = []
    for l in lines:
        try:
            obj = json.loads(l)
        except ValueError:
            raise AssertionError("not a JSON line: %r" % l)
        assert isinstance(obj, dict), l
        assert TS_LEVEL.match(obj.get("ts", "") + " " + obj.get("level", "") +
                              " " * (6 - len(obj.get("level", "")))), l
        assert isinstance(obj.get("msg"), str), l
        out.append(obj)
    return out


def test_json_logs_and_summary():
    model = os.path.join(MODELS, "kjv-demo-q8_0.gguf")
    with Server("--log-format", "json", "--parallel", "3", "--ctx-size", "64", "--threads", "2",
                "--kv-type", "f32", model=model) as s:
        s.post("/v1/completions", SIMPLE)
    objs = json_lines(s.stderr_lines)
    ready = [o for o in objs if o["msg"].startswith("ready: serving")]
    assert len(ready) == 1, objs
    r = ready[0]
    params, size, types = inspect_totals(model)
    assert r["level"] == "info" and r["model"] == "kjv-demo-q8_0", r
    assert r["model_name"] == "kjv-llama2-3.5M" and r["architecture"] == "llama", r
    assert r["parameters"] == params and r["weights_bytes"] == size, (r, params, size)
    assert r["tensor_types"] == types, (r["tensor_types"], types)
    assert r["slots"] == 3 and r["ctx_per_slot"] == 64 and r["ctx_total"] == 192, r
    # 4 layers x (4 KV heads x 32) x keys and values x 4 bytes, per token
    assert r["kv_type"] == "f32" and r["kv_cache_bytes"] == 3 * 64 * 4 * 128 * 2 * 4, r
    assert r["threads"] == 2 and r["kernels"] in ("scalar", "avx2", "avx2+avx512", "neon"), r
    assert r["bf16_dot"] is False, r  # no BF16 matrices in a Q8_0 file, whatever the CPU
    assert r["address"] == "http://127.0.0.1:%d" % s.port, r
    assert r["model_path"] == model and r["model_origin"] == "given", r
    req = [o for o in objs if o["msg"] == "request"]
    assert len(req) == 1 and req[0]["route"] == "/v1/completions" and req[0]["status"] == 200, req
    assert req[0]["completion_tokens"] == 4 and req[0]["total_s"] >= 0, req
    # a request's line is written after its last byte, so it may come after the SIGTERM line
    msgs = [o["msg"] for o in objs]
    assert msgs[0].startswith("listening on") and "SIGTERM: draining (up to 10 s)" in msgs \
        and msgs[-1] == "stopped", msgs


def test_json_startup_error():
    p = subprocess.run([BIN, "serve", "-m", "/nonexistent/model.gguf", "--port", "0",
                        "--log-format", "json"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, p.returncode
    objs = json_lines(p.stderr.splitlines())
    assert objs[-1]["level"] == "error" and "/nonexistent/model.gguf" in objs[-1]["msg"], objs


def test_log_file():
    d = tempfile.mkdtemp(prefix="ls_ux_")
    try:
        # appends: what the file held stays; nothing goes to stderr
        path = os.path.join(d, "serve.log")
        with open(path, "w") as f:
            f.write("earlier line\n")
        p = subprocess.run([BIN, "serve", "-m", MODEL, "--port", "0", "--log-file", path,
                            "--parallel", "256", "--ctx-size", "1048576"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and p.stderr == "", (p.returncode, p.stderr)
        lines = open(path).read().splitlines()
        assert lines[0] == "earlier line" and len(lines) >= 3, lines
        assert all(TS_LEVEL.match(l) for l in lines[1:]), lines
        assert "does not fit in memory" in lines[-1], lines

        # a whole run, read through a FIFO as it is written (no polling of the file)
        fifo = os.path.join(d, "log.fifo")
        os.mkfifo(fifo)
        proc = subprocess.Popen([BIN, "serve", "-m", MODEL, "--port", "0", "--log-file", fifo,
                                 "--log-format", "json"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            got = []
            with open(fifo) as f:  # the server opens it for writing at startup
                for line in f:
                    got.append(line.rstrip("\n"))
                    if re.search(READY, line):
                        proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read().decode()
        assert rc == 0 and err == "", (rc, err)
        msgs = [o["msg"] for o in json_lines(got)]
        assert msgs[0].startswith("listening on") and msgs[-1] == "stopped", msgs
    finally:
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)


# --- memory, llama.cpp flags ---

def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def test_memory_refusal():
    need = 256 * 1048576 * 2048  # kjv-demo: 2048 bytes of f16 KV cache per token
    avail = mem_available()
    if avail is None or avail >= need:
        print("skip test_memory_refusal: this machine has %s bytes available" % avail)
        return
    args = [BIN, "serve", "-m", MODEL, "--port", "0", "--parallel", "256", "--ctx-size",
            "1048576"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stderr)
    last = p.stderr.splitlines()[-1]
    assert TS_LEVEL.match(last) and last.split()[1] == "error", last
    m = re.search(r"256 slots x 1048576 tokens .* need 512\.0 GiB, and .* available .*"
                  r"The largest that fits: --ctx-size (\d+) with --parallel 256 \(-c (\d+)\), "
                  r"or --parallel (\d+) with --ctx-size 1048576", last)
    assert m, last
    assert int(m.group(2)) == int(m.group(1)) * 256, last

    p = subprocess.run(args + ["--log-format", "json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.returncode
    e = json_lines(p.stderr.splitlines())[-1]
    assert e["level"] == "error" and e["kv_cache_bytes"] == need, e
    per_slot = 256 * e["kv_bytes_per_token"]
    assert e["max_ctx_size"] * per_slot <= e["available_bytes"] < (e["max_ctx_size"] + 1) * per_slot, e
    per_ctx = 1048576 * e["kv_bytes_per_token"]
    assert e["max_parallel"] * per_ctx <= e["available_bytes"] < (e["max_parallel"] + 1) * per_ctx, e
    # the suggestion starts (scaled down further, so the test needs no memory of note)
    with Server("--parallel", "2", "--ctx-size", str(min(e["max_ctx_size"], 256))) as s:
        assert s.post("/v1/completions", SIMPLE)["usage"]["completion_tokens"] == 4


def test_llamacpp_flags():
    with Server("-np", "2", "-c", "300", "-b", "16", "-a", "mine") as s:
        st, obj, _ = s.json("GET", "/v1/models")
        assert obj["data"][0]["id"] == "mine", obj
    text = "\n".join(s.stderr_lines)
    assert re.search(r"slots      2 x 150 tokens", text), text  # 300 / 2
    assert re.search(r"batches of up to 16 rows", text), text
    p = subprocess.run([BIN, "serve", "-m", MODEL, "-ngl", "99"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and TS_LEVEL.match(p.stderr), (p.returncode, p.stderr)
    assert "'-ngl' (llama.cpp's --n-gpu-layers): llamaserve runs on the CPU" in p.stderr, p.stderr


def test_kv_q8_0():
    """llama.cpp's -ctk/-ctv q8_0: a Q8_0 KV cache of 17/32 of F16's bytes that serves, and
    whose prompt cache (a second request on the same prefix) gives the same greedy text."""
    with Server("--log-format", "json", "--parallel", "2", "--ctx-size", "64", "-ctk", "q8_0",
                "-ctv", "q8_0") as s:
        st1, a, _ = s.json("POST", "/v1/completions", SIMPLE)
        st2, b, _ = s.json("POST", "/v1/completions", SIMPLE)
    assert st1 == 200 and st2 == 200 and a["usage"]["completion_tokens"] == 4, a
    assert a["choices"][0]["text"] == b["choices"][0]["text"], (a, b)
    r = [o for o in json_lines(s.stderr_lines) if o["msg"].startswith("ready: serving")][0]
    # 4 layers x keys and values x 4 KV heads of 32 = one 34-byte block each, per token
    assert r["kv_type"] == "q8_0" and r["kv_cache_bytes"] == 2 * 64 * 4 * 2 * 4 * 34, r


def main():
    runner = Runner("test_server_ux")
    from server_harness import run_with_server
    run_with_server(runner, [test_cors_off], "--api-key", "k")
    run_with_server(runner, [test_cors_preflight, test_cors_not_allowed, test_cors_every_response],
                    "--api-key", "k", "--cors-origin", "http://ok.test",
                    "--cors-origin", "https://two.test:8443")
    run_with_server(runner, [test_cors_star], env={"LLAMASERVE_CORS_ORIGIN": "*"})
    for t in (test_text_logs, test_json_logs_and_summary, test_json_startup_error, test_log_file,
              test_memory_refusal, test_llamacpp_flags, test_kv_q8_0):
        runner.run(t)
    runner.finish()


if __name__ == "__main__":
    main()
