#!/usr/bin/python3
"""test_perplexity: `llamaserve perplexity` against an independent computation of the same
number: the text tokenized by sentencepiece (kjv-demo-tokenizer.model, with BOS), cut into
windows of c tokens whose first token becomes BOS, each run through the float64 numpy reference
(tests/reference/llama_ref.py) from an empty cache, the second half scored (llama.cpp's method).
Also --kv-type q8_0 against the reference whose cache quantizes keys and values the same way
(llama_ref.q8_0_roundtrip), --bf16-dot on a BF16 copy of the model (made here by
tests/reference/write_gguf.py) against the reference that rounds the activations of BF16
matrices to BF16 (llama_ref.round_bf16), and its default (auto) and off, the JSON line's fields,
and clear errors for bad arguments."""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from checklib import BIN, MODELS, TESTS, check, summary

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(TESTS, "reference"))
import llama_ref as R  # noqa: E402

MODEL = os.path.join(MODELS, "kjv-demo.gguf")
TEXT = os.path.join(MODELS, "kjv-heldout.txt")
C, CHUNKS = 64, 3


def ours(*args):
    return subprocess.run([BIN, "perplexity", *args], capture_output=True, text=True, timeout=300)


def reference(kv="f32", path=MODEL, act_quant=False):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(MODELS, "kjv-demo-tokenizer.model"))
    ids = [1] + sp.encode(open(TEXT, encoding="utf-8").read())
    model = R.load(path)
    nlls = []
    for k in range(CHUNKS):
        window = ids[k * C:(k + 1) * C]
        window[0] = 1
        logits = R.forward(model, window, R.Cache(model.cfg["n_layers"], kv), act_quant)
        for j in range(C // 2, C - 1):
            row = logits[j]
            mx = row.max()
            nlls.append(math.log(np.exp(row - mx).sum()) + mx - row[window[j + 1]])
    return math.exp(sum(nlls) / len(nlls)), len(nlls)


p = ours("-m", MODEL, "-f", TEXT, "-c", str(C), "--chunks", str(CHUNKS), "--json")
check(p.returncode == 0, f"perplexity exits 0: {p.stderr[-500:]}")
last = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {}
check(set(last) == {"ppl", "ppl_stderr", "chunks", "tokens_scored"}, f"JSON fields: {last}")
check(last.get("chunks") == CHUNKS and last.get("tokens_scored") == CHUNKS * (C // 2 - 1),
      f"windows and scored tokens: {last}")
check(p.stderr.count("] ppl ") == CHUNKS, "one progress line per window on stderr")
want, n = reference()
got = last.get("ppl", float("nan"))
# the engine keeps an F16 KV cache, as llama.cpp does; the reference is float64 throughout
check(abs(got - want) / want < 2e-3, f"ppl {got} vs the reference {want} ({n} tokens)")
print(f"ppl: ours {got:.5f}, reference {want:.5f}, relative difference {abs(got - want) / want:.2e}")

# a Q8_0 KV cache: against the reference that rounds K and V through Q8_0 blocks as they are
# appended. Seen: 6e-6 from it, 1.8e-3 from the unquantized reference; the bound 5e-4 tells the
# two apart and leaves room for the few values that round to the other step (test_forward.c).
q = ours("-m", MODEL, "-f", TEXT, "-c", str(C), "--chunks", str(CHUNKS), "--json", "--kv-type",
         "q8_0")
check(q.returncode == 0 and "KV q8_0" in q.stderr, f"--kv-type q8_0 exits 0: {q.stderr[-500:]}")
got_q = json.loads(q.stdout.strip().splitlines()[-1]).get("ppl") if q.returncode == 0 else None
want_q, _ = reference("q8_0")
check(got_q is not None and abs(got_q - want_q) / want_q < 5e-4,
      f"q8_0 KV ppl {got_q} vs its reference {want_q}")
print(f"ppl, KV q8_0: ours {got_q}, reference {want_q:.5f} (unquantized reference {want:.5f})")

# --bf16-dot: a BF16 copy of the model, its activations rounded to BF16 before every BF16
# matrix, where the CPU has AVX512_BF16: "on" insists (refused elsewhere), "auto" (the default)
# is "on" where the CPU has it and "off" elsewhere, "off" keeps F32 activations everywhere
tmp = tempfile.mkdtemp(prefix="ls_ppl_bf16_")
try:
    bf16 = os.path.join(tmp, "kjv-demo-bf16.gguf")
    subprocess.run([sys.executable, "-B", os.path.join(TESTS, "reference", "write_gguf.py"),
                    MODEL, bf16], check=True)

    def bf16_ppl(*mode):
        r = ours("-m", bf16, "-f", TEXT, "-c", str(C), "--chunks", str(CHUNKS), "--json",
                 "--kv-type", "f32", *mode)
        return r, json.loads(r.stdout.strip().splitlines()[-1]).get("ppl") if r.returncode == 0 \
            else None

    b, got_b = bf16_ppl("--bf16-dot", "on")
    got_auto = bf16_ppl()[1]
    got_off = bf16_ppl("--bf16-dot", "off")[1]
    want_b, _ = reference("f32", bf16, "bf16")
    plain_b, _ = reference("f32", bf16)
    # without the rounding the engine is within F32 rounding of the plain reference (seen 2e-7)
    check(got_off is not None and abs(got_off - plain_b) / plain_b < 2e-5,
          f"--bf16-dot off ppl {got_off} vs the reference {plain_b}")
    if b.returncode != 0:
        check("needs a CPU with AVX512_BF16" in b.stderr and b.stdout == "",
              f"--bf16-dot on refused with a reason: {b.stderr[-500:]}")
        check(got_auto == got_off, f"auto without AVX512_BF16: {got_auto}, off: {got_off}")
        print("--bf16-dot: this CPU has no AVX512_BF16; 'on' refused, 'auto' is 'off'")
    else:
        # seen: 6e-5 from it, 3.7e-4 from the reference without the rounding; the bound tells
        # the two apart (the second check: a flag that changed nothing would pass the first)
        check(abs(got_b - want_b) / want_b < 1.5e-4,
              f"--bf16-dot ppl {got_b} vs its reference {want_b} (plain {plain_b})")
        check(abs(got_b - plain_b) / plain_b > 1.5e-4,
              f"--bf16-dot ppl {got_b} as close to the unrounded reference {plain_b}")
        check(got_auto == got_b, f"auto with AVX512_BF16: {got_auto}, on: {got_b}")
        print(f"ppl, BF16 --bf16-dot on (and auto): ours {got_b}, reference {want_b:.5f} "
              f"(without the rounding {plain_b:.5f}; off: {got_off})")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

# errors: a message and a non-zero status, nothing on stdout
for args, words in [((), "--file"), (("-f", "/nonexistent/x.txt"), "cannot open"),
                    (("-m", MODEL, "-f", TEXT, "-c", "100000"), "context length"),
                    (("-m", MODEL, "-f", TEXT, "-c", "2"), "--ctx-size"),
                    (("-m", MODEL, "-f", TEXT, "--kv-type", "q4_0"), "--kv-type"),
                    (("-m", MODEL, "-f", TEXT, "--bf16-dot", "yes"), "auto, on, off"),
                    (("-m", os.path.join(MODELS, "stories260K.bin"), "--tokenizer",
                      os.path.join(MODELS, "stories260K-tok512-placeholder.bin"), "-f", TEXT,
                      "-c", "64", "--kv-type", "q8_0"), "multiple of 32"),
                    (("-m", MODEL, "-f", os.path.join(MODELS, "README.md"), "-c", "256",
                      "--bogus"), "unknown option")]:
    q = ours(*args)
    check(q.returncode != 0 and words in q.stderr and q.stdout == "",
          f"perplexity {args}: rc {q.returncode}, {q.stderr!r}")

sys.exit(summary())
