"""test_server_native: llama.cpp's native API of `llamaserve serve`, as a black box.

What tools written against llama.cpp's server rely on: POST /completion (and /completions) with
llama.cpp's request fields, its response and stream in the shapes of llama.cpp's published
server documentation (tools/server/README.md; the key sets below are written from it), GET
/props, GET /slots (idle and processing, and --no-slots), the routes without /v1, X-Api-Key,
/tokenize's with_pieces, the public /health and /v1/models, and timings_per_token on the OpenAI
routes. Where a native answer can be computed another way (the OpenAI routes, /detokenize,
/tokenize), it is compared with that.
"""
import json
import os
import sys

from server_harness import Runner, Server, Stream, check_error, run_with_server

KEY = "native-test-key"
AUTH = {"Authorization": "Bearer " + KEY}
ALIAS = "kjv-native"
PROMPT = "And God said unto Moses"
CTX = 4096  # per slot: the long streams of the /slots test run for seconds

# --- the shapes, from llama.cpp's tools/server/README.md ---
# "Response format" of POST /completion: the fields it lists
DOC_RESPONSE = {"content", "tokens", "stop", "generation_settings", "model", "prompt",
                "stop_type", "stopping_word", "timings", "tokens_cached", "tokens_evaluated",
                "truncated"}
# the fields the stream's last event and the wire-format notes add
DOC_FINAL = DOC_RESPONSE | {"tokens_predicted"}
# a streamed event before the last: "only content, tokens and stop" plus the ids and counts
DOC_STREAM_EVENT = {"index", "content", "tokens", "stop", "id_slot", "tokens_predicted",
                    "tokens_evaluated"}
DOC_TIMINGS = {"prompt_n", "prompt_ms", "prompt_per_token_ms", "prompt_per_second",
               "predicted_n", "predicted_ms", "predicted_per_token_ms", "predicted_per_second"}
# completion_probabilities items ("probs" in the README's example) and their top_logprobs
DOC_PROB = {"id", "logprob", "token", "bytes", "top_logprobs"}
DOC_TOP = {"id", "logprob", "token", "bytes"}
DOC_STOP_TYPES = {"none", "eos", "limit", "word"}
# GET /props and GET /slots
DOC_PROPS = {"default_generation_settings", "total_slots", "model_path", "chat_template",
             "build_info"}
DOC_SLOT = {"id", "id_task", "n_ctx", "is_processing", "next_token"}


def native(s, body, headers=AUTH, path="/completion"):
    st, obj, _ = s.json("POST", path, body, headers)
    assert st == 200, (path, body, st, obj)
    return obj


def greedy(**kw):
    body = {"prompt": PROMPT, "n_predict": 12, "temperature": 0}
    body.update(kw)
    return body


def check_timings(t, predicted_n=None):
    assert DOC_TIMINGS <= set(t), sorted(t)
    for k in DOC_TIMINGS:
        assert isinstance(t[k], (int, float)) and t[k] >= 0, (k, t)
    if predicted_n is not None:
        assert t["predicted_n"] == predicted_n, (t, predicted_n)


def check_probs(probs, n_probs):
    for p in probs:
        assert DOC_PROB <= set(p), sorted(p)
        assert p["bytes"] == list(p["token"].encode()), p
        tops = p["top_logprobs"]
        assert len(tops) == n_probs, p
        for t in tops:
            assert DOC_TOP <= set(t), sorted(t)
        lps = [t["logprob"] for t in tops]
        assert lps == sorted(lps, reverse=True), lps


def test_completion_shape(s):
    r = native(s, greedy(return_tokens=True))
    assert DOC_FINAL <= set(r), "missing %s" % sorted(DOC_FINAL - set(r))
    assert "completion_probabilities" not in r, "n_probs 0 sends none"
    assert r["stop"] is True and r["stop_type"] == "limit" and r["stopping_word"] == ""
    assert r["truncated"] is False and r["model"] == ALIAS
    assert len(r["tokens"]) == r["tokens_predicted"] == 12, r
    prompt_ids = s.tokenize(PROMPT)
    assert r["tokens_evaluated"] == len(prompt_ids), (r["tokens_evaluated"], prompt_ids)
    check_timings(r["timings"], predicted_n=12)
    assert r["timings"]["prompt_n"] + r["tokens_cached"] == r["tokens_evaluated"], r
    gs = r["generation_settings"]
    assert gs["n_predict"] == 12 and gs["temperature"] == 0 and gs["stream"] is False, gs
    # the ids are the text, and the text is what the OpenAI route generates
    text = s.post("/detokenize", {"tokens": r["tokens"]}, AUTH)["content"]
    assert text.strip() == r["content"].strip(), (text, r["content"])
    oa = s.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 12, "temperature": 0}, AUTH)
    assert oa["choices"][0]["text"] == r["content"], (oa, r["content"])
    # tokens stay empty without return_tokens (llama.cpp's rule)
    assert native(s, greedy())["tokens"] == []


def test_completions_alias(s):
    # llama.cpp maps /completions (no /v1) to the same native handler
    a, b = native(s, greedy()), native(s, greedy(), path="/completions")
    assert DOC_FINAL <= set(b)
    assert a["content"] == b["content"]


def test_n_probs(s):
    r = native(s, greedy(n_probs=3, return_tokens=True))
    probs = r["completion_probabilities"]
    assert len(probs) == r["tokens_predicted"] == 12, r
    check_probs(probs, 3)
    assert [p["id"] for p in probs] == r["tokens"]
    assert all(p["id"] == p["top_logprobs"][0]["id"] for p in probs), "greedy takes the best"
    assert "".join(p["token"] for p in probs) == r["content"]
    # the same log-probabilities as the OpenAI route's
    oa = s.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 12, "temperature": 0,
                                    "logprobs": 3}, AUTH)["choices"][0]["logprobs"]
    assert [p["logprob"] for p in probs] == oa["token_logprobs"], (probs, oa)
    # out of range
    st, obj, _ = s.json("POST", "/completion", greedy(n_probs=21), AUTH)
    check_error(st, obj, 400, param="n_probs")


def test_stop_types(s):
    seen = set()
    long = native(s, greedy(n_predict=24))["content"]
    word = long.split()[3]
    cut = long.index(word)
    r = native(s, greedy(n_predict=24, stop=["zzz", word], n_probs=1))
    seen.add(r["stop_type"])
    assert r["stop_type"] == "word" and r["stopping_word"] == word, r
    assert r["content"] == long[:cut], (r["content"], long, word)
    # the stop string's tokens are cut with it: the probabilities are those of the text
    assert "".join(p["token"] for p in r["completion_probabilities"]) == r["content"], r
    # EOS (id 2) made certain by a bias: generation ends at once
    r = native(s, greedy(logit_bias=[[2, 100]]))
    seen.add(r["stop_type"])
    assert r["stop_type"] == "eos" and r["content"] == "" and r["tokens_predicted"] == 0, r
    assert r["stopping_word"] == ""
    r = native(s, greedy(n_predict=3))
    seen.add(r["stop_type"])
    assert r["stop_type"] == "limit" and r["tokens_predicted"] == 3
    assert seen == DOC_STOP_TYPES - {"none"}, seen


def test_logit_bias_pairs(s):
    first = native(s, greedy(n_predict=1, return_tokens=True))["tokens"][0]
    # false bans the token, by id or by its text
    banned = native(s, greedy(n_predict=1, return_tokens=True, logit_bias=[[first, False]]))
    assert banned["tokens"][0] != first, banned
    text = s.post("/detokenize", {"tokens": [first]}, AUTH)["content"]
    by_text = native(s, greedy(n_predict=1, return_tokens=True,
                               logit_bias=[[" " + text.strip(), False]]))
    assert by_text["tokens"] == banned["tokens"], (by_text, banned, text)
    # the pair list and OpenAI's object give the same generation
    alt = banned["tokens"][0]
    pairs = native(s, greedy(n_predict=6, logit_bias=[[first, -100], [alt, 5.5]]))
    obj = s.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 6, "temperature": 0,
                                     "logit_bias": {str(first): -100, str(alt): 5.5}}, AUTH)
    assert pairs["content"] == obj["choices"][0]["text"], (pairs, obj)
    for bad in ([[first, True]], [[first]], [["", 1]], [[-1, 1]], [[first, 1000]], [1, 2]):
        st, o, _ = s.json("POST", "/completion", greedy(logit_bias=bad), AUTH)
        check_error(st, o, 400, param="logit_bias", what=json.dumps(bad))


def test_prompt_forms(s):
    ids = s.tokenize(PROMPT)  # with BOS, as a string prompt gets it
    a = native(s, greedy())
    b = native(s, greedy(prompt=ids))
    c = native(s, greedy(prompt=[ids[0], PROMPT]))  # an id, then text (no second BOS)
    assert a["content"] == b["content"] == c["content"], (a, b, c)
    assert a["tokens_evaluated"] == b["tokens_evaluated"] == c["tokens_evaluated"] == len(ids)
    for bad in (["a", "b"], [[1, 2], [3]], [], [1, -5], {"prompt": "x"}, None):
        body = greedy(prompt=bad)
        st, o, _ = s.json("POST", "/completion", body, AUTH)
        check_error(st, o, 400, param="prompt", what=json.dumps(bad))


def test_stream_shape(s):
    whole = native(s, greedy(n_predict=10, n_probs=2, return_tokens=True))
    st = Stream(s, "/completion", greedy(n_predict=10, n_probs=2, stream=True), AUTH)
    st.read_all()
    assert st.status == 200 and st.headers["content-type"].startswith("text/event-stream")
    ev = st.events
    assert ev and "[DONE]" not in ev, ev[-2:]
    *body, last = ev
    assert body, ev
    for e in body:
        assert DOC_STREAM_EVENT <= set(e), sorted(e)
        assert e["stop"] is False
        check_probs(e["completion_probabilities"], 2)
    assert last["stop"] is True and DOC_FINAL <= set(last), sorted(last)
    assert last["stop_type"] == "limit" and last["tokens_predicted"] == 10
    check_timings(last["timings"], predicted_n=10)
    assert "".join(e["content"] for e in body) == whole["content"]
    assert sum((e["tokens"] for e in body), []) == whole["tokens"]
    probs = sum((e["completion_probabilities"] for e in body), [])
    assert probs == whole["completion_probabilities"]
    # timings_per_token: every event carries the timings
    st = Stream(s, "/completion", greedy(n_predict=4, stream=True, timings_per_token=True), AUTH)
    st.read_all()
    for e in st.events:
        check_timings(e["timings"])


def test_unsupported_fields(s):
    for field, value in (("mirostat", 2), ("samplers", ["top_k"]), ("typical_p", 0.5),
                         ("dry_multiplier", 0.8), ("n_keep", 4), ("lora", [{"id": 0}]),
                         ("post_sampling_probs", True), ("id_slot", 1), ("n", 2)):
        st, o, _ = s.json("POST", "/completion", greedy(**{field: value}), AUTH)
        check_error(st, o, 400, param=field, what=field)
    # their off values are what llama.cpp's own clients send: accepted
    r = native(s, greedy(mirostat=0, typical_p=1, samplers=[], dry_multiplier=0, id_slot=-1,
                         post_sampling_probs=False, n_keep=0))
    assert r["stop"] is True


def test_timings_per_token_openai(s):
    body = {"prompt": PROMPT, "max_tokens": 5, "temperature": 0}
    plain = s.post("/v1/completions", body, AUTH)
    assert "timings" not in plain
    r = s.post("/v1/completions", dict(body, timings_per_token=True), AUTH)
    check_timings(r["timings"], predicted_n=r["usage"]["completion_tokens"])
    chat = {"messages": [{"role": "user", "content": "Who made the light?"}], "max_tokens": 5,
            "temperature": 0, "stream": True, "timings_per_token": True}
    st = s.stream("/v1/chat/completions", chat, AUTH)
    chunks = [e for e in st.events if e != "[DONE]"]
    assert chunks and all("timings" in c for c in chunks), chunks
    check_timings(chunks[-1]["timings"])


def test_props(s):
    st, p, _ = s.json("GET", "/props", None, AUTH)
    assert st == 200 and DOC_PROPS <= set(p), (st, sorted(p))
    assert p["total_slots"] == 2 and p["n_ctx"] == CTX
    d = p["default_generation_settings"]
    assert d["n_ctx"] == CTX and d["is_processing"] is False
    assert d["params"]["temperature"] == 0.8 and d["params"]["top_k"] == 40  # llama.cpp's
    assert p["model_path"].endswith("kjv-demo.gguf") and p["model_alias"] == ALIAS
    assert p["chat_template"] == "" and p["build_info"].startswith("llamaserve ")


def test_props_template_text(_):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "chatml.jinja")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    with Server("--chat-template-file", path) as t:
        st, p, _ = t.json("GET", "/props")
        assert st == 200 and p["chat_template"] == src


def slots(s):
    st, v, _ = s.json("GET", "/slots", None, AUTH)
    assert st == 200 and isinstance(v, list), (st, v)
    for x in v:
        assert DOC_SLOT <= set(x), sorted(x)
    return v


def test_slots_idle_and_processing(s):
    s.wait_metrics(lambda m: m["llamaserve_slots_busy"] == 0, "idle slots")
    idle = slots(s)
    assert [x["id"] for x in idle] == [0, 1] and all(x["n_ctx"] == CTX for x in idle)
    assert not any(x["is_processing"] for x in idle) and all(x["id_task"] == -1 for x in idle)
    # a long stream: read its first event, then look while it runs
    body = {"prompt": PROMPT, "n_predict": CTX - 64, "ignore_eos": True, "stream": True}
    st = Stream(s, "/completion", body, AUTH)
    first = st.next_event()
    assert first and first["stop"] is False, first
    busy = [x for x in slots(s) if x["is_processing"]]
    assert len(busy) == 1 and busy[0]["id"] == first["id_slot"], busy
    assert busy[0]["id_task"] > 0 and busy[0]["next_token"]["has_next_token"] is True
    # ?fail_on_no_slot: 200 while one slot is free, 503 once both run
    assert s.json("GET", "/slots?fail_on_no_slot=1")[0] == 200
    st2 = Stream(s, "/completion", body, AUTH)
    assert st2.next_event()["stop"] is False
    code, obj, hd = s.json("GET", "/slots?fail_on_no_slot=1")
    check_error(code, obj, 503)
    assert "retry-after" in hd, hd
    st2.c.close()
    st.c.close()  # the client leaves: the slot is freed and shows idle, its cache kept
    s.wait_metrics(lambda m: m["llamaserve_slots_busy"] == 0, "the dropped stream's slot freed")
    after = slots(s)
    assert not any(x["is_processing"] for x in after), after
    assert after[first["id_slot"]]["n_past"] > len(s.tokenize(PROMPT)), after


def test_no_slots(_):
    with Server("--no-slots") as t:
        st, obj, _ = t.json("GET", "/slots")
        check_error(st, obj, 501)
        assert obj["error"]["type"] == "not_supported_error", obj
        assert t.json("GET", "/props")[0] == 200


def test_unprefixed_routes(s):
    chat = {"messages": [{"role": "user", "content": "Who made the light?"}], "max_tokens": 6,
            "temperature": 0}
    a = s.post("/v1/chat/completions", chat, AUTH)
    b = s.post("/chat/completions", chat, AUTH)
    assert a["choices"][0]["message"] == b["choices"][0]["message"]
    m1, m2 = s.json("GET", "/v1/models")[1], s.json("GET", "/models")[1]
    assert [d["id"] for d in m1["data"]] == [d["id"] for d in m2["data"]] == [ALIAS]
    assert s.json("GET", "/v1/health")[:2] == (200, {"status": "ok"})


def test_keys(_):
    with Server("--api-key", KEY) as k:
        x_api_key(k)
        public_routes(k)


def x_api_key(s):
    hd = {"X-Api-Key": KEY}
    assert native(s, greedy(n_predict=2), headers=hd)["tokens_predicted"] == 2
    assert s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                           "max_tokens": 2}, hd)["choices"]
    st, obj, _ = s.json("GET", "/props", None, {"X-Api-Key": KEY + "x"})
    check_error(st, obj, 401)


def public_routes(s):
    for path in ("/health", "/v1/models", "/models"):
        assert s.json("GET", path)[0] == 200, path
    for method, path in (("GET", "/props"), ("GET", "/slots"), ("POST", "/completion")):
        st, obj, _ = s.json(method, path, {"prompt": "a"} if method == "POST" else None)
        check_error(st, obj, 401, what=path)
    with Server("--api-key", KEY, "--no-public-models") as t:
        for path in ("/v1/models", "/models"):
            st, obj, _ = t.json("GET", path)
            check_error(st, obj, 401, what=path)
            assert t.json("GET", path, None, AUTH)[0] == 200
        assert t.json("GET", "/health")[0] == 200


def test_with_pieces(s):
    text = "And \u00e1"
    plain = s.post("/tokenize", {"content": text}, AUTH)["tokens"]
    pieces = s.post("/tokenize", {"content": text, "with_pieces": True}, AUTH)["tokens"]
    assert [p["id"] for p in pieces] == plain, (pieces, plain)
    joined = b""
    for p in pieces:
        assert set(p) == {"id", "piece"}, p
        if isinstance(p["piece"], str):
            joined += p["piece"].encode()
        else:  # bytes that are not a whole character: a list of ints
            assert all(isinstance(b, int) and 0 <= b < 256 for b in p["piece"]), p
            joined += bytes(p["piece"])
    assert joined.lstrip(b" ") == text.encode(), (joined, pieces)
    # this vocabulary spells the character in two byte pieces: they come as lists
    assert any(isinstance(p["piece"], list) for p in pieces), pieces


def test_metrics_count_the_routes(s):
    native(s, greedy(n_predict=1), path="/completions")
    m = s.metrics()
    assert m.get('llamaserve_requests_total{route="/completions",status="200"}', 0) >= 1, \
        {k: v for k, v in m.items() if "requests_total" in k}


def main():
    runner = Runner("test_server_native")
    run_with_server(runner, [test_completion_shape, test_completions_alias, test_n_probs,
                             test_stop_types, test_logit_bias_pairs, test_prompt_forms,
                             test_stream_shape, test_unsupported_fields,
                             test_timings_per_token_openai, test_props,
                             test_slots_idle_and_processing, test_unprefixed_routes,
                             test_with_pieces, test_metrics_count_the_routes],
                    "--parallel", "2", "--ctx-size", str(CTX), "--alias", ALIAS)
    runner.run(test_keys, None)
    runner.run(test_props_template_text, None)
    runner.run(test_no_slots, None)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
