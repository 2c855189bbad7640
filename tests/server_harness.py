"""server_harness: starts `llamaserve serve` on a free port and talks HTTP to it (stdlib only).

Used by the test_server_*.py black-box tests. The server is started with --port 0; the port is
read from its "listening on" log line and readiness from its "ready: serving" line (never a
sleep), in either log format.
Every timeout here only turns a hang into a failure; nothing waits for time to pass.
Sanitizer builds: a server whose stderr shows an ASan/UBSan/TSan report, or that exits non-zero
after SIGTERM, fails the test that stopped it.
"""
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

import checklib  # noqa: F401  on import, SIGTERM raises SystemExit: a killed test cleans up

BIN = os.environ.get("LS_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "llamaserve"))
MODELS = os.environ.get("LS_MODELS_DIR",
                        os.path.join(os.path.dirname(__file__), "..", "..", "shared", "models"))
MODEL = os.path.join(MODELS, "kjv-demo.gguf")
# How much slower this build runs than a release build (LS_SANITIZE, set by tests/meson.build):
# a limit on a client a test starts (a Node script, say) is multiplied by it. ThreadSanitizer
# slows the server's threads far more than AddressSanitizer does.
SLOW = {"none": 1, "": 1, "thread": 10}.get(os.environ.get("LS_SANITIZE", "none"), 3)
START_TIMEOUT = 120   # seconds until "ready"; generous for sanitizer builds
IO_TIMEOUT = 120      # per socket operation
# the startup summary's first line (text) or its msg (JSON): the server takes requests
READY = r"ready: serving '"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer")


class ServerError(Exception):
    pass


class Server:
    """A running server. Use as a context manager; stop() sends SIGTERM and checks the exit."""

    def __init__(self, *args, model=MODEL, env=None, wait_ready=True):
        self.args = [BIN, "serve", "-m", model, "--port", "0", *map(str, args)]
        full_env = dict(os.environ)
        for k in list(full_env):
            if k.startswith("LLAMASERVE_"):
                del full_env[k]  # the test says what it wants
        full_env.update(env or {})
        self.stderr_lines = []
        self._lines = queue.Queue()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=full_env)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.port = None
        self.stopped = False
        try:
            m = self.wait_line(r"listening on http://[^:]+:(\d+)")
            self.port = int(m.group(1))
            if wait_ready:
                self.wait_line(READY)
        except BaseException:
            self.kill()
            raise

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stderr_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_line(self, pattern, timeout=START_TIMEOUT):
        """Blocks until a stderr line matches pattern; returns the match."""
        rx = re.compile(pattern)
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise ServerError("no stderr line matching %r within %ds; stderr:\n%s"
                                  % (pattern, timeout, self.tail()))
            if line is None:
                raise ServerError("server exited (rc=%s) before %r; stderr:\n%s"
                                  % (self.proc.wait(), pattern, self.tail()))
            m = rx.search(line)
            if m:
                return m

    def tail(self, n=40):
        return "\n".join(self.stderr_lines[-n:])

    def alive(self):
        return self.proc.poll() is None

    def sanitizer_report(self):
        return [l for l in self.stderr_lines if any(m in l for m in SANITIZER_MARKS)]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=IO_TIMEOUT):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerError("server did not exit within %ds" % timeout)
        self._reader.join(timeout=30)
        self.stopped = True
        return rc

    def stop(self):
        """SIGTERM, wait, and check the exit status and sanitizer output."""
        if self.stopped:
            return
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit()
        bad = self.sanitizer_report()
        if rc != 0 or bad:
            raise ServerError("server exit status %s after SIGTERM%s\n%s"
                              % (rc, " with sanitizer reports" if bad else "", self.tail(80)))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped = True

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.stop()
        else:
            self.kill()
        return False

    # --- requests ---

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)

    def request(self, method, path, body=None, headers=None):
        """Returns (status, headers dict with lower-case keys, body bytes)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def json(self, method, path, body=None, headers=None):
        """Returns (status, parsed JSON body, headers)."""
        st, hd, data = self.request(method, path, body, headers)
        try:
            obj = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as ex:
            raise AssertionError("%s %s -> %d: body is not JSON (%s): %r"
                                 % (method, path, st, ex, data[:300]))
        return st, obj, hd

    def post(self, path, body, headers=None):
        st, obj, _ = self.json("POST", path, body, headers)
        if st != 200:
            raise AssertionError("POST %s -> %d: %s" % (path, st, obj))
        return obj

    def stream(self, path, body, headers=None):
        """A streaming POST read to its end: returns a Stream (status, headers, events)."""
        s = Stream(self, path, body, headers)
        s.read_all()
        return s

    def tokenize(self, text, add_special=True):
        return self.post("/tokenize", {"content": text, "add_special": add_special})["tokens"]

    def metrics(self):
        st, hd, data = self.request("GET", "/metrics")
        if st != 200:
            raise AssertionError("/metrics -> %d" % st)
        return parse_metrics(data.decode("utf-8"))

    def wait_metrics(self, pred, what, limit_s=IO_TIMEOUT):
        """Polls /metrics until pred(values) holds. The time bound only turns a hang into a
        failure; the short pause between polls paces them and synchronises nothing."""
        last = None
        deadline = time.monotonic() + limit_s
        pause = 0.001
        while True:
            last = self.metrics()
            if pred(last):
                return last
            if time.monotonic() > deadline:
                break
            threading.Event().wait(pause)  # backs off so polls do not starve the server
            pause = min(pause * 2, 0.05)
        raise AssertionError("/metrics never showed %s; last: %s" % (what, {
            k: v for k, v in last.items() if "bucket" not in k}))


class Stream:
    """One streaming request. events: list of parsed JSON objects ("[DONE]" kept as the string);
    raw: the raw data payload bytes of every event, for byte-level checks."""

    def __init__(self, server, path, body, headers=None):
        self.c = server.conn()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        self.c.request("POST", path, body=json.dumps(body).encode(), headers=h)
        self.resp = self.c.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.events, self.raw = [], []
        self.ended = False        # the chunked body ended with its terminating chunk
        self.error = None         # a read error (an improperly terminated body)
        self.body = b""

    def next_event(self):
        """Reads one event; returns it, or None at the end of the body."""
        if self.status != 200:
            self.body = self.resp.read()
            self.ended = True
            return None
        data = []
        while True:
            try:
                line = self.resp.readline()
            except (http.client.HTTPException, OSError) as ex:
                self.error = ex
                return None
            if line == b"":
                self.ended = True
                if data:
                    raise AssertionError("stream ended inside an event: %r" % data)
                return None
            if line in (b"\n", b"\r\n"):
                if data:
                    break
                continue
            if not line.endswith(b"\n"):
                raise AssertionError("event line without newline at the end: %r" % line)
            if not line.startswith(b"data: "):
                raise AssertionError("unexpected SSE line %r" % line)
            data.append(line[6:].rstrip(b"\r\n"))
        payload = b"\n".join(data)
        self.raw.append(payload)
        text = payload.decode("utf-8")  # strict: never half a character
        ev = "[DONE]" if text == "[DONE]" else json.loads(text)
        self.events.append(ev)
        return ev

    def read_all(self):
        while self.next_event() is not None:
            pass
        self.close()
        return self

    def close(self):
        self.c.close()

    def json_events(self):
        return [e for e in self.events if e != "[DONE]"]

    def text(self, index=0, chat=False):
        """The concatenated text of choice index."""
        out = []
        for e in self.json_events():
            for ch in e.get("choices", []):
                if ch["index"] != index:
                    continue
                if chat:
                    out.append(ch["delta"].get("content") or "")
                else:
                    out.append(ch["text"])
        return "".join(out)

    def finish_reasons(self, index=0):
        return [ch["finish_reason"] for e in self.json_events() for ch in e.get("choices", [])
                if ch["index"] == index and ch.get("finish_reason") is not None]

    def usage(self):
        us = [e["usage"] for e in self.json_events() if e.get("usage")]
        return us[-1] if us else None


def raw_http(port, data, read_until=None, timeout=IO_TIMEOUT):
    """Sends raw bytes on a new socket; reads until read_until appears (or EOF). Returns
    (socket, bytes read) with the socket still open."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    got = b""
    if read_until is not None:
        while read_until not in got:
            b = s.recv(65536)
            if not b:
                break
            got += b
    return s, got


def post_bytes(path, body, headers=None):
    """A raw HTTP/1.1 POST request as bytes."""
    h = {"Host": "127.0.0.1", "Content-Type": "application/json",
         "Content-Length": str(len(body))}
    h.update(headers or {})
    head = "POST %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in h.items())
    return head.encode() + b"\r\n" + body


METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+\-]+|\+Inf|NaN)$')


def parse_metrics(text):
    """Prometheus text format -> {"name{labels}": float}; raises on a malformed line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            if line.startswith("# ") and not re.match(r"^# (HELP|TYPE) [a-zA-Z_:][\w:]* .+", line):
                raise AssertionError("bad metrics comment line %r" % line)
            continue
        m = METRIC_LINE.match(line)
        if not m:
            raise AssertionError("bad metrics line %r" % line)
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def check_error(status, obj, want_status, param=None, code=None, what=""):
    """Asserts an OpenAI error response: the status and {"error":{message,type,param,code}}."""
    where = "%s: " % what if what else ""
    assert status == want_status, "%sstatus %d, want %d: %s" % (where, status, want_status, obj)
    assert isinstance(obj, dict) and set(obj) == {"error"}, "%snot an error object: %s" % (where, obj)
    e = obj["error"]
    assert isinstance(e, dict) and set(e) == {"message", "type", "param", "code"}, \
        "%serror keys %s" % (where, sorted(e) if isinstance(e, dict) else e)
    assert isinstance(e["message"], str) and e["message"], "%sempty message" % where
    assert isinstance(e["type"], str) and e["type"], "%sbad type %r" % (where, e["type"])
    assert e["param"] is None or isinstance(e["param"], str), "%sbad param" % where
    assert e["code"] is None or isinstance(e["code"], (str, int)), "%sbad code" % where
    if param is not None:
        assert e["param"] == param, "%sparam %r, want %r (%s)" % (where, e["param"], param, e)
    if code is not None:
        assert e["code"] == code, "%scode %r, want %r (%s)" % (where, e["code"], code, e)


class Runner:
    """Runs named test functions, prints each result, and exits non-zero when any failed."""

    def __init__(self, name):
        self.name = name
        self.failed = []
        self.n = 0

    def run(self, fn, *args):
        self.n += 1
        label = fn.__name__
        t0 = time.monotonic()
        try:
            fn(*args)
            print("ok   %s (%.1fs)" % (label, time.monotonic() - t0), flush=True)
        except Exception as ex:  # noqa: BLE001 - every failure is reported, then the next runs
            self.failed.append(label)
            print("FAIL %s: %s" % (label, ex), flush=True)
            traceback.print_exc(file=sys.stdout)

    def fail(self, label, msg):
        self.failed.append(label)
        print("FAIL %s: %s" % (label, msg), flush=True)

    def finish(self):
        if self.failed:
            print("%s: %d of %d failed: %s" % (self.name, len(self.failed), self.n,
                                                ", ".join(self.failed)), flush=True)
            sys.exit(1)
        print("%s: all %d passed" % (self.name, self.n), flush=True)
        sys.exit(0)


def run_with_server(runner, tests, *server_args, **kw):
    """Starts one server, runs tests(server) each, then stops it (a bad exit is a failure)."""
    try:
        srv = Server(*server_args, **kw)
    except Exception as ex:  # noqa: BLE001
        runner.fail("start server %s" % " ".join(map(str, server_args)), ex)
        return
    try:
        for t in tests:
            runner.run(t, srv)
        if not srv.alive():
            runner.fail("server alive", "server died; stderr:\n" + srv.tail())
    finally:
        try:
            srv.stop()
        except Exception as ex:  # noqa: BLE001
            runner.fail("server stop", ex)
