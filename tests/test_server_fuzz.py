"""test_server_fuzz: seeded random requests against `llamaserve serve`, as a black box.

Valid completions, chat, /tokenize and /detokenize bodies are mutated at random (fields set to
values of the wrong type or range, removed, nested, messages rewritten, stop lists of anything)
and a few are damaged byte by byte. Whatever arrives, the server must answer 200 with a JSON
body (an SSE stream for stream requests) or an error status with an OpenAI error object, stay
up, and end with every slot free and the queue empty. The sanitizer builds of CI run it too (a
sanitizer report fails the test when the server stops). The seed is fixed: a failure repeats.
"""
import json
import random
import sys

from server_harness import Runner, check_error, run_with_server

N_REQUESTS = 400
SEED = 20261128

KEYS = ["prompt", "messages", "max_tokens", "temperature", "top_p", "top_k", "min_p", "n",
        "stream", "stop", "seed", "logprobs", "top_logprobs", "echo", "presence_penalty",
        "frequency_penalty", "repeat_penalty", "logit_bias", "ignore_eos", "use_beam_search",
        "best_of", "length_penalty", "stream_options", "model", "content", "tokens",
        "add_special", "max_completion_tokens", "cache_prompt", "user"]
ROUTES = ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"]


def rand_value(rng, depth=0):
    r = rng.random()
    if depth < 3 and r < 0.12:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if depth < 3 and r < 0.2:
        return {rng.choice(KEYS): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return rng.choice([None, True, False, 0, -1, 1, 3, 2 ** 31, 2 ** 63, -2 ** 63, 1e308,
                       -1e308, 0.5, -0.0, 1e-320, "", "a", "In the beginning",
                       "\u00e9\u2014\U0001F600", "<s>", "</s>", "[INST]", "\\", "\u2581",
                       "x" * rng.randint(0, 2000), [1, 2, 3], [[1, 450]]])


def base_body(rng, route):
    if route == "/v1/completions":
        return {"prompt": "In the beginning", "max_tokens": rng.randint(0, 6)}
    if route == "/v1/chat/completions":
        return {"messages": [{"role": "user", "content": "Who made heaven?"}],
                "max_tokens": rng.randint(0, 6)}
    if route == "/tokenize":
        return {"content": "In the beginning"}
    return {"tokens": [1, 512, 600]}


# values each field accepts (edges included): requests built from these run to the end
VALID = {
    "max_tokens": [0, 1, 5, 12], "temperature": [0, 0.01, 0.7, 2], "top_p": [0, 0.3, 1],
    "top_k": [0, 1, 40], "min_p": [0, 0.2, 1], "n": [1, 2], "stream": [True, False],
    "stop": [None, "", "the", ["\n", "and"], ["a", "b", "c", "d"]], "seed": [0, 7, -1, 2 ** 40],
    "logprobs": [None, 0, 3], "echo": [True, False], "presence_penalty": [-2, 0, 1.5],
    "frequency_penalty": [-2, 0, 2], "repeat_penalty": [0.5, 1, 1.3], "ignore_eos": [True],
    "logit_bias": [{"450": 5}, {"1": -100, "2": 100}], "cache_prompt": [True, False],
    "stream_options": [{"include_usage": True}], "prompt": ["", "a", [1], [1, 450, 600],
                                                            "\u00e9\u2014 " * 20],
}


def mutate_valid(rng, body):
    for _ in range(rng.randint(1, 5)):
        key = rng.choice(sorted(VALID))
        if key == "prompt" and "messages" in body:
            continue
        if key in ("logprobs", "echo") and "messages" in body:
            continue  # chat's logprobs is a boolean; leave it to the wild mutations
        body[key] = rng.choice(VALID[key])
    if body.get("stream") is not True:
        body.pop("stream_options", None)
    return body


def mutate(rng, body):
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        key = rng.choice(KEYS)
        if r < 0.6:
            body[key] = rand_value(rng)
        elif r < 0.7:
            body.pop(key, None)
        elif r < 0.85:
            body["messages"] = [{"role": rng.choice(["user", "system", "assistant", "tool", "",
                                                     5]),
                                 "content": rand_value(rng)} for _ in range(rng.randint(0, 4))]
        else:
            body["stop"] = [rand_value(rng) for _ in range(rng.randint(0, 6))]
    return body


def check_answer(route, body, status, headers, data):
    what = "%s %r" % (route, body[:200])
    if status >= 400:
        try:
            obj = json.loads(data.decode("utf-8"))
        except ValueError:
            raise AssertionError("%s: status %d, body not JSON: %r" % (what, status, data[:200]))
        check_error(status, obj, status, what=what)
        assert status in (400, 404, 413, 503), "%s: status %d" % (what, status)
        return
    assert status == 200, "%s: status %d" % (what, status)
    if headers.get("content-type", "").startswith("text/event-stream"):
        events = [e[6:] for e in data.decode("utf-8").split("\n\n") if e.startswith("data: ")]
        assert events, "%s: an empty stream" % what
        for e in events[:-1]:
            json.loads(e)
        assert events[-1] == "[DONE]" or "error" in json.loads(events[-1]), (what, events[-1])
    else:
        json.loads(data.decode("utf-8"))


def test_random_requests(s):
    rng = random.Random(SEED)
    counts = {}
    for _ in range(N_REQUESTS):
        route = rng.choice(ROUTES)
        generation = route.startswith("/v1/")
        fn = mutate_valid if generation and rng.random() < 0.5 else mutate
        body = json.dumps(fn(rng, base_body(rng, route))).encode()
        if rng.random() < 0.05:  # damage a few bytes
            raw = bytearray(body)
            for _ in range(rng.randint(1, 5)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            body = bytes(raw)
        status, headers, data = s.request("POST", route, body)
        check_answer(route, body, status, headers, data)
        assert s.alive(), "the server died on %s %r" % (route, body[:300])
        key = (generation, status, headers.get("content-type", "").split(";")[0])
        counts[key] = counts.get(key, 0) + 1
    # the mix reached generation (whole and streamed), not only the validation
    assert counts.get((True, 200, "application/json"), 0) > N_REQUESTS // 10, counts
    assert counts.get((True, 200, "text/event-stream"), 0) > N_REQUESTS // 40, counts
    assert sum(v for k, v in counts.items() if k[1] == 400) > N_REQUESTS // 10, counts
    s.wait_metrics(lambda m: m["llamaserve_slots_busy"] == 0 and
                   m["llamaserve_queue_depth"] == 0, "every slot free after the fuzzing")


def main():
    runner = Runner("test_server_fuzz")
    run_with_server(runner, [test_random_requests], "--parallel", "2", "--ctx-size", "256",
                    "--max-queue", "8")
    runner.finish()


if __name__ == "__main__":
    sys.exit(main())
