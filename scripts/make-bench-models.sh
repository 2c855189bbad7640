#!/bin/sh
# make-bench-models: writes the random-weight benchmark models of docs/PERFORMANCE.md into DIR
# (never into the repository): TinyLlama-1.1B shapes as F16, Q8_0, Q4_0, Q4_K and Q6_K GGUF, and the
# stories110M shape as F32 GGUF and llama2.c .bin. Speed does not depend on the weights' values.
# Usage: scripts/make-bench-models.sh DIR [LLAMASERVE]   (LLAMASERVE: default build/llamaserve)
set -eu
dir=${1:?usage: scripts/make-bench-models.sh DIR [LLAMASERVE]}
bin=${2:-$(dirname "$0")/../build/llamaserve}
mkdir -p "$dir"
write_model() { # make SHAPE TYPE FORMAT FILE
    if [ -s "$dir/$4" ]; then echo "$dir/$4 exists"; return; fi
    echo "writing $dir/$4"
    "$bin" make-model --shape "$1" --type "$2" --format "$3" "$dir/$4.tmp"
    mv "$dir/$4.tmp" "$dir/$4"
}
write_model tinyllama f16 gguf tinyllama-1.1b-f16.gguf
write_model tinyllama q8_0 gguf tinyllama-1.1b-q8_0.gguf
write_model tinyllama q4_0 gguf tinyllama-1.1b-q4_0.gguf
# every matrix of one K-quant type (random codes): the kernels of a Q4_K_M / Q6_K file
write_model tinyllama q4_k gguf tinyllama-1.1b-q4_k.gguf
write_model tinyllama q6_k gguf tinyllama-1.1b-q6_k.gguf
write_model stories110m f32 gguf stories110m-f32.gguf
write_model stories110m f32 llama2c stories110m.bin
