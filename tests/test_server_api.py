"""test_server_api: black-box tests of the OpenAI-compatible endpoints of `llamaserve serve`.

Starts the real binary (LS_BIN) on a free port with the KJV demo model and checks response
shapes, streaming against non-streaming output, usage counts, n > 1, logprobs, echo, stop
strings that span tokens, multi-byte characters in streams, /v1/models, /health, /metrics,
/tokenize and /detokenize. Exits non-zero and names what failed.
"""
import json
import re
import sys

from server_harness import Runner, Server, run_with_server

ALIAS = "kjv-test"
PROMPT = "In the beginning God"
FFFD = "\ufffd"


def greedy(prompt=PROMPT, **kw):
    body = {"model": ALIAS, "prompt": prompt, "max_tokens": 24, "temperature": 0}
    body.update(kw)
    return body


def chat_body(**kw):
    body = {"model": ALIAS, "messages": [{"role": "system", "content": "Answer briefly."},
                                         {"role": "user", "content": "Who made the heaven?"}],
            "max_tokens": 16, "temperature": 0}
    body.update(kw)
    return body


def check_completion_shape(r, n=1):
    assert set(r) == {"id", "object", "created", "model", "system_fingerprint", "choices",
                      "usage"}, sorted(r)
    assert r["id"].startswith("cmpl-") and len(r["id"]) > 5, r["id"]
    assert r["object"] == "text_completion", r["object"]
    assert isinstance(r["created"], int) and r["created"] > 1_600_000_000, r["created"]
    assert r["model"] == ALIAS, r["model"]
    assert [c["index"] for c in r["choices"]] == list(range(n)), r["choices"]
    for c in r["choices"]:
        assert set(c) == {"index", "text", "logprobs", "finish_reason"}, sorted(c)
        assert isinstance(c["text"], str)
        assert c["finish_reason"] in ("stop", "length"), c["finish_reason"]
    check_usage(r["usage"])


def check_usage(u):
    assert set(u) == {"prompt_tokens", "completion_tokens", "total_tokens",
                      "prompt_tokens_details"}, u
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
    # the prompt cache: what the slot already held; the last prompt token is always computed
    cached = u["prompt_tokens_details"]["cached_tokens"]
    assert set(u["prompt_tokens_details"]) == {"cached_tokens"}, u
    assert isinstance(cached, int) and 0 <= cached < max(u["prompt_tokens"], 1), u


def counts(u):
    """The usage without cached_tokens, which depends on what ran before."""
    return {k: u[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def check_stream_envelope(st, chat, n=1):
    assert st.status == 200, (st.status, st.body)
    assert st.headers.get("content-type", "").startswith("text/event-stream"), st.headers
    assert st.ended and st.error is None, "stream not terminated properly: %s" % st.error
    assert st.events and st.events[-1] == "[DONE]", "last event %r" % (st.events[-1:],)
    assert st.events.count("[DONE]") == 1
    evs = st.json_events()
    assert evs, "no events"
    ids = {e["id"] for e in evs}
    created = {e["created"] for e in evs}
    assert len(ids) == 1 and len(created) == 1, (ids, created)
    prefix, obj = ("chatcmpl-", "chat.completion.chunk") if chat else ("cmpl-", "text_completion")
    for e in evs:
        assert "error" not in e, e
        assert e["id"].startswith(prefix) and e["object"] == obj and e["model"] == ALIAS, e
    for i in range(n):
        fr = st.finish_reasons(i)
        assert len(fr) == 1 and fr[0] in ("stop", "length"), "choice %d finish %s" % (i, fr)
        # nothing of choice i after its finish_reason
        seen_finish = False
        for e in evs:
            for c in e["choices"]:
                if c["index"] != i:
                    continue
                assert not seen_finish, "choice %d has an event after its finish: %s" % (i, e)
                seen_finish = c["finish_reason"] is not None
    if chat:
        first = [e for e in evs if e["choices"]][0]["choices"][0]
        assert first["delta"].get("role") == "assistant", first


# --- plain endpoints ---

def test_health(s):
    st, obj, hd = s.json("GET", "/health")
    assert st == 200 and obj == {"status": "ok"}, (st, obj)
    assert hd.get("content-type", "").startswith("application/json"), hd


def test_models(s):
    st, obj, _ = s.json("GET", "/v1/models")
    assert st == 200, st
    assert obj["object"] == "list" and len(obj["data"]) == 1, obj
    m = obj["data"][0]
    assert m["id"] == ALIAS and m["object"] == "model", m
    assert isinstance(m["created"], int) and isinstance(m["owned_by"], str), m


def test_any_model_name_answers_with_served_id(s):
    for name in ("gpt-4o", "", "something/else", ALIAS):
        r = s.post("/v1/completions", greedy(model=name, max_tokens=2))
        assert r["model"] == ALIAS, (name, r["model"])
    body = greedy(max_tokens=2)
    del body["model"]
    assert s.post("/v1/completions", body)["model"] == ALIAS


def test_tokenize_detokenize(s):
    ids = s.tokenize(PROMPT, add_special=True)
    plain = s.tokenize(PROMPT, add_special=False)
    assert ids[0] == 1 and ids[1:] == plain, (ids, plain)
    assert 1 not in plain
    for text in (PROMPT, "And the earth was without form, and void.", "naïve — ok ✓"):
        toks = s.tokenize(text, add_special=False)
        assert all(isinstance(t, int) for t in toks), toks
        back = s.post("/detokenize", {"tokens": toks})["content"]
        assert back == text, (text, back)
    # KJV byte tokens: id = byte + 3; an em dash is three of them
    assert s.tokenize("—", add_special=False)[-3:] == [0xE2 + 3, 0x80 + 3, 0x94 + 3]
    assert s.post("/detokenize", {"tokens": []})["content"] == ""


def test_metrics_format(s):
    before = s.metrics()
    r = s.post("/v1/completions", greedy(max_tokens=5))
    gen = r["usage"]["completion_tokens"]
    key = 'llamaserve_requests_total{route="/v1/completions",status="200"}'
    # the counters are updated as the request completes: poll until they show it
    after = s.wait_metrics(lambda m: m.get(key, 0) >= before.get(key, 0) + 1 and
                           m["llamaserve_generated_tokens_total"] >=
                           before["llamaserve_generated_tokens_total"] + gen,
                           "the completion counted")
    assert after["llamaserve_prompt_tokens_total"] >= before["llamaserve_prompt_tokens_total"] + \
        r["usage"]["prompt_tokens"], (before, after)
    for name in ("llamaserve_slots_busy", "llamaserve_queue_depth", "llamaserve_slots_total",
                 "llamaserve_prompt_tokens_total", "llamaserve_generated_tokens_total",
                 "llamaserve_kv_cache_tokens", "llamaserve_kv_cache_capacity_tokens"):
        assert name in after, name
    assert after["llamaserve_slots_total"] == 4
    # the finished request's prompt and output stay cached (the prompt cache), within capacity
    kv, cap = after["llamaserve_kv_cache_tokens"], after["llamaserve_kv_cache_capacity_tokens"]
    assert r["usage"]["prompt_tokens"] <= kv <= cap and cap % 4 == 0, (kv, cap)
    st, hd, data = s.request("GET", "/metrics")
    assert hd.get("content-type", "").startswith("text/plain"), hd
    text = data.decode()
    for h in ("llamaserve_time_to_first_token_seconds", "llamaserve_inter_token_latency_seconds",
              "llamaserve_request_duration_seconds"):
        assert "# TYPE %s histogram" % h in text, h
        buckets = [(k, v) for k, v in after.items() if k.startswith(h + "_bucket{")]
        assert buckets and buckets[-1][0].endswith('le="+Inf"}'), buckets
        vals = [v for _, v in buckets]
        assert vals == sorted(vals), "buckets not cumulative: %s" % buckets
        assert vals[-1] == after[h + "_count"], (vals[-1], after[h + "_count"])
        assert after[h + "_count"] >= 1
    # the scheduler's steps by kind: this request's prompt went in alone (a prefill step), its
    # later tokens came from decode steps; each kind's buckets are cumulative up to its count
    assert "# TYPE llamaserve_step_seconds histogram" in text
    assert "# TYPE llamaserve_step_rows_total counter" in text
    for kind in ("decode", "mixed", "prefill"):
        count = 'llamaserve_step_seconds_count{kind="%s"}' % kind
        buckets = [v for k, v in after.items()
                   if k.startswith('llamaserve_step_seconds_bucket{kind="%s",' % kind)]
        assert len(buckets) >= 2 and buckets == sorted(buckets), (kind, buckets)
        assert buckets[-1] == after[count], (kind, buckets, after[count])
    step = lambda m, kind: m.get('llamaserve_step_seconds_count{kind="%s"}' % kind, 0)
    rows = lambda m, kind, r: m.get('llamaserve_step_rows_total{kind="%s",rows="%s"}' % (kind, r),
                                    0)
    assert gen >= 2, r["usage"]
    assert step(after, "prefill") >= step(before, "prefill") + 1, (before, after)
    assert step(after, "decode") >= step(before, "decode") + 1, (before, after)
    assert rows(after, "prefill", "prompt") >= rows(before, "prefill", "prompt") + 1
    assert rows(after, "decode", "decode") >= rows(before, "decode", "decode") + 1
    assert rows(after, "prefill", "decode") == 0 and rows(after, "decode", "prompt") == 0
    # every sample's family has a TYPE line
    types = set(re.findall(r"^# TYPE (\S+) (counter|gauge|histogram)$", text, re.M))
    fams = {t[0] for t in types}
    for k in after:
        base = re.sub(r"\{.*", "", k)
        base = re.sub(r"_(bucket|sum|count)$", "", base) if base not in fams else base
        assert base in fams, "no TYPE for %s" % k


# --- completions ---

def test_completion_greedy_shape_and_usage(s):
    r = s.post("/v1/completions", greedy())
    check_completion_shape(r)
    c = r["choices"][0]
    assert c["logprobs"] is None
    assert r["usage"]["prompt_tokens"] == len(s.tokenize(PROMPT, add_special=True)), r["usage"]
    if c["finish_reason"] == "length":
        assert r["usage"]["completion_tokens"] == 24, r["usage"]
    assert c["text"], "empty greedy continuation"
    again = s.post("/v1/completions", greedy())
    assert again["choices"][0]["text"] == c["text"], "greedy is not deterministic"
    assert again["id"] != r["id"], "ids repeat"


def test_completion_stream_matches(s):
    for extra in ({}, {"temperature": 0.9, "seed": 1234}, {"temperature": 0.7, "top_p": 0.9,
                                                          "top_k": 40, "seed": 7}):
        body = greedy(**extra)
        whole = s.post("/v1/completions", body)
        st = s.stream("/v1/completions", dict(body, stream=True,
                                              stream_options={"include_usage": True}))
        check_stream_envelope(st, chat=False)
        assert st.text() == whole["choices"][0]["text"], (extra, st.text(), whole)
        assert st.finish_reasons() == [whole["choices"][0]["finish_reason"]]
        # include_usage: a last chunk with choices [] and the usage; the others carry null
        evs = st.json_events()
        assert evs[-1]["choices"] == [] and counts(evs[-1]["usage"]) == counts(whole["usage"]), \
            evs[-1]
        assert all("usage" in e and e["usage"] is None for e in evs[:-1]), evs[0]
        # without stream_options no usage key at all
        plain = s.stream("/v1/completions", dict(body, stream=True))
        check_stream_envelope(plain, chat=False)
        assert plain.text() == whole["choices"][0]["text"]
        assert all("usage" not in e for e in plain.json_events())
        for e in plain.json_events():
            assert set(e["choices"][0]) == {"index", "text", "logprobs", "finish_reason"}, e


def test_seeded_sampling_reproducible(s):
    body = greedy(temperature=0.9, seed=99, max_tokens=16)
    a = s.post("/v1/completions", body)["choices"][0]["text"]
    b = s.post("/v1/completions", body)["choices"][0]["text"]
    assert a == b, (a, b)


def test_prompt_forms(s):
    text = s.post("/v1/completions", greedy(max_tokens=8))["choices"][0]["text"]
    ids = s.tokenize(PROMPT, add_special=True)
    for p in ([PROMPT], ids, [ids]):
        r = s.post("/v1/completions", greedy(prompt=p, max_tokens=8))
        assert r["choices"][0]["text"] == text, (p, r)
        assert r["usage"]["prompt_tokens"] == len(ids), r["usage"]


def test_max_tokens_zero_and_one(s):
    r = s.post("/v1/completions", greedy(max_tokens=0))
    check_completion_shape(r)
    assert r["usage"]["completion_tokens"] == 0 and r["choices"][0]["text"] == "", r
    r = s.post("/v1/completions", greedy(max_tokens=1))
    assert r["usage"]["completion_tokens"] == 1, r
    st = s.stream("/v1/completions", greedy(max_tokens=0, stream=True))
    check_stream_envelope(st, chat=False)
    assert st.text() == ""


def test_n_choices(s):
    body = greedy(n=3, temperature=0.9, seed=5, max_tokens=12)
    r = s.post("/v1/completions", body)
    check_completion_shape(r, n=3)
    if all(c["finish_reason"] == "length" for c in r["choices"]):
        assert r["usage"]["completion_tokens"] == 36, r["usage"]
    texts = [c["text"] for c in r["choices"]]
    assert len(set(texts)) > 1, "n=3 seeded choices are all the same: %s" % texts
    st = s.stream("/v1/completions", dict(body, stream=True,
                                          stream_options={"include_usage": True}))
    check_stream_envelope(st, chat=False, n=3)
    for i in range(3):
        assert st.text(i) == texts[i], (i, st.text(i), texts[i])
    assert counts(st.usage()) == counts(r["usage"]), (st.usage(), r["usage"])
    g = s.post("/v1/completions", greedy(n=2, max_tokens=8))
    assert g["choices"][0]["text"] == g["choices"][1]["text"], g
    assert g["usage"]["completion_tokens"] == 16 or any(
        c["finish_reason"] == "stop" for c in g["choices"]), g["usage"]


def test_legacy_logprobs(s):
    r = s.post("/v1/completions", greedy(logprobs=3, max_tokens=12))
    c = r["choices"][0]
    lp = c["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}, sorted(lp)
    n = r["usage"]["completion_tokens"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == \
        len(lp["text_offset"]) == n, (n, lp)
    assert "".join(lp["tokens"]) == c["text"], (lp["tokens"], c["text"])
    off = 0
    for tok, l, top, o in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"],
                              lp["text_offset"]):
        assert o == off, (o, off)
        off += len(tok.encode())
        assert l <= 1e-6, l
        assert isinstance(top, dict) and 1 <= len(top) <= 3, top
        # greedy: the chosen token is the most likely one
        assert abs(l - max(top.values())) < 1e-4 and tok in top, (tok, l, top)
    st = s.stream("/v1/completions", greedy(logprobs=3, max_tokens=12, stream=True))
    check_stream_envelope(st, chat=False)
    toks = [t for e in st.json_events() for ch in e["choices"] if ch["logprobs"]
            for t in ch["logprobs"]["tokens"]]
    assert toks == lp["tokens"], (toks, lp["tokens"])
    z = s.post("/v1/completions", greedy(logprobs=0, max_tokens=4))["choices"][0]["logprobs"]
    assert len(z["tokens"]) == 4 and all(t == {} or len(t) <= 1 for t in z["top_logprobs"]), z


def test_echo(s):
    plain = s.post("/v1/completions", greedy(max_tokens=8))["choices"][0]["text"]
    r = s.post("/v1/completions", greedy(max_tokens=8, echo=True))
    assert r["choices"][0]["text"] == PROMPT + plain, r["choices"][0]["text"]
    st = s.stream("/v1/completions", greedy(max_tokens=8, echo=True, stream=True))
    check_stream_envelope(st, chat=False)
    assert st.text() == PROMPT + plain, st.text()
    lp = s.post("/v1/completions", greedy(max_tokens=4, echo=True, logprobs=1))
    assert lp["choices"][0]["logprobs"]["text_offset"][0] == len(PROMPT.encode()), lp


# --- chat ---

def test_chat_shape_and_stream(s):
    for extra in ({}, {"temperature": 0.9, "seed": 42}, {"max_completion_tokens": 9,
                                                         "max_tokens": None}):
        body = chat_body(**extra)
        r = s.post("/v1/chat/completions", body)
        assert set(r) == {"id", "object", "created", "model", "system_fingerprint", "choices",
                          "usage"}, sorted(r)
        assert r["id"].startswith("chatcmpl-") and r["object"] == "chat.completion", r
        assert r["model"] == ALIAS
        c = r["choices"][0]
        assert set(c) == {"index", "message", "logprobs", "finish_reason"}, sorted(c)
        assert c["message"]["role"] == "assistant" and isinstance(c["message"]["content"], str)
        assert c["finish_reason"] in ("stop", "length")
        want_max = extra.get("max_completion_tokens", 16)
        u = r["usage"]
        check_usage(u)
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
        if c["finish_reason"] == "length":
            assert u["completion_tokens"] == want_max, (u, want_max)
        st = s.stream("/v1/chat/completions", dict(body, stream=True,
                                                   stream_options={"include_usage": True}))
        check_stream_envelope(st, chat=True)
        assert st.text(chat=True) == c["message"]["content"], (st.text(chat=True), c)
        assert counts(st.usage()) == counts(u), (st.usage(), u)
        evs = st.json_events()
        first = evs[0]["choices"][0]
        assert first["delta"] == {"role": "assistant", "content": ""}, first
        fin = [e for e in evs if e["choices"] and e["choices"][0]["finish_reason"]][0]
        assert fin["choices"][0]["delta"] == {}, fin


def test_chat_prompt_tokens_single_bos(s):
    # the llama2 fallback template: "<s>[INST] {user} [/INST]": one BOS, counted once
    body = {"messages": [{"role": "user", "content": "Who made the heaven?"}], "max_tokens": 2,
            "temperature": 0}
    r = s.post("/v1/chat/completions", body)
    want = s.tokenize("[INST] Who made the heaven? [/INST]", add_special=True)
    assert r["usage"]["prompt_tokens"] == len(want), (r["usage"], len(want))


def test_chat_logprobs(s):
    r = s.post("/v1/chat/completions", chat_body(logprobs=True, top_logprobs=2, max_tokens=8))
    c = r["choices"][0]
    content = c["logprobs"]["content"]
    assert len(content) == r["usage"]["completion_tokens"], (len(content), r["usage"])
    all_bytes = b""
    for item in content:
        assert set(item) == {"token", "logprob", "bytes", "top_logprobs"}, sorted(item)
        assert isinstance(item["bytes"], list) and all(0 <= b < 256 for b in item["bytes"])
        all_bytes += bytes(item["bytes"])
        assert item["logprob"] <= 1e-6 and len(item["top_logprobs"]) == 2, item
        for t in item["top_logprobs"]:
            assert set(t) == {"token", "logprob", "bytes"}, t
        assert abs(item["logprob"] - item["top_logprobs"][0]["logprob"]) < 1e-4, item
    assert all_bytes.decode("utf-8") == c["message"]["content"], (all_bytes, c)
    plain = s.post("/v1/chat/completions", chat_body(logprobs=True, max_tokens=3))
    assert all(i["top_logprobs"] == [] for i in plain["choices"][0]["logprobs"]["content"])
    st = s.stream("/v1/chat/completions", chat_body(logprobs=True, top_logprobs=2, max_tokens=8,
                                                    stream=True))
    check_stream_envelope(st, chat=True)
    toks = [i["token"] for e in st.json_events() for ch in e["choices"] if ch.get("logprobs")
            for i in ch["logprobs"]["content"]]
    assert toks == [i["token"] for i in content], (toks, content)


def test_chat_n(s):
    body = chat_body(n=2, temperature=0.9, seed=3, max_tokens=10)
    r = s.post("/v1/chat/completions", body)
    st = s.stream("/v1/chat/completions", dict(body, stream=True))
    check_stream_envelope(st, chat=True, n=2)
    for i in range(2):
        assert st.text(i, chat=True) == r["choices"][i]["message"]["content"], i


# --- stop strings ---

def stop_candidates(s, body):
    """A greedy continuation with its token boundaries (byte offsets into the text)."""
    r = s.post("/v1/completions", dict(body, logprobs=0))
    c = r["choices"][0]
    toks = c["logprobs"]["tokens"]
    assert "".join(toks) == c["text"]
    bounds, o = [], 0
    for t in toks:
        o += len(t)
        bounds.append(o)
    return c["text"], bounds


def check_stop(s, body, stop, want_text, want_finish):
    r = s.post("/v1/completions", dict(body, stop=stop))
    c = r["choices"][0]
    assert c["text"] == want_text and c["finish_reason"] == want_finish, \
        (stop, c["text"], want_text, c["finish_reason"])
    st = s.stream("/v1/completions", dict(body, stop=stop, stream=True))
    check_stream_envelope(st, chat=False)
    assert st.text() == want_text, ("streamed", stop, st.text(), want_text)
    assert st.finish_reasons() == [want_finish]
    stops = [stop] if isinstance(stop, str) else stop
    for piece in (ch["text"] for e in st.json_events() for ch in e["choices"]):
        for sp in stops:
            if want_finish == "stop" and sp in want_text + sp:
                assert sp not in piece, (piece, sp)
    # the same with chat deltas is covered by test_chat_stop
    return r


def test_stop_strings_spanning_tokens(s):
    body = greedy(max_tokens=40)
    text, bounds = stop_candidates(s, body)
    assert len(bounds) >= 6, text
    found = 0
    # stops that begin inside one token and end inside the next (or the one after)
    for span in (1, 2):
        for k in range(1, len(bounds) - span - 1):
            a = bounds[k - 1] + max(0, (bounds[k] - bounds[k - 1]) // 2)
            if a >= bounds[k]:
                a = bounds[k] - 1
            b = bounds[k + span - 1] + 1
            if a <= bounds[k - 1] or b > len(text):
                continue
            stop = text[a:b]
            if text.find(stop) != a or len(stop) < 2:
                continue
            check_stop(s, body, stop, text[:a], "stop")
            found += 1
            break
    assert found == 2, "no stop candidates found in %r" % text
    # a stop string whose beginning appears but never completes: all text still arrives
    full = s.post("/v1/completions", body)["choices"][0]
    tail = text[bounds[2] - 1:bounds[3] + 1]
    check_stop(s, body, tail + "\x01QQ", full["text"], full["finish_reason"])
    # several stops: the earliest in the text wins
    a = bounds[4]
    check_stop(s, body, ["zzzz-not-there", text[a:a + 3], text[bounds[1]:bounds[1] + 3]],
               text[:text.find(text[bounds[1]:bounds[1] + 3])], "stop")
    # a stop at the very start of the output
    check_stop(s, body, text[:3], "", "stop")


def test_chat_stop(s):
    body = chat_body(max_tokens=20)
    text = s.post("/v1/chat/completions", body)["choices"][0]["message"]["content"]
    assert len(text) > 8, text
    stop = text[5:9]
    want = text[:text.find(stop)]
    r = s.post("/v1/chat/completions", dict(body, stop=stop))
    assert r["choices"][0]["message"]["content"] == want and \
        r["choices"][0]["finish_reason"] == "stop", r
    st = s.stream("/v1/chat/completions", dict(body, stop=stop, stream=True))
    check_stream_envelope(st, chat=True)
    assert st.text(chat=True) == want, (st.text(chat=True), want)


# --- multi-byte characters ---

def test_multibyte_stream(s):
    # Only the byte tokens of an em dash (E2 80 94; id = byte + 3) can be sampled; a seed is
    # searched whose continuation holds a whole em dash among stray bytes.
    bias = {str(0xE2 + 3): 100, str(0x80 + 3): 100, str(0x94 + 3): 100}
    body = {"prompt": "And God said", "max_tokens": 12, "temperature": 1.5, "logit_bias": bias}
    chosen = None
    for seed in range(1, 60):
        r = s.post("/v1/completions", dict(body, seed=seed, logprobs=0))
        if "—" in r["choices"][0]["text"]:
            chosen = (seed, r)
            break
    assert chosen, "no seed gave an em dash"
    seed, r = chosen
    c = r["choices"][0]
    raw = b"".join(bytes([int(t[len("bytes:\\x"):], 16)]) if t.startswith("bytes:") else
                   t.encode() for t in c["logprobs"]["tokens"])
    # every valid character of the generated bytes is in the text, in order; invalid bytes
    # become U+FFFD (how many per invalid sequence is the server's choice)
    assert c["text"].replace(FFFD, "") == raw.decode("utf-8", "replace").replace(FFFD, ""), \
        (c["text"], raw)
    st = s.stream("/v1/completions", dict(body, seed=seed, stream=True))
    check_stream_envelope(st, chat=False)  # decodes every event strictly as UTF-8
    assert st.text() == c["text"], (st.text(), c["text"])
    # and in chat deltas: a chat whose answer is forced to bytes
    cb = chat_body(max_tokens=12, temperature=1.5, seed=seed, logit_bias=bias)
    whole = s.post("/v1/chat/completions", cb)["choices"][0]["message"]["content"]
    st = s.stream("/v1/chat/completions", dict(cb, stream=True))
    check_stream_envelope(st, chat=True)
    assert st.text(chat=True) == whole
    # a multi-byte character in the prompt, by token ids, echoed whole
    e = s.post("/v1/completions", {"prompt": [1, 0xE2 + 3, 0x80 + 3, 0x94 + 3], "max_tokens": 2,
                                   "temperature": 0, "echo": True})
    assert e["choices"][0]["text"].startswith("—"), e


def test_beam_search(s):
    """use_beam_search: best_of 1 is greedy, the n best come back distinct, streaming gives the
    same text, and bad combinations are 400s: best_of below n, and more beams than slots (a beam
    needs a slot of its own). test_server_beam compares the text with `generate --beams`."""
    body = {"prompt": PROMPT, "max_tokens": 20, "use_beam_search": True, "best_of": 4, "n": 2}
    r = s.post("/v1/completions", body)
    assert len(r["choices"]) == 2 and all(c["text"] for c in r["choices"]), r
    assert r["choices"][0]["text"] != r["choices"][1]["text"], r
    assert r["usage"]["completion_tokens"] > 0, r["usage"]
    one = s.post("/v1/completions", dict(body, best_of=1, n=1))
    g = s.post("/v1/completions", greedy(max_tokens=20))
    assert one["choices"][0]["text"] == g["choices"][0]["text"], (one, g)
    st = s.stream("/v1/completions", dict(body, n=1, stream=True))
    assert st.text() == r["choices"][0]["text"], (st.text(), r)
    chat = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Who?"}],
                                           "max_tokens": 10, "use_beam_search": True,
                                           "best_of": 3})
    assert chat["choices"][0]["message"]["content"], chat
    status, err, _ = s.json("POST", "/v1/completions", dict(body, best_of=1, n=2))
    assert status == 400 and err["error"]["param"] == "best_of", err
    status, err, _ = s.json("POST", "/v1/completions", dict(body, best_of=5))  # 4 slots
    assert status == 400 and err["error"]["param"] == "best_of", err
    assert "5 beams needs 5 slots" in err["error"]["message"], err


def test_ids_differ_across_processes(s):
    """Two servers (replicas behind one balancer) never hand out the same completion id: each
    salts its counter with random bits (they used to repeat for servers started in the same
    second)."""
    body = {"prompt": "In the beginning", "max_tokens": 1, "temperature": 0}
    with Server("--parallel", "1") as other:
        first = other.post("/v1/completions", body)["id"]
        second = s.post("/v1/completions", body)["id"]
        with Server("--parallel", "1") as third:
            assert len({first, second, third.post("/v1/completions", body)["id"]}) == 3, \
                (first, second)


def main():
    runner = Runner("test_server_api")
    run_with_server(runner, [
        test_health, test_models, test_any_model_name_answers_with_served_id,
        test_tokenize_detokenize, test_completion_greedy_shape_and_usage,
        test_completion_stream_matches, test_seeded_sampling_reproducible, test_prompt_forms,
        test_max_tokens_zero_and_one, test_n_choices, test_legacy_logprobs, test_echo,
        test_chat_shape_and_stream, test_chat_prompt_tokens_single_bos, test_chat_logprobs,
        test_chat_n, test_stop_strings_spanning_tokens, test_chat_stop, test_multibyte_stream,
        test_metrics_format, test_beam_search,
        test_ids_differ_across_processes,
    ], "--alias", ALIAS, "--parallel", "4", "--seed", "-1")
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
