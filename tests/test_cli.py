#!/usr/bin/python3
"""test_cli: the llamaserve binary's commands end to end: `generate` against the numpy
reference's greedy tokens (tests/golden/forward-kjv-f32.txt, written by
tests/reference/make_golden.py) and SentencePiece's decoding of them, the GGUF and llama2.c files
agreeing, seeded sampling being reproducible across thread counts, beam search of width 1 being
greedy; `inspect`; and every command's --help, bad flags and missing files.
Environment (set by meson): LS_BIN, LS_MODELS_DIR, LS_TESTS_DIR. Standard library plus
python3-sentencepiece."""
import os
import subprocess
import sys

from checklib import BIN, MODELS, TESTS, check, summary

KJV = os.path.join(MODELS, "kjv-demo.gguf")
KJV_BIN = os.path.join(MODELS, "kjv-demo.bin")
KJV_TOK = os.path.join(MODELS, "kjv-demo-tokenizer.bin")



def run(*args, stdin=b""):
    p = subprocess.run([BIN, *args], input=stdin, capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def golden(case, record):
    """The fields of one record ("greedy", "logits") of one prompt case of the golden file."""
    cur = None
    for line in open(os.path.join(TESTS, "golden", "forward-kjv-f32.txt")):
        f = line.split()
        if not f:
            continue
        if f[0] == "case":
            cur = f[1]
        elif f[0] == record and cur == case:
            return f[1:]
    raise SystemExit(f"no {record} record for case {case} in the golden file")


def golden_greedy(case):
    return [int(x) for x in golden(case, "greedy")[1:]]


def ids(out):
    return [int(x) for x in out.split()]


# --- generate: greedy equals the reference, for both file formats ---
ref = golden_greedy("beginning")
prompt = "In the beginning God created"
rc, out, err = run("generate", "-m", KJV, "-p", prompt, "-n", "40", "--temperature", "0",
                   "--token-ids")
check(rc == 0, f"generate --token-ids exits 0 ({rc}: {err})")
check(ids(out) == ref[:40], f"greedy tokens equal the reference:\n  {out}\n  {ref[:40]}")
rc, out_bin, err = run("generate", "-m", KJV_BIN, "--tokenizer", KJV_TOK, "-p", prompt, "-n", "40",
                       "--temperature", "0", "--token-ids")
check(rc == 0 and ids(out_bin) == ref[:40], f"the llama2.c file gives the same tokens ({err})")

# the text is SentencePiece's decoding of the reference tokens: recognisable King James English
rc, text, err = run("generate", "-m", KJV, "-p", prompt, "-n", "40", "--temperature", "0")
check(rc == 0, f"generate exits 0 ({err})")
try:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(MODELS, "kjv-demo-tokenizer.model"))
    prompt_ids = sp.encode(prompt)
    full = sp.decode(prompt_ids + ref[:40])
    want = full[len(sp.decode(prompt_ids)):]
    check(text.rstrip("\n") == want, f"generated text is the reference's:\n  {text!r}\n  {want!r}")
except ImportError:
    check(False, "python3-sentencepiece is missing")
words = text.split()
check(len(words) >= 20 and sum(w.strip(",.;:") in ("the", "and", "of", "unto") for w in words) >= 5,
      f"the text reads as King James English: {text!r}")
check("prompt" in err and "tok/s" in err, f"timings on stderr: {err!r}")

# with no prompt, generation starts from BOS alone
rc, out, err = run("generate", "-m", KJV, "-n", "10", "--temperature", "0", "--token-ids")
bos_logits = [float(x) for x in golden("bos", "logits")[1:]]
first = max(range(len(bos_logits)), key=lambda i: (bos_logits[i], -i))
check(rc == 0 and len(ids(out)) == 10 and ids(out)[0] == first,
      f"generation from BOS alone starts with the reference's argmax {first}: {out} {err}")

# seeded sampling: the same seed gives the same tokens on 1 and 2 threads; another seed differs
sampled = {}
for threads, seed in ((1, 7), (2, 7), (2, 8)):
    rc, out, err = run("generate", "-m", KJV, "-p", prompt, "-n", "30", "--temperature", "1",
                       "--seed", str(seed), "-t", str(threads), "--token-ids")
    check(rc == 0, f"sampling exits 0 ({err})")
    sampled[(threads, seed)] = out
check(sampled[(1, 7)] == sampled[(2, 7)], "seeded sampling is the same on 1 and 2 threads")
check(sampled[(2, 7)] != sampled[(2, 8)], "another seed gives other tokens")

# beam search of width 1 is greedy decoding
rc, out, err = run("generate", "-m", KJV, "-p", prompt, "-n", "20", "--beams", "1", "--token-ids")
check(rc == 0 and ids(out) == ref[:20], f"--beams 1 equals greedy: {out} {err}")
rc, out, err = run("generate", "-m", KJV, "-p", prompt, "-n", "20", "--beams", "4")
check(rc == 0 and len(out.split()) >= 5 and "beam search: 4 beams" in err, f"--beams 4 runs: {err}")

# --- inspect ---
rc, out, err = run("inspect", KJV)
check(rc == 0 and "llama.embedding_length" in out and "blk.0.attn_q.weight" in out,
      f"inspect shows metadata and tensors ({err})")
rc, out, err = run("inspect", KJV_BIN)
check(rc == 0 and "256" in out, f"inspect reads a llama2.c file ({err})")

# --- help, bad flags, missing files ---
for cmd in ("generate", "tokenize", "inspect", "serve"):
    rc, out, err = run(cmd, "--help")
    check(rc == 0 and "usage" in out.lower(), f"{cmd} --help prints usage and exits 0")
    rc, out, err = run(cmd, "--no-such-flag")
    check(rc != 0 and err.strip() and len(err.strip().splitlines()) == 1,
          f"{cmd}: a bad flag is a one-line error and a non-zero exit: {err!r}")
rc, out, err = run()
check(rc != 0, "no command is an error")
rc, out, err = run("frobnicate")
check(rc != 0 and "unknown command" in err, "an unknown command is an error")
missing = os.path.join(MODELS, "no-such-model.gguf")
for args in (("generate", "-m", missing, "-p", "x"), ("tokenize", "--model", missing, "x"),
             ("inspect", missing)):
    rc, out, err = run(*args)
    check(rc != 0 and len(err.strip().splitlines()) == 1 and "no-such-model" in err,
          f"{args[0]}: a missing file is a one-line error naming it: {err!r}")
for bad in (("-n", "-5"), ("-n", "12abc"), ("--temperature", "-1"), ("--top-p", "1.5"),
            ("--threads", "0"), ("--seed", "x")):
    rc, out, err = run("generate", "-m", KJV, "-p", "x", *bad)
    check(rc == 2 and len(err.strip().splitlines()) == 1, f"generate {bad}: {rc} {err!r}")
rc, out, err = run("generate", "-m", KJV, "-p", "And " * 400, "-n", "4")
check(rc != 0 and "context" in err, f"a prompt longer than the context is refused: {err!r}")

# bench: the KV type and a prefilled context depth (llama-bench's -d)
import json  # noqa: E402
import platform  # noqa: E402
rc, out, err = run("bench", "-m", KJV, "-p", "8", "-n", "4", "-r", "1", "--bw-mib", "0", "-d",
                   "100", "--kv-type", "q8_0", "--cpu-clock", "--json")
b = json.loads(out) if rc == 0 else {}
# kjv-demo: 4 layers, 4 kv heads of 32: per layer K and V one 34-byte block per head
check(rc == 0 and b.get("kv") == "q8_0" and b.get("n_depth") == 100 and b.get("clock") == "cpu" and
      b.get("kv_bytes_per_token") == 4 * 2 * 4 * 34 and b.get("pp_tok_s", 0) > 0 and
      b.get("tg_tok_s", 0) > 0, f"bench -d 100 --kv-type q8_0: {rc} {out!r} {err!r}")
rc, out, err = run("bench", "-m", KJV, "-p", "8", "-n", "4", "-r", "1", "--bw-mib", "0",
                   "--kv-f16", "--json")
check(rc == 0 and json.loads(out).get("kv_bytes_per_token") == 4 * 2 * 128 * 2 and
      json.loads(out).get("clock") == "wall" and json.loads(out).get("mmap") is True,
      f"bench --kv-f16: {rc} {out!r}")
check(rc == 0 and json.loads(out).get("weights_memory_gb_s") == [0, 0, 0],
      f"bench --bw-mib 0 probes nothing: {out!r}")
# --no-mmap: the weights read into private memory, as serve's --no-mmap; with the probe on,
# three passes over the weights' own memory
rc, out, err = run("bench", "-m", KJV, "-p", "8", "-n", "4", "-r", "1", "--bw-mib", "16",
                   "--no-mmap", "--json")
b = json.loads(out) if rc == 0 else {}
check(rc == 0 and b.get("mmap") is False and b.get("tg_tok_s", 0) > 0 and
      b.get("bandwidth_gb_s", 0) > 0 and len(b.get("weights_memory_gb_s", [])) == 3 and
      all(g > 0 for g in b["weights_memory_gb_s"]), f"bench --no-mmap: {rc} {out!r} {err!r}")
rc, out, err = run("bench", "-m", KJV, "-p", "0", "-n", "4", "-r", "1", "--bw-mib", "16")
check(rc == 0 and "the model file's memory read at" in out and "(3 passes)" in out,
      f"bench's text names the weights' memory passes: {out!r}")
# --no-avx512: the AVX2 kernels, named in the JSON, on any x86-64 CPU with AVX2
if platform.machine() in ("x86_64", "AMD64"):
    rc, out, err = run("bench", "-m", KJV, "-p", "8", "-n", "4", "-r", "1", "--bw-mib", "0",
                       "--no-avx512", "--json")
    check(rc == 0 and json.loads(out).get("kernels") in ("avx2", "scalar"),
          f"bench --no-avx512: {rc} {out!r} {err!r}")
for bad, words in [(("-d", "250"), "context length"), (("--kv-type", "q4"), "--kv-type")]:
    rc, out, err = run("bench", "-m", KJV, "-p", "8", "-n", "4", "-r", "1", "--bw-mib", "0", *bad)
    check(rc != 0 and words in err and out == "", f"bench {bad}: {rc} {err!r}")

sys.exit(summary())
