"""write_gguf: a minimal GGUF v3 writer, used to make a BF16 copy of an F32 model for the forward
test: every matrix (2-D tensor) is converted to BF16 with round-to-nearest-even, 1-D tensors
(the norms) stay F32, and all metadata is copied (general.file_type is set to 32, BF16).
The BF16 file is made at test time in the build directory; it is never committed.

Usage: python3 write_gguf.py SRC.gguf OUT          OUT: a .gguf path, or a directory (then the
                                                  file is OUT/<src stem>-bf16.gguf)"""

import os
import struct
import sys

import numpy as np

sys.dont_write_bytecode = True  # never leave __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref as R  # noqa: E402

LLAMA_FTYPE_MOSTLY_BF16 = 32


# float32 -> BF16 bits, nearest even: llama_ref's, which its activation rounding shares
f32_to_bf16 = R.f32_to_bf16


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, v):
    if vtype in R._SCALAR:
        return struct.pack(R._SCALAR[vtype][0], v)
    if vtype == R.GGUF_STRING:
        return _str(v)
    if vtype == R.GGUF_ARRAY:
        etype, items = v
        return struct.pack("<IQ", etype, len(items)) + b"".join(_value(etype, x) for x in items)
    raise ValueError("unknown gguf value type %d" % vtype)


def write(path, kv, tensors, alignment=32):
    """kv: list of (key, type, value) as GGUF.kv holds them; tensors: list of
    (name, ne (fastest first), ggml type, bytes)."""
    head = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(kv))]
    for key, vtype, v in kv:
        head += [_str(key), struct.pack("<I", vtype), _value(vtype, v)]
    offset = 0
    offsets = []
    for name, ne, ttype, data in tensors:
        offsets.append(offset)
        head += [_str(name), struct.pack("<I", len(ne)), struct.pack("<%dQ" % len(ne), *ne),
                 struct.pack("<IQ", ttype, offset)]
        offset += (len(data) + alignment - 1) // alignment * alignment
    head = b"".join(head)
    pad = (-len(head)) % alignment
    with open(path, "wb") as f:
        f.write(head + b"\0" * pad)
        for (_, _, _, data), off in zip(tensors, offsets):
            f.write(data)
            f.write(b"\0" * ((-len(data)) % alignment))


def to_bf16(src, out):
    g = R.GGUF(src)
    kv = []
    for key, vtype, v in g.kv:
        if key == "general.file_type":
            v = LLAMA_FTYPE_MOSTLY_BF16
        kv.append((key, vtype, v))
    tensors = []
    for t in g.tensors:
        data, ne, ttype = g.raw(t["name"])
        if len(ne) >= 2:
            if ttype != R.GGML_F32:
                raise ValueError("%s: expected F32 matrices" % t["name"])
            data = f32_to_bf16(np.frombuffer(data, dtype="<f4")).astype("<u2").tobytes()
            ttype = R.GGML_BF16
        tensors.append((t["name"], ne, ttype, bytes(data)))
    write(out, kv, tensors, g.alignment)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    src, out = argv[1], argv[2]
    if not out.endswith(".gguf"):
        os.makedirs(out, exist_ok=True)
        stem = os.path.basename(src)[:-len(".gguf")] if src.endswith(".gguf") else "model"
        out = os.path.join(out, stem + "-bf16.gguf")
    to_bf16(src, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
