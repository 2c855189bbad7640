#!/usr/bin/python3
"""test_server_mmap: the model file changing under a running server.

- Truncating the mapped model file while serving: the next read of a lost page faults
  (SIGBUS), and the server exits with status 3 and one log line that names the file and says
  what to do, instead of dying with a bare signal.
- The same with --no-mmap: the weights are a private copy, so the server keeps serving, and
  answers exactly as before the file changed.
- A broken file given with --no-mmap is still refused with a message.
- When the server says it is ready, the weights are mapped in (a warm-up step touched them):
  before any request, most of the model file is resident in the server's mapping of it (64 of
  its 13,601 KiB were before), so the first request does not fault in every weight page.
- --repack (a private copy of the quantized matrices in the decode kernels' layout) answers with
  the same tokens and log-probabilities as the mapped weights, and logs what it copied: on
  kjv-demo-q4_0.gguf, kjv-demo-q4_k_m.gguf (Q4_K and Q6_K) and on an IQ4_NL copy of kjv-demo that
  `llamaserve quantize --pure` writes.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from checklib import MODELS
from server_harness import BIN, Runner, Server, ServerError

REQ = {"prompt": "And the LORD said unto Moses", "max_tokens": 12, "temperature": 0}


def copy_model(tmp):
    path = os.path.join(tmp, "model.gguf")
    shutil.copyfile(os.path.join(MODELS, "kjv-demo.gguf"), path)  # F32: 13.9 MB of weights
    return path


def test_truncated_while_mapped(r):
    with tempfile.TemporaryDirectory() as tmp:
        path = copy_model(tmp)
        s = Server(model=path)
        try:
            status, obj, _ = s.json("POST", "/v1/completions", REQ)
            assert status == 200, (status, obj)
            os.truncate(path, 1 << 20)  # the weights past 1 MiB are gone from under the mapping
            try:
                s.json("POST", "/v1/completions", REQ)
            except Exception:  # noqa: BLE001 - the connection dies with the server
                pass
            rc = s.wait_exit()
            assert rc == 3, "exit status %s, want 3; stderr:\n%s" % (rc, s.tail())
            lines = [l for l in s.stderr_lines if "truncated or overwritten" in l]
            assert len(lines) == 1 and path in lines[0] and "--no-mmap" in lines[0] \
                and " error " in lines[0], s.tail()
        finally:
            s.kill()


def test_truncated_json_log(r):
    with tempfile.TemporaryDirectory() as tmp:
        path = copy_model(tmp)
        s = Server("--log-format", "json", model=path)
        try:
            assert s.json("POST", "/v1/completions", REQ)[0] == 200
            os.truncate(path, 1 << 20)
            try:
                s.json("POST", "/v1/completions", REQ)
            except Exception:  # noqa: BLE001
                pass
            assert s.wait_exit() == 3, s.tail()
            # the line can be followed by another request's log line (written while the
            # handler ran), so look for it rather than at the last line
            lines = [json.loads(l) for l in s.stderr_lines if "truncated or overwritten" in l]
            assert len(lines) == 1, s.tail()
            line = lines[0]
            assert line["level"] == "error" and path in line["msg"] and line["ts"].endswith("Z"), line
        finally:
            s.kill()


def mapped_kib(pid, path):
    """Resident KiB of pid's mappings of path, from /proc/PID/smaps."""
    real, total, inside = os.path.realpath(path), 0, False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if parts and not parts[0].endswith(":"):  # a mapping's first line
                inside = len(parts) >= 6 and parts[5] == real
            elif inside and parts[0] == "Rss:":
                total += int(parts[1])
    return total


def test_weights_mapped_when_ready(r):
    path = os.path.join(MODELS, "kjv-demo.gguf")
    with Server(model=path) as s:
        kib = mapped_kib(s.proc.pid, path)
        size = os.path.getsize(path) / 1024
        assert kib >= 0.9 * size, "%d of %d KiB resident at ready" % (kib, size)


def test_no_mmap_keeps_serving(r):
    with tempfile.TemporaryDirectory() as tmp:
        path = copy_model(tmp)
        with Server("--no-mmap", model=path) as s:
            status, before, _ = s.json("POST", "/v1/completions", REQ)
            assert status == 200, (status, before)
            os.truncate(path, 1 << 20)
            with open(path, "r+b") as f:  # and overwritten in place
                f.write(b"\0" * 4096)
            status, after, _ = s.json("POST", "/v1/completions", REQ)
            assert status == 200, (status, after)
            assert after["choices"][0]["text"] == before["choices"][0]["text"], (before, after)


def test_no_mmap_bad_file(r):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bad.gguf")
        with open(path, "wb") as f:
            f.write(b"GGUF\x03\x00\x00\x00")
        try:
            Server("--no-mmap", model=path)
        except ServerError as ex:
            assert "bad.gguf" in str(ex), ex
            return
        raise AssertionError("a truncated GGUF was served")


def cpu_has_avx2():
    # what engine/x86/avx2.c mm_avx2_supported asks of the CPU
    with open("/proc/cpuinfo") as f:
        flags = next((l for l in f if l.startswith("flags")), "").split()
    return all(x in flags for x in ("avx2", "fma", "f16c"))


def test_repack_same_output(r):
    # Q4_0 matrices of 256 and 704 rows
    repack_same_output(os.path.join(MODELS, "kjv-demo-q4_0.gguf"))


def test_repack_q4_k_m_same_output(r):
    # Q4_K and Q6_K matrices of 256 rows (ffn_down, 704 columns, is not a K-quant)
    repack_same_output(os.path.join(MODELS, "kjv-demo-q4_k_m.gguf"))


def test_repack_iq4_nl_same_output(r):
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "kjv-iq4_nl.gguf")  # every matrix IQ4_NL
        p = subprocess.run([BIN, "quantize", os.path.join(MODELS, "kjv-demo.gguf"), model,
                            "IQ4_NL", "--pure"], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-300:]
        repack_same_output(model)


def repack_same_output(model):
    req = dict(REQ, max_tokens=24, logprobs=3)
    answers = []
    for args in ((), ("--repack",)):
        with Server(*args, model=model) as s:
            status, obj, _ = s.json("POST", "/v1/completions", req)
            assert status == 200, (status, obj)
            answers.append(obj["choices"][0])
            lines = [l for l in s.stderr_lines if "repack:" in l]
        if args:
            assert len(lines) == 1, s.tail()
            mib = float(lines[0].split("repack: ")[1].split()[0])
            # 4 layers of 7 matrices and the classifier, in the layout of the AVX-512 VNNI
            # kernels, which the AVX2 ones read too; nothing on other CPUs
            assert (mib > 1.0) == cpu_has_avx2(), lines[0]
        else:
            assert not lines, lines
    assert answers[0]["text"] == answers[1]["text"], answers
    assert answers[0]["logprobs"] == answers[1]["logprobs"], answers


r = Runner("test_server_mmap")
for t in (test_truncated_while_mapped, test_truncated_json_log, test_weights_mapped_when_ready,
          test_no_mmap_keeps_serving, test_no_mmap_bad_file, test_repack_same_output,
          test_repack_q4_k_m_same_output, test_repack_iq4_nl_same_output):
    r.run(t, r)
r.finish()
