"""test_server_load: concurrency, the bounded queue and client disconnects, black-box.

- 8 concurrent streams on --parallel 4 each produce exactly what they produce alone (greedy and
  seeded sampling): batching never changes a request's output.
- With --parallel 2 --max-queue 1, requests beyond 2 running + 1 queued get 503 with
  Retry-After and an error object, and the admitted ones still complete.
- 20 streams dropped mid-generation and 10 dropped while queued leave 0 busy slots and an empty
  queue in /metrics, and the server answers normally afterwards.
Ordering is established by observing state (/metrics, received events), never by sleeping.
"""
import json
import sys
import threading

from server_harness import Runner, Server, check_error, post_bytes, raw_http

PROMPTS = ["In the beginning God", "And the LORD said unto Moses", "Blessed are the meek",
           "The LORD is my shepherd"]


def busy_queue(m):
    return m["llamaserve_slots_busy"], m["llamaserve_queue_depth"]


def run_threads(fns):
    """Runs each fn in its own thread; returns their results (exceptions re-raised)."""
    out = [None] * len(fns)

    def wrap(i, fn):
        try:
            out[i] = ("ok", fn())
        except BaseException as ex:  # noqa: BLE001
            out[i] = ("err", ex)

    ts = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    for i, r in enumerate(out):
        if r is None:
            raise AssertionError("thread %d did not finish" % i)
        if r[0] == "err":
            raise AssertionError("thread %d: %r" % (i, r[1]))
    return [r[1] for r in out]


def test_concurrent_streams_match_solo(s):
    bodies = []
    for i in range(8):
        b = {"prompt": PROMPTS[i % 4], "max_tokens": 16, "stream": True}
        if i < 4:
            b["temperature"] = 0
        else:
            b.update(temperature=0.9, seed=1000 + i)
        bodies.append(b)
    bodies.append({"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 12,
                   "temperature": 0.9, "seed": 5, "stream": True})
    paths = ["/v1/completions"] * 8 + ["/v1/chat/completions"]
    chat = [False] * 8 + [True]
    solo = []
    for p, b, c in zip(paths, bodies, chat):
        st = s.stream(p, b)
        assert st.status == 200 and st.events[-1] == "[DONE]", st.status
        solo.append((st.text(chat=c), st.finish_reasons()))
    for round_ in range(2):
        got = run_threads([lambda p=p, b=b: s.stream(p, b) for p, b in zip(paths, bodies)])
        for i, (st, c) in enumerate(zip(got, chat)):
            assert st.status == 200 and st.ended and st.events[-1] == "[DONE]", (i, st.status)
            assert (st.text(chat=c), st.finish_reasons()) == solo[i], \
                "round %d request %d: together %r, alone %r" % (round_, i, st.text(chat=c),
                                                                solo[i][0])
    m = s.wait_metrics(lambda m: busy_queue(m) == (0, 0), "idle slots")
    assert m["llamaserve_slots_total"] == 4


def test_disconnects_free_slots(s):
    # long requests (1000 tokens, --ctx-size 1024): they are still running when dropped
    body = json.dumps({"prompt": PROMPTS[1], "max_tokens": 1000, "temperature": 0.9,
                       "seed": 3, "ignore_eos": True, "stream": True}).encode()
    req = post_bytes("/v1/completions", body)
    # 20 streams dropped after one or two events, four at a time (one per slot: a fifth
    # would wait in the queue for a slot)
    for group in range(5):
        socks = []
        for k in range(4):
            want = 1 + (group + k) % 2
            sock, got = raw_http(s.port, req, read_until=None)
            while got.count(b"data: ") < want:
                b = sock.recv(65536)
                assert b, "stream ended before %d events: %r" % (want, got[-200:])
                got += b
            assert got.startswith(b"HTTP/1.1 200"), got[:100]
            socks.append(sock)
        for sock in socks:
            sock.close()
    s.wait_metrics(lambda m: busy_queue(m) == (0, 0), "0 busy slots after 20 dropped streams")
    # fill all 4 slots with streams we keep reading, then queue 10 and drop them
    running = []
    for _ in range(4):
        sock, got = raw_http(s.port, req, read_until=b"data: ")
        running.append(sock)
    s.wait_metrics(lambda m: m["llamaserve_slots_busy"] == 4, "4 busy slots")
    queued = [raw_http(s.port, req)[0] for _ in range(10)]
    s.wait_metrics(lambda m: m["llamaserve_queue_depth"] == 10, "10 queued")
    for sock in queued:
        sock.close()
    # the queued ones leave the queue while the running ones still run
    m = s.wait_metrics(lambda m: m["llamaserve_queue_depth"] == 0, "the queue emptied")
    assert m["llamaserve_slots_busy"] == 4, "the running streams ended early: %s" % m
    for sock in running:
        sock.close()
    s.wait_metrics(lambda m: busy_queue(m) == (0, 0), "0 busy slots, empty queue")
    # and the server answers normally
    r = s.post("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0})
    assert r["usage"]["completion_tokens"] == 8 or r["choices"][0]["finish_reason"] == "stop", r
    st = s.stream("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0,
                                      "stream": True})
    assert st.text() == r["choices"][0]["text"]
    # a non-streaming request dropped while it waits also frees its slot
    sock, _ = raw_http(s.port, post_bytes("/v1/completions", json.dumps(
        {"prompt": PROMPTS[2], "max_tokens": 1000, "ignore_eos": True}).encode()))
    s.wait_metrics(lambda m: m["llamaserve_slots_busy"] == 1, "the non-streaming request runs")
    sock.close()
    s.wait_metrics(lambda m: busy_queue(m) == (0, 0), "0 busy after a dropped non-stream")


def test_queue_overflow_503(s):
    # --parallel 2 --max-queue 1: two run, one waits, the rest are refused at once
    long_body = {"prompt": PROMPTS[0], "max_tokens": 400, "temperature": 0.9, "seed": 11,
                 "ignore_eos": True, "stream": True}
    from server_harness import Stream
    admitted = []
    for _ in range(2):
        st = Stream(s, "/v1/completions", long_body)
        assert st.status == 200
        assert st.next_event() is not None  # it runs: a token came out
        admitted.append(st)
    third = Stream(s, "/v1/completions", long_body)  # headers come at once; it waits
    assert third.status == 200
    admitted.append(third)
    s.wait_metrics(lambda m: busy_queue(m) == (2, 1), "2 busy and 1 queued")

    def refused(chat):
        path = "/v1/chat/completions" if chat else "/v1/completions"
        body = {"max_tokens": 4, "stream": not chat}
        if chat:
            body["messages"] = [{"role": "user", "content": "hi"}]
        else:
            body["prompt"] = "hi"
        return s.request("POST", path, body)

    got = run_threads([lambda c=c: refused(c) for c in (False, True, False, True, False)])
    for st, hd, data in got:
        check_error(st, json.loads(data), 503, what="overflow")
        assert hd.get("retry-after", "").isdigit(), hd
    # the precondition held throughout: nothing finished (a finish would have admitted the
    # queued one, and nothing else can refill the queue)
    m = s.metrics()
    assert busy_queue(m) == (2, 1), "a long request ended during the overflow: %s" % (
        busy_queue(m),)
    for st in admitted:
        st.read_all()
        assert st.ended and st.events[-1] == "[DONE]", st.events[-2:]
        assert len(st.text()) > 0 and st.finish_reasons() == ["length"]
        assert sum(1 for e in st.json_events() if e["choices"][0]["text"]) <= 400
    s.wait_metrics(lambda m: busy_queue(m) == (0, 0), "idle after the overflow")
    m = s.metrics()
    assert m.get('llamaserve_requests_total{route="/v1/completions",status="503"}', 0) >= 3, m
    # 8 at once: each either completes or is refused with 503
    def one():
        st = Stream(s, "/v1/completions", dict(long_body, max_tokens=30))
        st.read_all()
        return st
    res = run_threads([one for _ in range(8)])
    ok = [r for r in res if r.status == 200]
    assert len(ok) >= 3, [r.status for r in res]
    for r in res:
        if r.status == 200:
            assert r.events[-1] == "[DONE]" and r.finish_reasons() == ["length"]
        else:
            check_error(r.status, json.loads(r.body), 503, what="8 at once")
    s.wait_metrics(lambda m: busy_queue(m) == (0, 0), "idle after 8 at once")


def main():
    runner = Runner("test_server_load")
    from server_harness import run_with_server
    run_with_server(runner, [test_concurrent_streams_match_solo, test_disconnects_free_slots],
                    "--parallel", "4", "--max-queue", "16", "--ctx-size", "1024",
                    "--no-log-requests")
    run_with_server(runner, [test_queue_overflow_503], "--parallel", "2", "--max-queue", "1",
                    "--ctx-size", "512", "--no-log-requests")
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
