#!/usr/bin/python3
"""test_quantize_cli: `llamaserve quantize` end to end on kjv-demo. The tensor types, metadata,
data offset and file size of every mix equal those of the llama.cpp-made files in
../shared/models; the Q4_K_M file's perplexity is within 1% of llama.cpp's Q4_K_M; every --pure
type decodes through the numpy dequantizers (tests/reference, written from the formats) within its
documented error and loads in the engine; metadata and alignment survive (a BF16 input with general.alignment 64 included); a llama2.c
checkpoint gives the same tensors as the GGUF; threads do not change a byte; progress is a bar
on a terminal and plain lines otherwise; bad input gives one line and a non-zero status."""
import json
import os
import pty
import subprocess
import sys
import tempfile

import numpy as np

from checklib import BIN, MODELS, TESTS, check, summary

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(TESTS, "reference"))
import llama_ref as R  # noqa: E402
import write_gguf as W  # noqa: E402

F32 = os.path.join(MODELS, "kjv-demo.gguf")
TEXT = os.path.join(MODELS, "kjv-heldout.txt")
TYPE_NAME = {v: k[5:] for k, v in vars(R).items() if k.startswith("GGML_") and isinstance(v, int)}
# the documented relative RMS error bounds (docs/QUANTIZATION.md; test_quantize.c has the same)
BOUND = {"F16": 0.001, "BF16": 0.005, "Q8_0": 0.01, "Q6_K": 0.025, "Q5_K": 0.045, "Q5_1": 0.045,
         "Q5_0": 0.05, "Q4_K": 0.085, "Q4_1": 0.085, "IQ4_NL": 0.09, "IQ4_XS": 0.09,
         "Q4_0": 0.095, "Q3_K": 0.17, "Q2_K": 0.31, "F32": 0.0}
tmp = tempfile.TemporaryDirectory()


def quantize(*args):
    return subprocess.run([BIN, "quantize", *args], capture_output=True, text=True, timeout=300)


def out(name):
    return os.path.join(tmp.name, name)


def types(path):
    g = R.GGUF(path)
    return {t["name"]: TYPE_NAME.get(t["type"], t["type"]) for t in g.tensors}


def ppl(path, chunks, c=256):
    p = subprocess.run([BIN, "perplexity", "-m", path, "-f", TEXT, "-c", str(c), "--chunks",
                        str(chunks), "--json"], capture_output=True, text=True, timeout=600)
    check(p.returncode == 0, f"perplexity on {path}: {p.stderr[-300:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])["ppl"] if p.returncode == 0 else 0.0


# ---- the mixes: the same type for every tensor as llama.cpp's files --------------------------
MIXES = [("Q2_K", "q2_k", 10), ("Q3_K_M", "q3_k_m", 12), ("q4_k_m", "q4_k_m", 15),
         ("Q5_K_M", "q5_k_m", 17), ("Q6_K", "q6_k", 18), ("Q4_1", "q4_1", 3), ("Q5_0", "q5_0", 8),
         ("Q5_1", "q5_1", 9), ("Q8_0", "q8_0", 7)]
for arg, stem, ftype in MIXES + [("Q4_0 --pure", "q4_0", 2)]:
    dst = out(f"mix-{stem}.gguf")
    p = quantize(F32, dst, *arg.split())
    check(p.returncode == 0, f"quantize {arg}: {p.stderr[-300:]}")
    if p.returncode != 0:
        continue
    theirs = os.path.join(MODELS, f"kjv-demo-{stem}.gguf")
    ours_t, theirs_t = types(dst), types(theirs)
    diff = {k: (ours_t.get(k), v) for k, v in theirs_t.items() if ours_t.get(k) != v}
    check(not diff and len(ours_t) == len(theirs_t), f"{arg}: tensor types differ: {diff}")
    ours_g, theirs_g = R.GGUF(dst), R.GGUF(theirs)
    check(ours_g.meta.get("general.file_type") == ftype, f"{arg}: general.file_type")
    # llama-quantize copies the metadata as we do: the same pairs, values and order
    check(ours_g.kv == theirs_g.kv, f"{arg}: metadata differs from llama.cpp's file")
    check(ours_g.data_start == theirs_g.data_start and len(ours_g.buf) == len(theirs_g.buf),
          f"{arg}: data offset {ours_g.data_start} and size {len(ours_g.buf)} vs llama.cpp's "
          f"{theirs_g.data_start} and {len(theirs_g.buf)}")

# ---- Q4_K_M's perplexity against llama.cpp's (16 windows of 256: quick under the sanitizers) ---
ours_ppl = ppl(out("mix-q4_k_m.gguf"), 16)
theirs_ppl = ppl(os.path.join(MODELS, "kjv-demo-q4_k_m.gguf"), 16)
check(abs(ours_ppl - theirs_ppl) / theirs_ppl < 0.01,
      f"Q4_K_M perplexity {ours_ppl} vs llama.cpp's {theirs_ppl}")
print(f"Q4_K_M ppl (16 x 256 tokens): ours {ours_ppl:.4f}, llama.cpp {theirs_ppl:.4f}")

# ---- metadata and alignment ---------------------------------------------------------------
src, dst = R.GGUF(F32), R.GGUF(out("mix-q4_k_m.gguf"))
kept = {k: v for k, _, v in src.kv if k != "general.file_type"}
check(all(dst.meta.get(k) == v for k, v in kept.items()), "every metadata pair copied")
check(dst.meta.get("general.quantization_version") == 2, "general.quantization_version")
check(all(t["offset"] % 32 == 0 for t in dst.tensors) and dst.data_start % 32 == 0, "aligned")

# a BF16 input with general.alignment 64: the output keeps 64
bf16_64 = out("in-bf16-64.gguf")
kv = [(k, t, (32 if k == "general.file_type" else v)) for k, t, v in src.kv]
kv.append(("general.alignment", 4, 64))  # 4: UINT32
tensors = []
for t in src.tensors:
    data, ne, ttype = src.raw(t["name"])
    if len(ne) >= 2:
        data = W.f32_to_bf16(np.frombuffer(data, dtype="<f4")).astype("<u2").tobytes()
        ttype = R.GGML_BF16
    tensors.append((t["name"], ne, ttype, bytes(data)))
W.write(bf16_64, kv, tensors, 64)
p = quantize(bf16_64, out("from-bf16.gguf"), "Q8_0")
check(p.returncode == 0, f"quantize a BF16 input: {p.stderr[-300:]}")
if p.returncode == 0:
    g = R.GGUF(out("from-bf16.gguf"))
    check(g.meta.get("general.alignment") == 64 and g.data_start % 64 == 0 and
          all(t["offset"] % 64 == 0 for t in g.tensors), "alignment 64 kept")
    e = np.abs(g.tensor("blk.0.attn_q.weight") - src.tensor("blk.0.attn_q.weight")).max()
    check(e < 0.02, f"BF16 -> Q8_0 values: max error {e}")

# ---- every type with --pure: numpy decodes it within the bound, the engine runs it ------------
base_ppl = ppl(F32, 1, 64)
for name in ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K",
             "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]:
    dst = out(f"pure-{name}.gguf")
    p = quantize(F32, dst, name, "--pure")
    check(p.returncode == 0, f"quantize {name} --pure: {p.stderr[-300:]}")
    if p.returncode != 0:
        continue
    g = R.GGUF(dst)
    worst = {}
    for t in g.tensors:
        tn = TYPE_NAME[t["type"]]
        if len(t["ne"]) < 2:
            check(tn == "F32", f"{name}: 1-D {t['name']} stays F32")
            continue
        want = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "Q2_K": "Q4_0", "Q3_K": "Q4_0",
                "IQ4_XS": "IQ4_NL"}.get(name, name) if t["ne"][0] == 704 else name
        check(tn == want, f"{name} --pure: {t['name']} is {tn}, not {want}")
        a, b = src.tensor(t["name"]), g.tensor(t["name"])
        e = float(np.sqrt(np.mean((a - b) ** 2) / np.mean(a ** 2)))
        worst[tn] = max(worst.get(tn, 0.0), e)
    for tn, e in worst.items():
        check(e <= BOUND[tn], f"{name}: {tn} relative RMS error {e:.4f} > {BOUND[tn]}")
    print(f"{name:6s} --pure: numpy round trip " +
          ", ".join(f"{tn} {e:.4f}" for tn, e in sorted(worst.items())))
    q = ppl(dst, 1, 64)
    check(0 < q < 2 * base_ppl, f"{name}: the engine runs it (ppl {q} vs F32 {base_ppl})")

# ---- threads split rows: the same bytes -------------------------------------------------------
p1 = quantize(F32, out("t1.gguf"), "Q4_K_M", "--threads", "1")
p3 = quantize(F32, out("t3.gguf"), "Q4_K_M", "--threads", "3")
check(p1.returncode == 0 and p3.returncode == 0, "threads runs")
check(open(out("t1.gguf"), "rb").read() == open(out("t3.gguf"), "rb").read(),
      "--threads 1 and 3 write the same bytes")

# ---- progress: plain lines when stderr is not a terminal, a bar when it is ------------------
lines = [ln for ln in p1.stderr.splitlines() if ln.startswith("[")]
check(len(lines) == 39 and "\r" not in p1.stderr, f"one plain line per tensor: {len(lines)}")
check(lines and lines[0].startswith("[1/39] ") and "->" in lines[0], f"line: {lines[:1]}")
pid, fd = pty.fork()
if pid == 0:
    os.execv(BIN, [BIN, "quantize", F32, out("tty.gguf"), "Q8_0"])
tty_out = b""
while True:
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        break
    if not chunk:
        break
    tty_out += chunk
_, status = os.waitpid(pid, 0)
check(os.waitstatus_to_exitcode(status) == 0, "quantize on a terminal")
check(b"\r" in tty_out and b"100%" in tty_out and b"#" in tty_out, "a progress bar on a tty")

# ---- a llama2.c checkpoint: the same tensors as from the GGUF ---------------------------------
p = quantize(os.path.join(MODELS, "kjv-demo.bin"), out("l2c.gguf"), "Q4_K_M", "--tokenizer",
             os.path.join(MODELS, "kjv-demo-tokenizer.bin"))
check(p.returncode == 0, f"quantize a llama2.c checkpoint: {p.stderr[-300:]}")
if p.returncode == 0:
    a, b = R.GGUF(out("l2c.gguf")), R.GGUF(out("mix-q4_k_m.gguf"))
    same = all(a.raw(t["name"]) == b.raw(t["name"]) for t in b.tensors)
    check(same and len(a.tensors) == len(b.tensors), "llama2.c: the same tensors, byte for byte")
    check(a.meta.get("general.file_type") == 15, "llama2.c: file type")
    check(abs(ppl(out("l2c.gguf"), 1, 64) - ppl(out("mix-q4_k_m.gguf"), 1, 64)) < 1e-4,
          "llama2.c: the same perplexity")

# ---- errors: one line, non-zero, nothing left behind ------------------------------------------
def err_case(args, status, needle, what):
    before = set(os.listdir(tmp.name))
    p = quantize(*args)
    lines = p.stderr.strip().splitlines()
    check(p.returncode == status and len(lines) == 1 and needle in p.stderr,
          f"{what}: status {p.returncode}, stderr {p.stderr!r}")
    check(set(os.listdir(tmp.name)) <= before, f"{what}: no file left behind")


err_case([F32, out("x.gguf"), "Q4_K_S"], 2, "unknown TYPE 'Q4_K_S'", "bad type")
err_case([F32, out("x.gguf"), "IQ2_XXS"], 2, "unknown TYPE", "unsupported type")
err_case([os.path.join(MODELS, "kjv-demo-q4_0.gguf"), out("x.gguf"), "Q8_0"], 1, "is Q4_0",
         "a quantized input")
err_case([F32, "/nonexistent-dir/x.gguf", "Q8_0"], 1, "cannot write /nonexistent-dir/x.gguf",
         "an unwritable OUT")
err_case([os.path.join(MODELS, "kjv-demo.bin"), out("x.gguf"), "Q8_0"], 1, "--tokenizer",
         "a .bin without --tokenizer")
err_case([out("missing.gguf"), out("x.gguf"), "Q8_0"], 1, "cannot read", "a missing IN")
err_case([F32, out("x.gguf")], 2, "need IN OUT TYPE", "too few arguments")
err_case([F32, out("x.gguf"), "Q8_0", "--threads", "0"], 2, "--threads", "bad --threads")
same = out("same.gguf")
with open(same, "wb") as f:
    f.write(open(F32, "rb").read())
before = open(same, "rb").read()
err_case([same, same, "Q8_0"], 2, "refusing to overwrite", "OUT is IN")
check(open(same, "rb").read() == before, "IN untouched")
os.symlink(same, out("link.gguf"))
err_case([same, out("link.gguf"), "Q8_0"], 2, "refusing to overwrite", "OUT is IN via a link")
os.chmod(tmp.name, 0o500)
if os.geteuid() != 0:  # root writes anyway
    err_case([F32, out("ro.gguf"), "Q8_0"], 1, "cannot write", "a read-only folder")
os.chmod(tmp.name, 0o700)

sys.exit(summary())
