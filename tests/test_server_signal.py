"""test_server_signal: shutdown and readiness of `llamaserve serve`, black-box.

- SIGTERM during a stream: the stream finishes (the drain lets it) with data: [DONE] and a
  properly terminated chunked body; the process exits 0.
- SIGTERM with --shutdown-timeout 0 during a long stream: the stream ends with an error event
  and a properly terminated body; a waiting non-streaming request gets an error response;
  exit 0.
- While the server drains: /health says 503, a new request gets 503 with Retry-After, and
  every answer closes its connection, a kept-alive one included (before, new connections
  waited unanswered in the listen backlog until the process exited).
- SIGINT on an idle server: exit 0.
- /health says 503 while the model loads: the model path is a FIFO, so loading blocks in
  open() until the test writes to it, a state the test controls without any timing.
"""
import json
import os
import signal
import sys
import tempfile
import threading

from server_harness import Runner, Server, Stream, check_error

LONG = {"prompt": "In the beginning God", "max_tokens": 120, "temperature": 0.9, "seed": 8,
        "ignore_eos": True, "stream": True}


def test_sigterm_stream_completes(r):
    with Server("--shutdown-timeout", "60", "--parallel", "2") as s:
        st = Stream(s, "/v1/completions", LONG)
        assert st.status == 200
        for _ in range(2):
            assert st.next_event() is not None
        s.signal(signal.SIGTERM)
        s.wait_line(r"SIGTERM: draining")
        st.read_all()
        assert st.error is None and st.ended, "stream not terminated cleanly: %r" % st.error
        assert st.events[-1] == "[DONE]", st.events[-2:]
        # "length" is only reached at max_tokens: the stream ran to its end, not cut short (the
        # number of events is no measure: text produced between two reads shares one event)
        assert st.finish_reasons() == ["length"], st.finish_reasons()
        rc = s.wait_exit()
        assert rc == 0, "exit %d\n%s" % (rc, s.tail())
        assert not s.sanitizer_report(), s.tail()


def test_sigterm_cuts_stream_with_error_event(r):
    # 4000 tokens each (--ctx-size 4096): far from done when the signal comes
    s = Server("--shutdown-timeout", "0", "--parallel", "2", "--ctx-size", "4096")
    try:
        body = dict(LONG, max_tokens=4000)
        st = Stream(s, "/v1/completions", dict(body, stream_options={"include_usage": True}))
        assert st.status == 200 and st.next_event() is not None
        # a non-streaming request that is running too
        res = {}

        def whole():
            res["r"] = s.request("POST", "/v1/completions", dict(body, stream=False))
        t = threading.Thread(target=whole)
        t.start()
        s.wait_metrics(lambda m: m["llamaserve_slots_busy"] == 2, "both running")
        s.signal(signal.SIGTERM)
        st.read_all()
        t.join(120)
        assert st.error is None and st.ended, "stream not terminated cleanly: %r" % st.error
        # cut: the last event is an error object, the only one; no usage, no [DONE]
        last = st.events[-1]
        errors = [e for e in st.events if isinstance(e, dict) and "error" in e]
        assert isinstance(last, dict) and set(last) == {"error"}, st.events[-3:]
        check_error(500, last, 500, what="error event")
        assert errors == [last], errors
        assert st.finish_reasons() == [] and st.usage() is None, st.events[-3:]
        status, hd, data = res["r"]
        check_error(status, json.loads(data), 503, what="cut non-streaming request")
        rc = s.wait_exit()
        assert rc == 0, "exit %d\n%s" % (rc, s.tail())
        assert not s.sanitizer_report(), s.tail()
        assert any("stopped" in l for l in s.stderr_lines), s.tail()
    finally:
        s.kill()


def test_drain_answers_and_closes(r):
    # a stream far from done holds the drain open until the test disconnects it
    with Server("--shutdown-timeout", "60", "--parallel", "2", "--ctx-size", "4096") as s:
        kept = s.conn()  # kept alive from before the signal
        kept.request("GET", "/v1/models")
        first = kept.getresponse()
        first.read()
        assert first.status == 200 and first.getheader("Connection") != "close"
        st = Stream(s, "/v1/completions", dict(LONG, max_tokens=4000))
        assert st.status == 200 and st.next_event() is not None
        s.signal(signal.SIGTERM)
        s.wait_line(r"SIGTERM: draining")
        status, obj, hd = s.json("GET", "/health")
        check_error(status, obj, 503, what="/health while draining")
        assert obj["error"]["message"] == "Shutting down", obj
        assert hd.get("connection") == "close", hd
        status, obj, hd = s.json("POST", "/v1/completions", {"prompt": "a", "max_tokens": 1})
        check_error(status, obj, 503, what="a completion while draining")
        assert "shutting down" in obj["error"]["message"], obj
        assert hd.get("retry-after") == "1" and hd.get("connection") == "close", hd
        kept.request("GET", "/v1/models")
        second = kept.getresponse()
        second.read()
        assert second.status == 200 and second.getheader("Connection") == "close"
        kept.close()
        st.close()  # the slot frees within a step, so the drain ends
        rc = s.wait_exit()
        assert rc == 0, "exit %d\n%s" % (rc, s.tail())
        assert not s.sanitizer_report(), s.tail()


def test_sigint_idle(r):
    s = Server()
    try:
        st, obj, _ = s.json("GET", "/health")
        assert st == 200
        s.signal(signal.SIGINT)
        rc = s.wait_exit()
        assert rc == 0, "exit %d\n%s" % (rc, s.tail())
        assert not s.sanitizer_report(), s.tail()
    finally:
        s.kill()


def test_health_503_while_loading(r):
    d = tempfile.mkdtemp(prefix="ls-fifo-")
    fifo = os.path.join(d, "model.gguf")
    os.mkfifo(fifo)
    s = Server(model=fifo, wait_ready=False)
    try:
        # opening the FIFO for reading blocks until a writer comes: the server is listening,
        # not ready, for as long as the test wants
        st, obj, _ = s.json("GET", "/health")
        check_error(st, obj, 503, what="/health while loading")
        assert obj["error"]["message"] == "Loading model", obj
        st, obj, hd = s.json("POST", "/v1/completions", {"prompt": "a", "max_tokens": 1})
        check_error(st, obj, 503, what="completion while loading")
        st, obj, hd = s.json("GET", "/v1/models")
        check_error(st, obj, 503, what="models while loading")
        # unblock the load with a file that is not a model: the server reports it and exits.
        # The loader may open the path more than once, so a thread answers every open.
        stop = threading.Event()

        def feed():
            while not stop.is_set():
                try:
                    fd = os.open(fifo, os.O_WRONLY)  # blocks until the server opens it
                    try:
                        os.write(fd, b"not a model file")
                    finally:
                        os.close(fd)
                except OSError:
                    pass
        t = threading.Thread(target=feed, daemon=True)
        t.start()
        rc = s.wait_exit()
        stop.set()
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # release a pending open
        t.join(30)
        assert rc != 0, "a bad model file must fail the start"
        assert not s.sanitizer_report(), s.tail()
    finally:
        s.kill()
        os.unlink(fifo)
        os.rmdir(d)


def main():
    runner = Runner("test_server_signal")
    for t in (test_sigterm_stream_completes, test_sigterm_cuts_stream_with_error_event,
              test_drain_answers_and_closes, test_sigint_idle, test_health_503_while_loading):
        runner.run(t, runner)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
