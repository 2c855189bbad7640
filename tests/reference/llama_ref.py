"""llama_ref: an independent numpy reference of the LLaMA-2 forward pass, the test oracle for
engine/forward.c. Written from the equations (RMSNorm, RoPE on adjacent pairs, grouped-query
causal attention, SwiGLU), not from the engine's code, and computed in float64. It reads GGUF v3
files (only what a llama model needs: metadata, tensor infos, and the data of every tensor type
the engine reads, which it dequantizes: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K,
IQ4_NL, IQ4_XS, each written from the block layout ggml documents) and llama2.c .bin checkpoints. It is slow and simple on purpose; never a model
for the engine's speed. embedding() pools the final hidden states as llama.cpp does for
embeddings (mean or last, then unit length).

Usage as a script:  python3 llama_ref.py MODEL [TOKEN_ID ...] [-n STEPS]
prints the greedy continuation's token ids."""

import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------------------------
# GGUF reader

GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_BF16 = 0, 1, 2, 8, 30
GGML_Q4_1, GGML_Q5_0, GGML_Q5_1 = 3, 6, 7
GGML_Q2_K, GGML_Q3_K, GGML_Q4_K, GGML_Q5_K, GGML_Q6_K = 10, 11, 12, 13, 14
GGML_IQ4_NL, GGML_IQ4_XS = 20, 23
QK = 32
QK_K = 256
# type -> (elements per block, bytes per block) for the block types
BLOCKS = {GGML_Q8_0: (32, 34), GGML_Q4_0: (32, 18), GGML_Q4_1: (32, 20), GGML_Q5_0: (32, 22),
          GGML_Q5_1: (32, 24), GGML_Q2_K: (256, 84), GGML_Q3_K: (256, 110),
          GGML_Q4_K: (256, 144), GGML_Q5_K: (256, 176), GGML_Q6_K: (256, 210),
          GGML_IQ4_NL: (32, 18), GGML_IQ4_XS: (256, 136)}
IQ4_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                      dtype=np.float64)

# gguf metadata value types: (struct format, size) for the scalar ones
_SCALAR = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
           6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
GGUF_STRING, GGUF_ARRAY = 8, 9


class _Cursor:
    def __init__(self, buf):
        self.buf = buf
        self.off = 0

    def take(self, fmt, size):
        v = struct.unpack_from(fmt, self.buf, self.off)[0]
        self.off += size
        return v

    def u32(self):
        return self.take("<I", 4)

    def u64(self):
        return self.take("<Q", 8)

    def string(self):
        n = self.u64()
        s = bytes(self.buf[self.off:self.off + n])
        self.off += n
        return s.decode("utf-8")

    def value(self, vtype):
        """Returns (python value); arrays are (elem_type, list)."""
        if vtype in _SCALAR:
            return self.take(*_SCALAR[vtype])
        if vtype == GGUF_STRING:
            return self.string()
        if vtype == GGUF_ARRAY:
            etype = self.u32()
            n = self.u64()
            return (etype, [self.value(etype) for _ in range(n)])
        raise ValueError("unknown gguf value type %d" % vtype)


class GGUF:
    """A parsed GGUF file: kv (ordered list of (key, type, value)), tensors (ordered list of
    dicts name/shape/type/offset), and the raw data section."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        c = _Cursor(self.buf)
        if self.buf[:4] != b"GGUF":
            raise ValueError("%s: not a GGUF file" % path)
        c.off = 4
        self.version = c.u32()
        if self.version not in (2, 3):
            raise ValueError("unsupported GGUF version %d" % self.version)
        n_tensors = c.u64()
        n_kv = c.u64()
        self.kv = []
        for _ in range(n_kv):
            key = c.string()
            vtype = c.u32()
            self.kv.append((key, vtype, c.value(vtype)))
        self.meta = {k: v for k, _, v in self.kv}
        self.tensors = []
        for _ in range(n_tensors):
            name = c.string()
            n_dims = c.u32()
            ne = [c.u64() for _ in range(n_dims)]
            ttype = c.u32()
            offset = c.u64()
            self.tensors.append({"name": name, "ne": ne, "type": ttype, "offset": offset})
        self.alignment = self.meta.get("general.alignment", 32)
        self.data_start = (c.off + self.alignment - 1) // self.alignment * self.alignment
        self.by_name = {t["name"]: t for t in self.tensors}

    def raw(self, name):
        """The tensor's bytes, its ne (fastest first) and its type."""
        t = self.by_name[name]
        n = int(np.prod(t["ne"]))
        nbytes = _nbytes(t["type"], n)
        start = self.data_start + t["offset"]
        return self.buf[start:start + nbytes], t["ne"], t["type"]

    def tensor(self, name):
        """Dequantized float64 array, shaped (ne[-1], ..., ne[0]) (numpy row-major order)."""
        data, ne, ttype = self.raw(name)
        flat = dequantize(data, ttype, int(np.prod(ne)))
        return flat.reshape(list(reversed(ne)))


def _nbytes(ttype, n):
    if ttype == GGML_F32:
        return 4 * n
    if ttype in (GGML_F16, GGML_BF16):
        return 2 * n
    if ttype in BLOCKS:
        be, bb = BLOCKS[ttype]
        return n // be * bb
    raise ValueError("unsupported tensor type %d" % ttype)


def bf16_to_f32(u16):
    """uint16 array of BF16 bits -> float32 array (BF16 is the top half of an F32)."""
    return (u16.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    """float32 array -> uint16 BF16 bits, rounding to nearest even (NaN stays a quiet NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def dequantize(data, ttype, n):
    """n elements of type ttype in the bytes data -> float64 array (n)."""
    if ttype == GGML_F32:
        return np.frombuffer(data, dtype="<f4", count=n).astype(np.float64)
    if ttype == GGML_F16:
        return np.frombuffer(data, dtype="<f2", count=n).astype(np.float64)
    if ttype == GGML_BF16:
        return bf16_to_f32(np.frombuffer(data, dtype="<u2", count=n)).astype(np.float64)
    nb = n // QK
    if ttype == GGML_Q8_0:
        blocks = np.frombuffer(data, dtype=np.uint8, count=nb * 34).reshape(nb, 34)
        d = blocks[:, :2].copy().view("<f2").astype(np.float64)        # (nb, 1)
        q = blocks[:, 2:].copy().view(np.int8).astype(np.float64)      # (nb, 32)
        return (d * q).reshape(n)
    if ttype == GGML_Q4_0:
        blocks = np.frombuffer(data, dtype=np.uint8, count=nb * 18).reshape(nb, 18)
        d = blocks[:, :2].copy().view("<f2").astype(np.float64)        # (nb, 1)
        qs = blocks[:, 2:]                                              # (nb, 16)
        lo = (qs & 0x0F).astype(np.float64) - 8.0                       # elements 0..15
        hi = (qs >> 4).astype(np.float64) - 8.0                         # elements 16..31
        return (d * np.concatenate([lo, hi], axis=1)).reshape(n)
    if ttype in BLOCKS:
        be, bb = BLOCKS[ttype]
        blocks = np.frombuffer(data, dtype=np.uint8, count=n // be * bb).reshape(n // be, bb)
        return _dequantize_blocks(blocks, ttype).reshape(n)
    raise ValueError("unsupported tensor type %d" % ttype)


def _f16(blocks, at):
    """The F16 field at byte offset `at` of every block -> float64 (nb, 1)."""
    return blocks[:, at:at + 2].copy().view("<f2").astype(np.float64)


def _nibbles(qs):
    """(nb, 16) bytes -> (nb, 32) codes: the low nibbles are elements 0..15, the high 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int64)


def _bits(b):
    """(nb, k) bytes -> (nb, 8k) bits, bit j of byte i at 8i + j (little-endian bit order)."""
    return np.unpackbits(b, axis=1, bitorder="little").astype(np.int64)


def _crumbs(qs):
    """Q2_K/Q3_K low bits: (nb, 64) bytes -> (nb, 256) 2-bit codes. Each half of 128 elements
    reads 32 bytes four times: pass p takes bits 2p..2p+1 of each byte, for 32 elements."""
    out = []
    for half in range(2):
        q = qs[:, 32 * half:32 * half + 32]
        for p in range(4):
            out.append((q >> (2 * p)) & 3)
    return np.concatenate(out, axis=1).astype(np.int64)


def _k4_scales(sc):
    """Q4_K/Q5_K: 12 bytes -> eight 6-bit scales and eight 6-bit mins, (nb, 8) each. Scales and
    mins 0..3: low 6 bits of bytes 0..3 and 4..7. Entries 4..7: low nibble (scale) and high
    nibble (min) of bytes 8..11, with the top two bits of bytes 0..3 (scale) and 4..7 (min)."""
    sc = sc.astype(np.int64)
    scale = np.concatenate([sc[:, 0:4] & 63, (sc[:, 8:12] & 15) | ((sc[:, 0:4] >> 6) << 4)], 1)
    mins = np.concatenate([sc[:, 4:8] & 63, (sc[:, 8:12] >> 4) | ((sc[:, 4:8] >> 6) << 4)], 1)
    return scale, mins


def _dequantize_blocks(b, t):
    """(nb, block bytes) -> (nb, block elements) float64 for the block types beyond Q8_0/Q4_0."""
    nb = b.shape[0]
    if t == GGML_Q4_1:                                # d, m, 16 bytes of nibbles
        return _f16(b, 0) * _nibbles(b[:, 4:20]) + _f16(b, 2)
    if t in (GGML_Q5_0, GGML_Q5_1):                   # d, [m], 4 bytes of fifth bits, nibbles
        o = 4 if t == GGML_Q5_1 else 2
        q = _nibbles(b[:, o + 4:o + 20]) | (_bits(b[:, o:o + 4]) << 4)
        if t == GGML_Q5_0:
            return _f16(b, 0) * (q - 16)
        return _f16(b, 0) * q + _f16(b, 2)
    if t == GGML_IQ4_NL:                              # d, 16 bytes of 4-bit table indices
        return _f16(b, 0) * IQ4_LEVELS[_nibbles(b[:, 2:18])]
    if t == GGML_IQ4_XS:                              # d, scales_h (u16), scales_l[4], qs[128]
        sh = b[:, 2:4].copy().view("<u2").astype(np.int64)                   # (nb, 1)
        sl = b[:, 4:8].astype(np.int64)
        ls = np.stack([((sl[:, i // 2] >> (4 * (i % 2))) & 15) | (((sh[:, 0] >> (2 * i)) & 3) << 4)
                       for i in range(8)], axis=1) - 32                     # (nb, 8)
        q = np.concatenate([_nibbles(b[:, 8 + 16 * i:24 + 16 * i]) for i in range(8)], axis=1)
        return _f16(b, 0) * np.repeat(ls, 32, axis=1) * IQ4_LEVELS[q]
    if t == GGML_Q2_K:                                # scales[16], qs[64], d, dmin
        sc = b[:, 0:16].astype(np.int64)
        q = _crumbs(b[:, 16:80])
        d, dmin = _f16(b, 80), _f16(b, 82)
        return d * np.repeat(sc & 15, 16, axis=1) * q - dmin * np.repeat(sc >> 4, 16, axis=1)
    if t == GGML_Q3_K:                                # hmask[32], qs[64], scales[12], d
        high = _bits(b[:, 0:32]).reshape(nb, 32, 8)   # [l, bit]: element 32 * bit + l
        high = high.transpose(0, 2, 1).reshape(nb, 256)
        q = _crumbs(b[:, 32:96]) - 4 * (1 - high)
        s = b[:, 96:108].astype(np.int64)
        lo = np.concatenate([s[:, 0:8] & 15, s[:, 0:8] >> 4], axis=1)      # scales 0..15
        hi = np.concatenate([(s[:, 8:12] >> (2 * k)) & 3 for k in range(4)], axis=1)
        scale = (lo | (hi << 4)) - 32
        return _f16(b, 108) * np.repeat(scale, 16, axis=1) * q
    if t in (GGML_Q4_K, GGML_Q5_K):                   # d, dmin, scales[12], [qh[32]], qs[128]
        scale, mins = _k4_scales(b[:, 4:16])
        o = 48 if t == GGML_Q5_K else 16
        q = np.concatenate([_nibbles_32(b[:, o + 32 * i:o + 32 * i + 32]) for i in range(4)], 1)
        if t == GGML_Q5_K:
            high = _bits(b[:, 16:48]).reshape(nb, 32, 8).transpose(0, 2, 1).reshape(nb, 256)
            q = q + 16 * high
        return (_f16(b, 0) * np.repeat(scale, 32, axis=1) * q
                - _f16(b, 2) * np.repeat(mins, 32, axis=1))
    if t == GGML_Q6_K:                                # ql[128], qh[64], scales[16] (int8), d
        ql, qh = b[:, 0:128].astype(np.int64), b[:, 128:192].astype(np.int64)
        parts = []
        for half in range(2):
            l4 = ql[:, 64 * half:64 * half + 64]
            h2 = qh[:, 32 * half:32 * half + 32]
            lows = [l4[:, 0:32] & 15, l4[:, 32:64] & 15, l4[:, 0:32] >> 4, l4[:, 32:64] >> 4]
            for k in range(4):
                parts.append(lows[k] | (((h2 >> (2 * k)) & 3) << 4))
        q = np.concatenate(parts, axis=1) - 32
        sc = b[:, 192:208].copy().view(np.int8).astype(np.int64)
        return _f16(b, 208) * np.repeat(sc, 16, axis=1) * q
    raise ValueError("unsupported tensor type %d" % t)


def _nibbles_32(qs):
    """Q4_K/Q5_K: (nb, 32) bytes -> (nb, 64) codes: low nibbles are the first 32 elements."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Models: a config dict and float64 weights, matrices shaped (out, in) so y = W @ x.

class Model:
    def __init__(self, cfg, weights):
        self.cfg = cfg   # dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, ctx_len,
                         # head_dim, rope_dim, rope_theta, rope_scale, rope_factors, norm_eps
        self.w = weights  # tok_embd (V, C), out_norm (C), output (V, C), layers: list of dicts


def load_gguf(path):
    g = GGUF(path)
    arch = g.meta["general.architecture"]
    m = lambda k, d=None: g.meta.get(arch + "." + k, d)
    dim = m("embedding_length")
    n_heads = m("attention.head_count")
    head_dim = dim // n_heads
    tok_embd = g.tensor("token_embd.weight")
    cfg = {
        "dim": dim,
        "hidden_dim": m("feed_forward_length"),
        "n_layers": m("block_count"),
        "n_heads": n_heads,
        "n_kv_heads": m("attention.head_count_kv", n_heads),
        "vocab_size": tok_embd.shape[0],
        "ctx_len": m("context_length"),
        "head_dim": head_dim,
        "rope_dim": m("rope.dimension_count", head_dim),
        "rope_theta": m("rope.freq_base", 10000.0),
        "rope_scale": rope_scale(m),
        # Llama 3.1+: per-pair frequency factors (llama3_rope_factors says how they are made)
        "rope_factors": (g.tensor("rope_freqs.weight").astype(np.float64)
                         if "rope_freqs.weight" in g.by_name else None),
        "norm_eps": m("attention.layer_norm_rms_epsilon", 1e-5),
    }
    # the matrices stored in a block type, with the block length of the engine's activation
    # quantization for them: 256 for the K-quants and IQ4_XS, else 32 (see forward's act_quant)
    quant = {}
    layers = []
    for i in range(cfg["n_layers"]):
        L = {}
        for key, name in [("attn_norm", "attn_norm"), ("wq", "attn_q"), ("wk", "attn_k"),
                          ("wv", "attn_v"), ("wo", "attn_output"), ("ffn_norm", "ffn_norm"),
                          ("w1", "ffn_gate"), ("w2", "ffn_down"), ("w3", "ffn_up")]:
            full = "blk.%d.%s.weight" % (i, name)
            L[key] = g.tensor(full)
            if g.by_name[full]["type"] in BLOCKS:
                quant["%d.%s" % (i, key)] = act_block(g.by_name[full]["type"])
            elif g.by_name[full]["type"] == GGML_BF16:
                quant["%d.%s" % (i, key)] = "bf16"
        layers.append(L)
    out_name = "output.weight" if "output.weight" in g.by_name else "token_embd.weight"
    output = g.tensor(out_name) if out_name == "output.weight" else tok_embd
    if g.by_name[out_name]["type"] in BLOCKS:
        quant["output"] = act_block(g.by_name[out_name]["type"])
    elif g.by_name[out_name]["type"] == GGML_BF16:
        quant["output"] = "bf16"
    w = {"tok_embd": tok_embd, "out_norm": g.tensor("output_norm.weight"), "output": output,
         "layers": layers, "quant": quant}
    return Model(cfg, w)


def load_llama2c(path):
    """llama2.c legacy checkpoint: 7 int32 header, then F32 weights, each kind stacked over all
    layers (all rms_att, then all wq, ...)."""
    with open(path, "rb") as f:
        buf = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack_from("<7i", buf, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    head_dim = dim // n_heads
    kv_dim = n_kv_heads * head_dim
    arr = np.frombuffer(buf, dtype="<f4", offset=28)
    off = [0]

    def take(*shape):
        n = int(np.prod(shape))
        a = arr[off[0]:off[0] + n]
        if a.size != n:
            raise ValueError("%s: truncated checkpoint" % path)
        off[0] += n
        return a.astype(np.float64).reshape(shape)

    tok_embd = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq = take(n_layers, n_heads * head_dim, dim)
    wk = take(n_layers, kv_dim, dim)
    wv = take(n_layers, kv_dim, dim)
    wo = take(n_layers, dim, n_heads * head_dim)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len * head_dim // 2)  # freq_cis_real (unused: RoPE is computed)
    take(seq_len * head_dim // 2)  # freq_cis_imag
    output = tok_embd if shared else take(vocab, dim)
    cfg = {"dim": dim, "hidden_dim": hidden, "n_layers": n_layers, "n_heads": n_heads,
           "n_kv_heads": n_kv_heads, "vocab_size": vocab, "ctx_len": seq_len,
           "head_dim": head_dim, "rope_dim": head_dim, "rope_theta": 10000.0,
           "norm_eps": float(np.float32(1e-5))}  # the F32 value a GGUF file would store
    layers = [{"attn_norm": rms_att[i], "wq": wq[i], "wk": wk[i], "wv": wv[i], "wo": wo[i],
               "ffn_norm": rms_ffn[i], "w1": w1[i], "w2": w2[i], "w3": w3[i]}
              for i in range(n_layers)]
    return Model(cfg, {"tok_embd": tok_embd, "out_norm": rms_final, "output": output,
                       "layers": layers, "quant": {}})


def load(path):
    with open(path, "rb") as f:
        magic = f.read(4)
    return load_gguf(path) if magic == b"GGUF" else load_llama2c(path)


# ---------------------------------------------------------------------------------------------
# The forward pass, float64. x is (T, C): T consecutive positions of one sequence.

def rmsnorm(x, w, eps):
    """x (T, C) / sqrt(mean(x^2) + eps) * w (C)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_scale(m):
    """Linear position interpolation (Chen et al. 2023, "Extending Context Window of Large
    Language Models via Positional Interpolation"): positions, equivalently frequencies, are
    divided by llama.rope.scaling.factor when llama.rope.scaling.type is linear."""
    kind = m("rope.scaling.type", "linear" if m("rope.scale_linear") else "none")
    if kind == "none":
        return 1.0
    if kind != "linear":
        raise ValueError("rope scaling %r is not in the reference" % kind)
    return float(m("rope.scaling.factor", m("rope.scale_linear", 1.0)))


def llama3_rope_factors(rope_dim, theta, factor, low_freq_factor, high_freq_factor,
                        original_context):
    """Llama 3.1's frequency scaling, as Meta publishes it (apply_scaling in llama-models'
    reference model): wavelengths shorter than original_context / high_freq_factor keep their
    frequency, longer than original_context / low_freq_factor are divided by factor, and those
    between blend the two linearly in original_context / wavelength. Returns the divisor of
    each pair's frequency, which is what a GGUF's rope_freqs.weight holds."""
    i = np.arange(rope_dim // 2, dtype=np.float64)
    freq = theta ** (-2.0 * i / rope_dim)
    wavelen = 2 * np.pi / freq
    smooth = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    scaled = np.where(wavelen < original_context / high_freq_factor, freq,
                      np.where(wavelen > original_context / low_freq_factor, freq / factor,
                               (1 - smooth) * freq / factor + smooth * freq))
    return freq / scaled


def rope(x, pos, rope_dim, theta, scale=1.0, factors=None):
    """x (T, n_heads, head_dim); pos (T). Rotates pairs (x[2i], x[2i+1]), i < rope_dim/2, by the
    angle pos * theta^(-2i/rope_dim) / scale / factors[i] (scale: linear scaling; factors:
    rope_freqs.weight, Llama 3.1+)."""
    i = np.arange(rope_dim // 2, dtype=np.float64)
    freq = theta ** (-2.0 * i / rope_dim) / scale               # (rope_dim/2)
    if factors is not None:
        freq = freq / factors
    ang = np.asarray(pos, dtype=np.float64)[:, None] * freq     # (T, rope_dim/2)
    cos = np.cos(ang)[:, None, :]
    sin = np.sin(ang)[:, None, :]
    out = x.copy()
    a = x[:, :, 0:rope_dim:2]
    b = x[:, :, 1:rope_dim:2]
    out[:, :, 0:rope_dim:2] = a * cos - b * sin
    out[:, :, 1:rope_dim:2] = a * sin + b * cos
    return out


def act_block(ttype):
    """The activation block length an engine pairs with weights of ttype: 256 for the K-quants
    and IQ4_XS (whose scales cover 256 elements), 32 for the other block types."""
    return QK_K if BLOCKS[ttype][0] == QK_K else QK


def quantize_act(x, block=QK):
    """x (T, n) with n a multiple of block -> the values an 8-bit block quantization keeps: per
    block, d = max|x| / 127, q = round(x * (1 / d)), value d * q, with d, 1 / d and the product
    in float32 and q rounded half to even. This is what an engine does to activations before
    integer dot products with block-quantized weights (the weights themselves are already
    dequantized exactly). The float32 steps matter where activations sit on exact ties: the rows
    of a quantized token embedding hold few distinct values, whose ratios often end in .5."""
    T, n = x.shape
    b = x.reshape(T, n // block, block).astype(np.float32)
    d = np.abs(b).max(axis=-1, keepdims=True) / np.float32(127.0)
    inv = np.divide(np.float32(1.0), d, out=np.zeros_like(d), where=d > 0)
    q = np.rint(b * inv)
    return (q.astype(np.float64) * d.astype(np.float64)).reshape(T, n)


def round_bf16(x):
    """x -> float32 -> BF16 (f32_to_bf16), as the engine's --bf16-dot rounds the activations of
    BF16 matrices (tensor.c f32_to_bf16)."""
    return bf16_to_f32(f32_to_bf16(np.asarray(x, dtype=np.float32))).astype(np.float64)


def act_round(x, how):
    """The activations a matrix meets: quantize_act's 8-bit blocks (how = block length) or BF16
    (how = "bf16": only with act_quant="bf16", the engine's --bf16-dot)."""
    return round_bf16(x) if how == "bf16" else quantize_act(x, how)


def silu(x):
    return x / (1.0 + np.exp(-x))


def q8_0_roundtrip(x):
    """x (..., n) with n a multiple of 32 -> the values a Q8_0 block keeps, from the GGUF format
    (block: an F16 scale d and 32 int8 q; value d * q), quantized as llama.cpp's reference
    quantize_row_q8_0 does: per block of 32, in float32, amax = max|x|, d = amax / 127,
    q = round(x * (1 / d)) (half to even here; C's lrintf in the default rounding mode), and d
    stored as F16 (round to nearest even). The value is then f16(d) * q, exact in float32."""
    shape = x.shape
    b = x.astype(np.float32).reshape(-1, QK)
    d = np.abs(b).max(axis=-1, keepdims=True) / np.float32(127.0)
    inv = np.divide(np.float32(1.0), d, out=np.zeros_like(d), where=d > 0)
    q = np.clip(np.rint(b * inv), -127, 127)
    dh = d.astype(np.float16).astype(np.float32)
    return (dh.astype(np.float64) * q.astype(np.float64)).reshape(shape)


class Cache:
    """One sequence's keys and values: per layer a list of (T, n_kv_heads, head_dim) blocks.
    kv "q8_0": each head's keys and values go through q8_0_roundtrip when they are appended
    (head_dim a multiple of 32), as an engine's Q8_0 KV cache stores them; "f32": kept as
    computed (float64 here)."""

    def __init__(self, n_layers, kv="f32"):
        assert kv in ("f32", "q8_0")
        self.kv = kv
        self.k = [np.zeros((0, 0, 0)) for _ in range(n_layers)]
        self.v = [np.zeros((0, 0, 0)) for _ in range(n_layers)]
        self.n = 0


def forward(model, tokens, cache, act_quant=False):
    """Runs tokens (T ids) at positions cache.n.. and appends their K/V to cache.
    Returns logits (T, vocab) float64. act_quant: the inputs of matrices stored in a block type
    go through quantize_act first (a model of the engine's integer dot products); "bf16": also
    those of BF16 matrices through round_bf16 (the engine's --bf16-dot)."""
    w = model.w
    x = hidden(model, tokens, cache, act_quant)
    if _rounds(act_quant, w["quant"].get("output")):
        x = act_round(x, w["quant"]["output"])
    return x @ w["output"].T                                             # (T, vocab)


def _rounds(act_quant, how):
    """Whether forward(act_quant) rounds the activations of a matrix marked how in quant."""
    return how is not None and bool(act_quant) and (how != "bf16" or act_quant == "bf16")


def embedding(model, tokens, pooling="mean"):
    """A sequence's embedding as llama.cpp computes it for a decoder model: the final hidden
    states of every token of tokens (BOS included when it is there), averaged ("mean") or the
    last one ("last"), then divided by its Euclidean norm. float64 (dim,)."""
    h = hidden(model, tokens, Cache(model.cfg["n_layers"]))
    v = h.mean(axis=0) if pooling == "mean" else h[-1]
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def hidden(model, tokens, cache, act_quant=False):
    """forward's work up to the output matrix: the final hidden states (T, dim) float64, the
    residual stream after the output RMSNorm."""
    c, w = model.cfg, model.w

    def mm(x, W, name):  # x (T, n) @ W^T, W (out, n)
        if _rounds(act_quant, w["quant"].get(name)):
            x = act_round(x, w["quant"][name])
        return x @ W.T

    T = len(tokens)
    C, H, KVH, D = c["dim"], c["n_heads"], c["n_kv_heads"], c["head_dim"]
    group = H // KVH
    p0 = cache.n
    pos = np.arange(p0, p0 + T)
    x = w["tok_embd"][np.asarray(tokens)]                       # (T, C)
    for li, L in enumerate(w["layers"]):
        h = rmsnorm(x, L["attn_norm"], c["norm_eps"])
        q = mm(h, L["wq"], "%d.wq" % li).reshape(T, H, D)
        k = mm(h, L["wk"], "%d.wk" % li).reshape(T, KVH, D)
        v = mm(h, L["wv"], "%d.wv" % li).reshape(T, KVH, D)
        rs = (c["rope_dim"], c["rope_theta"], c.get("rope_scale", 1.0), c.get("rope_factors"))
        q = rope(q, pos, *rs)
        k = rope(k, pos, *rs)
        if cache.kv == "q8_0":
            k, v = q8_0_roundtrip(k), q8_0_roundtrip(v)
        if p0 == 0:
            cache.k[li], cache.v[li] = k, v
        else:
            cache.k[li] = np.concatenate([cache.k[li], k])
            cache.v[li] = np.concatenate([cache.v[li], v])
        K, V = cache.k[li], cache.v[li]                          # (S, KVH, D), S = p0 + T
        S = K.shape[0]
        # query head hq reads kv head hq // group
        Kq = np.repeat(K, group, axis=1)                         # (S, H, D)
        Vq = np.repeat(V, group, axis=1)
        scores = np.einsum("thd,shd->hts", q, Kq) / np.sqrt(D)  # (H, T, S)
        mask = np.arange(S)[None, :] > pos[:, None]              # (T, S) future positions
        scores = np.where(mask[None], -np.inf, scores)
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=-1, keepdims=True)
        att = np.einsum("hts,shd->thd", p, Vq).reshape(T, H * D)
        x = x + mm(att, L["wo"], "%d.wo" % li)
        h = rmsnorm(x, L["ffn_norm"], c["norm_eps"])
        ffn = silu(mm(h, L["w1"], "%d.w1" % li)) * mm(h, L["w3"], "%d.w3" % li)
        x = x + mm(ffn, L["w2"], "%d.w2" % li)
    cache.n = p0 + T
    return rmsnorm(x, w["out_norm"], c["norm_eps"])                        # (T, dim)


def greedy(model, prompt, n_steps):
    """Greedy continuation: n_steps token ids after prompt (argmax, lowest id on ties)."""
    cache = Cache(model.cfg["n_layers"])
    logits = forward(model, prompt, cache)[-1]
    out = []
    for _ in range(n_steps):
        t = int(np.argmax(logits))
        out.append(t)
        if len(out) == n_steps:
            break
        logits = forward(model, [t], cache)[-1]
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    n = 50
    if "-n" in args:
        i = args.index("-n")
        n = int(args[i + 1])
        del args[i:i + 2]
    mdl = load(args[0])
    prompt = [int(a) for a in args[1:]] or [1]
    print(" ".join(str(t) for t in greedy(mdl, prompt, n)))
