"""test_nginx: deploy/nginx/llamaserve.conf in front of two replicas, as a black box.

Starts two `llamaserve serve` replicas (aliases replica-a and replica-b, so every answer says
which one served it) and Debian's nginx on loopback, running the shipped file with only its
addresses and log path rewritten (nginx in the foreground, with its own prefix, pid, logs and
temp paths in a temporary folder). It shows: streams pass through unbuffered and end with
[DONE]; different session ids spread over both replicas, and requests without one are balanced
round robin; one X-Session-Id always reaches the same replica, whose prompt cache then hits;
the body limit equals llamaserve's max_body; and a replica killed with SIGKILL under load: every
request that nginx had not yet handed to it is answered by the survivor. Only requests in
flight on the killed replica may fail; they are counted and shown.
Skipped (exit 77) only when nginx is not installed (scripts/test-deps.sh installs it).
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from server_harness import IO_TIMEOUT, START_TIMEOUT, Runner, Server, ServerError, Stream

HERE = os.path.dirname(os.path.abspath(__file__))
SITE_CONF = os.path.join(HERE, "..", "deploy", "nginx", "llamaserve.conf")
MAX_BODY = 1048576  # llamaserve's default max_body; the shipped file says client_max_body_size 1m
PROMPT = "And God said, Let there be light: and there was light."


def free_port():
    """A port that was free a moment ago (nginx cannot report a port it chose itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replace_once(text, old, new):
    n = text.count(old)
    if n != 1:
        raise AssertionError("deploy/nginx/llamaserve.conf: %r occurs %d times, want once "
                             "(the test rewrites it)" % (old, n))
    return text.replace(old, new)


class Nginx:
    """nginx running the shipped site file with the replica addresses, the listen address and
    the access log path rewritten; everything else is the file as shipped."""

    def __init__(self, upstream_ports, workdir):
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=workdir)
        os.chmod(self.dir, 0o755)  # root's nginx runs its workers as nobody
        self.access_log = os.path.join(self.dir, "access.log")
        site = open(SITE_CONF, encoding="utf-8").read()
        for shipped, port in zip((8081, 8082), upstream_ports):
            site = replace_once(site, "server 127.0.0.1:%d " % shipped,
                                "server 127.0.0.1:%d " % port)
        site = replace_once(site, "/var/log/nginx/llamaserve-access.log", self.access_log)
        last = None
        for _ in range(3):  # the free port may be taken between free_port() and nginx's bind
            self.port = free_port()
            with open(os.path.join(self.dir, "llamaserve.conf"), "w", encoding="utf-8") as f:
                f.write(replace_once(site, "listen 8080;", "listen 127.0.0.1:%d;" % self.port))
            try:
                self._start()
                return
            except ServerError as ex:
                last = ex
                if "Address already in use" not in str(ex):
                    break
        raise last

    def _start(self):
        d = self.dir
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        # as root nginx would otherwise write its temp files under /var/lib/nginx
        temps = "".join("    %s_temp_path %s/%s;\n" % (k, d, k)
                        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(os.path.join(d, "nginx.conf"), "w", encoding="utf-8") as f:
            f.write("daemon off;\nworker_processes 2;\n%spid %s/nginx.pid;\n"
                    "error_log stderr notice;\nevents { worker_connections 512; }\n"
                    "http {\n%s    include %s/llamaserve.conf;\n}\n" % (user, d, temps, d))
        self.stderr_lines = []
        self.proc = subprocess.Popen(["nginx", "-p", d + "/", "-c", d + "/nginx.conf",
                                      "-e", "stderr"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        # the master opens the listening socket before it starts the workers, which accept
        ready = threading.Event()

        def read():
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.stderr_lines.append(line)
                if "start worker process " in line:
                    ready.set()
            ready.set()
        threading.Thread(target=read, daemon=True).start()
        ready.wait(START_TIMEOUT)
        if self.proc.poll() is not None or not any("start worker process " in l
                                                   for l in self.stderr_lines):
            self.stop()
            raise ServerError("nginx did not start:\n" + "\n".join(self.stderr_lines[-20:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
            try:
                self.proc.wait(timeout=IO_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)

    def log(self):
        """The access log: one dict per request (session, upstream, upstream_status, status)."""
        out = []
        rx = re.compile(r'"(?P<request>[^"]*)" (?P<status>\d+) \d+ session="(?P<session>[^"]*)" '
                        r'upstream=(?P<upstream>.*) upstream_status=(?P<upstream_status>.*) '
                        r'request_time=')
        with open(self.access_log, encoding="utf-8") as f:
            for line in f:
                m = rx.search(line)
                assert m, "access log line not in the llamaserve format: %r" % line
                out.append(m.groupdict())
        return out

    def wait_log(self, pred, what):
        """The access log once pred(entries) holds. nginx writes a request's line after it has
        sent the response, so a client may see its answer before the line is there. The time
        bound only turns a hang into a failure; the pause paces the polls."""
        deadline = time.monotonic() + IO_TIMEOUT
        pause = 0.001
        while True:
            entries = self.log()
            if pred(entries):
                return entries
            assert time.monotonic() < deadline, \
                "access log never showed %s: %s" % (what, entries[-5:])
            threading.Event().wait(pause)
            pause = min(pause * 2, 0.05)

    def request(self, body, headers=None, raw=None):
        """POST /v1/completions through nginx: (status, headers, body bytes)."""
        c = self.conn()
        try:
            h = {"Content-Type": "application/json"}
            h.update(headers or {})
            c.request("POST", "/v1/completions", body=raw if raw is not None else
                      json.dumps(body).encode(), headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def complete(self, body, session=None):
        st, _, data = self.request(body, {"X-Session-Id": session} if session else None)
        assert st == 200, "status %d: %r" % (st, data[:300])
        return json.loads(data)


def completion(prompt=PROMPT, **kw):
    body = {"prompt": prompt, "max_tokens": 4, "temperature": 0}
    body.update(kw)
    return body


def cached(r):
    return r["usage"]["prompt_tokens_details"]["cached_tokens"]


class Ctx:
    """Two replicas and one nginx in front of them."""

    def __init__(self, a, b, ngx):
        self.a, self.b, self.ngx = a, b, ngx
        self.by_alias = {"replica-a": a, "replica-b": b}


def test_stream(ctx):
    """A stream through nginx: a chunked text/event-stream whose events are the same tokens
    the replica that served it gives without the proxy, ending with [DONE]."""
    s = Stream(ctx.ngx, "/v1/completions", completion(max_tokens=24, stream=True))
    s.read_all()
    assert s.status == 200, (s.status, s.body)
    assert s.headers.get("content-type") == "text/event-stream", s.headers
    assert s.headers.get("transfer-encoding") == "chunked", s.headers
    assert "content-length" not in s.headers, s.headers
    assert s.ended and s.error is None, s.error
    assert s.events and s.events[-1] == "[DONE]" and s.events.count("[DONE]") == 1, s.events[-3:]
    assert len(s.json_events()) >= 2, s.events  # token by token, not one event
    alias = s.json_events()[0]["model"]
    assert alias in ctx.by_alias, alias
    direct = ctx.by_alias[alias].post("/v1/completions", completion(max_tokens=24))
    assert s.text() == direct["choices"][0]["text"], (s.text(), direct)


def fake_sse_upstream(release, stop):
    """A stand-in replica for test_unbuffered: answers every request with an SSE response whose
    first event comes at once and whose rest waits for `release`. The response ends when the
    connection closes (no chunks, no length: what an upstream speaking HTTP/1.0 sends), the
    framing where a buffering nginx holds data back; it passes each chunk of a chunked
    response on even when buffering. Returns (port, thread)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(0.5)

    def serve():
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(IO_TIMEOUT)
                got = b""
                while b"\r\n\r\n" not in got:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                m = re.search(rb"(?i)content-length: *(\d+)", got)
                need = int(m.group(1)) if m else 0
                while len(got.split(b"\r\n\r\n", 1)[1]) < need:
                    got += conn.recv(65536)

                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Connection: close\r\n\r\n" + b'data: {"n":1}\n\n')
                release.wait(IO_TIMEOUT)
                conn.sendall(b"data: [DONE]\n\n")
        lsock.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return lsock.getsockname()[1], t


def test_unbuffered(workdir):
    """nginx hands each event on as it comes: behind the shipped file, a stand-in replica sends
    one event and then waits until the client has received it. A buffering proxy would hold
    that event back until more data or the end arrives, and the client's read would time out
    (the timeout only turns that hang into a failure). llamaserve itself cannot be paused
    between two tokens, so only a stand-in makes this deterministic."""
    release, stop = threading.Event(), threading.Event()
    port, thread = fake_sse_upstream(release, stop)
    ngx = Nginx([port, port], workdir)
    try:
        c = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=20)
        c.request("POST", "/v1/completions", body=b"{}",
                  headers={"Content-Type": "application/json"})
        try:
            r = c.getresponse()  # a buffering nginx holds back the headers too
            assert r.status == 200, r.status
            first = r.readline()
        except socket.timeout:
            raise AssertionError("the first event did not come through before the stream "
                                 "went on: nginx buffers the stream")
        finally:
            release.set()
        assert first == b'data: {"n":1}\n', first
        rest = r.read()
        assert rest.endswith(b"data: [DONE]\n\n"), rest
        c.close()
    finally:
        release.set()
        stop.set()
        ngx.stop()
        thread.join(IO_TIMEOUT)


def test_sessions_spread(ctx):
    """Different session ids land on both replicas; without the header nginx balances the
    requests round robin, so a few consecutive ones reach both as well."""
    seen = {}
    for i in range(32):
        seen.setdefault(ctx.ngx.complete(completion(max_tokens=1), "spread-%d" % i)["model"],
                        []).append(i)
    assert set(seen) == {"replica-a", "replica-b"}, seen
    print("  32 sessions: %s" % {k: len(v) for k, v in sorted(seen.items())})
    plain = [ctx.ngx.complete(completion(max_tokens=1))["model"] for _ in range(4)]
    assert set(plain) == {"replica-a", "replica-b"}, plain


def test_session_affinity_and_cache(ctx):
    """One session keeps its replica, and so its prompt cache: the second identical prompt
    reuses all of it but the last token (which is always computed). The same prompt on a
    session that hashes to the other replica finds only the BOS token that every prompt
    shares: the cache is per replica, which is why affinity matters."""
    prompt = "Thus saith the LORD of hosts; Consider your ways. Ye have sown much"
    first = ctx.ngx.complete(completion(prompt), "conv-1")
    home = first["model"]
    assert cached(first) <= 1, first["usage"]  # nobody sent this prompt before
    n_prompt = first["usage"]["prompt_tokens"]
    for _ in range(4):
        again = ctx.ngx.complete(completion(prompt), "conv-1")
        assert again["model"] == home, (again["model"], home)
        assert cached(again) == n_prompt - 1, again["usage"]
        assert again["choices"][0]["text"] == first["choices"][0]["text"]
    homes = {}
    for i in range(2, 40):
        r = ctx.ngx.complete(completion(prompt), "conv-%d" % i)
        homes["conv-%d" % i] = r["model"]
        if r["model"] != home:
            assert cached(r) <= 1, ("the other replica never saw this prompt", r["usage"])
            again = ctx.ngx.complete(completion(prompt), "conv-%d" % i)
            assert again["model"] == r["model"] and cached(again) == n_prompt - 1, again
            break
    else:
        raise AssertionError("38 sessions all hashed to %s" % home)
    for sid, alias in homes.items():  # interleaved with others, each session kept its replica
        assert ctx.ngx.complete(completion(prompt, max_tokens=1), sid)["model"] == alias, sid
    assert ctx.ngx.complete(completion(prompt, max_tokens=1), "conv-1")["model"] == home


def refused_by_length(port, n):
    """Announces an n-byte body with "Expect: 100-continue" and reads the answer without
    sending the body: a server that refuses the body by its length answers at once. (Sending a
    body the server will not read races with its closing the connection.) A server that asks
    for the body instead gets none, and the read times out: a failure, not a hang."""
    s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    try:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                  b"Expect: 100-continue\r\nConnection: close\r\n\r\n" % n)
        r = http.client.HTTPResponse(s)
        r.begin()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        s.close()


def test_body_limit(ctx):
    """client_max_body_size is llamaserve's max_body: a body of exactly max_body bytes is
    forwarded and served; one byte more is refused by nginx with an OpenAI-style JSON error,
    and without the proxy the replica refuses it too."""
    head, tail = b'{"prompt": "Amen", "max_tokens": 1,', b'"temperature": 0}'
    body = head + b" " * (MAX_BODY - len(head) - len(tail)) + tail  # JSON allows the spaces
    st, _, data = ctx.ngx.request(None, raw=body)
    assert st == 200 and json.loads(data)["model"] in ctx.by_alias, (st, data[:300])
    st, hd, data = refused_by_length(ctx.ngx.port, MAX_BODY + 1)
    assert st == 413, (st, data[:300])
    assert hd.get("content-type") == "application/json", hd
    err = json.loads(data)["error"]
    assert err["type"] == "invalid_request_error" and err["message"], err
    # two workers write the log: lines need not come in the order the answers did
    log = ctx.ngx.wait_log(lambda es: any(e["status"] == "413" for e in es), "the 413")
    too_big = [e for e in log if e["status"] == "413"]
    assert len(too_big) == 1 and too_big[0]["upstream"] == "-", too_big  # no replica saw it
    st, _, data = refused_by_length(ctx.a.port, MAX_BODY + 1)
    assert st == 413, (st, data[:300])


class Load:
    """Client threads sending non-streamed completions through nginx, each with its own
    session id, until each has sent `after` requests that started after the kill."""

    def __init__(self, ngx, workers, after):
        self.ngx, self.after = ngx, after
        self.results = []  # dicts: session, t0, t1, status, model, error
        self.mu = threading.Lock()
        self.killed_at = None  # (monotonic before the kill, monotonic once the victim is reaped)
        self.kill_done = threading.Event()
        self.threads = [threading.Thread(target=self.worker, args=(w,)) for w in range(workers)]

    def worker(self, w):
        n_after = 0
        for i in range(2000):  # bounded: a kill that never comes ends in a failure, not a hang
            sid = "load-%d-%d" % (w, i)
            t0 = time.monotonic()
            rec = {"session": sid, "t0": t0, "status": None, "model": None, "error": None}
            try:
                st, _, data = self.ngx.request(completion(max_tokens=16), {"X-Session-Id": sid})
                rec["status"] = st
                if st == 200:
                    rec["model"] = json.loads(data)["model"]
                else:
                    rec["error"] = data[:200].decode("utf-8", "replace")
            except (OSError, http.client.HTTPException, ValueError) as ex:
                rec["error"] = repr(ex)
            rec["t1"] = time.monotonic()
            with self.mu:
                self.results.append(rec)
            if self.kill_done.is_set() and t0 > self.killed_at[1]:
                n_after += 1
                if n_after >= self.after:
                    return

    def served(self, alias):
        with self.mu:
            return sum(1 for r in self.results if r["model"] == alias)


def test_kill_during_load(ctx):
    """Four clients keep sending requests with fresh session ids (so both replicas get them).
    Once replica-b is serving some, it is killed with SIGKILL while it runs one. Afterwards
    every request succeeds on replica-a, including those whose session hashes to replica-b:
    nginx finds the port closed before it has handed the request over, and sends it to the
    survivor. Only requests in flight on replica-b at the kill may fail (502 from nginx)."""
    victim, survivor = ctx.b, ctx.a
    victim_addr, survivor_addr = "127.0.0.1:%d" % victim.port, "127.0.0.1:%d" % survivor.port
    load = Load(ctx.ngx, workers=4, after=8)
    for t in load.threads:
        t.start()
    try:
        deadline = time.monotonic() + IO_TIMEOUT  # turns a hang into a failure
        while load.served("replica-b") < 4 or load.served("replica-a") < 4:
            assert time.monotonic() < deadline, "the load never reached both replicas"
            assert any(t.is_alive() for t in load.threads), "the clients ended early"
            threading.Event().wait(0.005)  # paces the polling; synchronises nothing
        victim.wait_metrics(lambda m: m["llamaserve_slots_busy"] >= 1, "replica-b running one")
        t_kill = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        victim.stopped = True
        load.killed_at = (t_kill, time.monotonic())
        load.kill_done.set()
    finally:
        if load.killed_at is None:  # the kill never came: let the clients finish
            load.killed_at = (time.monotonic(), time.monotonic())
        load.kill_done.set()
        for t in load.threads:
            t.join(IO_TIMEOUT * 2)
    t_kill, t_dead = load.killed_at
    n = len(load.results)
    log = {e["session"]: e for e in ctx.ngx.wait_log(
        lambda es: sum(e["session"].startswith("load-") for e in es) == n, "every request")
        if e["session"].startswith("load-")}
    before = [r for r in load.results if r["t1"] < t_kill]
    after = [r for r in load.results if r["t0"] > t_dead]
    during = [r for r in load.results if r not in before and r not in after]
    failed = [r for r in load.results if r["status"] != 200]
    retried = [e for e in log.values() if e["upstream"] == "%s, %s" % (victim_addr, survivor_addr)]
    print("  %d requests: %d done before the kill, %d in flight at it, %d started after it; "
          "%d failed; %d found replica-b dead and were sent to replica-a"
          % (len(load.results), len(before), len(during), len(after), len(failed),
             len(retried)))
    for r in failed:
        print("  failed (in flight on replica-b at the kill): %s status %s %s; nginx: %s"
              % (r["session"], r["status"], r["error"], log.get(r["session"])))
    assert len(after) == 4 * load.after, len(after)
    for r in before + after:
        assert r["status"] == 200, ("must not fail", r, log.get(r["session"]))
    assert all(r["model"] == "replica-a" for r in after), [r["model"] for r in after]
    for r in failed:
        e = log.get(r["session"])
        assert r in during and r["status"] == 502, r
        assert e and e["upstream"] == victim_addr and e["status"] == "502", (r, e)
    assert len(failed) <= len(load.threads), failed
    for e in retried:
        assert e["status"] == "200" and e["upstream_status"].endswith(", 200"), e
    assert survivor.alive(), survivor.tail()
    # with no replica left, clients get a JSON error from nginx, not an HTML page
    survivor.stop()
    st, hd, data = ctx.ngx.request(completion(max_tokens=1))
    assert st == 502 and hd.get("content-type") == "application/json", (st, hd, data)
    assert json.loads(data)["error"]["type"] == "server_error", data


def test_dead_replica_before_forwarding(workdir, survivor):
    """Deterministic twin of the load test: nginx starts with one replica address that nobody
    listens on (a replica that died before nginx noticed). Every session that hashes to it is
    answered by the survivor; the log shows nginx tried the dead one first and moved on."""
    dead = free_port()
    ngx = Nginx([dead, survivor.port], workdir)
    try:
        models = [ngx.complete(completion(max_tokens=1), "dead-%d" % i)["model"]
                  for i in range(16)]
        assert set(models) == {"replica-a"}, models
        entries = ngx.wait_log(lambda es: len(es) == 16, "16 requests")
        tried = [e for e in entries if e["upstream"].startswith("127.0.0.1:%d," % dead)]
        assert tried, ("no request hashed to the dead replica", ngx.log())
        for e in tried:
            assert e["status"] == "200" and e["upstream_status"] == "502, 200", e
    finally:
        ngx.stop()


def main():
    if not shutil.which("nginx"):
        print("skip: nginx not found (scripts/test-deps.sh installs Debian's nginx)")
        return 77
    runner = Runner("test_nginx")
    workdir = tempfile.mkdtemp(prefix="ls-nginx-")
    os.chmod(workdir, 0o711)  # root's nginx runs its workers as nobody
    a = b = ngx = None
    try:
        runner.run(test_unbuffered, workdir)
        a = Server("--alias", "replica-a", "--parallel", "2")
        b = Server("--alias", "replica-b", "--parallel", "2")
        ngx = Nginx([a.port, b.port], workdir)
        ctx = Ctx(a, b, ngx)
        for t in (test_stream, test_sessions_spread, test_session_affinity_and_cache,
                  test_body_limit):
            runner.run(t, ctx)
        runner.run(test_dead_replica_before_forwarding, workdir, a)
        runner.run(test_kill_during_load, ctx)  # last: it kills replica-b and stops replica-a
        if ngx.proc.poll() is not None:
            runner.fail("nginx alive", "nginx exited:\n" + "\n".join(ngx.stderr_lines[-20:]))
    except Exception as ex:  # noqa: BLE001 - a setup failure is a failure, then clean up
        runner.fail("setup", ex)
    finally:
        for srv in (a, b):
            if srv is not None and not srv.stopped:
                try:
                    srv.stop()
                except Exception as ex:  # noqa: BLE001
                    runner.fail("replica stop", ex)
        if ngx is not None:
            ngx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
