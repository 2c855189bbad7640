#!/usr/bin/python3
"""bench_prompt_cache: what the prompt cache saves, measured on a running llamaserve. A
conversation of TURNS turns, each prompt the previous prompt plus its answer plus NEW fresh
tokens (the way a chat client resends its history), run twice: with the cache and with
"cache_prompt": false. Reports time to first token per turn (client side, streaming) and the
cached_tokens the server reports. Prompts are token ids (the benchmark models carry a
placeholder vocabulary). Usage: bench_prompt_cache.py PORT [FIRST] [NEW] [TURNS] [ANSWER]"""
import random
import sys

from sse_client import post_stream

port = int(sys.argv[1])
first = int(sys.argv[2]) if len(sys.argv) > 2 else 256
new = int(sys.argv[3]) if len(sys.argv) > 3 else 32
turns = int(sys.argv[4]) if len(sys.argv) > 4 else 4
answer = int(sys.argv[5]) if len(sys.argv) > 5 else 16


def turn(prompt, cache):
    """(seconds to the first token, cached_tokens, the answer's token count)."""
    status, t0, events = post_stream(port, {"prompt": prompt, "max_tokens": answer, "temperature": 0,
                                    "ignore_eos": True, "stream": True, "cache_prompt": cache,
                                    "stream_options": {"include_usage": True}})
    if status != 200:
        sys.exit(f"HTTP {status}: a failed request is no measurement")
    ttft = next(t for t, e in events if e["choices"]) - t0
    usage = events[-1][1]["usage"]  # include_usage: the last event carries it
    return ttft, usage["prompt_tokens_details"]["cached_tokens"], usage["completion_tokens"]


rnd = random.Random(7)
# the answer's ids are not known to the client here, so stand-ins of the same length follow
# each turn: what a resent history costs is its length, not its ids (the cached part is the
# previous prompt)
print("| turn | prompt tokens | TTFT cached ms | cached_tokens | TTFT uncached ms |")
print("|---|---|---|---|---|")
prompt = [1] + [rnd.randrange(300, 30000) for _ in range(first - 1)]
for t in range(turns):
    warm = turn(prompt, True)
    cold = turn(prompt, False)
    print(f"| {t + 1} | {len(prompt)} | {warm[0] * 1e3:.0f} | {warm[1]} | {cold[0] * 1e3:.0f} |",
          flush=True)
    prompt = prompt + [rnd.randrange(300, 30000) for _ in range(answer + new)]
