"""sse_client: the one streaming client of the benchmark scripts (bench_server.py,
bench_prompt_cache.py, bench_beam.py). Stdlib only."""
import http.client
import json
import time


def post_stream(port, body, path="/v1/completions"):
    """POSTs body (a dict, with "stream": true) to a llamaserve on 127.0.0.1:port and reads
    the Server-Sent Events to the end. Returns (status, t0, events): status the HTTP status, t0
    the monotonic time the request was sent, events [(monotonic arrival time, parsed JSON)]
    without the final [DONE] (none when the answer is an error, which is not a stream)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.monotonic()
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    events, buf = [], b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if ev.startswith(b"data: ") and ev != b"data: [DONE]":
                events.append((time.monotonic(), json.loads(ev[6:])))
    c.close()
    return r.status, t0, events
