"""test_server_cache: the prompt cache of `llamaserve serve`, as a black box.

A slot's KV cache outlives its request; a new prompt goes to the free slot holding the longest
prefix of it and only the rest is computed. What must hold: the output (text and
log-probabilities, to the last bit of the JSON) is the same as from an empty cache, for greedy
and seeded sampling, for prompts that extend, repeat or diverge from what a slot holds;
usage.prompt_tokens_details.cached_tokens says how much was reused (the last prompt token is
always computed); "cache_prompt": false and --no-prompt-cache turn reuse off; /metrics counts
the reused tokens.
"""
import sys

from server_harness import Runner, Server, run_with_server

ALIAS = "kjv-cache"
BASE = "And God said, Let there be light: and there was light. And God saw the light"


def comp(prompt, **kw):
    body = {"model": ALIAS, "prompt": prompt, "max_tokens": 12, "temperature": 0,
            "logprobs": 2}
    body.update(kw)
    return body


def cached(r):
    return r["usage"]["prompt_tokens_details"]["cached_tokens"]


def output(r):
    """What must not depend on the cache: texts, finish reasons and every log-probability."""
    return [(c["text"], c["finish_reason"], c["logprobs"]) for c in r["choices"]]


def test_repeat_reuses_all_but_the_last_token(s):
    ids = s.tokenize(BASE)
    first = s.post("/v1/completions", comp(BASE))
    assert cached(first) == 0, first["usage"]  # a fresh server: every slot empty
    again = s.post("/v1/completions", comp(BASE))
    assert cached(again) == len(ids) - 1, (again["usage"], len(ids))
    assert output(again) == output(first), (output(again), output(first))


def test_same_output_with_and_without_cache(s):
    """Prompts (as token ids) that extend, repeat, shorten and diverge from each other, one
    after another so that each finds the previous ones cached: every answer equals the answer
    computed from an empty cache ("cache_prompt": false), bit for bit."""
    base = s.tokenize(BASE)
    other = s.tokenize("Moses spake unto the children of Israel, saying")[1:]
    prompts = [base, base + other, base[:6] + other, base + other[:3], base[:6] + other, base,
               base[:2], base + other + base[1:]]
    for seeded in (False, True):
        extra = {"temperature": 0.9, "seed": 11, "top_k": 40} if seeded else {}
        reused = 0
        for i, p in enumerate(prompts):
            warm = s.post("/v1/completions", comp(p, **extra))
            cold = s.post("/v1/completions", comp(p, cache_prompt=False, **extra))
            assert cached(cold) == 0, cold["usage"]
            assert output(warm) == output(cold), (seeded, i, output(warm), output(cold))
            assert cached(warm) < len(p), (warm["usage"], len(p))
            reused += cached(warm)
        # the first prompt of the seeded round repeats one of the greedy round: all of them
        # found something (the second round at least its BOS)
        assert reused > sum(len(p) for p in prompts) // 3, reused


def test_extension_reuses_the_prefix(s):
    """A prompt that extends an earlier one (the way a chat's next turn does) reuses at least
    the earlier prompt, whichever slot ran it."""
    base = s.tokenize("The LORD is my shepherd; I shall not want")
    s.post("/v1/completions", comp(base, max_tokens=4))
    longer = base + s.tokenize("He maketh me to lie down")[1:]
    r = s.post("/v1/completions", comp(longer))
    assert cached(r) >= len(base), (r["usage"], len(base))


def test_prompt_through_the_generated_tokens(s):
    """A slot's cache holds its prompt and its output except the last sampled token (never fed
    back). A prompt that continues through that token reuses up to it, not past it."""
    base = s.tokenize(BASE)
    r = s.post("/v1/completions", comp(base, max_tokens=6))
    text = r["choices"][0]["text"]
    assert text.startswith(" ") and r["usage"]["completion_tokens"] == 6, r
    gen = s.tokenize(text[1:])[1:]  # the dummy prefix stands for the leading space; no BOS
    assert len(gen) == 6, (text, gen)  # the generated ids, as this text tokenizes back to them
    p = base + gen + s.tokenize("and the darkness")[1:]
    warm = s.post("/v1/completions", comp(p))
    cold = s.post("/v1/completions", comp(p, cache_prompt=False))
    assert output(warm) == output(cold), (output(warm), output(cold))
    assert len(base) <= cached(warm) <= len(base) + 5, (warm["usage"], len(base))


def test_chat_next_turn(s):
    msgs = [{"role": "user", "content": "Who made the heaven and the earth?"}]
    r1 = s.post("/v1/chat/completions", {"model": ALIAS, "messages": msgs, "max_tokens": 16,
                                         "temperature": 0})
    msgs2 = msgs + [r1["choices"][0]["message"],
                    {"role": "user", "content": "And what did he say?"}]
    body2 = {"model": ALIAS, "messages": msgs2, "max_tokens": 16, "temperature": 0}
    r2 = s.post("/v1/chat/completions", body2)
    # the second prompt starts with the first one (the template only appends)
    assert cached(r2) >= r1["usage"]["prompt_tokens"] - 1, (r1["usage"], r2["usage"])
    cold = s.post("/v1/chat/completions", dict(body2, cache_prompt=False))
    assert r2["choices"][0]["message"] == cold["choices"][0]["message"], (r2, cold)


def test_streams_and_choices(s):
    """n = 2 takes two slots; the usage reports what both found. A stream reuses like the rest
    and streams the same text."""
    p = BASE + " that it was good"
    whole = s.post("/v1/completions", comp(p, n=2, temperature=0.8, seed=5))
    again = s.post("/v1/completions", comp(p, n=2, temperature=0.8, seed=5))
    assert output(again) == output(whole)
    st = s.stream("/v1/completions", comp(p, n=2, temperature=0.8, seed=5, stream=True,
                                          stream_options={"include_usage": True}))
    assert [st.text(0), st.text(1)] == [c["text"] for c in whole["choices"]]
    assert st.usage()["prompt_tokens_details"]["cached_tokens"] == len(s.tokenize(p)) - 1, \
        st.usage()


def test_bad_field_and_metrics(s):
    st, obj, _ = s.json("POST", "/v1/completions", comp(BASE, cache_prompt="yes"))
    assert st == 400 and obj["error"]["param"] == "cache_prompt", obj
    before = s.metrics().get("llamaserve_prompt_tokens_cached_total")
    assert before is not None, "no llamaserve_prompt_tokens_cached_total in /metrics"
    r = s.post("/v1/completions", comp(BASE))
    after = s.metrics()["llamaserve_prompt_tokens_cached_total"]
    assert after - before == cached(r) > 0, (before, after, r["usage"])


def test_server_flag_off(_):
    with Server("--parallel", "1", "--ctx-size", "256", "--no-prompt-cache",
                "--alias", ALIAS) as off:
        a = off.post("/v1/completions", comp(BASE))
        b = off.post("/v1/completions", comp(BASE))
        assert cached(a) == cached(b) == 0, (a["usage"], b["usage"])
        assert output(a) == output(b)


def main():
    runner = Runner("test_server_cache")
    run_with_server(runner, [test_repeat_reuses_all_but_the_last_token,
                             test_same_output_with_and_without_cache,
                             test_extension_reuses_the_prefix,
                             test_prompt_through_the_generated_tokens, test_chat_next_turn,
                             test_streams_and_choices, test_bad_field_and_metrics,
                             test_server_flag_off],
                    "--parallel", "3", "--ctx-size", "256", "--alias", ALIAS)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
