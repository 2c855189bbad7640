"""test_server_batch: `serve` with small --batch-size values, as a black box.

A forward step holds the decoding rows of the busy slots plus a prefill chunk of at least a few
rows, whatever --batch-size says; the scheduler's row buffers must hold the largest step it can
build. With --batch-size 1..6 and a prompt longer than the batch, a step used to write past
them (a heap overflow that ASan reports, and that corrupts the heap in a release build). What
must hold: every small batch size answers, and answers exactly what the default batch size
answers (text and log-probabilities, to the last bit of the JSON), alone and with a second
request decoding beside a prefill; the server exits cleanly afterwards. The same holds for any
--prefill-step-pct (the per-step time budget that sizes the prefill chunk beside decoding rows:
0 = the whole batch, 101 = 4 rows, the least).
"""
import sys
import threading

from server_harness import Runner, Server

PROMPT = ("And God said, Let there be light: and there was light. And God saw the light, "
          "that it was good: and God divided the light from the darkness.")
OTHER = "In the beginning God created the heaven and the earth."


def comp(prompt, **kw):
    body = {"prompt": prompt, "max_tokens": 8, "temperature": 0, "logprobs": 2}
    body.update(kw)
    return body


def output(r):
    return [(c["text"], c["finish_reason"], c["logprobs"]) for c in r["choices"]]


def answers(s):
    """The long prompt alone, then the long prompt and a second one in flight together (one
    slot decodes while the other prefills), greedy and seeded."""
    out = [output(s.post("/v1/completions", comp(PROMPT))),
           output(s.post("/v1/completions", comp(PROMPT, temperature=0.9, seed=5, top_k=40)))]
    res, errs = {}, []

    def run(key, body):
        try:
            res[key] = output(s.post("/v1/completions", body))
        except Exception as ex:  # noqa: BLE001 - reported below
            errs.append(ex)

    ts = [threading.Thread(target=run, args=("a", comp(OTHER, max_tokens=24))),
          threading.Thread(target=run, args=("b", comp(PROMPT)))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs, errs
    out += [res["a"], res["b"]]
    return out


def main():
    runner = Runner("test_server_batch")
    with Server("--parallel", "2") as s:
        n_prompt = len(s.tokenize(PROMPT))
        ref = answers(s)
    assert n_prompt > 20, n_prompt

    def small_batch(parallel, b, *more):
        def test(_=None):
            srv = Server("--parallel", parallel, "--batch-size", b, *more)
            try:
                got = answers(srv)
                assert srv.alive(), "server died"
            except BaseException as ex:
                srv.kill()
                raise AssertionError("%s; server stderr:\n%s" % (ex, srv.tail()))
            srv.stop()  # a sanitizer report or a bad exit status fails here
            assert got == ref, "batch size %d: %s\nwant %s" % (b, got, ref)
        test.__name__ = "parallel_%d_batch_size_%d%s" % (parallel, b, "_".join(("",) + more))
        return test

    runner.run(small_batch(1, 1))
    for b in range(1, 7):
        runner.run(small_batch(2, b))
    for pct in ("0", "101", "10000"):
        runner.run(small_batch(2, 64, "--prefill-step-pct", pct))
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
