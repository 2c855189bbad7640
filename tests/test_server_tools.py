"""test_server_tools: OpenAI function calling through the HTTP API, black-box, on kjv-demo.

tool_choice "required" and a named function force calls by grammar: every call must name a
declared tool and its arguments must validate against the tool's parameter schema with an
independent validator (python3-jsonschema). Also: parallel_tool_calls false gives one call;
streamed tool_calls deltas (OpenAI's shape) add up to the non-streamed calls; "auto" lets the
demo model answer in text; a round trip (call, tool result, answer); "none" keeps the tools out
of the prompt; the Qwen3 template's rendering of a tool history equals python3-jinja2's; the
Llama 3 JSON and Mistral [TOOL_CALLS] syntaxes chosen from a template's text; the 400s.
The demo model's context is 256 tokens: the servers run with --ctx-size 2048 to hold the tool
descriptions (positions past 256 are extrapolated; the grammar keeps the calls valid anyway).
"""
import json
import os
import sys
import tempfile

import jinja2
import jsonschema

from server_harness import Runner, Stream, check_error, run_with_server

CH = "/v1/chat/completions"
HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = (1, 2, 3)

WEATHER = {"type": "object",
           "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 12},
                          "unit": {"enum": ["celsius", "fahrenheit"]},
                          "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city", "unit"], "additionalProperties": False}
SEARCH = {"type": "object",
          "properties": {"query": {"type": "string", "maxLength": 20},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 5},
                                  "maxItems": 2}},
          "required": ["query", "tags"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "search", "parameters": SEARCH}},
         {"type": "function", "function": {"name": "now"}}]
SCHEMAS = {"get_weather": WEATHER, "search": SEARCH, "now": {"type": "object", "maxProperties": 0}}


def req(**kw):
    b = {"messages": [{"role": "user", "content": "What is the weather in Ur?"}],
         "tools": TOOLS, "max_tokens": 1200}  # room for 8 calls (TOOLS_MAX_CALLS)
    b.update(kw)
    return b


def check_calls(msg, names=None):
    """The message's tool_calls, each valid: returns [(name, arguments dict)]."""
    calls = msg.get("tool_calls")
    assert isinstance(calls, list) and calls, msg
    out = []
    for c in calls:
        assert set(c) == {"id", "type", "function"}, c
        assert c["type"] == "function" and c["id"].startswith("call_") and len(c["id"]) > 10, c
        name, args = c["function"]["name"], c["function"]["arguments"]
        assert name in (names or SCHEMAS), c
        assert isinstance(args, str), c
        obj = json.loads(args)
        jsonschema.validate(obj, SCHEMAS[name])
        out.append((name, obj))
    assert len({c["id"] for c in calls}) == len(calls), "ids must differ: %s" % calls
    return out


def test_required(srv):
    for seed in SEEDS:
        r = srv.post(CH, req(tool_choice="required", seed=seed))
        ch = r["choices"][0]
        assert ch["finish_reason"] == "tool_calls", ch
        assert ch["message"]["content"] is None, ch
        assert ch["message"]["role"] == "assistant"
        check_calls(ch["message"])


def test_named(srv):
    for seed in SEEDS:
        for name in ("get_weather", "search"):
            r = srv.post(CH, req(seed=seed, tool_choice={"type": "function",
                                                          "function": {"name": name}}))
            ch = r["choices"][0]
            assert ch["finish_reason"] == "tool_calls", ch
            calls = check_calls(ch["message"], names=[name])
            assert all(n == name for n, _ in calls)


def test_parallel_false(srv):
    for seed in SEEDS + (4, 5, 6):
        r = srv.post(CH, req(tool_choice="required", parallel_tool_calls=False, seed=seed))
        calls = check_calls(r["choices"][0]["message"])
        assert len(calls) == 1, calls


def stream_calls(srv, body):
    """The calls a stream sends, put together from its deltas, its content and finish."""
    s = Stream(srv, CH, dict(body, stream=True)).read_all()
    calls, content, finish = {}, "", None
    for ev in s.json_events():
        for ch in ev["choices"]:
            d = ch["delta"]
            content += d.get("content") or ""
            for tc in d.get("tool_calls", []):
                k = tc["index"]
                if k not in calls:  # the first delta of a call: id, type and name
                    assert tc["type"] == "function" and isinstance(tc["id"], str), tc
                    assert tc["function"]["arguments"] == "", tc
                    calls[k] = {"id": tc["id"], "type": "function",
                                "function": {"name": tc["function"]["name"], "arguments": ""}}
                else:  # then fragments of the arguments only
                    assert set(tc) == {"index", "function"}, tc
                    assert set(tc["function"]) == {"arguments"}, tc
                    calls[k]["function"]["arguments"] += tc["function"]["arguments"]
            if ch["finish_reason"]:
                finish = ch["finish_reason"]
    assert s.events[-1] == "[DONE]"
    assert sorted(calls) == list(range(len(calls))), calls
    return [calls[k] for k in sorted(calls)], content, finish


def test_stream(srv):
    for seed in SEEDS:
        body = req(tool_choice="required", seed=seed)
        whole = srv.post(CH, body)["choices"][0]
        calls, content, finish = stream_calls(srv, body)
        assert finish == "tool_calls" and content == "", (finish, content)
        strip = [(c["function"]["name"], c["function"]["arguments"]) for c in calls]
        want = [(c["function"]["name"], c["function"]["arguments"])
                for c in whole["message"]["tool_calls"]]
        assert strip == want, (strip, want)
        check_calls({"tool_calls": calls})  # ids "call_..." too


def test_auto(srv):
    """The demo model knows nothing of tools: under auto it answers in text."""
    for seed in SEEDS:
        body = req(tool_choice="auto", seed=seed, max_tokens=24)
        ch = srv.post(CH, body)["choices"][0]
        assert "tool_calls" not in ch["message"], ch
        assert isinstance(ch["message"]["content"], str) and ch["message"]["content"], ch
        assert ch["finish_reason"] in ("stop", "length"), ch
        calls, content, finish = stream_calls(srv, body)
        assert not calls and content == ch["message"]["content"], (content, ch)
        assert finish == ch["finish_reason"]


def test_round_trip(srv):
    first = srv.post(CH, req(tool_choice="required", parallel_tool_calls=False, seed=7))
    msg = first["choices"][0]["message"]
    (name, args), = check_calls(msg)
    history = [{"role": "user", "content": "What is the weather in Ur?"}, msg,
               {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"],
                "content": json.dumps({"result": "sunny", "args": args})}]
    r = srv.post(CH, req(messages=history, max_tokens=16, seed=8))
    ch = r["choices"][0]
    assert ch["finish_reason"] in ("stop", "length") and isinstance(ch["message"]["content"], str)
    # the call and its result are in the prompt the model saw
    st, p, _ = srv.json("POST", "/apply-template", {"messages": history, "tools": TOOLS})
    assert st == 200, p
    assert '"name": "%s"' % name in p["prompt"] and "<tool_response>" in p["prompt"], p
    assert "sunny" in p["prompt"], p


def test_none(srv):
    st, auto, _ = srv.json("POST", "/apply-template", {"messages": req()["messages"],
                                                        "tools": TOOLS})
    st2, none, _ = srv.json("POST", "/apply-template", {"messages": req()["messages"],
                                                         "tools": TOOLS, "tool_choice": "none"})
    assert st == st2 == 200
    assert "get_weather" in auto["prompt"] and "get_weather" not in none["prompt"], none
    ch = srv.post(CH, req(tool_choice="none", max_tokens=8, seed=1))["choices"][0]
    assert "tool_calls" not in ch["message"] and ch["finish_reason"] in ("stop", "length"), ch


def test_errors(srv):
    def bad(body, param, needle, route=CH):
        st, obj, _ = srv.json("POST", route, body)
        check_error(st, obj, 400, param=param, what=needle)
        assert needle in obj["error"]["message"], (needle, obj)

    bad(req(tools={"f": 1}), "tools", "array")
    bad(req(tools=[{"type": "function", "function": {"name": "has space"}}]), "tools",
        "tools[0].function.name")
    bad(req(tool_choice={"type": "function", "function": {"name": "rm"}}), "tool_choice", "'rm'")
    bad(req(tool_choice="sometimes"), "tool_choice", "must be")
    bad(req(tools=None, tool_choice="required"), "tool_choice", "needs 'tools'")
    bad(req(parallel_tool_calls="yes"), "parallel_tool_calls", "boolean")
    bad(req(tool_choice="required", tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {
            "x": {"type": "string", "format": "email"}}}}}]),
        "tools", "#/properties/x/format")
    bad(req(tool_choice="required", response_format={"type": "json_object"}), "tool_choice",
        "cannot be combined")
    bad({"prompt": "a", "tools": TOOLS}, "tools", "chat/completions only", "/v1/completions")
    bad(req(functions=[{"name": "f"}]), "functions", "tools")


# --- native templates -------------------------------------------------------------------

def qwen3_history():
    return [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Ur and Nineveh?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather",
                              "arguments": '{"city": "Ur", "unit": "celsius"}'}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_weather",
                              "arguments": '{"city": "Nineveh", "unit": "celsius"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "rain"}]


def test_qwen3(srv):
    """Hermes syntax from the template; its tool history renders as python3-jinja2 renders it
    with the arguments as objects (what Hugging Face templates expect)."""
    history = qwen3_history()
    st, p, _ = srv.json("POST", "/apply-template", {"messages": history, "tools": TOOLS})
    assert st == 200, p
    with open(os.path.join(HERE, "templates", "qwen3.jinja")) as f:
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False,
                                                                  indent=indent)
        tmpl = env.from_string(f.read())
    ref_msgs = json.loads(json.dumps(history))
    for m in ref_msgs:
        if m.get("content") is None:
            m["content"] = ""
        for c in m.get("tool_calls", []):
            c["function"]["arguments"] = json.loads(c["function"]["arguments"])
    want = tmpl.render(messages=ref_msgs, tools=TOOLS, add_generation_prompt=True,
                       bos_token="<s>", eos_token="</s>")
    assert p["prompt"] == want, "\n--- got\n%s\n--- want\n%s" % (p["prompt"], want)
    for seed in SEEDS:
        ch = srv.post(CH, req(tool_choice="required", seed=seed))["choices"][0]
        assert ch["finish_reason"] == "tool_calls", ch
        check_calls(ch["message"])


LLAMA3_TOOLS = ("{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
                "{% if m.tool_calls %}{% for c in m.tool_calls %}{\"name\": \"{{ c.function.name }}\","
                " \"parameters\": {{ c.function.arguments | tojson }}}{% endfor %}"
                "{% else %}{{ m.content }}{% endif %}<|eot_id|>{% endfor %}"
                "{% if tools %}Tools: {{ tools | tojson }}{% endif %}"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
MISTRAL_TOOLS = ("{% if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif %}"
                 "{% for m in messages %}{% if m.role == 'user' %}[INST]{{ m.content }}[/INST]"
                 "{% elif m.tool_calls %}[TOOL_CALLS]{{ m.tool_calls | tojson }}</s>"
                 "{% else %}{{ m.content }}{% endif %}{% endfor %}")


def test_syntax(expect_prefix, id_len):
    def run(srv):
        for seed in SEEDS:
            r = srv.post(CH, req(tool_choice="required", seed=seed))
            ch = r["choices"][0]
            assert ch["finish_reason"] == "tool_calls", ch
            msg = ch["message"]
            assert msg["content"] is None, msg
            for c in msg["tool_calls"]:
                name = c["function"]["name"]
                jsonschema.validate(json.loads(c["function"]["arguments"]), SCHEMAS[name])
                assert c["id"].startswith(expect_prefix) and len(c["id"]) == id_len, c
            # the raw text the grammar forced is in that syntax: the stream never shows it as
            # content, and its calls are the same
            calls, content, finish = stream_calls(srv, req(tool_choice="required", seed=seed))
            assert content == "" and finish == "tool_calls"
            assert [c["function"] for c in calls] == [c["function"] for c in msg["tool_calls"]]
            assert all(c["id"].startswith(expect_prefix) and len(c["id"]) == id_len
                       for c in calls), calls
    run.__name__ = "test_syntax_%d" % id_len
    return run


def main():
    runner = Runner("test_server_tools")
    run_with_server(runner, [test_required, test_named, test_parallel_false, test_stream,
                             test_auto, test_round_trip, test_none, test_errors],
                    "--ctx-size", "2048", "--parallel", "2")
    run_with_server(runner, [test_qwen3], "--ctx-size", "2048", "--chat-template-file",
                    os.path.join(HERE, "templates", "qwen3.jinja"))
    with tempfile.TemporaryDirectory() as d:
        for name, src, prefix, n in (("llama3", LLAMA3_TOOLS, "call_", 29),
                                     ("mistral", MISTRAL_TOOLS, "", 9)):
            path = os.path.join(d, name + ".jinja")
            with open(path, "w") as f:
                f.write(src)
            run_with_server(runner, [test_syntax(prefix, n)], "--ctx-size", "2048",
                            "--chat-template-file", path)
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
