"""test_server_beam: beam searches as scheduler jobs, against `llamaserve generate --beams`.

A server with 16 slots and f32 KV caches (generate --beams computes in f32; a beam's caches are
the slots', of --kv-type) runs two beam searches of different prompts and widths beside
ordinary requests, all at once: every answer is 200, and each search's n best equal what the
CLI's search returns (its best on stdout; n = 1 and n = 2 must agree on the best), streamed or
not. Stop strings cut every result; max_tokens 0 is an empty answer. A client that leaves ends
its search and frees its slots. tests/test_sched_beam.c shows
the beams and other requests in the same forward steps.
"""
import json
import subprocess
import sys
import threading

from server_harness import BIN, MODEL, Runner, raw_http, run_with_server

PROMPTS = ["And the LORD said unto Moses", "In the beginning God"]


def cli_beams(prompt, beams, n):
    out = subprocess.run([BIN, "generate", "-m", MODEL, "-p", prompt, "-n", str(n), "--beams",
                          str(beams)], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().rstrip("\n")


def test_beams_beside_requests(s):
    """Two beam searches (widths 4 and 3) and three sampled or greedy requests at once: all
    answered, each search's best equal to generate --beams, the stream's text equal to the
    whole answer's."""
    jobs = {
        "beam4": ("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 24,
                                      "use_beam_search": True, "best_of": 4, "n": 2}),
        "beam3": ("/v1/completions", {"prompt": PROMPTS[1], "max_tokens": 18,
                                      "use_beam_search": True, "best_of": 3}),
        "beam3s": ("/v1/completions", {"prompt": PROMPTS[1], "max_tokens": 18, "stream": True,
                                       "use_beam_search": True, "best_of": 3}),
        "greedy": ("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 30, "temperature": 0}),
        "sampled": ("/v1/completions", {"prompt": PROMPTS[1], "max_tokens": 30, "seed": 5,
                                        "n": 2}),
    }
    res, errs = {}, []

    def go(name, path, body):
        try:
            res[name] = s.stream(path, body).text() if body.get("stream") else s.post(path, body)
        except Exception as ex:  # noqa: BLE001 - reported below
            errs.append((name, ex))

    ts = [threading.Thread(target=go, args=(k, *v)) for k, v in jobs.items()]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs, errs
    b4, b3 = res["beam4"]["choices"], res["beam3"]["choices"]
    assert len(b4) == 2 and b4[0]["text"] != b4[1]["text"], b4
    assert b4[0]["text"] == cli_beams(PROMPTS[0], 4, 24), (b4, cli_beams(PROMPTS[0], 4, 24))
    assert b3[0]["text"] == cli_beams(PROMPTS[1], 3, 18), (b3, cli_beams(PROMPTS[1], 3, 18))
    assert res["beam3s"] == b3[0]["text"], (res["beam3s"], b3)
    assert len(res["sampled"]["choices"]) == 2 and res["greedy"]["choices"][0]["text"]
    # alone, the same search gives the same answer
    again = s.post(*jobs["beam4"])
    assert [c["text"] for c in again["choices"]] == [c["text"] for c in b4], (again, b4)


def test_stop_in_beam(s):
    """A stop string cuts every result (and ends the search once every beam has it)."""
    body = {"prompt": PROMPTS[0], "max_tokens": 24, "use_beam_search": True, "best_of": 4,
            "n": 2}
    full = s.post("/v1/completions", body)["choices"][0]["text"]
    word = "children"
    assert word in full, full
    cut = s.post("/v1/completions", dict(body, stop=[word]))
    for c in cut["choices"]:
        assert c["text"] == full[:full.index(word)] and c["finish_reason"] == "stop", (c, full)
    st = s.stream("/v1/completions", dict(body, n=1, stop=[word], stream=True))
    assert st.text() == full[:full.index(word)], st.text()


def test_max_tokens_zero_and_one(s):
    """max_tokens 0 is an empty answer, as for any request (the old search made one token);
    max_tokens 1 is one token per result, the CLI's first."""
    body = {"prompt": PROMPTS[0], "use_beam_search": True, "best_of": 3, "n": 2}
    r = s.post("/v1/completions", dict(body, max_tokens=0))
    assert [c["text"] for c in r["choices"]] == ["", ""], r
    assert r["usage"]["completion_tokens"] == 0 and r["choices"][0]["finish_reason"] == "length"
    r = s.post("/v1/completions", dict(body, max_tokens=1))
    assert r["usage"]["completion_tokens"] == 2, r
    assert r["choices"][0]["text"] == cli_beams(PROMPTS[0], 3, 1), r


def test_beam_search_client_leaves(s):
    """A client that leaves during a long beam search ends it: /metrics shows the search
    running, then, once the client has gone, not running and every slot free, with the request
    logged as abandoned (499) and never answered; the next search is served."""
    key = 'llamaserve_requests_total{route="/v1/completions",status="499"}'
    running = "llamaserve_beam_searches_running"
    before = s.metrics().get(key, 0)
    long = json.dumps({"prompt": PROMPTS[0], "max_tokens": 240, "use_beam_search": True,
                       "best_of": 16, "ignore_eos": True}).encode()
    sock, _ = raw_http(s.port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       b"application/json\r\nContent-Length: " + str(len(long)).encode() +
                       b"\r\n\r\n" + long)
    s.wait_metrics(lambda m: m.get(running) == 1 and m.get("llamaserve_slots_busy") == 16,
                   "the beam search running in 16 slots")
    sock.close()
    s.wait_metrics(lambda m: m.get(running) == 0 and m.get(key, 0) >= before + 1 and
                   m.get("llamaserve_slots_busy") == 0,
                   "the abandoned beam search ended, counted, its slots free")
    r = s.post("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 2, "use_beam_search": True,
                                   "best_of": 2})
    assert r["choices"][0]["text"], r


def main():
    runner = Runner("test_server_beam")
    run_with_server(runner, [test_beams_beside_requests, test_stop_in_beam,
                             test_max_tokens_zero_and_one, test_beam_search_client_leaves],
                    "--parallel", "16", "--kv-type", "f32", "--ctx-size", "256")
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
