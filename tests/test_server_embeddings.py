#!/usr/bin/python3
"""test_server_embeddings: POST /v1/embeddings (and /embeddings) end to end, held to the float64
numpy reference (tests/reference/llama_ref.py: embedding(), the final hidden states after the
output norm, mean- or last-pooled, then unit length, written from the math) on two models:
  - kjv-demo.gguf (F32, the real demo model), mean pooling, an F32 KV cache;
  - a tiny random F32 model of another shape (make-model --shape tiny-llama3 with the kjv
    vocabulary: dim 64, 2 layers, Llama 3.1 rope factors), --pooling last.
Tolerance: the largest difference of any element of the unit vectors. Measured on x86-64
(release and ASan debugoptimized builds) 7.0e-8 (kjv) and 8.7e-8 (tiny); bound 1e-6: float32
rounding through a few layers (the logits of the same pass are held to 1e-4 in test_forward.c).
Also: the response shape, inputs as strings, ids and arrays of them (more inputs than slots),
BOS as llama.cpp adds it, base64 equal to the floats, the same bits alone or batched,
llama.cpp's own /embeddings shape, the prompt cache after an embedding, embeddings beside a
running generation, a client that leaves mid-request (slots and queue freed), and 400s naming
each bad field."""
import base64
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from server_harness import (BIN, MODELS, MODEL, Runner, Stream, check_error, post_bytes,
                            raw_http, run_with_server)

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import llama_ref as R  # noqa: E402

TOL = 1e-6
TEXTS = ["In the beginning God created the heaven and the earth.",
         "And the LORD said unto Moses",
         "Jesus wept.",
         # longer than the batch (16 rows): its prompt is fed over several steps
         "And it came to pass, when men began to multiply on the face of the earth, and "
         "daughters were born unto them, that the sons of God saw the daughters of men that "
         "they were fair; and they took them wives of all which they chose."]


def embed(s, inp, path="/v1/embeddings", **kw):
    return s.post(path, dict(kw, input=inp))


def vectors(obj):
    return [np.array(d["embedding"], dtype=np.float64) for d in obj["data"]]


def check_against(ref_model, s, inputs, pooling, label):
    """inputs: lists of ids (BOS included where wanted), sent as one request."""
    obj = embed(s, inputs)
    got = vectors(obj)
    worst = 0.0
    for i, ids in enumerate(inputs):
        want = R.embedding(ref_model, ids, pooling)
        assert got[i].shape == want.shape, (label, got[i].shape, want.shape)
        worst = max(worst, float(np.max(np.abs(got[i] - want))))
    print("  %s: max |ours - reference| = %.2g over %d inputs" % (label, worst, len(inputs)))
    assert worst <= TOL, "%s: %g > %g" % (label, worst, TOL)


def kjv_tests(ref):
    def against_reference(s):
        ids = [s.tokenize(t) for t in TEXTS]
        assert all(x[0] == 1 for x in ids), "tokenize with add_special starts with BOS"
        check_against(ref, s, ids + [[1], [5, 300, 261]], "mean", "kjv-demo mean")

    def response_shape_and_bos(s):
        obj = embed(s, TEXTS, model="anything")
        assert obj["object"] == "list" and obj["model"] == "kjv-demo", obj.keys()
        assert [d["index"] for d in obj["data"]] == list(range(len(TEXTS)))
        assert all(d["object"] == "embedding" and len(d["embedding"]) == 256 for d in obj["data"])
        n = sum(len(s.tokenize(t)) for t in TEXTS)
        assert obj["usage"] == {"prompt_tokens": n, "total_tokens": n}, (obj["usage"], n)
        for v in vectors(obj):
            assert abs(np.linalg.norm(v) - 1.0) < 1e-6, np.linalg.norm(v)
        # a string is its ids with BOS, as llama.cpp tokenizes embedding inputs
        as_ids = embed(s, [s.tokenize(t) for t in TEXTS])
        assert [d["embedding"] for d in as_ids["data"]] == [d["embedding"] for d in obj["data"]]
        no_bos = embed(s, s.tokenize(TEXTS[0], add_special=False))
        assert no_bos["data"][0]["embedding"] != obj["data"][0]["embedding"]
        # one string, one id array: a list of one
        one = embed(s, TEXTS[1])
        assert len(one["data"]) == 1 and one["data"][0]["embedding"] == obj["data"][1]["embedding"]

    def same_bits_alone_or_batched(s):
        together = embed(s, TEXTS * 3)["data"]  # 12 inputs, 2 slots: they take turns
        for i, t in enumerate(TEXTS * 3):
            alone = embed(s, t)["data"][0]["embedding"]
            assert together[i]["embedding"] == alone, "input %d differs when batched" % i

    def base64_is_the_floats(s):
        f = embed(s, TEXTS[:2], encoding_format="float")["data"]
        b = embed(s, TEXTS[:2], encoding_format="base64")["data"]
        for x, y in zip(f, b):
            assert isinstance(y["embedding"], str)
            got = np.frombuffer(base64.b64decode(y["embedding"]), dtype="<f4")
            assert got.tolist() == np.array(x["embedding"], dtype=np.float32).tolist()

    def llamacpp_route(s):
        # llama.cpp's /embeddings: [{"index", "embedding": [[pooled vector]]}], "content" too
        oai = embed(s, TEXTS[:2])["data"]
        got = embed(s, TEXTS[:2], path="/embeddings")
        assert isinstance(got, list) and [set(x) for x in got] == [{"index", "embedding"}] * 2
        assert [x["index"] for x in got] == [0, 1]
        assert [x["embedding"] for x in got] == [[d["embedding"]] for d in oai]
        st, obj, _ = s.json("POST", "/embeddings", {"content": TEXTS[1]})
        assert st == 200 and obj[0]["embedding"] == [oai[1]["embedding"]], obj
        st, obj, _ = s.json("POST", "/embeddings", {"input": "a", "encoding_format": "base64"})
        check_error(st, obj, 400, param="encoding_format")
        st, obj, _ = s.json("POST", "/v1/embeddings", {"content": "a"})
        check_error(st, obj, 400, param="input")

    def prompt_cache_after_embedding(s):
        body = {"prompt": TEXTS[1], "max_tokens": 12, "temperature": 0}
        first = s.post("/v1/completions", body)["choices"][0]["text"]
        for _ in range(2):  # the slots now hold the embedded inputs' KV caches
            embed(s, [TEXTS[1], TEXTS[1] + " and Aaron"])
            again = s.post("/v1/completions", body)["choices"][0]["text"]
            assert again == first, (again, first)

    def beside_a_generation(s):
        alone = [d["embedding"] for d in embed(s, TEXTS)["data"]]
        st = Stream(s, "/v1/completions", {"prompt": TEXTS[0], "max_tokens": 200, "stream": True,
                                           "ignore_eos": True, "temperature": 0})
        assert st.next_event() is not None  # it is decoding in a slot
        assert [d["embedding"] for d in embed(s, TEXTS)["data"]] == alone
        st.read_all()
        assert st.events[-1] == "[DONE]" and st.error is None

    def client_leaves_mid_request(s):
        def left(m):
            return m.get('llamaserve_requests_total{route="/v1/embeddings",status="499"}', 0)
        before = s.metrics()
        # 2048 inputs of ~100 tokens: still running long after the client has left
        body = json.dumps({"input": ["In the beginning " * 25] * 2048}).encode()
        sock, _ = raw_http(s.port, post_bytes("/v1/embeddings", body))
        s.wait_metrics(lambda m: m["llamaserve_slots_busy"] == 2, "the inputs run")
        sock.close()
        s.wait_metrics(lambda m: left(m) == left(before) + 1 and m["llamaserve_slots_busy"] == 0
                       and m["llamaserve_queue_depth"] == 0, "499 counted, slots and queue free")
        assert len(embed(s, TEXTS)["data"]) == len(TEXTS)

    def bad_requests(s):
        cases = [
            ({"input": ""}, "input", None),
            ({"input": []}, "input", None),
            ({"input": [[]]}, "input", None),
            ({"input": ["a", ""]}, "input", None),
            ({"input": [1, "a"]}, "input", None),
            ({"input": ["a", 1]}, "input", None),
            ({"input": [1, 99999]}, "input", None),
            ({"input": [[1, 2.5]]}, "input", None),
            ({"input": {"text": "a"}}, "input", None),
            ({}, "input", None),
            ({"input": [1] * 257}, "input", "context_length_exceeded"),
            ({"input": ["a", "In " * 300]}, "input", "context_length_exceeded"),
            ({"input": "a", "dimensions": 8}, "dimensions", None),
            ({"input": "a", "encoding_format": "hex"}, "encoding_format", None),
            ({"input": "a", "encoding_format": 1}, "encoding_format", None),
            ({"input": ["a"] * 2049}, "input", None),
        ]
        for body, param, code in cases:
            st, obj, _ = s.json("POST", "/v1/embeddings", body)
            check_error(st, obj, 400, param=param, code=code, what=str(body)[:60])
        st, obj, _ = s.json("GET", "/v1/embeddings")
        check_error(st, obj, 405)
        # a context of exactly ctx_size ids fits (no room to generate is needed)
        assert len(embed(s, [[1] * 256])["data"]) == 1
        s.wait_metrics(lambda m: m.get("llamaserve_slots_busy") == 0, "no slot left busy")

    return [against_reference, response_shape_and_bos, same_bits_alone_or_batched,
            base64_is_the_floats, llamacpp_route, prompt_cache_after_embedding,
            beside_a_generation, client_leaves_mid_request, bad_requests]


def main():
    runner = Runner("test_server_embeddings")
    kjv = R.load(os.path.join(MODELS, "kjv-demo.gguf"))
    run_with_server(runner, kjv_tests(kjv), "--parallel", "2", "--batch-size", "16",
                    "--kv-type", "f32", model=MODEL)
    tmp = tempfile.mkdtemp(prefix="ls_embd_")
    try:
        path = os.path.join(tmp, "tiny.gguf")
        p = subprocess.run([BIN, "make-model", "--shape", "tiny-llama3", "--type", "f32",
                            "--vocab", os.path.join(MODELS, "kjv-demo.gguf"), path],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            runner.fail("make-model", p.stderr)
            runner.finish()
        tiny = R.load(path)

        def tiny_last_pooling(s):
            ids = [s.tokenize(t) for t in TEXTS] + [[7, 8, 9]]
            check_against(tiny, s, ids, "last", "tiny-llama3 last")

        def tiny_mean_differs(s):
            ids = s.tokenize(TEXTS[0])
            got = vectors(embed(s, [ids]))[0]
            mean = R.embedding(tiny, ids, "mean")
            assert np.max(np.abs(got - mean)) > 100 * TOL, "--pooling last gave the mean"

        run_with_server(runner, [tiny_last_pooling, tiny_mean_differs], "--parallel", "3",
                        "--kv-type", "f32", "--pooling", "last", model=path)
    finally:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    runner.finish()


if __name__ == "__main__":
    main()
