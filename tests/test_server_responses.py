"""test_server_responses: black-box tests of POST /v1/responses, OpenAI's Responses API.

The reference is the chat route (tested on its own in test_server_api.py): a Responses request
runs the same prompt as the chat request it stands for, so its text and token counts must equal
chat's, greedy. Checks the response object's shape, the semantic SSE events (names, order,
sequence numbers, the deltas adding up to the whole text), completed and incomplete answers,
structured output (text.format as chat's response_format), that every unsupported field or
input type is a 400 naming it, and that a stream cut by shutdown ends with an error event.
"""
import json
import signal
import sys

from server_harness import Runner, Server, check_error, run_with_server

ALIAS = "kjv-resp"
QUESTION = "Who made the heaven?"

RESPONSE_KEYS = {
    "id", "object", "created_at", "status", "background", "error", "incomplete_details",
    "instructions", "max_output_tokens", "max_tool_calls", "model", "output",
    "parallel_tool_calls", "previous_response_id", "reasoning", "service_tier", "store",
    "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p", "truncation",
    "usage", "user", "metadata"}


def chat(srv, messages, max_tokens, **kw):
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0}
    body.update(kw)
    return srv.post("/v1/chat/completions", body)


def check_response(r, status, text=None, fmt=None):
    """The response object of a finished request, and its one message."""
    fmt = fmt or {"type": "text"}
    assert set(r) == RESPONSE_KEYS, sorted(set(r) ^ RESPONSE_KEYS)
    assert r["id"].startswith("resp_") and len(r["id"]) > 10, r["id"]
    assert r["object"] == "response" and r["model"] == ALIAS, r
    assert isinstance(r["created_at"], int) and r["created_at"] > 1_600_000_000, r
    assert r["status"] == status and r["error"] is None, r
    if status == "incomplete":
        assert r["incomplete_details"] == {"reason": "max_output_tokens"}, r
    else:
        assert r["incomplete_details"] is None, r
    assert r["store"] is False and r["tools"] == [] and r["text"] == {"format": fmt}, r
    assert len(r["output"]) == 1, r["output"]
    m = r["output"][0]
    assert set(m) == {"type", "id", "status", "role", "content"}, m
    assert m["type"] == "message" and m["role"] == "assistant", m
    assert m["id"] == "msg_" + r["id"][len("resp_"):], (m["id"], r["id"])
    assert m["status"] == status, m
    assert len(m["content"]) == 1, m
    part = m["content"][0]
    assert set(part) == {"type", "text", "annotations", "logprobs"}, part
    assert part["type"] == "output_text" and part["annotations"] == [], part
    if text is not None:
        assert part["text"] == text, (part["text"], text)
    u = r["usage"]
    assert set(u) == {"input_tokens", "input_tokens_details", "output_tokens",
                      "output_tokens_details", "total_tokens"}, u
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"], u
    assert set(u["input_tokens_details"]) == {"cached_tokens"}, u
    assert u["output_tokens_details"] == {"reasoning_tokens": 0}, u
    return part["text"]


def same_as_chat(srv, body, messages, max_tokens, **chat_kw):
    """Runs body on /v1/responses and its chat equivalent: text and token counts agree."""
    r = srv.post("/v1/responses", body)
    c = chat(srv, messages, max_tokens, **chat_kw)
    want = "completed" if c["choices"][0]["finish_reason"] == "stop" else "incomplete"
    check_response(r, want, c["choices"][0]["message"]["content"],
                   body.get("text", {}).get("format"))
    assert r["usage"]["input_tokens"] == c["usage"]["prompt_tokens"], (r["usage"], c["usage"])
    assert r["usage"]["output_tokens"] == c["usage"]["completion_tokens"], (r["usage"], c["usage"])
    return r


def test_string_input_and_instructions(srv):
    r = same_as_chat(srv, {"model": "gpt-4.1", "input": QUESTION, "max_output_tokens": 12,
                           "temperature": 0},
                     [{"role": "user", "content": QUESTION}], 12)
    assert r["instructions"] is None and r["max_output_tokens"] == 12 and r["temperature"] == 0
    r = same_as_chat(srv, {"input": QUESTION, "instructions": "Answer briefly.",
                           "max_output_tokens": 12, "temperature": 0},
                     [{"role": "system", "content": "Answer briefly."},
                      {"role": "user", "content": QUESTION}], 12)
    assert r["instructions"] == "Answer briefly.", r["instructions"]


def test_message_list_input(srv):
    """Roles, string content and input_text/output_text parts, as the SDKs send them."""
    body = {"input": [
        {"role": "developer", "content": "Answer briefly."},
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "In the beginning"},
                     {"type": "input_text", "text": "God created"}]},
        {"role": "assistant", "id": "msg_earlier", "status": "completed",
         "content": [{"type": "output_text", "text": "the heaven", "annotations": []}]},
        {"role": "user", "content": QUESTION}],
        "max_output_tokens": 10, "temperature": 0, "store": False}
    # the chat route joins text parts with a newline
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "In the beginning\nGod created"},
                {"role": "assistant", "content": "the heaven"},
                {"role": "user", "content": QUESTION}]
    same_as_chat(srv, body, messages, 10)


def test_completed_and_incomplete(srv):
    """Cut at max_output_tokens: incomplete; ended by a stop string (the chat route's
    extension, passed through): completed."""
    r = srv.post("/v1/responses", {"input": QUESTION, "max_output_tokens": 3, "temperature": 0})
    check_response(r, "incomplete")
    assert r["usage"]["output_tokens"] == 3, r["usage"]
    c = chat(srv, [{"role": "user", "content": QUESTION}], 40)
    text = c["choices"][0]["message"]["content"]
    word = text.split()[2]
    stop_body = {"input": QUESTION, "max_output_tokens": 40, "temperature": 0, "stop": [word]}
    r = same_as_chat(srv, stop_body, [{"role": "user", "content": QUESTION}], 40, stop=[word])
    assert r["status"] == "completed", r["status"]
    assert word not in r["output"][0]["content"][0]["text"], r["output"]


def open_sse(srv, body):
    """A streaming POST /v1/responses: (connection, response), its headers checked."""
    c = srv.conn()
    c.request("POST", "/v1/responses", body=json.dumps(body).encode(),
              headers={"Content-Type": "application/json"})
    resp = c.getresponse()
    assert resp.status == 200, (resp.status, resp.read())
    assert resp.getheader("Content-Type") == "text/event-stream", resp.getheaders()
    return c, resp


def parse_sse(raw):
    """(event name, data) for each event of a stream's text; every event has both."""
    assert raw.endswith("\n\n"), raw[-80:]
    events = []
    for block in raw[:-2].split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2, block
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        events.append((lines[0][7:], json.loads(lines[1][6:])))
    return events


def read_sse(srv, body):
    c, resp = open_sse(srv, body)
    try:
        return parse_sse(resp.read().decode("utf-8"))
    finally:
        c.close()


def test_stream(srv):
    body = {"input": QUESTION, "instructions": "Answer briefly.", "max_output_tokens": 12,
            "temperature": 0}
    whole = srv.post("/v1/responses", body)
    events = read_sse(srv, dict(body, stream=True))
    names = [n for n, _ in events]
    n_delta = names.count("response.output_text.delta")
    assert n_delta >= 1, names
    assert names == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added"] + ["response.output_text.delta"] * n_delta + [
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.incomplete"], names
    for i, (name, data) in enumerate(events):
        assert data["type"] == name and data["sequence_number"] == i, (i, name, data)
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [], created
    assert created["usage"] is None and set(created) == RESPONSE_KEYS, created
    final = events[-1][1]["response"]
    text = check_response(final, "incomplete", whole["output"][0]["content"][0]["text"])
    assert final["id"] == created["id"] and final["id"] != whole["id"], (final["id"], whole["id"])
    assert final["usage"]["output_tokens"] == whole["usage"]["output_tokens"] == 12
    mid = final["output"][0]["id"]
    item = events[2][1]
    assert item["output_index"] == 0 and item["item"]["id"] == mid, item
    assert item["item"]["status"] == "in_progress" and item["item"]["content"] == [], item
    for name, data in events[3:-2]:
        assert (data["item_id"], data["output_index"], data["content_index"]) == (mid, 0, 0), data
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert all(deltas), deltas
    assert "".join(deltas) == text, (deltas, text)
    assert events[-4][1]["text"] == text, events[-4]
    assert events[-3][1]["part"] == final["output"][0]["content"][0], events[-3]
    assert events[-2][1]["item"] == final["output"][0], events[-2]


def test_stream_completed(srv):
    c = chat(srv, [{"role": "user", "content": QUESTION}], 40)
    word = c["choices"][0]["message"]["content"].split()[2]
    events = read_sse(srv, {"input": QUESTION, "max_output_tokens": 40, "temperature": 0,
                            "stop": word, "stream": True})
    assert events[-1][0] == "response.completed", [n for n, _ in events]
    check_response(events[-1][1]["response"], "completed")


BAD = [
    # (body, param, what)
    ({"input": QUESTION, "store": True}, "store", "store true"),
    ({"input": QUESTION, "store": "no"}, "store", "store not a boolean"),
    ({}, "input", "input missing"),
    ({"input": []}, "input", "input empty"),
    ({"input": 7}, "input", "input a number"),
    ({"input": ["hello"]}, "input[0]", "an item that is not an object"),
    ({"input": [{"type": "function_call_output", "call_id": "c1", "output": "x"}]},
     "input[0].type", "a function call output item"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "item_reference"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "role tool"),
    ({"input": [{"role": "user", "content": [{"type": "input_image",
                                               "image_url": "https://example.com/a.png"}]}]},
     "input[0].content[0].type", "input_image"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"},
                                              {"type": "input_file", "file_id": "f"}]}]},
     "input[0].content[1].type", "input_file"),
    ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
     "input[0].content[0]", "input_text without text"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content", "content a number"),
    ({"input": QUESTION, "instructions": 3}, "instructions", "instructions not a string"),
    ({"input": QUESTION, "max_output_tokens": 0}, "max_output_tokens", "max_output_tokens 0"),
    ({"input": QUESTION, "max_output_tokens": 2.5}, "max_output_tokens", "fractional"),
    ({"input": QUESTION, "max_output_tokens": 10 ** 9}, "max_output_tokens", "over the limit"),
    ({"input": QUESTION, "temperature": 3}, "temperature", "temperature out of range"),
    ({"input": QUESTION, "top_p": "x"}, "top_p", "top_p not a number"),
    ({"input": QUESTION, "stream": "yes"}, "stream", "stream not a boolean"),
    ({"input": QUESTION, "tools": [{"type": "function", "name": "f", "parameters": {}}]},
     "tools", "tools"),
    ({"input": QUESTION, "tools": [{"type": "web_search"}]}, "tools", "a built-in tool"),
    ({"input": QUESTION, "tool_choice": "required"}, "tool_choice", "tool_choice required"),
    ({"input": QUESTION, "previous_response_id": "resp_1"}, "previous_response_id",
     "previous_response_id"),
    ({"input": QUESTION, "conversation": "conv_1"}, "conversation", "conversation"),
    ({"input": QUESTION, "background": True}, "background", "background"),
    ({"input": QUESTION, "include": ["message.output_text.logprobs"]}, "include", "include"),
    ({"input": QUESTION, "truncation": "auto"}, "truncation", "truncation auto"),
    ({"input": QUESTION, "top_logprobs": 3}, "top_logprobs", "top_logprobs"),
    ({"input": QUESTION, "reasoning": {"effort": "high"}}, "reasoning", "reasoning effort"),
    ({"input": QUESTION, "text": {"format": {"type": "xml"}}}, "text.format", "format xml"),
    ({"input": QUESTION, "text": {"format": "json"}}, "text.format", "format a string"),
    ({"input": QUESTION, "text": {"format": {"type": "json_schema", "name": "x"}}},
     "text.format", "json_schema without a schema"),
    ({"input": QUESTION, "text": {"format": {"type": "json_schema", "name": "x",
                                             "schema": {"type": "frobnicate"}}}},
     "text.format", "json_schema with a bad schema"),
    ({"input": QUESTION, "text": {"verbosity": "low"}}, "text", "verbosity"),
    ({"input": QUESTION, "metadata": "x"}, "metadata", "metadata not an object"),
]


def test_errors(srv):
    for body, param, what in BAD:
        st, obj, _ = srv.json("POST", "/v1/responses", body)
        check_error(st, obj, 400, param=param, what=what)
    # what the Vercel AI SDK sends for an earlier answer by default: the way out is named
    st, obj, _ = srv.json("POST", "/v1/responses", {"input": [
        {"role": "user", "content": "Hi"}, {"type": "item_reference", "id": "msg_1"}]})
    check_error(st, obj, 400, param="input[1].type", what="item_reference")
    assert "store = false" in obj["error"]["message"], obj
    st, obj, _ = srv.json("POST", "/v1/responses", "{not json")
    check_error(st, obj, 400, what="not JSON")
    st, obj, _ = srv.json("POST", "/v1/responses", {"input": "And God said " * 400})
    check_error(st, obj, 400, param="input", code="context_length_exceeded", what="too long")
    st, models, _ = srv.json("GET", "/v1/models")
    n_ctx = models["data"][0]["meta"]["n_ctx_slot"]
    st, obj, _ = srv.json("POST", "/v1/responses", {"input": QUESTION, "max_output_tokens": n_ctx})
    check_error(st, obj, 400, param="max_output_tokens", code="context_length_exceeded",
                what="prompt and max_output_tokens over the context")
    st, obj, _ = srv.json("GET", "/v1/responses")
    check_error(st, obj, 405, what="GET")


def test_accepted_at_their_off_values(srv):
    """What the SDKs send by default: accepted, and repeated in the answer."""
    r = srv.post("/v1/responses", {
        "input": QUESTION, "max_output_tokens": 2, "store": False, "tools": [],
        "tool_choice": "auto", "parallel_tool_calls": False, "text": {"format": {"type": "text"}},
        "reasoning": {"effort": None}, "truncation": "disabled", "include": [],
        "metadata": {"k": "v"}, "user": "u1", "top_p": 0.5, "stream": False})
    check_response(r, "incomplete")
    assert (r["metadata"], r["user"], r["top_p"], r["parallel_tool_calls"]) == (
        {"k": "v"}, "u1", 0.5, False), r


def test_structured_output(srv):
    """text.format json_schema and json_object: chat's response_format, the same output."""
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    fmt = {"type": "json_schema", "name": "person", "schema": schema, "strict": True}
    messages = [{"role": "user", "content": "Describe a person of the Bible."}]
    r = same_as_chat(srv, {"input": messages, "max_output_tokens": 120, "temperature": 0,
                           "text": {"format": fmt}},
                     messages, 120, response_format={"type": "json_schema", "json_schema": {
                         "name": "person", "schema": schema, "strict": True}})
    assert r["status"] == "completed", r
    o = json.loads(r["output"][0]["content"][0]["text"])
    assert sorted(o) == ["age", "name"] and isinstance(o["age"], int), o
    r = same_as_chat(srv, {"input": messages, "max_output_tokens": 120, "temperature": 0,
                           "text": {"format": {"type": "json_object"}}},
                     messages, 120, response_format={"type": "json_object"})
    assert isinstance(json.loads(r["output"][0]["content"][0]["text"]), dict), r


def test_metrics_label(srv):
    srv.post("/v1/responses", {"input": QUESTION, "max_output_tokens": 1})
    m = srv.metrics()
    key = 'llamaserve_requests_total{route="/v1/responses",status="200"}'
    assert m.get(key, 0) >= 1, [k for k in m if "requests_total" in k]


def test_shutdown_cuts_stream_with_error_event(runner):
    """SIGTERM with --shutdown-timeout 0 mid-stream: an error event ends a properly terminated
    body, numbered after the rest; no response.completed; the server exits 0."""
    # 4000 tokens (--ctx-size 4096): far from done when the signal comes
    s = Server("--shutdown-timeout", "0", "--ctx-size", "4096", "--alias", ALIAS)
    try:
        c, resp = open_sse(s, {"input": QUESTION, "max_output_tokens": 4000, "stream": True})
        head = b""
        while b"response.output_text.delta" not in head:
            line = resp.readline()
            assert line, head
            head += line
        s.signal(signal.SIGTERM)
        raw = (head + resp.read()).decode("utf-8")  # a cut chunked body raises here
        c.close()
        events = parse_sse(raw)
        names = [n for n, _ in events]
        assert names[-1] == "error" and names.count("error") == 1, names[-3:]
        assert not any(n in names for n in ("response.completed", "response.incomplete")), names
        err = events[-1][1]
        assert set(err) == {"type", "sequence_number", "code", "message", "param"}, err
        assert err["code"] == "server_error" and err["message"], err
        assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
        rc = s.wait_exit()
        assert rc == 0, "exit %d\n%s" % (rc, s.tail())
        assert not s.sanitizer_report(), s.tail()
    finally:
        s.kill()


def main():
    runner = Runner("test_server_responses")
    run_with_server(runner, [
        test_string_input_and_instructions, test_message_list_input, test_completed_and_incomplete,
        test_stream, test_stream_completed, test_errors, test_accepted_at_their_off_values,
        test_structured_output, test_metrics_label,
    ], "--alias", ALIAS, "--parallel", "2")
    runner.run(test_shutdown_cuts_stream_with_error_event, runner)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
