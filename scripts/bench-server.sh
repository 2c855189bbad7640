#!/usr/bin/env bash
# bench-server.sh MODEL [BIN] [THREADS]: starts `llamaserve serve --parallel 8` on MODEL and drives
# it with 1, 2, 4 and 8 concurrent streaming clients (scripts/bench_server.py); prints a table of
# aggregate tokens/s, time to first token and inter-token latency, then the scheduler's steps by
# kind from /metrics. A benchmark, not a test.
# Environment: MAX_TOKENS (128), PROMPT_LEN (32), ROUNDS (1: see bench_server.py; e.g. ROUNDS=3
# PROMPT_LEN=200 MAX_TOKENS=64 is the admission-heavy load), CTX (--ctx-size, 256), and
# SERVER_ARGS (more flags for the server, e.g. "--prefill-step-pct 0"); CLIENTS (bench_server.py).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench-server.sh MODEL [BIN] [THREADS]}
bin=${2:-build/llamaserve}
threads=${3:-2}
log=$(mktemp)
# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
"$bin" serve -m "$model" --port 0 --parallel 8 --threads "$threads" --ctx-size "${CTX:-256}" \
    --no-log-requests ${SERVER_ARGS:-} 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do
    grep -q "ready: serving" "$log" && break
    kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -n 1)
echo "model $model, $threads threads, 8 slots, ${SERVER_ARGS:-} load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ), $(lscpu | sed -n 's/^Model name: *//p')"
/usr/bin/python3 scripts/bench_server.py "$port" "${MAX_TOKENS:-128}" "${PROMPT_LEN:-32}" \
    "${ROUNDS:-1}"
# the scheduler's steps over the whole sweep, by kind (/metrics): what admitting prompts cost
# the decoding streams, against --prefill-step-pct
/usr/bin/python3 - "$port" <<'EOF'
import re, sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1]).read().decode()
v = dict(re.findall(r'^(llamaserve_step_\S+) (\S+)$', text, re.M))
get = lambda name: float(v.get(name, 0))
mean = {}
for kind in ("decode", "mixed", "prefill"):
    n = get('llamaserve_step_seconds_count{kind="%s"}' % kind)
    if not n:
        continue
    mean[kind] = get('llamaserve_step_seconds_sum{kind="%s"}' % kind) / n * 1e3
    rows = [get('llamaserve_step_rows_total{kind="%s",rows="%s"}' % (kind, r)) / n
            for r in ("decode", "prompt")]
    print("%-7s steps: %5d, mean %6.1f ms, %4.1f decoding + %5.1f prompt rows" %
          (kind, n, mean[kind], rows[0], rows[1]))
if "decode" in mean and "mixed" in mean:
    print("mixed / decode step time: %.2f" % (mean["mixed"] / mean["decode"]))
EOF
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "server resident memory after the sweep: $((rss / 1024)) MiB (mapped weights included)"
