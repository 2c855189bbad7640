#!/usr/bin/python3
"""sim_prefill_budget: a model of the scheduler's step sizing, to choose prefill_step_pct without
a quiet machine. It replays bench_server.py's loads (all clients at once; with ROUNDS > 1, each
client's next prompt as its stream ends) through the scheduler's rule (decoding rows first, then
prompt rows oldest first: batch_size - decoding rows, at least 8, or with a limit PCT
(PCT/100 - 1) * (fixed/per_row + decoding rows), at least 4) on a step cost taken from the
2026-11-28 server sweep of this host (TinyLlama Q4_0, 2 Zen 4 cores: 1 row 23.8 ms, 2: 27,
3: 30, n >= 4: 20 + 5 n), and prints what bench_server.py would: aggregate tok/s, TTFT p50,
ITL p50 and p99. A model, not a measurement: no HTTP, no sampling, no noise.
Usage: sim_prefill_budget.py [PROMPT_LEN [MAX_TOKENS [ROUNDS]]]"""
import random
import sys

FIXED, PER_ROW = 20.0, 5.0


def cost(n):
    return {0: 0.0, 1: 23.8, 2: 27.0, 3: 30.0}.get(n, FIXED + PER_ROW * n)


def prefill_rows(pct, d, batch):
    cap = max(batch - d, 8)
    if pct == 0 or d == 0:
        return cap
    return max(4, min(int((pct / 100 - 1) * (FIXED / PER_ROW + d) + 1e-9), cap))


def pct_of(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def sim(pct, clients, prompt, max_tokens, rounds, batch=64):
    rnd = random.Random(1)
    length = lambda: max_tokens if rounds == 1 else rnd.randint(max_tokens // 2,
                                                                 3 * max_tokens // 2)
    arrivals = [(0.0, c, length()) for c in range(clients)]
    left = {c: rounds - 1 for c in range(clients)}
    slots, t, itl, ttft, n_tok, order = [], 0.0, [], [], 0, 0
    while arrivals or slots:
        for a in sorted(a for a in arrivals if a[0] <= t):
            arrivals.remove(a)
            order += 1
            slots.append({"fed": 0, "gen": 0, "want": a[2], "last": None, "start": a[0],
                          "client": a[1], "order": order})
        if not slots:
            t = min(a[0] for a in arrivals)
            continue
        decoding = [s for s in slots if s["fed"] >= prompt]
        budget, rows, fed = prefill_rows(pct, len(decoding), batch), len(decoding), []
        for s in sorted((s for s in slots if s["fed"] < prompt), key=lambda s: s["order"]):
            take = min(budget, prompt - s["fed"])
            if take <= 0:
                break
            s["fed"] += take
            budget -= take
            rows += take
            if s["fed"] == prompt:
                fed.append(s)
        t += cost(rows)
        for s in decoding + fed:
            (ttft if s["last"] is None else itl).append(t - (s["last"] or s["start"]))
            s["last"], s["gen"], n_tok = t, s["gen"] + 1, n_tok + 1
        for s in [s for s in slots if s["gen"] >= s["want"]]:
            slots.remove(s)
            if left[s["client"]] > 0:
                left[s["client"]] -= 1
                arrivals.append((t, s["client"], length()))
    return n_tok / t * 1e3, pct_of(ttft, 50), pct_of(itl, 50), pct_of(itl, 99)


prompt = int(sys.argv[1]) if len(sys.argv) > 1 else 32
max_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 64
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
print("| clients | prefill_step_pct | aggregate tok/s | TTFT p50 ms | ITL p50 ms | ITL p99 ms | "
      "ITL p99/p50 |")
print("|---|---|---|---|---|---|---|")
for clients in (1, 2, 4, 8):
    for pct in (0, 150, 200):
        agg, ttft, p50, p99 = sim(pct, clients, prompt, max_tokens, rounds)
        print(f"| {clients} | {pct} | {agg:.1f} | {ttft:.0f} | {p50:.1f} | {p99:.1f} | "
              f"{p99 / p50:.2f} |")
