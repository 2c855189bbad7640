#!/bin/bash
# Cross-checks our GGUF writer and perplexity against llama.cpp (issue 9): quantizes the KJV demo
# model with `llamaserve quantize` to every type, then runs our `perplexity` and llama.cpp's
# `llama-perplexity` on each file, and also on llama.cpp's own shared files. llama.cpp is a
# measuring instrument built outside the repository; point LLAMA_CPP_BIN at its bin/ folder.
# Usage: LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin scripts/compare-llamacpp.sh [BUILD] [OUTDIR]
# (OURS="Q4_0 ..." and THEIRS="q4_0 ..." pick a subset; THEIRS= skips the shared files)
set -euo pipefail
build=${1:-build}
out=${2:-/tmp/compare-llamacpp}
bin=${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to llama.cpp\'s build/bin}
models=$(cd "$(dirname "$0")/../../shared/models" && pwd)
text=$models/kjv-heldout.txt
ls=$build/llamaserve
mkdir -p "$out"
grep -m1 "model name" /proc/cpuinfo || true
printf '| file | made by | our ppl | llama.cpp ppl | difference |\n|---|---|---|---|---|\n'
ours() { "$ls" perplexity -m "$1" -f "$text" -c 256 -t 2 --json 2>/dev/null | tail -1 |
    /usr/bin/python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'; }
# --no-repack: with its CPU_REPACK buffers (Q4_0, Q4_K, ...) the llama-perplexity we built
# (upstream 81ff7abe) sometimes exits 0 before printing its last lines; a run without the
# "Final estimate" line is retried twice.
theirs() {
    local r="" k
    for k in 1 2 3; do
        r=$(LD_LIBRARY_PATH=$bin "$bin/llama-perplexity" -m "$1" -f "$text" -c 256 -t 2 \
            --no-repack 2>&1 | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
        if [ -n "$r" ]; then break; fi
    done
    echo "$r"
}
row() {
    local a b
    a=$(ours "$1") b=$(theirs "$1")
    if [ -z "$b" ]; then b="no result"; fi
    /usr/bin/python3 -c "import sys; a,b=sys.argv[1],sys.argv[2]
d='%+.2f%%' % (100*(float(a)/float(b)-1)) if b[0].isdigit() else '-'
print('| %s | %s | %s | %s | %s |' % (sys.argv[3], sys.argv[4], a, b, d))" "$a" "$b" "$(basename "$1")" "$2"
}
for t in ${OURS:-F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K}; do
    f=$out/kjv-ours-$(echo "$t" | tr 'A-Z' 'a-z').gguf
    "$ls" quantize "$models/kjv-demo.gguf" "$f" "$t" >/dev/null 2>&1
    row "$f" llamaserve
done
for t in ${THEIRS-q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k_m q4_k_m q5_k_m q6_k}; do
    row "$models/kjv-demo-$t.gguf" llama.cpp
done
