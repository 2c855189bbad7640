#!/bin/sh
# make-bench-models: writes the random-weight benchmark models of docs/PERFORMANCE.md into DIR
# (never into the repository): TinyLlama-1.1B shapes as F16, Q8_0, Q4_0 and Q4_K GGUF, the
# Q4_K_M and Q6_K mixes made from the F16 file by `llamaserve quantize` (as users make them), and
# the stories110M shape as F32 GGUF and llama2.c .bin. Speed does not depend on the weights' values.
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
# every matrix Q4_K (random codes): the kernel of most of a Q4_K_M file
write_model tinyllama q4_k gguf tinyllama-1.1b-q4_k.gguf
# llama.cpp's mixes (Q6_K output, Q6_K attn_v/ffn_down in some layers, ...), written by quantize
# from the F16 file (it writes a temporary file and renames it itself)
quantize_model() { # FROM TYPE FILE
    if [ -s "$dir/$3" ]; then echo "$dir/$3 exists"; return; fi
    echo "writing $dir/$3"
    "$bin" quantize "$dir/$1" "$dir/$3" "$2" --threads "${THREADS:-2}"
}
quantize_model tinyllama-1.1b-f16.gguf Q4_K_M tinyllama-1.1b-q4_k_m.gguf
# (TinyLlama's rows all divide by 256: its Q6_K mix is Q6_K throughout, as the random-code file
# this replaces was)
quantize_model tinyllama-1.1b-f16.gguf Q6_K tinyllama-1.1b-q6_k.gguf
write_model stories110m f32 gguf stories110m-f32.gguf
write_model stories110m f32 llama2c stories110m.bin
