#!/usr/bin/python3
"""bench_server: drives a running llamaserve with 1, 2, 4 and 8 concurrent streaming clients and
reports, per concurrency level, the aggregate generated tokens per second (wall clock, prefill
included), the steady decode rate (clients / median inter-token latency), time to first token
(p50, p99) and inter-token latency (p50, p99, and p99 / p50), measured on the client side from
the SSE events. Prompts are token ids (the benchmark models carry a placeholder vocabulary),
ignore_eos keeps every stream at exactly its max_tokens. Every level draws new prompts, so none
hits the prompt cache that an earlier level filled.
Usage: bench_server.py PORT [MAX_TOKENS] [PROMPT_LEN] [ROUNDS] [VOCAB] [LOGPROBS]
ROUNDS (default 1): each client sends ROUNDS requests one after another, each a new prompt, so
that with ROUNDS > 1 new prompts keep being admitted while the other clients stream (the
admission-heavy load of issue 14); their max_tokens are then drawn from [MAX_TOKENS / 2,
3 * MAX_TOKENS / 2] so that the streams end, and the next prompts arrive, at different times.
VOCAB: prompt ids are drawn below it, 30000 by default; 1024 for kjv-demo. LOGPROBS: ask for
that many top log-probabilities per token, 0..5; none by default.
CLIENTS (environment, default 1,2,4,8): the concurrency levels to run."""
import os
import random
import sys
import threading
import time

from sse_client import post_stream

port = int(sys.argv[1])
max_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 64
prompt_len = int(sys.argv[3]) if len(sys.argv) > 3 else 32
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 1
vocab = int(sys.argv[5]) if len(sys.argv) > 5 else 30000
logprobs = int(sys.argv[6]) if len(sys.argv) > 6 else None


def client(seed, out):
    rnd = random.Random(seed)
    for _ in range(rounds):
        n = max_tokens if rounds == 1 else rnd.randint(max_tokens // 2, 3 * max_tokens // 2)
        body = {"prompt": [1] + [rnd.randrange(300, vocab) for _ in range(prompt_len - 1)],
                "max_tokens": n, "temperature": 0, "ignore_eos": True, "stream": True}
        if logprobs is not None:
            body["logprobs"] = logprobs
        status, t0, events = post_stream(port, body)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: a failed request is no measurement")
        out.append((t0, [t for t, e in events if e["choices"] and e["choices"][0].get("text")]))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


print("| clients | aggregate tok/s | decode tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | "
      "ITL p99 ms | ITL p99/p50 |")
print("|---|---|---|---|---|---|---|---|")
for clients in [int(c) for c in os.environ.get("CLIENTS", "1,2,4,8").split(",")]:
    results = []
    # seeds of their own per level: a prompt of an earlier level would hit the prompt cache
    threads = [threading.Thread(target=client, args=(1000 * clients + i, results))
               for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    n_tokens = sum(len(ts) for _, ts in results)
    ttft = [(ts[0] - start) * 1e3 for start, ts in results if ts]
    itl = [(b - a) * 1e3 for _, ts in results for a, b in zip(ts, ts[1:])]
    # decode tok/s: the steady-state rate once every stream is decoding, clients / ITL p50
    print(f"| {clients} | {n_tokens / wall:.1f} | {clients * 1e3 / pct(itl, 50):.1f} | "
          f"{pct(ttft, 50):.0f} | {pct(ttft, 99):.0f} | "
          f"{pct(itl, 50):.1f} | {pct(itl, 99):.1f} | {pct(itl, 99) / pct(itl, 50):.2f} |",
          flush=True)
