"""test_server_openai: OpenAI behaviours beyond the basic shapes (issue 12), black-box against
`llamaserve serve` with the KJV demo model: logprobs that end where a stop string cut the text,
several prompts in one request, unsupported values refused with a 400 naming the field, and
system_fingerprint. Exits non-zero and names what failed.
"""
import json
import os
import re
import sys

from server_harness import MODELS, Runner, Server, check_error, run_with_server

PROMPT = "In the beginning God"


def greedy(prompt=PROMPT, **kw):
    body = {"prompt": prompt, "max_tokens": 24, "temperature": 0}
    body.update(kw)
    return body


def chat_body(**kw):
    body = {"messages": [{"role": "user", "content": "Who made the heaven?"}], "max_tokens": 24,
            "temperature": 0}
    body.update(kw)
    return body


# --- logprobs and stop strings ---

def legacy_tokens_match(lp, text, base=0):
    """The legacy logprobs of a completion: the tokens join to its text and each text_offset is
    where its token begins."""
    assert "".join(lp["tokens"]) == text, (lp["tokens"], text)
    off = base
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == \
        len(lp["text_offset"]), lp
    for tok, o in zip(lp["tokens"], lp["text_offset"]):
        assert o == off and (o < base + len(text.encode()) or not tok), (o, off, lp)
        off += len(tok.encode())


def stream_chunks_match(st, chat):
    """Each chunk's logprobs join to that chunk's text; the finish chunk carries none."""
    for e in st.json_events():
        for ch in e["choices"]:
            text = (ch["delta"].get("content") or "") if chat else ch["text"]
            lp = ch.get("logprobs")
            if ch["finish_reason"] is not None:
                assert lp is None and text == "", ("the finish chunk carries", ch)
                continue
            if lp is None:
                assert text == "", ("text without logprobs", ch)
                continue
            toks = [i["token"] for i in lp["content"]] if chat else lp["tokens"]
            assert "".join(toks) == text, (toks, text)


def stops_of(text):
    """Stop strings that cut text at several places: inside a token, on a token boundary, and
    at the very start; each paired with the text before it."""
    out = []
    for a in (1, 3, 7, 10, 15):
        if a + 3 <= len(text):
            stop = text[a:a + 3]
            out.append((stop, text[:text.find(stop)]))
    out.append((text[:2], ""))
    return out


def test_completion_logprobs_end_at_stop(s):
    body = greedy(logprobs=2)
    full = s.post("/v1/completions", body)["choices"][0]
    legacy_tokens_match(full["logprobs"], full["text"])
    assert len(full["text"]) > 18, full
    for stop, want in stops_of(full["text"]):
        c = s.post("/v1/completions", dict(body, stop=stop))["choices"][0]
        assert c["text"] == want and c["finish_reason"] == "stop", (stop, c)
        legacy_tokens_match(c["logprobs"], c["text"])
        # the kept tokens are the full run's, the last possibly cut short
        n = len(c["logprobs"]["tokens"])
        assert c["logprobs"]["token_logprobs"] == full["logprobs"]["token_logprobs"][:n], stop
        st = s.stream("/v1/completions", dict(body, stop=stop, stream=True))
        assert st.text() == want, (stop, st.text())
        stream_chunks_match(st, chat=False)
        toks = [t for e in st.json_events() for ch in e["choices"] if ch["logprobs"]
                for t in ch["logprobs"]["tokens"]]
        assert toks == c["logprobs"]["tokens"], (stop, toks, c["logprobs"]["tokens"])
    # echo: the offsets count the echoed prompt
    e = s.post("/v1/completions", dict(body, echo=True, stop=full["text"][5:8]))["choices"][0]
    legacy_tokens_match(e["logprobs"], e["text"][len(PROMPT):], base=len(PROMPT.encode()))


def test_chat_logprobs_end_at_stop(s):
    body = chat_body(logprobs=True, top_logprobs=1)
    full = s.post("/v1/chat/completions", body)["choices"][0]
    text = full["message"]["content"]
    assert len(text) > 18, full
    for stop, want in stops_of(text):
        c = s.post("/v1/chat/completions", dict(body, stop=stop))["choices"][0]
        assert c["message"]["content"] == want, (stop, c)
        content = c["logprobs"]["content"]
        assert "".join(i["token"] for i in content) == want, (stop, content)
        assert b"".join(bytes(i["bytes"]) for i in content) == want.encode(), (stop, content)
        st = s.stream("/v1/chat/completions", dict(body, stop=stop, stream=True))
        assert st.text(chat=True) == want, (stop, st.text(chat=True))
        stream_chunks_match(st, chat=True)
        toks = [i["token"] for e in st.json_events() for ch in e["choices"]
                if ch.get("logprobs") for i in ch["logprobs"]["content"]]
        assert toks == [i["token"] for i in content], (stop, toks)


# --- several prompts ---

PROMPTS = [PROMPT, "And the LORD said", "Thou shalt"]


def test_several_prompts(s):
    """One choice per prompt (n for each), index in order, each the same as its prompt alone;
    usage sums over the prompts. Streams carry each choice's index."""
    ids = s.tokenize(PROMPTS[2], add_special=True)
    for extra, n in (({"temperature": 0}, 1), ({"temperature": 0.9, "seed": 11}, 2)):
        prompts = [PROMPTS[0], PROMPTS[1]] if n == 2 else [PROMPTS[0], PROMPTS[1], ids]
        body = dict(extra, prompt=prompts, n=n, max_tokens=10, logprobs=1)
        r = s.post("/v1/completions", body)
        assert [c["index"] for c in r["choices"]] == list(range(len(prompts) * n)), r
        alone = [s.post("/v1/completions", dict(body, prompt=p)) for p in prompts]
        want = [c for a in alone for c in a["choices"]]
        for got, w in zip(r["choices"], want):
            assert (got["text"], got["finish_reason"]) == (w["text"], w["finish_reason"]), \
                (got, w)
            assert got["logprobs"]["tokens"] == w["logprobs"]["tokens"], (got, w)
        for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
            assert r["usage"][k] == sum(a["usage"][k] for a in alone), (k, r["usage"])
        st = s.stream("/v1/completions", dict(body, stream=True,
                                              stream_options={"include_usage": True}))
        assert st.status == 200 and st.events[-1] == "[DONE]", st.events[-3:]
        for i, w in enumerate(want):
            assert st.text(i) == w["text"], (i, st.text(i), w["text"])
            assert st.finish_reasons(i) == [w["finish_reason"]], i
        assert {k: st.usage()[k] for k in ("prompt_tokens", "completion_tokens")} == \
            {k: r["usage"][k] for k in ("prompt_tokens", "completion_tokens")}, st.usage()
    # echo: each choice echoes its own prompt
    e = s.post("/v1/completions", {"prompt": PROMPTS[:2], "max_tokens": 3, "temperature": 0,
                                   "echo": True})
    for c, p in zip(e["choices"], PROMPTS[:2]):
        assert c["text"].startswith(p) and len(c["text"]) > len(p), (c, p)


def test_several_prompts_refused(s):
    """More choices than slots, a too long prompt among several, beam search over several, an
    empty or malformed item: 400s naming prompt."""
    long_ids = [1] + [400] * 300
    for body, code in (({"prompt": PROMPTS, "n": 2}, None),
                       ({"prompt": ["a"] * 5}, None),
                       ({"prompt": ["a", long_ids]}, "context_length_exceeded"),
                       ({"prompt": PROMPTS[:2], "use_beam_search": True, "best_of": 2}, None),
                       ({"prompt": ["a", []]}, None),
                       ({"prompt": ["a", 5]}, None),
                       ({"prompt": ["a", ["b"]]}, None),
                       ({"prompt": []}, None)):
        st, obj, _ = s.json("POST", "/v1/completions", dict(body, max_tokens=2))
        check_error(st, obj, 400, param="prompt", code=code, what=str(body)[:60])
    # still serving, every slot free
    r = s.post("/v1/completions", {"prompt": PROMPTS + ["x"], "max_tokens": 2})
    assert len(r["choices"]) == 4, r


# --- unsupported values ---

C, CH = "/v1/completions", "/v1/chat/completions"
BOTH = (C, CH)
BEAM = {"use_beam_search": True, "best_of": 2}
FUNC = [{"name": "f", "parameters": {"type": "object"}}]
# (extra fields, the param the 400 names, routes)
BAD_VALUES = [
    ({"response_format": {"type": "sound"}}, "response_format.type", BOTH),
    ({"response_format": {"type": 5}}, "response_format.type", BOTH),
    ({"response_format": "json"}, "response_format", BOTH),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", BOTH),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "schema": {"type": "object"}, "strict": "yes"}}}, "response_format.json_schema.strict",
     BOTH),
    ({"best_of": 3}, "best_of", BOTH),
    ({"length_penalty": 0.5}, "length_penalty", BOTH),
    (dict(BEAM, temperature=0.7), "temperature", BOTH),
    (dict(BEAM, top_p=0.5), "top_p", BOTH),
    (dict(BEAM, top_k=5), "top_k", BOTH),
    (dict(BEAM, min_p=0.1), "min_p", BOTH),
    (dict(BEAM, presence_penalty=1), "presence_penalty", BOTH),
    (dict(BEAM, frequency_penalty=1), "frequency_penalty", BOTH),
    (dict(BEAM, repeat_penalty=1.3), "repeat_penalty", BOTH),
    (dict(BEAM, logit_bias={"5": 3}), "logit_bias", BOTH),
    (dict(BEAM, logprobs=1), "logprobs", (C,)),
    (dict(BEAM, logprobs=True), "logprobs", (CH,)),
    (dict(BEAM, best_of=1, n=2), "best_of", BOTH),
    ({"suffix": "Amen."}, "suffix", (C,)),
    ({"functions": FUNC}, "functions", (CH,)),
    ({"function_call": "auto"}, "function_call", (CH,)),
    ({"modalities": ["text", "audio"]}, "modalities", (CH,)),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", (CH,)),
    ({"tool_choice": "required"}, "tool_choice", (CH,)),
    ({"temperature": 3}, "temperature", BOTH),
    ({"top_p": "x"}, "top_p", BOTH),
    ({"top_k": -1}, "top_k", BOTH),
    ({"min_p": 2}, "min_p", BOTH),
    ({"presence_penalty": 3}, "presence_penalty", BOTH),
    ({"frequency_penalty": -3}, "frequency_penalty", BOTH),
    ({"repeat_penalty": 0}, "repeat_penalty", BOTH),
    ({"n": 0}, "n", BOTH),
    ({"n": 5}, "n", BOTH),
    ({"max_tokens": -1}, "max_tokens", BOTH),
    ({"stop": 5}, "stop", BOTH),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", BOTH),
    ({"stop": [""]}, "stop", BOTH),
    ({"logit_bias": {"x": 1}}, "logit_bias", BOTH),
    ({"logit_bias": {"5": 101}}, "logit_bias", BOTH),
    ({"seed": 1.5}, "seed", BOTH),
    ({"stream": "yes"}, "stream", BOTH),
    ({"stream_options": 1}, "stream_options", BOTH),
    ({"stream_options": {"include_usage": 1}}, "include_usage", BOTH),
    ({"ignore_eos": 1}, "ignore_eos", BOTH),
    ({"cache_prompt": "no"}, "cache_prompt", BOTH),
    ({"model": 5}, "model", BOTH),
    ({"user": 5}, "user", BOTH),
    ({"grammar": 5}, "grammar", BOTH),
    ({"json_schema": {"type": "string", "format": "email"}}, "json_schema", BOTH),
    ({"logprobs": 6}, "logprobs", (C,)),
    ({"echo": "yes"}, "echo", (C,)),
    ({"suffix": 5}, "suffix", (C,)),
    ({"prompt": 5}, "prompt", (C,)),
    ({"logprobs": 1}, "logprobs", (CH,)),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", (CH,)),
    ({"top_logprobs": 2}, "top_logprobs", (CH,)),
    ({"max_completion_tokens": -1}, "max_completion_tokens", (CH,)),
    ({"messages": "hi"}, "messages", (CH,)),
]
# values that ask for nothing we lack: accepted
GOOD_VALUES = [
    ({"response_format": {"type": "text"}}, BOTH),
    ({"response_format": {"type": "json_object"}}, BOTH),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "n", "strict": True, "schema": {"type": "object", "properties": {
            "a": {"type": "integer"}}, "required": ["a"]}}}}, BOTH),
    ({"best_of": 1}, BOTH),
    ({"length_penalty": 1}, BOTH),
    (dict(BEAM, temperature=0, seed=3, length_penalty=0.5), BOTH),
    ({"suffix": ""}, (C,)),
    ({"function_call": "none", "modalities": ["text"]}, (CH,)),
]


def test_unsupported_values_refused(s):
    base = {C: {"prompt": "a", "max_tokens": 4}, CH: {
        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}}
    for extra, param, routes in BAD_VALUES:
        for route in routes:
            st, obj, _ = s.json("POST", route, dict(base[route], **extra))
            check_error(st, obj, 400, param=param, what="%s %s" % (route, extra))
    for extra, routes in GOOD_VALUES:
        for route in routes:
            r = s.post(route, dict(base[route], **extra))
            assert r["choices"][0]["finish_reason"] in ("stop", "length"), (route, extra, r)
    # json_object still constrains: the text is a JSON object
    r = s.post(CH, dict(base[CH], max_tokens=60, seed=2, temperature=1,
                        response_format={"type": "json_object"}))
    c = r["choices"][0]
    if c["finish_reason"] == "stop":
        assert isinstance(json.loads(c["message"]["content"]), dict), c
    else:
        assert c["message"]["content"].lstrip().startswith("{"), c


# --- system_fingerprint ---

FP = re.compile(r"^fp_[0-9a-f]{16}$")


def fingerprints(s):
    """The system_fingerprint of every response and stream chunk of both routes: one value."""
    seen = set()
    for route, body in ((C, greedy(max_tokens=3)), (CH, chat_body(max_tokens=3))):
        seen.add(s.post(route, body)["system_fingerprint"])
        st = s.stream(route, dict(body, stream=True, stream_options={"include_usage": True}))
        evs = st.json_events()
        assert evs and all("system_fingerprint" in e for e in evs), evs
        seen |= {e["system_fingerprint"] for e in evs}
    assert len(seen) == 1 and FP.match(next(iter(seen))), seen
    return seen.pop()


def test_system_fingerprint(s):
    """On every response and chunk; the same after a restart with the same file; another for
    another model file."""
    fp = fingerprints(s)
    with Server("--parallel", "1") as again:
        assert fingerprints(again) == fp, "a restart changed the fingerprint"
    with Server("--parallel", "1", model=os.path.join(MODELS, "kjv-demo-f16.gguf")) as other:
        assert fingerprints(other) != fp, "another model file, the same fingerprint"


def main():
    runner = Runner("test_server_openai")
    run_with_server(runner, [
        test_completion_logprobs_end_at_stop, test_chat_logprobs_end_at_stop,
        test_several_prompts, test_several_prompts_refused, test_unsupported_values_refused,
        test_system_fingerprint,
    ], "--parallel", "4", "--seed", "-1")
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
