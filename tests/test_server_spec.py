"""test_server_spec: speculative decoding (prompt lookup) in `llamaserve serve`, as a black box.

A decoding slot feeds draft tokens after its last one in the same batched step and keeps those
the model's own sampling agrees with. What must hold: the output (text, finish reason and every
log-probability, to the last bit of the JSON) is the same as with "speculative": {"n_max": 0},
greedy and seeded alike, alone and with other requests in the batch, with stop strings and
max_tokens that end a choice in the middle of a draft, with a grammar, with n > 1; the prompt
cache stays right after rejected drafts; /metrics counts drafted and accepted tokens, and drafts
really are accepted on text that repeats; bad "speculative" fields are 400s; --spec-ngram 0
turns the default off. With --model-draft (a small model with the same vocabulary drafting
greedily, here the Q4_0 copy of the demo model): the same output, its drafts accepted, the
prompt cache right; a model with another vocabulary is refused at startup.
"""
import os
import subprocess
import sys
import threading

from server_harness import BIN, MODEL, MODELS, Runner, Server, check_error, run_with_server

C = "/v1/completions"
# Greedy continuations of these fall into loops that copy the text before them (the demo model
# does that), so most drafts are accepted; the last one already holds the loop it continues.
PROMPTS = ["And he said", "The sons of", "In the beginning", "Blessed are the",
           "And he said unto them, What shall ye do? And he said unto them, What shall ye do? "
           "And he said"]


def comp(prompt, n_max, **kw):
    body = {"prompt": prompt, "max_tokens": 120, "temperature": 0, "logprobs": 2,
            "speculative": {"n_max": n_max}}
    body.update(kw)
    return body


def output(r):
    return [(c["text"], c["finish_reason"], c["logprobs"]) for c in r["choices"]]


def spec_counts(s):
    m = s.metrics()
    return (m["llamaserve_spec_draft_tokens_total"], m["llamaserve_spec_accepted_tokens_total"])


def same_with_and_without(s, prompt, **kw):
    plain = s.post(C, comp(prompt, 0, **kw))
    for n_max in (1, 8, 32):
        spec = s.post(C, comp(prompt, n_max, **kw))
        assert output(spec) == output(plain), (prompt, kw, n_max, output(spec), output(plain))
        counts = [(r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"])
                  for r in (spec, plain)]  # cached_tokens depends on what ran before
        assert counts[0] == counts[1], counts
    return plain


def test_greedy_identical_and_accepted(s):
    d0, a0 = spec_counts(s)
    for p in PROMPTS:
        same_with_and_without(s, p)
    d1, a1 = spec_counts(s)
    drafted, accepted = d1 - d0, a1 - a0
    # the loops are copied: most drafts are accepted (speculation really ran)
    assert drafted > 200 and accepted > drafted // 2, (drafted, accepted)


def test_timings_report_drafts(s):
    # llama.cpp's timings carry draft_n and draft_n_accepted once anything was drafted
    r = s.post(C, comp(PROMPTS[-1], 8, timings_per_token=True))
    t = r["timings"]
    assert t["draft_n"] > 0 and 0 < t["draft_n_accepted"] <= t["draft_n"], t
    t = s.post(C, comp(PROMPTS[-1], 0, timings_per_token=True))["timings"]
    assert "draft_n" not in t and "draft_n_accepted" not in t, t


def test_plain_requests_draft_nothing(s):
    d0, _ = spec_counts(s)
    s.post(C, comp(PROMPTS[0], 0))
    assert spec_counts(s)[0] == d0


def test_seeded_sampling_identical(s):
    """Each token is drawn once from the request's RNG whether or not it was drafted."""
    for seed in (1, 2, 3):
        for kw in ({"temperature": 0.9, "top_k": 40}, {"temperature": 0.7, "top_p": 0.9},
                   {"temperature": 0.5, "min_p": 0.05, "repeat_penalty": 1.1,
                    "presence_penalty": 0.3}):
            same_with_and_without(s, PROMPTS[seed], seed=seed, **kw)


def test_n_choices_identical(s):
    same_with_and_without(s, PROMPTS[0], n=2, seed=9, temperature=0.4)


def test_stop_and_max_tokens_mid_draft(s):
    """A stop string or max_tokens ends a choice wherever it falls, drafts or not."""
    for stop in ("do? And", "unto them, W", "Israel", ","):
        same_with_and_without(s, PROMPTS[4], stop=stop)
    for max_tokens in (1, 2, 3, 5, 9, 17, 33):
        r = same_with_and_without(s, PROMPTS[4], max_tokens=max_tokens)
        assert r["usage"]["completion_tokens"] == max_tokens, r["usage"]


def test_grammar_identical(s):
    grammar = 'root ::= ("And he said" | " unto them" | ", What shall ye do?" | " the LORD")+'
    r = same_with_and_without(s, PROMPTS[4], grammar=grammar, max_tokens=60)
    assert r["choices"][0]["text"], r


def test_stream_identical(s):
    plain = s.stream(C, comp(PROMPTS[1], 0, stream=True))
    spec = s.stream(C, comp(PROMPTS[1], 8, stream=True))
    assert spec.text() == plain.text() and spec.finish_reasons() == plain.finish_reasons()


def test_batched_identical(s):
    """Three requests at once (one still prefilling while others decode with drafts) answer
    what each answers alone without drafts."""
    long_prompt = " ".join(PROMPTS) * 2
    jobs = [comp(PROMPTS[4], 8), comp(PROMPTS[1], 8, seed=4, temperature=0.8),
            comp(long_prompt, 8, max_tokens=40)]
    want = [output(s.post(C, dict(b, speculative={"n_max": 0}))) for b in jobs]
    for _ in range(2):
        got, errs = [None] * len(jobs), []

        def run(i):
            try:
                got[i] = output(s.post(C, jobs[i]))
            except Exception as ex:  # noqa: BLE001 - reported below
                errs.append(ex)

        ts = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errs, errs
        assert got == want, (got, want)


def test_prompt_cache_after_rejected_drafts(s):
    """On one slot: a request ends on a stop string whose token rejected a draft (the draft's
    KV entries were computed, the stop token is the sequence's); the next prompt continues
    through that token and reuses the slot's cache. Its answer must equal the answer computed
    from scratch: a KV cache that kept the rejected draft's entries answers differently. Then
    prompts that extend, repeat and cut the earlier ones, the same way."""
    texts = []
    for p in PROMPTS:
        for stop in ("shall", "LORD", "son", ",", "the"):
            r = s.post(C, comp(p, 8, max_tokens=60, stop=stop))
            # the slot's cache holds only the sequence's tokens (at most prompt and output);
            # the gauge is updated when the step that ended the request is complete
            most = r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]
            s.wait_metrics(lambda m: m["llamaserve_kv_cache_tokens"] <= most,
                           "KV cache of at most %d tokens" % most, limit_s=30)
            if r["choices"][0]["finish_reason"] != "stop":
                continue
            text = p + r["choices"][0]["text"] + stop
            texts.append(text)
            for seeded in ({}, {"temperature": 0.9, "seed": 5}):
                warm = s.post(C, comp(text, 8, max_tokens=20, **seeded))
                cold = s.post(C, comp(text, 0, max_tokens=20, cache_prompt=False, **seeded))
                assert output(warm) == output(cold), (text, seeded, output(warm), output(cold))
                assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] > 0, warm["usage"]
    assert len(texts) >= 10, texts
    for p in texts[::3] + [t[: len(t) // 2] for t in texts[::3]]:
        warm = s.post(C, comp(p, 8, max_tokens=20))
        cold = s.post(C, comp(p, 0, max_tokens=20, cache_prompt=False))
        assert output(warm) == output(cold), (p, output(warm), output(cold))


def test_bad_fields(s):
    bad = [("speculative", 8), ("speculative", [8]), ("speculative", {"p_min": 0.5}),
           ("speculative", {"n_max": 4, "model": "x"}), ("speculative", {"n_max": 33}),
           ("speculative", {"n_max": -1}), ("speculative", {"n_max": 2.5}),
           ("speculative", {"n_max": 2, "n_min": 3})]
    for key, value in bad:
        st, obj, _ = s.json("POST", C, {"prompt": "And", key: value})
        check_error(st, obj, 400, what="%s=%r" % (key, value))
        assert obj["error"]["param"] in ("speculative", "n_max", "n_min"), obj
    st, obj, _ = s.json("POST", C, {"prompt": "And", "max_tokens": 3, "speculative": None})
    assert st == 200, obj


def test_default_off(s):
    """--spec-ngram 0: requests that do not ask draft nothing; one that asks does."""
    d0, _ = spec_counts(s)
    r = s.post(C, {"prompt": PROMPTS[4], "max_tokens": 60, "temperature": 0})
    assert spec_counts(s)[0] == d0
    on = s.post(C, {"prompt": PROMPTS[4], "max_tokens": 60, "temperature": 0,
                    "speculative": {"n_max": 8, "n_min": 2}})
    assert spec_counts(s)[0] > d0, (d0, spec_counts(s))
    assert output(on) == output(r), (output(on), output(r))


def test_draft_model(s):
    """The Q4_0 demo model drafts for the F32 one: every answer equals plain decoding's, its
    drafts are accepted, and prompts that reuse a slot's cache (the draft model's cache is cut
    with it) answer as from scratch."""
    d0, a0 = spec_counts(s)
    for p in PROMPTS[:4]:
        same_with_and_without(s, p, max_tokens=60)
        same_with_and_without(s, p, max_tokens=40, temperature=0.8, seed=3)
    d1, a1 = spec_counts(s)
    assert d1 - d0 > 100 and a1 - a0 > (d1 - d0) // 3, (d1 - d0, a1 - a0)
    for p in PROMPTS[:3]:
        r = s.post(C, comp(p, 8, max_tokens=30, stop="the"))
        text = p + r["choices"][0]["text"]
        for q in (text, text + " the LORD", p):
            warm = s.post(C, comp(q, 8, max_tokens=20))
            cold = s.post(C, comp(q, 0, max_tokens=20, cache_prompt=False))
            assert output(warm) == output(cold), (q, output(warm), output(cold))


def test_draft_model_other_vocabulary():
    """A draft model with another vocabulary (stories260K: 512 tokens) ends startup with a
    message that says so, and a non-zero exit."""
    draft = os.path.join(MODELS, "stories260K.bin")
    p = subprocess.run([BIN, "serve", "-m", MODEL, "--model-draft", draft, "--port", "0"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0, p
    assert "--model-draft" in p.stderr and "same vocabulary" in p.stderr, p.stderr


def main():
    runner = Runner("test_server_spec")
    run_with_server(runner, [test_greedy_identical_and_accepted, test_timings_report_drafts,
                             test_plain_requests_draft_nothing,
                             test_seeded_sampling_identical, test_n_choices_identical,
                             test_stop_and_max_tokens_mid_draft, test_grammar_identical,
                             test_stream_identical, test_batched_identical, test_bad_fields],
                    "--parallel", "3")
    run_with_server(runner, [test_prompt_cache_after_rejected_drafts], "--parallel", "1")
    run_with_server(runner, [test_default_off], "--spec-ngram", "0")
    run_with_server(runner, [test_draft_model], "--parallel", "1", "--model-draft",
                    os.path.join(MODELS, "kjv-demo-q4_0.gguf"))
    runner.run(test_draft_model_other_vocabulary)
    runner.finish()


if __name__ == "__main__":
    main()
