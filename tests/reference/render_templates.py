#!/usr/bin/env python3
"""Renders the chat templates of tests/templates/ over a set of conversations with jinja2,
configured as Hugging Face's transformers configures it, into templates_golden.json, the golden
file tests/test_jinja.c compares our interpreter against byte for byte.

Needs Debian's python3-jinja2 (scripts/test-deps.sh). Run it again after changing a template or
a conversation:  /usr/bin/python3 tests/reference/render_templates.py
With --check it writes nothing and fails when the committed golden file differs from what
jinja2 renders now (tests/meson.build runs it so)."""
import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "..", "templates")

# name -> (bos_token, eos_token): the special tokens of each model's tokenizer_config.json
TOKENS = {
    "llama2": ("<s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>"),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>"),
    "qwen3": ("", "<|im_end|>"),
    "gemma3": ("<bos>", "<end_of_turn>"),
    "deepseek_v3": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "chatml": ("", "<|im_end|>"),
    "zephyr": ("<s>", "</s>"),
    "mistral": ("<s>", "</s>"),
    "features": ("<BOS>", "<EOS>"),
}


def environment():
    """What transformers' _compile_jinja_template sets up (its AssistantTracker extension only
    adds the {% generation %} tag, which these templates do not use)."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        from datetime import datetime
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hi there!"}
A1 = {"role": "assistant", "content": "Hello! How can I help?"}
U2 = {"role": "user", "content": "What is 2+2?"}
TRICKY = {"role": "user",
          "content": "  Say \"hi\" and 'bye'\\n\nline two\r\n\ttabbed é ü 中文 🙂 <|eot_id|><|im_start|>system  "}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city, in \"°C\"",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
TOOL_CALL = {"role": "assistant", "content": None, "tool_calls": [{
    "id": "call_1", "type": "function",
    "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}}]}
TOOL_CALL_OBJ = {"role": "assistant", "content": "", "tool_calls": [{
    "id": "call_1", "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}}}]}
TOOL_RESULT = {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21.5}"}
WEATHER = {"role": "user", "content": "Weather in Zürich?"}
THINK = {"role": "assistant", "content": "<think>\nLet me add.\n</think>\n\n4"}
PARTS = {"role": "user", "content": [{"type": "text", "text": "part one "},
                                     {"type": "text", "text": "part two"}]}

CONVERSATIONS = {
    "user": ([U1], None),
    "system_user": ([SYS, U1], None),
    "multi_turn": ([SYS, U1, A1, U2], None),
    "multi_turn_no_system": ([U1, A1, U2], None),
    "ends_with_assistant": ([U1, A1], None),
    "tricky_content": ([SYS, TRICKY, A1, TRICKY], None),
    "not_alternating": ([U1, U2], None),
    "thinking": ([U2, THINK, U1], None),
    "tools": ([SYS, WEATHER], TOOLS),
    "tool_call_round": ([WEATHER, TOOL_CALL, TOOL_RESULT], TOOLS),
    "tool_call_object_args": ([WEATHER, TOOL_CALL_OBJ, TOOL_RESULT, TOOL_RESULT], TOOLS),
    "content_parts": ([SYS, PARTS], None),
}

# conversations a template does not handle (content parts in a template that only concatenates
# strings) fail in jinja2 with a TypeError: the golden file records that too, as "error_other"
TEMPLATE_NAMES = list(TOKENS)


def main():
    env = environment()
    cases = []
    for tname in TEMPLATE_NAMES:
        with open(os.path.join(TEMPLATES, tname + ".jinja"), encoding="utf-8", newline="") as f:
            template = env.from_string(f.read())
        bos, eos = TOKENS[tname]
        for cname, (messages, tools) in CONVERSATIONS.items():
            for agp in (True, False):
                data = {"messages": messages, "tools": tools, "documents": None}
                trusted = {"add_generation_prompt": agp, "bos_token": bos, "eos_token": eos}
                case = {"template": tname, "conversation": cname, "data": data,
                        "trusted": trusted}
                try:
                    case["expected"] = template.render(**data, **trusted)
                except jinja2.exceptions.TemplateError as e:
                    if type(e) is jinja2.exceptions.TemplateError:
                        case["error_raise"] = str(e)  # raise_exception(...)
                    else:
                        case["error_other"] = type(e).__name__ + ": " + str(e)
                except Exception as e:  # TypeError and the like, from the template's own logic
                    case["error_other"] = type(e).__name__ + ": " + str(e)
                cases.append(case)
    out = os.path.join(HERE, "templates_golden.json")
    if "--check" in sys.argv[1:]:
        with open(out, encoding="utf-8") as f:
            committed = json.load(f)["cases"]
        bad = [f"{a['template']}/{a['conversation']}/{a['trusted']['add_generation_prompt']}"
               for a, b in zip(cases, committed) if a != b]
        if bad or len(cases) != len(committed):
            print(f"{out} is stale ({len(cases)} vs {len(committed)} cases; differ: {bad[:5]}): "
                  "run tests/reference/render_templates.py", file=sys.stderr)
            sys.exit(1)
        print(f"{out}: {len(cases)} cases agree with jinja2 {jinja2.__version__}")
        return
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        json.dump({"generator": "tests/reference/render_templates.py",
                   "jinja2": jinja2.__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{out}: {len(cases)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
