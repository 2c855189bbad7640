"""test_server_grammar: constrained output through the HTTP API, black-box, on kjv-demo.

A corpus of JSON Schemas (tests/schemas/*.json): every output the demo model generates under
each schema must end with finish_reason "stop", parse as JSON and validate against the schema
with an independent validator (python3-jsonschema, formats checked). Also: json_object, GBNF
`grammar`, `json_schema` on /v1/completions, streaming, "length" when the grammar cannot finish,
the 400s (naming the position or schema path), and the same seed giving the same output with
and without other requests in the batch.
"""
import datetime
import glob
import json
import os
import re
import sys
import threading

import jsonschema

from server_harness import Runner, check_error, run_with_server

C, CH = "/v1/completions", "/v1/chat/completions"
SCHEMAS = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "schemas", "*.json")))
SEEDS = (1, 2)  # 18 outputs: enough to see every branch, quick under TSan


def format_checker(cls):
    """The draft's own format checks; RFC 3339 time and date-time (which jsonschema checks only
    with rfc3339-validator, not in Debian) by the standard library's ISO 8601 parser."""
    fc = jsonschema.FormatChecker()
    fc.checkers = dict(cls.FORMAT_CHECKER.checkers)

    def rfc3339(text, date_part):
        m = re.fullmatch(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d(\.\d+)?)(Z|[+-]\d\d:\d\d)" if date_part
                         else r"()(\d\d:\d\d:\d\d(\.\d+)?)(Z|[+-]\d\d:\d\d)", text)
        if not m:
            return False
        # fromisoformat wants at most 6 fraction digits and +00:00 for Z
        iso = text.replace("Z", "+00:00")
        try:
            if date_part:
                datetime.datetime.fromisoformat(iso)
            else:
                datetime.time.fromisoformat(iso)
        except ValueError:
            return False
        return True

    fc.checks("date-time")(lambda t: not isinstance(t, str) or rfc3339(t, True))
    fc.checks("time")(lambda t: not isinstance(t, str) or rfc3339(t, False))
    return fc


def validate(schema, obj, what):
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    v = cls(schema, format_checker=format_checker(cls))
    errors = list(v.iter_errors(obj))
    assert not errors, "%s: %s does not validate: %s" % (what, json.dumps(obj), errors[0].message)


def chat_schema(schema, seed, **kw):
    b = {"messages": [{"role": "user", "content": "Answer in JSON."}], "seed": seed,
         "max_tokens": 200,
         "response_format": {"type": "json_schema",
                             "json_schema": {"name": "t", "schema": schema, "strict": True}}}
    b.update(kw)
    return b


def test_schema_corpus(srv):
    assert len(SCHEMAS) >= 8, SCHEMAS
    n = 0
    for path in SCHEMAS:
        with open(path) as f:
            schema = json.load(f)
        name = os.path.basename(path)
        for seed in SEEDS:
            r = srv.post(CH, chat_schema(schema, seed))
            ch = r["choices"][0]
            what = "%s seed %d" % (name, seed)
            assert ch["finish_reason"] == "stop", "%s: %s" % (what, ch)
            validate(schema, json.loads(ch["message"]["content"]), what)
            n += 1
    print("  %d outputs from %d schemas validated" % (n, len(SCHEMAS)))


def test_json_schema_field_on_completions(srv):
    with open(SCHEMAS[0]) as f:
        schema = json.load(f)
    r = srv.post(C, {"prompt": "And God said", "json_schema": schema, "seed": 9,
                     "max_tokens": 200, "temperature": 0.8})
    assert r["choices"][0]["finish_reason"] == "stop", r
    validate(schema, json.loads(r["choices"][0]["text"]), "completions json_schema")


def test_json_object(srv):
    for route, body in ((C, {"prompt": "In the beginning"}),
                        (CH, {"messages": [{"role": "user", "content": "JSON please"}]})):
        for seed in (4, 5):
            b = dict(body, seed=seed, max_tokens=200, response_format={"type": "json_object"})
            r = srv.post(route, b)
            ch = r["choices"][0]
            text = ch["text"] if route == C else ch["message"]["content"]
            if ch["finish_reason"] == "stop":
                assert isinstance(json.loads(text), dict), text
            else:  # a free JSON object may run out of tokens; what came must be a prefix
                assert ch["finish_reason"] == "length" and text.lstrip().startswith("{"), ch
    # text is the default and changes nothing
    a = srv.post(C, {"prompt": "And", "seed": 3, "max_tokens": 8})
    b = srv.post(C, {"prompt": "And", "seed": 3, "max_tokens": 8,
                     "response_format": {"type": "text"}})
    assert a["choices"][0]["text"] == b["choices"][0]["text"]


def test_gbnf(srv):
    g = 'root ::= ("yes" | "no") ", " [a-z]{2,5} " " num\nnum ::= [1-9] [0-9]{0,2}'
    for seed in SEEDS:
        r = srv.post(C, {"prompt": "And God said", "grammar": g, "seed": seed,
                         "max_tokens": 50})
        text = r["choices"][0]["text"]
        assert re.fullmatch(r"(yes|no), [a-z]{2,5} [1-9][0-9]{0,2}", text), text
        assert r["choices"][0]["finish_reason"] == "stop", r
    # UTF-8 in the grammar; greedy
    r = srv.post(C, {"prompt": "And", "grammar": 'root ::= "\u00e9t\u00e9 " [\u4e00-\u9fff]',
                     "temperature": 0, "max_tokens": 20})
    assert re.fullmatch("\u00e9t\u00e9 [\u4e00-\u9fff]", r["choices"][0]["text"]), r


def test_length(srv):
    r = srv.post(C, {"prompt": "And", "grammar": 'root ::= "a"{40}', "max_tokens": 5,
                     "seed": 1})
    ch = r["choices"][0]
    assert ch["finish_reason"] == "length" and re.fullmatch("a+", ch["text"]), ch


def test_stream(srv):
    b = {"prompt": "In the beginning", "seed": 11, "max_tokens": 200,
         "json_schema": {"type": "object", "properties": {"x": {"enum": [1, 2]},
                                                          "y": {"type": "string",
                                                                "maxLength": 8}},
                         "required": ["x", "y"]}}
    whole = srv.post(C, b)["choices"][0]["text"]
    s = srv.stream(C, dict(b, stream=True))
    assert s.text() == whole, (s.text(), whole)
    obj = json.loads(whole)
    assert obj["x"] in (1, 2) and len(obj["y"]) <= 8, obj


def test_errors(srv):
    def bad(body, param, needle, route=C):
        st, obj, _ = srv.json("POST", route, body)
        check_error(st, obj, 400, param=param, what=needle)
        assert needle in obj["error"]["message"], (needle, obj)

    p = {"prompt": "a", "max_tokens": 4}
    bad(dict(p, grammar='root ::= "a" |\n  foo'), "grammar", "line 2, column 3")
    bad(dict(p, grammar="root ::= [a-"), "grammar", "unterminated character class")
    bad(dict(p, grammar="x ::= \"a\""), "grammar", "no 'root' rule")
    bad(dict(p, grammar=5), "grammar", "must be a string")
    bad(dict(p, json_schema={"type": "object", "properties": {"a": {"pattern": "(?=x)"}}}),
        "json_schema", "#/properties/a/pattern")
    bad(dict(p, json_schema={"type": "string", "format": "email"}), "json_schema",
        "#/format")
    bad(dict(p, json_schema={"$ref": "#/$defs/missing"}), "json_schema", "#/$ref")
    bad(dict(p, json_schema={"type": "number", "minimum": 0.5}), "json_schema", "#/minimum")
    bad(dict(p, json_schema={"type": "object", "properties": {"a": {}},
                             "additionalProperties": True}), "json_schema",
        "#/additionalProperties")
    bad(dict(p, json_schema={"type": "array", "uniqueItems": True}), "json_schema",
        "#/uniqueItems")
    bad(dict(p, response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {
            "a": {"type": "array", "items": {"not": {}}}}}}}), "response_format",
        "#/properties/a/items/not")
    bad(dict(p, response_format={"type": "xml"}), "response_format.type", "'xml'")
    bad(dict(p, response_format={"type": "json_schema"}), "response_format.json_schema",
        "schema")
    bad(dict(p, grammar='root ::= "a"', json_schema={}), "grammar", "at most one")
    bad(dict(p, grammar='root ::= "a"', use_beam_search=True, best_of=2), "use_beam_search",
        "beam")
    m = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    bad(dict(p, tools=tools), "tools", "chat/completions only")  # tools: test_server_tools.py
    bad(dict(m, tools=tools, tool_choice="required", grammar='root ::= "a"'), "tool_choice",
        "cannot be combined", CH)
    r = srv.post(C, dict(p, grammar=""))  # llama.cpp's clients send an empty grammar for none
    assert r["choices"][0]["finish_reason"] in ("stop", "length"), r
    r = srv.post(CH, dict(m, tool_choice="none"))
    assert r["choices"][0]["finish_reason"] in ("stop", "length"), r


def test_determinism_in_batch(srv):
    with open(SCHEMAS[0]) as f:
        schema = json.load(f)
    body = chat_schema(schema, 21, temperature=1.0)
    alone = srv.post(CH, body)["choices"][0]["message"]["content"]
    others = [chat_schema(schema, 99), {"prompt": "And the earth", "max_tokens": 60, "seed": 1}]
    results = {}

    def run(i, b, route):
        results[i] = srv.post(route, b)

    ts = [threading.Thread(target=run, args=(0, body, CH)),
          threading.Thread(target=run, args=(1, others[0], CH)),
          threading.Thread(target=run, args=(2, others[1], C))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results[0]["choices"][0]["message"]["content"] == alone, (results[0], alone)


def main():
    runner = Runner("test_server_grammar")
    run_with_server(runner, [test_schema_corpus, test_json_schema_field_on_completions,
                             test_json_object, test_gbnf, test_length, test_stream, test_errors,
                             test_determinism_in_batch],
                    "--parallel", "3")
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
