#!/usr/bin/python3
"""bench_spec: single-stream generation speed with and without speculative decoding (prompt
lookup), on one running llamaserve. Each request is sent twice in turn, with
"speculative": {"n_max": 0} and with {"n_max": N}, so that both see the same load; the table
gives, per workload, tokens per second (completion tokens over the requests' wall time, prefill
included; the median and the best of the repetitions: a loaded host only ever adds time),
their ratios, and the drafted and accepted counts read
from /metrics. With the server's PID, also tokens per second of the server's CPU time (from
/proc/PID/stat): on a host shared with other work, wall time mostly measures the waits for a
core, CPU time the work done (run the server with -t 1 so that CPU time is the step time).
Workloads (prompts for the kjv demo model; any model will do, as text):
  copy     prompts that hold a passage the greedy continuation copies (the demo model cannot
           copy an arbitrary passage, but continues the repetitive ones it writes itself)
  repeat   short prompts whose greedy continuations fall into such loops after a while
  sampled  the short prompts at temperature 0.9 (seeded): text that rarely repeats, so drafts
           are mostly rejected: the overhead case
Usage: bench_spec.py PORT [N_MAX] [REPS] [MAX_TOKENS] [SERVER_PID]"""
import json
import os
import statistics
import sys
import time
import urllib.request

port = int(sys.argv[1])
n_max = int(sys.argv[2]) if len(sys.argv) > 2 else 8
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
max_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 200
pid = int(sys.argv[5]) if len(sys.argv) > 5 else None

SHORT = ["In the beginning", "And he said", "The sons of", "For God so loved",
         "Blessed are the", "And the LORD said unto Moses"]
COPY = ["And he said unto them, What shall ye do? And he said unto them, What shall ye do? "
        "And he said",
        "the son of Michaiah, the son of Michaiah, the son of Michaiah, the son of",
        "and a land of Egypt, and a land of Egypt, and a land of Egypt, and a",
        "and a great tree, and a great tree, and a great tree, and a great"]
WORKLOADS = {"copy": (COPY, {"temperature": 0}), "repeat": (SHORT, {"temperature": 0}),
             "sampled": (SHORT, {"temperature": 0.9, "seed": 7})}


def post(body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    with urllib.request.urlopen(req) as r:
        out = json.load(r)
    return out, time.monotonic() - t0


def cpu_seconds():
    """The server's user + system CPU time (0 without a PID)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spec_counts():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        text = r.read().decode()
    got = {}
    for line in text.splitlines():
        if line.startswith("llamaserve_spec_"):
            name, value = line.split()
            got[name] = int(float(value))
    return (got.get("llamaserve_spec_draft_tokens_total", 0),
            got.get("llamaserve_spec_accepted_tokens_total", 0))


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


with open("/proc/loadavg") as f:
    load = f.read().split()[0]
print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, "
      f"load average {load}, n_max {n_max}, {reps} reps, max_tokens {max_tokens}")
cols = "| workload | tok/s off | tok/s on | on / off | best off | best on | on / off (best) |"
if pid is not None:
    cols += " CPU tok/s off | CPU tok/s on | on / off (CPU) |"
print(cols + " drafted | accepted | acceptance |")
print("|---" * (cols.count("|") + 2) + "|")
for name, (prompts, params) in WORKLOADS.items():
    rate = {0: [], n_max: []}
    cpu_rate = {0: [], n_max: []}
    drafted = accepted = 0
    for rep in range(reps):
        for n in (0, n_max) if rep % 2 == 0 else (n_max, 0):
            tokens = secs = 0
            d0, a0 = spec_counts()
            c0 = cpu_seconds()
            for p in prompts:
                out, dt = post(dict(prompt=p, max_tokens=max_tokens,
                                    speculative={"n_max": n}, **params))
                tokens += out["usage"]["completion_tokens"]
                secs += dt
            c1 = cpu_seconds()
            d1, a1 = spec_counts()
            if n:
                drafted, accepted = drafted + d1 - d0, accepted + a1 - a0
            rate[n].append(tokens / secs)
            cpu_rate[n].append(tokens / max(c1 - c0, 1e-9))
    off, on = statistics.median(rate[0]), statistics.median(rate[n_max])
    boff, bon = max(rate[0]), max(rate[n_max])
    row = f"| {name} | {off:.0f} | {on:.0f} | {on / off:.2f} | {boff:.0f} | {bon:.0f} | {bon / boff:.2f} |"
    if pid is not None:
        coff, con = statistics.median(cpu_rate[0]), statistics.median(cpu_rate[n_max])
        row += f" {coff:.0f} | {con:.0f} | {con / coff:.2f} |"
    print(row + f" {drafted} | {accepted} | {accepted / drafted if drafted else 0:.0%} |",
          flush=True)
