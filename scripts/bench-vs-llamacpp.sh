#!/bin/bash
# Side-by-side speed against llama.cpp (issue 14): for each model file, `llama-bench` and
# `llamaserve bench` alternate ROUNDS times (pp and tg at 2 threads), and the table gives each
# engine's median tok/s and our ratio. llama.cpp is a measuring instrument built outside the
# repository; point LLAMA_CPP_BIN at its bin/ folder. Its KV cache is F16 by default: ours is
# given --kv-type f16 too. -d N: both after N tokens of context (llama-bench's -d); -x ARGS:
# more arguments for `llamaserve bench` (--no-avx512 beside a llama.cpp built without AVX-512,
# --repack). -f: each MODEL is first copied to a new file under ${TMPDIR:-/tmp} (removed after
# its rounds), so that both engines read page-cache pages just written: on some VMs pages that
# sat unused read several times slower (docs/PERFORMANCE.md, "Zen 5 again"), and llama.cpp's
# repacked types escape that while our mapped weights do not.
# Usage: LLAMA_CPP_BIN=DIR scripts/bench-vs-llamacpp.sh [-p N] [-n N] [-d N] [-r ROUNDS]
#        [-x ARGS] [-f] MODEL...
set -euo pipefail
bin=${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to llama.cpp\'s build/bin}
ls=${LLAMASERVE:-$(dirname "$0")/../build/llamaserve}
p=128 n=64 d=0 rounds=3 extra="" fresh=0
while getopts p:n:d:r:x:f o; do
    case $o in
    p) p=$OPTARG ;; n) n=$OPTARG ;; d) d=$OPTARG ;; r) rounds=$OPTARG ;; x) extra=$OPTARG ;;
    f) fresh=1 ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')," \
     "family $(grep -m1 'cpu family' /proc/cpuinfo | sed 's/.*: //')," \
     "model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores," \
     "load $(cut -d' ' -f1-3 /proc/loadavg), depth $d, ours with '${extra:-}'"
printf '| model | pp%s ours | pp llama.cpp | pp ratio | tg%s ours | tg llama.cpp | tg ratio |\n' "$p" "$n"
echo '|---|---|---|---|---|---|---|'
copy=""
trap 'rm -f "$copy"' EXIT
for m in "$@"; do
    name=$(basename "$m")
    if [ "$fresh" = 1 ]; then
        copy=$(mktemp "${TMPDIR:-/tmp}/bench-vs-XXXXXX.gguf")
        cp "$m" "$copy"
        m=$copy
    fi
    ours_pp=() ours_tg=() their_pp=() their_tg=()
    for ((k = 0; k < rounds; k++)); do
        # shellcheck disable=SC2086 # extra is a list of arguments
        read -r a b < <("$ls" bench --model "$m" -p "$p" -n "$n" -d "$d" -r 1 -t 2 --kv-type f16 \
            --bw-mib 0 --json $extra \
            2>/dev/null | tail -1 | /usr/bin/python3 -c \
            'import json,sys; d=json.load(sys.stdin); print(d["pp_tok_s"], d["tg_tok_s"])')
        ours_pp+=("$a") ours_tg+=("$b")
        read -r a b < <(LD_LIBRARY_PATH=$bin "$bin/llama-bench" -m "$m" -p "$p" -n "$n" -d "$d" \
            -r 1 -t 2 -o jsonl 2>/dev/null | /usr/bin/python3 -c '
import json,sys
r={}
for l in sys.stdin:
    d=json.loads(l); r["pp" if d["n_prompt"] else "tg"]=d["avg_ts"]
print(r.get("pp", 0), r.get("tg", 0))')
        their_pp+=("$a") their_tg+=("$b")
    done
    /usr/bin/python3 - "$name" "${ours_pp[*]}" "${their_pp[*]}" "${ours_tg[*]}" \
        "${their_tg[*]}" <<'PY'
import statistics as st, sys
name, *cols = sys.argv[1:]
op, tp, og, tg = (st.median(float(x) for x in c.split()) for c in cols)
ratio = lambda a, b: f"{a / b:.2f}" if b else "-"  # -p 0 or -n 0: nothing to compare
print(f"| {name} | {op:.1f} | {tp:.1f} | {ratio(op, tp)} | {og:.1f} | {tg:.1f} | {ratio(og, tg)} |")
PY
    if [ "$fresh" = 1 ]; then rm -f "$copy"; fi
done
