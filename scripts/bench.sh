#!/bin/sh
# bench: runs `llamaserve bench` over the models of scripts/make-bench-models.sh at 1 and 2
# threads and prints one JSON object per run (the figures of docs/PERFORMANCE.md).
# Usage: scripts/bench.sh DIR [LLAMASERVE] [extra bench flags...]
set -eu
dir=${1:?usage: scripts/bench.sh DIR [LLAMASERVE] [bench flags]}
bin=${2:-$(dirname "$0")/../build/llamaserve}
[ $# -ge 2 ] && shift 2 || shift $#
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
for m in tinyllama-1.1b-f16.gguf tinyllama-1.1b-q8_0.gguf tinyllama-1.1b-q4_0.gguf \
         stories110m-f32.gguf stories110m.bin; do
    for t in 1 2; do
        "$bin" bench --model "$dir/$m" -p 128 -n 64 -r 3 -t "$t" --json "$@"
    done
done
