"""test_server_errors: a matrix of bad requests against `llamaserve serve`, black-box.

Each bad request must get its status and an OpenAI error object
{"error":{"message","type","param","code"}}; the server must stay up through all of them and
answer normally afterwards. The server runs with --api-key, a small --max-body and a small
--ctx-size so that the 401, 413 and context_length_exceeded paths are reachable.
"""
import json
import socket
import sys

from server_harness import Runner, Server, check_error, post_bytes, raw_http, run_with_server

KEY = "sk-test-key-123"
AUTH = {"Authorization": "Bearer " + KEY}
MAX_BODY = 8192
CTX = 64
C, CH = "/v1/completions", "/v1/chat/completions"


def comp(**kw):
    b = {"prompt": "In the beginning", "max_tokens": 4}
    b.update(kw)
    return b


def chat(**kw):
    b = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    b.update(kw)
    return b


def nested(depth):
    return ('{"prompt":' + "[" * depth + "1" + "]" * depth + "}").encode()


# (label, method, path, body (dict | bytes | None), status, param or None, code or None)
CASES = [
    ("malformed json", "POST", C, b'{"prompt": "a",', 400, None, None),
    ("truncated body", "POST", C, b'{"prompt":"In the beg', 400, None, None),
    ("truncated after key", "POST", CH, b'{"messages":[{"role":"user","content"', 400, None, None),
    ("empty body", "POST", C, b"", 400, None, None),
    ("body is an array", "POST", C, b"[1,2]", 400, None, None),
    ("body is a string", "POST", C, b'"prompt"', 400, None, None),
    ("trailing garbage", "POST", C, b'{"prompt":"a"} x', 400, None, None),
    ("NaN literal", "POST", C, b'{"prompt":"a","temperature":NaN}', 400, None, None),
    ("nesting bomb", "POST", C, nested(3000), 400, None, None),
    # cJSON would cut these strings short at the NUL: refused instead
    ("escaped NUL in prompt", "POST", C, b'{"prompt":"In the\\u0000 beginning"}', 400, None, None),
    ("raw NUL in prompt", "POST", C, b'{"prompt":"In the\x00 beginning"}', 400, None, None),
    ("escaped NUL in chat", "POST", CH,
     b'{"messages":[{"role":"user","content":"a\\u0000b"}]}', 400, None, None),
    ("prompt missing", "POST", C, {"max_tokens": 3}, 400, "prompt", None),
    ("prompt wrong type", "POST", C, comp(prompt=5), 400, "prompt", None),
    ("prompt object", "POST", C, comp(prompt={"a": 1}), 400, "prompt", None),
    ("prompt empty array", "POST", C, comp(prompt=[]), 400, "prompt", None),
    ("prompt bad token id", "POST", C, comp(prompt=[1, 999999]), 400, "prompt", None),
    ("prompt negative token id", "POST", C, comp(prompt=[1, -4]), 400, "prompt", None),
    ("prompt fractional token id", "POST", C, comp(prompt=[1, 2.5]), 400, "prompt", None),
    ("max_tokens string", "POST", C, comp(max_tokens="10"), 400, "max_tokens", None),
    ("max_tokens negative", "POST", C, comp(max_tokens=-1), 400, "max_tokens", None),
    ("max_tokens huge", "POST", C, comp(max_tokens=10**12), 400, "max_tokens", None),
    ("max_tokens fractional", "POST", C, comp(max_tokens=1.5), 400, "max_tokens", None),
    ("max_tokens past context", "POST", C, comp(max_tokens=CTX), 400, "max_tokens",
     "context_length_exceeded"),
    ("temperature negative", "POST", C, comp(temperature=-0.1), 400, "temperature", None),
    ("temperature too high", "POST", C, comp(temperature=2.5), 400, "temperature", None),
    ("temperature string", "POST", C, comp(temperature="hot"), 400, "temperature", None),
    ("top_p above 1", "POST", C, comp(top_p=1.5), 400, "top_p", None),
    ("top_p negative", "POST", C, comp(top_p=-0.1), 400, "top_p", None),
    ("n zero", "POST", C, comp(n=0), 400, "n", None),
    ("n above slots", "POST", C, comp(n=3), 400, "n", None),
    ("n huge", "POST", C, comp(n=1000), 400, "n", None),
    ("stream not bool", "POST", C, comp(stream="yes"), 400, "stream", None),
    ("stop number", "POST", C, comp(stop=5), 400, "stop", None),
    ("too many stop strings", "POST", C, comp(stop=["a", "b", "c", "d", "e"]), 400, "stop", None),
    ("empty stop string", "POST", C, comp(stop=[""]), 400, "stop", None),
    ("stop entry not string", "POST", C, comp(stop=["a", 1]), 400, "stop", None),
    ("stop string too long", "POST", C, comp(stop="x" * 1000), 400, "stop", None),
    ("logit_bias array", "POST", C, comp(logit_bias=[1, 2]), 400, "logit_bias", None),
    ("logit_bias key not a number", "POST", C, comp(logit_bias={"abc": 1}), 400, "logit_bias",
     None),
    ("logit_bias key negative", "POST", C, comp(logit_bias={"-1": 1}), 400, "logit_bias", None),
    ("logit_bias key past vocab", "POST", C, comp(logit_bias={"100000": 1}), 400, "logit_bias",
     None),
    ("logit_bias key with junk", "POST", C, comp(logit_bias={"12abc": 1}), 400, "logit_bias",
     None),
    ("logit_bias value too big", "POST", C, comp(logit_bias={"5": 1000}), 400, "logit_bias",
     None),
    ("logit_bias value string", "POST", C, comp(logit_bias={"5": "x"}), 400, "logit_bias", None),
    ("logprobs too many", "POST", C, comp(logprobs=6), 400, "logprobs", None),
    ("presence_penalty range", "POST", C, comp(presence_penalty=3), 400, "presence_penalty",
     None),
    ("frequency_penalty type", "POST", C, comp(frequency_penalty=[]), 400, "frequency_penalty",
     None),
    ("seed string", "POST", C, comp(seed="x"), 400, "seed", None),
    ("stream_options not object", "POST", C, comp(stream=True, stream_options="x"), 400,
     "stream_options", None),
    ("echo not bool", "POST", C, comp(echo=1), 400, "echo", None),
    ("model not string", "POST", C, comp(model=7), 400, "model", None),
    ("prompt too long", "POST", C, comp(prompt="And it came to pass " * 40), 400, "prompt",
     "context_length_exceeded"),
    ("prompt ids too long", "POST", C, comp(prompt=[1] + [300] * (CTX + 5)), 400, "prompt",
     "context_length_exceeded"),
    ("messages missing", "POST", CH, {"max_tokens": 3}, 400, "messages", None),
    ("messages empty", "POST", CH, chat(messages=[]), 400, "messages", None),
    ("messages string", "POST", CH, chat(messages="hi"), 400, "messages", None),
    ("message not object", "POST", CH, chat(messages=["hi"]), 400, "messages[0]", None),
    ("unknown role", "POST", CH, chat(messages=[{"role": "wizard", "content": "hi"}]), 400,
     "messages[0]", None),
    ("role missing", "POST", CH, chat(messages=[{"content": "hi"}]), 400, "messages[0]", None),
    ("content number", "POST", CH, chat(messages=[{"role": "user", "content": 5}]), 400,
     "messages[0]", None),
    ("content missing", "POST", CH, chat(messages=[{"role": "user"}]), 400, "messages[0]", None),
    ("second message bad", "POST", CH,
     chat(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": None}]), 400,
     "messages[1]", None),
    ("top_logprobs without logprobs", "POST", CH, chat(top_logprobs=2), 400, "top_logprobs",
     None),
    ("top_logprobs too many", "POST", CH, chat(logprobs=True, top_logprobs=21), 400,
     "top_logprobs", None),
    ("chat logprobs not bool", "POST", CH, chat(logprobs=3), 400, "logprobs", None),
    ("chat temperature negative", "POST", CH, chat(temperature=-1), 400, "temperature", None),
    ("chat too long", "POST", CH,
     chat(messages=[{"role": "user", "content": "And it came to pass " * 40}]), 400, "messages",
     "context_length_exceeded"),
    ("max_completion_tokens negative", "POST", CH, chat(max_completion_tokens=-5), 400,
     "max_completion_tokens", None),
    ("invalid utf-8 bytes", "POST", C, b'{"prompt":"\xff\xfe abc"}', 400, None, None),
    ("overlong utf-8", "POST", C, b'{"prompt":"\xc0\xaf"}', 400, None, None),
    ("utf-8 surrogate bytes", "POST", C, b'{"prompt":"\xed\xa0\x80"}', 400, None, None),
    ("invalid utf-8 in chat", "POST", CH,
     b'{"messages":[{"role":"user","content":"a\xe2\x82"}]}', 400, None, None),
    ("lone high surrogate escape", "POST", C, b'{"prompt":"ab\\ud800cd"}', 400, None, None),
    ("lone low surrogate escape", "POST", C, b'{"prompt":"ab\\udc00"}', 400, None, None),
    ("surrogate escape in stop", "POST", C, b'{"prompt":"a","stop":"\\ud800"}', 400, None, None),
    ("tokenize content missing", "POST", "/tokenize", {}, 400, "content", None),
    ("tokenize content number", "POST", "/tokenize", {"content": 5}, 400, "content", None),
    ("detokenize tokens string", "POST", "/detokenize", {"tokens": "abc"}, 400, "tokens", None),
    ("detokenize bad id", "POST", "/detokenize", {"tokens": [-1]}, 400, "tokens", None),
    ("detokenize malformed", "POST", "/detokenize", b"{", 400, None, None),
    ("wrong method GET completions", "GET", C, None, 405, None, None),
    ("wrong method PUT chat", "PUT", CH, b"{}", 405, None, None),
    ("wrong method POST models", "POST", "/v1/models", b"{}", 405, None, None),
    ("wrong method DELETE health", "DELETE", "/health", None, 405, None, None),
    ("unknown route", "GET", "/v1/nope", None, 404, None, None),
    ("unknown route POST", "POST", "/v1/engines/x/completions", comp(), 404, None, None),
    ("route prefix", "POST", "/v1/completionsx", comp(), 404, None, None),
    ("oversized body", "POST", C, comp(prompt="a" * (MAX_BODY + 10)), 413, None, None),
]


def test_error_matrix(s):
    failures = []
    for label, method, path, body, status, param, code in CASES:
        try:
            st, hd, data = s.request(method, path, body, AUTH)
            try:
                obj = json.loads(data.decode("utf-8"))
            except ValueError:
                raise AssertionError("status %d, body not JSON: %r" % (st, data[:200]))
            check_error(st, obj, status, param=param, code=code, what=label)
            assert hd.get("content-type", "").startswith("application/json"), hd
            assert s.alive(), "server died"
        except AssertionError as ex:
            failures.append("%s: %s" % (label, ex))
    assert len(CASES) >= 30
    assert not failures, "%d of %d cases wrong:\n  %s" % (len(failures), len(CASES),
                                                          "\n  ".join(failures))


def test_auth(s):
    body = comp()
    cases = [("no key", {}), ("wrong key", {"Authorization": "Bearer nope"}),
             ("key prefix", {"Authorization": "Bearer " + KEY[:-1]}),
             ("key longer", {"Authorization": "Bearer " + KEY + "x"}),
             ("basic scheme", {"Authorization": "Basic " + KEY}),
             ("bare key", {"Authorization": KEY}),
             ("wrong X-Api-Key", {"X-Api-Key": "nope"}),
             ("X-Api-Key prefix", {"X-Api-Key": KEY[:-1]}),
             ("X-Api-Key bearer", {"X-Api-Key": "Bearer " + KEY})]
    # /v1/models is public by default (public_models; test_server_native checks both ways)
    for label, hd in cases:
        for method, path, b in (("POST", C, body), ("GET", "/props", None),
                                ("GET", "/metrics", None), ("POST", "/tokenize", {"content": "a"}),
                                ("POST", "/completion", {"prompt": "a"}),
                                ("POST", "/chat/completions", {"messages": []})):
            st, obj, rh = s.json(method, path, b, hd)
            check_error(st, obj, 401, what="%s %s" % (label, path))
            assert "www-authenticate" in rh, rh
    # /health never needs the key; the right key works everywhere
    st, obj, _ = s.json("GET", "/health")
    assert st == 200 and obj == {"status": "ok"}, (st, obj)
    st, obj, _ = s.json("GET", "/v1/models", None, AUTH)
    assert st == 200, obj
    assert s.post(C, comp(max_tokens=2, temperature=0), AUTH)["usage"]["completion_tokens"] <= 2


def test_body_limits_raw(s):
    # a chunked upload (no Content-Length) that outgrows --max-body
    body = json.dumps(comp(prompt="a" * (2 * MAX_BODY))).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                      for i in range(0, len(body), 1000)) + b"0\r\n\r\n"
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % (C, KEY))
    sock, got = raw_http(s.port, head.encode() + chunks, read_until=b"}}")
    sock.close()
    assert got.startswith(b"HTTP/1.1 413"), got[:200]
    # a Content-Length over the limit is refused before the body is read
    sock, got = raw_http(s.port, post_bytes(C, b"", {"Content-Length": str(10 * MAX_BODY),
                                                     "Authorization": "Bearer " + KEY}),
                         read_until=b"}}")
    sock.close()
    assert got.startswith(b"HTTP/1.1 413"), got[:200]
    # a client that promises more body than it sends, then goes away: no answer needed, no
    # crash, nothing stuck
    sock, _ = raw_http(s.port, post_bytes(C, b'{"prompt":"a"', {"Content-Length": "100"}))
    sock.shutdown(socket.SHUT_WR)
    sock.close()
    # a request line that is not HTTP
    sock, got = raw_http(s.port, b"HELLO\r\n\r\n", read_until=b"\r\n\r\n")
    sock.close()
    assert s.alive()


def test_alive_after(s):
    st, obj, _ = s.json("GET", "/health")
    assert st == 200, obj
    r = s.post(C, comp(max_tokens=3, temperature=0), AUTH)
    assert r["choices"][0]["finish_reason"] in ("stop", "length"), r
    st = s.stream(C, comp(max_tokens=3, stream=True), AUTH)
    assert st.status == 200 and st.events[-1] == "[DONE]"
    st2, hd, data = s.request("GET", "/metrics", None, AUTH)
    assert st2 == 200 and b"llamaserve_requests_total" in data
    assert b'status="400"' in data and b'status="405"' in data and b'status="401"' in data


def test_escaped_backslash_not_nul(s):
    # "\\u0000" in JSON is a backslash and the text u0000, not a NUL: accepted, and the prompt
    # keeps every character (/tokenize counts the same tokens as for the text itself)
    body = b'{"content":"In the \\\\u0000 beginning"}'
    st, hd, data = s.request("POST", "/tokenize", body, AUTH)
    assert st == 200, data
    st2, _, ref = s.request("POST", "/tokenize",
                            json.dumps({"content": "In the \\u0000 beginning"}).encode(), AUTH)
    assert st2 == 200 and json.loads(data) == json.loads(ref), (data, ref)
    assert len(json.loads(data)["tokens"]) > 4, data


def main():
    runner = Runner("test_server_errors")
    run_with_server(runner, [test_error_matrix, test_auth, test_body_limits_raw,
                             test_escaped_backslash_not_nul, test_alive_after],
                    "--parallel", "2", "--max-body", MAX_BODY, "--ctx-size", CTX,
                    env={"LLAMASERVE_API_KEY": KEY})
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
