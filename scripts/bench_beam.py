#!/usr/bin/python3
"""bench_beam: beam searches on a running llamaserve, streamed. Runs K searches of width B
(max_tokens N, ignore_eos) at once, beside G greedy requests of N tokens, all started together;
reports per request its HTTP status, the time to its first streamed text and to its end, and
the batch's wall time. Usage: bench_beam.py PORT [K] [B] [N] [G] [PROMPT]"""
import sys
import threading
import time

from sse_client import post_stream

port = int(sys.argv[1])
k = int(sys.argv[2]) if len(sys.argv) > 2 else 2
beams = int(sys.argv[3]) if len(sys.argv) > 3 else 4
n = int(sys.argv[4]) if len(sys.argv) > 4 else 128
g = int(sys.argv[5]) if len(sys.argv) > 5 else 2
prompt = sys.argv[6] if len(sys.argv) > 6 else "And the LORD said unto Moses"


def run(body, out, i, t0):
    """Streams body; out[i] = (status, seconds to the first text, seconds to the end), both
    counted from t0, the start of the batch."""
    status, _, events = post_stream(port, body)
    texts = [t for t, e in events if (e.get("choices") or [{}])[0].get("text")]
    out[i] = (status, texts[0] - t0 if texts else None, time.monotonic() - t0)


bodies = [dict(prompt=prompt, max_tokens=n, use_beam_search=True, best_of=beams, stream=True,
               ignore_eos=True) for _ in range(k)]
bodies += [dict(prompt=prompt, max_tokens=n, temperature=0, stream=True, ignore_eos=True)
           for _ in range(g)]
out = [None] * len(bodies)
t0 = time.monotonic()
ts = [threading.Thread(target=run, args=(b, out, i, t0)) for i, b in enumerate(bodies)]
for t in ts:
    t.start()
for t in ts:
    t.join()
wall = time.monotonic() - t0
print("| request | status | first text s | end s |")
print("|---|---|---|---|")
for i, (st, first, end) in enumerate(out):
    what = f"beam {beams} #{i + 1}" if i < k else f"greedy #{i - k + 1}"
    print(f"| {what} | {st} | {'-' if first is None else f'{first:.3f}'} | {end:.3f} |")
print(f"\nwall {wall:.3f} s for {k} searches of {beams} beams x {n} tokens and {g} greedy "
      f"requests of {n} tokens")
