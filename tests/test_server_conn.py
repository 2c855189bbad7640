"""test_server_conn: connection handling and HTTP framing of `llamaserve serve`, black-box.

- 1,000 idle sockets and 100 slowloris sockets (a header byte at a time) held open leave
  /health answering (its latency is printed; only a generous bound is asserted) and a
  completion working, with the server's default connection limit.
- With --request-timeout 2, slowloris sockets (in the headers or in the body) are closed by the
  deadline, however the bytes trickle in; one cut in its body counts as 408.
- With --timeout 1, an idle keep-alive connection is closed.
- A client that half-closes (shutdown(SHUT_WR)) after its request still gets the whole answer,
  streamed or not.
- Two different Content-Length headers, or Content-Length with Transfer-Encoding, are a 400; an
  unknown transfer coding a 501.
- With --api-key, a request without the key gets 401 before its body is read.
- A client that leaves a stream or a waiting request is counted as 499 in /metrics and the log.
Every wait here is bounded only to turn a hang into a failure; nothing sleeps to synchronise.
"""
import json
import resource
import select
import socket
import statistics
import sys
import threading
import time

from server_harness import Runner, Server, post_bytes, raw_http

PROMPT = "In the beginning God"
WAIT_S = 120  # bound on any wait for the server: a hang becomes a failure


def raise_nofile(need):
    """The test holds two descriptors per connection in one machine (client and server side are
    different processes, but the client needs one per socket): raise our own soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print("test process RLIMIT_NOFILE soft=%s hard=%s" % (soft, hard), flush=True)
    assert soft == resource.RLIM_INFINITY or soft >= need, \
        "this test needs %d open files; the hard limit is %s" % (need, hard)


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)


def is_open(sock):
    """True when the server has not closed sock (no EOF, no reset, nothing to read)."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    if not p.poll(0):
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def wait_all_closed(socks, limit_s=WAIT_S):
    """Blocks until every socket reads EOF or a reset; returns those still open at limit_s."""
    left = {s.fileno(): s for s in socks}
    p = select.poll()
    for fd in left:
        p.register(fd, select.POLLIN)
    deadline = time.monotonic() + limit_s
    while left and time.monotonic() < deadline:
        for fd, _ in p.poll(1000):
            try:
                data = left[fd].recv(65536)
            except OSError:
                data = b""
            if data == b"":
                p.unregister(fd)
                del left[fd]
    return list(left.values())


class Trickler:
    """Sends each socket the next byte of its request every `every` seconds until it closes.
    The pace only has to be slower than a request deadline would allow; it synchronises
    nothing."""

    def __init__(self, socks, data, every):
        self.socks = {s: 0 for s in socks}
        self.data, self.every = data, every
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.wait(self.every):
            for s, i in list(self.socks.items()):
                try:
                    s.send(self.data[i % len(self.data):i % len(self.data) + 1])
                    self.socks[s] = i + 1
                except OSError:
                    del self.socks[s]

    def close(self):
        self.stop.set()
        self.t.join(WAIT_S)


def health_latencies(s, n=20):
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        st, _, body = s.request("GET", "/health")
        out.append(time.monotonic() - t0)
        assert st == 200 and b"ok" in body, (st, body)
    return out


SLOW_HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000 + b"\r\n\r\n"


def test_idle_and_slowloris_do_not_starve():
    raise_nofile(2400)
    # the connection limit and the file limit are the defaults; the two timeouts are long only
    # so that a slow sanitizer build finishes its checks before any of these sockets expires
    with Server("--timeout", "300", "--request-timeout", "300", "--no-log-requests") as s:
        idle = [connect(s.port) for _ in range(1000)]
        slow = [connect(s.port) for _ in range(100)]
        for k in slow:
            k.sendall(SLOW_HEAD[:1])
        tr = Trickler(slow, SLOW_HEAD[1:], every=1.0)
        try:
            s.wait_metrics(lambda m: m["llamaserve_http_connections"] >= 1100,
                           "1100 open connections")
            lat = health_latencies(s)
            print("/health with 1000 idle + 100 slowloris sockets open: median %.2f ms, max "
                  "%.2f ms over %d requests" % (statistics.median(lat) * 1e3, max(lat) * 1e3,
                                                 len(lat)), flush=True)
            assert max(lat) < 2.0, lat
            r = s.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 8, "temperature": 0})
            assert r["usage"]["completion_tokens"] >= 1, r
            st = s.stream("/v1/completions", {"prompt": PROMPT, "max_tokens": 8,
                                              "temperature": 0, "stream": True})
            assert st.events[-1] == "[DONE]" and st.text() == r["choices"][0]["text"]
            closed = [k for k in idle + slow if not is_open(k)]
            assert not closed, "%d of the held sockets were closed" % len(closed)
        finally:
            tr.close()
            for k in idle + slow:
                k.close()


def test_request_deadline_closes_slowloris():
    with Server("--request-timeout", "2", "--timeout", "300") as s:
        head = [connect(s.port) for _ in range(100)]
        for k in head:
            k.sendall(SLOW_HEAD[:1])
        # slow in the body: the headers arrive whole, the body a byte at a time
        body = json.dumps({"prompt": PROMPT, "max_tokens": 4}).encode()
        req = post_bytes("/v1/completions", body)
        split = len(req) - len(body)
        in_body = [connect(s.port) for _ in range(5)]
        for k in in_body:
            k.sendall(req[:split])
        idle = [connect(s.port) for _ in range(20)]
        tr = Trickler(head, SLOW_HEAD[1:], every=0.2)
        tr2 = Trickler(in_body, req[split:], every=0.2)
        try:
            assert max(health_latencies(s, 5)) < 2.0
            left = wait_all_closed(head + in_body + idle)
            assert not left, "%d slow sockets still open after %d s" % (len(left), WAIT_S)
        finally:
            tr.close()
            tr2.close()
            for k in head + in_body + idle:
                k.close()
        s.wait_metrics(lambda m: m.get(
            'llamaserve_requests_total{route="/v1/completions",status="408"}', 0) >= 5,
            "the 5 requests cut in their body counted as 408")
        # a request that arrives in time is unaffected
        r = s.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 4})
        assert r["choices"][0]["text"], r


def test_idle_keepalive_closed():
    with Server("--timeout", "1", "--request-timeout", "300") as s:
        c = s.conn()
        c.request("GET", "/health")
        resp = c.getresponse()
        assert resp.status == 200 and resp.read()
        assert resp.getheader("Connection", "").lower() != "close"
        left = wait_all_closed([c.sock])
        assert not left, "the idle keep-alive connection was not closed"
        c.close()


def read_http_response(sock):
    """Reads to EOF; returns (status, headers dict, body bytes) of the final response, after any
    interim 1xx responses; a chunked body is decoded."""
    data = b""
    sock.settimeout(WAIT_S)
    while True:
        b = sock.recv(65536)
        if not b:
            break
        data += b
    while data.startswith(b"HTTP/1.1 1"):
        data = data[data.index(b"\r\n\r\n") + 4:]
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        while True:
            size, _, rest = body.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out += rest[:n]
            body = rest[n + 2:]
        body = out
    return status, headers, body


def test_half_close_gets_answer(s):
    for stream in (False, True, False, True, False, True, False, True, False, True):
        body = json.dumps({"prompt": PROMPT, "max_tokens": 16, "temperature": 0,
                           "stream": stream}).encode()
        sock, _ = raw_http(s.port, post_bytes("/v1/completions", body,
                                              {"Connection": "close"}))
        sock.shutdown(socket.SHUT_WR)
        status, headers, data = read_http_response(sock)
        sock.close()
        assert status == 200, (status, data[:200])
        if stream:
            events = [l[6:] for l in data.split(b"\n") if l.startswith(b"data: ")]
            assert events and events[-1] == b"[DONE]", data[-200:]
            assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length", events
        else:
            r = json.loads(data)
            assert r["usage"]["completion_tokens"] == 16, r


def raw_status(port, data):
    sock, got = raw_http(port, data, read_until=b"\r\n\r\n")
    sock.close()
    return int(got.split(b" ", 2)[1]), got


def test_conflicting_framing(s):
    body = b'{"content": "hi"}'
    head = b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    n = str(len(body)).encode()
    st, got = raw_status(s.port, head + b"Content-Length: " + n + b"\r\nContent-Length: 5\r\n\r\n"
                         + body)
    assert st == 400, got
    st, got = raw_status(s.port, head + b"Content-Length: " + n +
                         b"\r\nTransfer-Encoding: chunked\r\n\r\n" +
                         b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    assert st == 400, got
    st, got = raw_status(s.port, head + b"Transfer-Encoding: gzip\r\n\r\n" + body)
    assert st == 501, got
    # the same length twice is one length; chunked alone is fine
    st, got = raw_status(s.port, head + b"Content-Length: " + n + b"\r\nContent-Length: " + n +
                         b"\r\n\r\n" + body)
    assert st == 200, got
    st, got = raw_status(s.port, head + b"Transfer-Encoding: chunked\r\n\r\n" +
                         b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    assert st == 200, got


def test_auth_before_body():
    with Server("--api-key", "sekrit") as s:
        # a 1 MB body announced and never sent: the 401 must not wait for it
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000\r\n\r\n")
        sock = connect(s.port)
        sock.sendall(head)
        sock.settimeout(30)
        got = b""
        while b"\r\n\r\n" not in got:
            b = sock.recv(65536)
            assert b, "closed without an answer: %r" % got
            got += b
        sock.close()
        assert got.startswith(b"HTTP/1.1 401"), got[:200]
        # with the key, the same request waits for its body (the server answers only after it)
        st, obj, _ = s.json("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 2},
                            {"Authorization": "Bearer sekrit"})
        assert st == 200, obj


def count(m, status):
    return m.get('llamaserve_requests_total{route="/v1/completions",status="%d"}' % status, 0)


def test_client_left_is_499(s):
    before = s.metrics()
    # 4000 tokens (--ctx-size 4096): still running long after the client has left
    long = {"prompt": PROMPT, "max_tokens": 4000, "ignore_eos": True, "temperature": 0.9,
            "seed": 1}
    # a stream dropped after its first event
    sock, got = raw_http(s.port, post_bytes("/v1/completions", json.dumps(
        dict(long, stream=True)).encode()), read_until=b"data: ")
    sock.close()
    s.wait_metrics(lambda m: count(m, 499) == count(before, 499) + 1 and
                   m["llamaserve_slots_busy"] == 0, "the dropped stream counted 499, slot free")
    # a waiting request dropped while it runs (its client sent everything and closed: an end
    # of stream, probed, then a reset)
    sock, _ = raw_http(s.port, post_bytes("/v1/completions", json.dumps(long).encode()))
    s.wait_metrics(lambda m: m["llamaserve_slots_busy"] == 1, "the request runs")
    sock.close()
    m = s.wait_metrics(lambda m: count(m, 499) == count(before, 499) + 2 and
                       m["llamaserve_slots_busy"] == 0, "two requests counted 499, slots free")
    assert count(m, 200) == count(before, 200), "a dropped request counted as 200"
    assert any("status=499" in l and "/v1/completions" in l for l in s.stderr_lines), \
        s.tail()


def main():
    runner = Runner("test_server_conn")
    from server_harness import run_with_server
    runner.run(test_idle_and_slowloris_do_not_starve)
    runner.run(test_request_deadline_closes_slowloris)
    runner.run(test_idle_keepalive_closed)
    runner.run(test_auth_before_body)
    run_with_server(runner, [test_half_close_gets_answer, test_conflicting_framing,
                             test_client_left_is_499], "--parallel", "2", "--ctx-size", "4096")
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
