/* tensor: element types, F16/BF16 conversion, and the Q8_0/Q4_0 block codecs (scalar reference
 * code; these are the oracles the fast kernels are tested against). Never allocates. */
#include "tensor.h"

#include <math.h>
#include <string.h>

_Static_assert(sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20, "ggml block sizes");
_Static_assert(sizeof(block_q5_0) == 22 && sizeof(block_q5_1) == 24, "ggml block sizes");
_Static_assert(sizeof(block_q8_0) == 34 && sizeof(block_iq4_nl) == 18, "ggml block sizes");
_Static_assert(sizeof(block_q2_K) == 84 && sizeof(block_q3_K) == 110, "ggml block sizes");
_Static_assert(sizeof(block_q4_K) == 144 && sizeof(block_q5_K) == 176, "ggml block sizes");
_Static_assert(sizeof(block_q6_K) == 210 && sizeof(block_iq4_xs) == 136, "ggml block sizes");

/* Every ggml tensor type a GGUF file may hold: its name, elements per block and bytes per
 * block, the ones this engine computes with first (the lookups scan from the top). gguf.c checks
 * a file's layout with the sizes of the others too. */
static const struct {
    uint32_t type;
    const char *name;
    int block_elems;
    size_t block_bytes;
    bool supported;
} types[] = {
    {DT_F32, "F32", 1, 4, true},
    {DT_F16, "F16", 1, 2, true},
    {DT_BF16, "BF16", 1, 2, true},
    {DT_Q8_0, "Q8_0", QK, sizeof(block_q8_0), true},
    {DT_Q4_0, "Q4_0", QK, sizeof(block_q4_0), true},
    {DT_Q4_1, "Q4_1", QK, sizeof(block_q4_1), true},
    {DT_Q5_0, "Q5_0", QK, sizeof(block_q5_0), true},
    {DT_Q5_1, "Q5_1", QK, sizeof(block_q5_1), true},
    {DT_Q2_K, "Q2_K", QK_K, sizeof(block_q2_K), true},
    {DT_Q3_K, "Q3_K", QK_K, sizeof(block_q3_K), true},
    {DT_Q4_K, "Q4_K", QK_K, sizeof(block_q4_K), true},
    {DT_Q5_K, "Q5_K", QK_K, sizeof(block_q5_K), true},
    {DT_Q6_K, "Q6_K", QK_K, sizeof(block_q6_K), true},
    {DT_IQ4_NL, "IQ4_NL", QK, sizeof(block_iq4_nl), true},
    {DT_IQ4_XS, "IQ4_XS", QK_K, sizeof(block_iq4_xs), true},
    {9, "Q8_1", 32, 36, false},       {15, "Q8_K", 256, 292, false},
    {16, "IQ2_XXS", 256, 66, false},  {17, "IQ2_XS", 256, 74, false},
    {18, "IQ3_XXS", 256, 98, false},  {19, "IQ1_S", 256, 50, false},
    {21, "IQ3_S", 256, 110, false},   {22, "IQ2_S", 256, 82, false},
    {24, "I8", 1, 1, false},          {25, "I16", 1, 2, false},
    {26, "I32", 1, 4, false},         {27, "I64", 1, 8, false},
    {28, "F64", 1, 8, false},
};
#define N_TYPES (sizeof types / sizeof types[0])

/* The row of type in the table; -1 when it is not there or, unless any, not supported. */
static int type_index(uint32_t type, bool any) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (types[i].type == type) return any || types[i].supported ? (int)i : -1;
    return -1;
}

const int *dtype_f16_fields(dtype t) {
    static const int none[] = {-1}, d0[] = {0, -1}, dm[] = {0, 2, -1}, q2k[] = {80, 82, -1},
                     q3k[] = {108, -1}, q6k[] = {208, -1};
    switch (t) {
    case DT_F16: case DT_BF16: case DT_F32: return none;
    case DT_Q4_1: case DT_Q5_1: case DT_Q4_K: case DT_Q5_K: return dm;
    case DT_Q2_K: return q2k;
    case DT_Q3_K: return q3k;
    case DT_Q6_K: return q6k;
    default: return d0; /* Q8_0, Q4_0, Q5_0, IQ4_NL, IQ4_XS: d first */
    }
}

const char *dtype_name(uint32_t type) {
    int i = type_index(type, false);
    return i < 0 ? NULL : types[i].name;
}

bool dtype_supported(uint32_t type) { return type_index(type, false) >= 0; }

int dtype_block_elems(dtype t) {
    int i = type_index(t, false);
    return i < 0 ? 0 : types[i].block_elems;
}

size_t dtype_block_bytes(dtype t) {
    int i = type_index(t, false);
    return i < 0 ? 0 : types[i].block_bytes;
}

const char *dtype_ggml_name(uint32_t type) {
    int i = type_index(type, true);
    return i < 0 ? NULL : types[i].name;
}

int dtype_ggml_block_elems(uint32_t type) {
    int i = type_index(type, true);
    return i < 0 ? 0 : types[i].block_elems;
}

size_t dtype_ggml_block_bytes(uint32_t type) {
    int i = type_index(type, true);
    return i < 0 ? 0 : types[i].block_bytes;
}

size_t dtype_row_bytes(dtype t, int64_t n) {
    return (size_t)(n / dtype_block_elems(t)) * dtype_block_bytes(t);
}

int64_t tensor_nelements(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->ne[i];
    return n;
}

const void *tensor_row(const tensor *t, int64_t r) {
    return (const uint8_t *)t->data + (size_t)r * dtype_row_bytes(t->type, t->ne[0]);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000 | (man << 13)); /* inf, NaN */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in F32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffff;
    if (a >= 0x7f800000) return sign | 0x7c00 | (a > 0x7f800000 ? 0x200 : 0); /* inf, NaN */
    if (a >= 0x477ff000) return sign | 0x7c00; /* rounds to a magnitude >= 65520: infinity */
    if (a < 0x38800000) {
        /* below the smallest normal F16: round a * 2^24 to an integer, ties to even */
        float v = bits_f32(a) * 0x1p24f;
        return sign | (uint16_t)lrintf(v);
    }
    /* normal: drop 13 mantissa bits with round-to-nearest-even; a carry into the exponent is
     * the correct result */
    uint32_t r = a + 0xfff + ((a >> 13) & 1);
    return sign | (uint16_t)((r - 0x38000000) >> 13);
}

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* ---- the block types beyond Q8_0/Q4_0: one block of each to floats ----------------------- */

const int8_t iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

/* Q3_K: the sixteen 6-bit scales (minus 32) from the 12 packed bytes: scale i's low 4 bits are
 * the low (i < 8) or high nibble of byte i % 8, its high 2 bits are bits 2 * (i / 4) of byte
 * 8 + i % 4. */
void q3_K_scales(int out[16], const uint8_t *s) {
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? s[i] & 0x0f : s[i - 8] >> 4;
        int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (lo | (hi << 4)) - 32;
    }
}

/* One block of the K-quants Q2_K..Q6_K (QK_K elements) into y; dequantize_block's share. */
static void dequantize_k_block(float *y, const uint8_t *blk, dtype t) {
    switch (t) {
    case DT_Q2_K: {
        /* element 128 * h + 32 * k + l (k < 4, l < 32) is bits 2k..2k+1 of qs[32 * h + l], in
         * sub-block 8 * h + 2 * k + l / 16 */
        const block_q2_K *b = (const block_q2_K *)blk;
        const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
        for (int i = 0; i < QK_K; i++) {
            const int h = i / 128, k = (i % 128) / 32, l = i % 32;
            const uint8_t sc = b->scales[8 * h + 2 * k + l / 16];
            const int q = (b->qs[32 * h + l] >> (2 * k)) & 3;
            y[i] = d * (float)(sc & 0x0f) * (float)q - dmin * (float)(sc >> 4);
        }
        return;
    }
    case DT_Q3_K: {
        /* low bits as in Q2_K; the high bit of element 128 * h + 32 * k + l is bit 4h + k of
         * hmask[l] */
        const block_q3_K *b = (const block_q3_K *)blk;
        const float d = f16_to_f32(b->d);
        int sc[16];
        q3_K_scales(sc, b->scales);
        for (int i = 0; i < QK_K; i++) {
            const int h = i / 128, k = (i % 128) / 32, l = i % 32;
            int q = (b->qs[32 * h + l] >> (2 * k)) & 3;
            if (!((b->hmask[l] >> (4 * h + k)) & 1)) q -= 4;
            y[i] = d * (float)sc[8 * h + 2 * k + l / 16] * (float)q;
        }
        return;
    }
    case DT_Q4_K:
    case DT_Q5_K: {
        /* element 64 * p + l (l < 32) is the low nibble of qs[32 * p + l], element 64 * p + 32 + l
         * its high nibble; sub-blocks 2p and 2p + 1; Q5_K's fifth bit is bit 2p (2p + 1) of qh[l] */
        const bool q5 = t == DT_Q5_K;
        const block_q4_K *b4 = (const block_q4_K *)blk;
        const block_q5_K *b5 = (const block_q5_K *)blk;
        const float d = f16_to_f32(q5 ? b5->d : b4->d), dmin = f16_to_f32(q5 ? b5->dmin : b4->dmin);
        const uint8_t *scales = q5 ? b5->scales : b4->scales, *qs = q5 ? b5->qs : b4->qs;
        for (int p = 0; p < 4; p++) {
            for (int half = 0; half < 2; half++) {
                int sc, m;
                k4_scale_min(2 * p + half, scales, &sc, &m);
                const float dl = d * (float)sc, ml = dmin * (float)m;
                for (int l = 0; l < 32; l++) {
                    int q = half ? qs[32 * p + l] >> 4 : qs[32 * p + l] & 0x0f;
                    if (q5 && ((b5->qh[l] >> (2 * p + half)) & 1)) q += 16;
                    y[64 * p + 32 * half + l] = dl * (float)q - ml;
                }
            }
        }
        return;
    }
    case DT_Q6_K: {
        /* element 128 * h + 32 * k + l: low 4 bits from ql[64 * h + 32 * (k % 2) + l] (low nibble
         * for k < 2), high 2 bits are bits 2k..2k+1 of qh[32 * h + l]; scale
         * scales[8 * h + 2 * k + l / 16] */
        const block_q6_K *b = (const block_q6_K *)blk;
        const float d = f16_to_f32(b->d);
        for (int i = 0; i < QK_K; i++) {
            const int h = i / 128, k = (i % 128) / 32, l = i % 32;
            const uint8_t lb = b->ql[64 * h + 32 * (k % 2) + l];
            const int lo = k < 2 ? lb & 0x0f : lb >> 4;
            const int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
            y[i] = d * (float)b->scales[8 * h + 2 * k + l / 16] * (float)((lo | (hi << 4)) - 32);
        }
        return;
    }
    default: return;
    }
}

static void dequantize_block(float *y, const uint8_t *blk, dtype t) {
    switch (t) {
    case DT_Q4_1: {
        const block_q4_1 *b = (const block_q4_1 *)blk;
        const float d = f16_to_f32(b->d), m = f16_to_f32(b->m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * (float)(b->qs[j] & 0x0f) + m;
            y[j + QK / 2] = d * (float)(b->qs[j] >> 4) + m;
        }
        return;
    }
    case DT_Q5_0:
    case DT_Q5_1: {
        const bool q51 = t == DT_Q5_1;
        const block_q5_1 *b1 = (const block_q5_1 *)blk;
        const block_q5_0 *b0 = (const block_q5_0 *)blk;
        const float d = f16_to_f32(q51 ? b1->d : b0->d), m = q51 ? f16_to_f32(b1->m) : 0.0f;
        const uint8_t *qh = q51 ? b1->qh : b0->qh, *qs = q51 ? b1->qs : b0->qs;
        for (int j = 0; j < QK / 2; j++) {
            int lo = q5_code(qh, qs, j), hi = q5_code(qh, qs, j + QK / 2);
            if (q51) {
                y[j] = d * (float)lo + m;
                y[j + QK / 2] = d * (float)hi + m;
            } else {
                y[j] = d * (float)(lo - 16);
                y[j + QK / 2] = d * (float)(hi - 16);
            }
        }
        return;
    }
    case DT_IQ4_NL: {
        const block_iq4_nl *b = (const block_iq4_nl *)blk;
        const float d = f16_to_f32(b->d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * (float)iq4_levels[b->qs[j] & 0x0f];
            y[j + QK / 2] = d * (float)iq4_levels[b->qs[j] >> 4];
        }
        return;
    }
    case DT_IQ4_XS: {
        const block_iq4_xs *b = (const block_iq4_xs *)blk;
        const float d = f16_to_f32(b->d);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) |
                     (((b->scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * (float)(ls - 32);
            const uint8_t *qs = b->qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[32 * ib + j] = dl * (float)iq4_levels[qs[j] & 0x0f];
                y[32 * ib + j + 16] = dl * (float)iq4_levels[qs[j] >> 4];
            }
        }
        return;
    }
    default: dequantize_k_block(y, blk, t); return;
    }
}

void dequantize_row(float *out, const void *src, dtype t, int64_t n) {
    switch (t) {
    case DT_F32: memcpy(out, src, (size_t)n * sizeof(float)); return;
    case DT_F16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(h[i]);
        return;
    }
    case DT_BF16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(h[i]);
        return;
    }
    case DT_Q8_0: {
        const block_q8_0 *b = src;
        for (int64_t i = 0; i < n / QK; i++) {
            float d = f16_to_f32(b[i].d);
            for (int j = 0; j < QK; j++) out[i * QK + j] = d * (float)b[i].qs[j];
        }
        return;
    }
    case DT_Q4_0: {
        const block_q4_0 *b = src;
        for (int64_t i = 0; i < n / QK; i++) {
            float d = f16_to_f32(b[i].d);
            for (int j = 0; j < QK / 2; j++) {
                out[i * QK + j] = d * (float)((b[i].qs[j] & 0x0f) - 8);
                out[i * QK + j + QK / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
            }
        }
        return;
    }
    default: {
        const int be = dtype_block_elems(t);
        const size_t bb = dtype_block_bytes(t);
        for (int64_t i = 0; i < n / be; i++)
            dequantize_block(out + i * be, (const uint8_t *)src + (size_t)i * bb, t);
        return;
    }
    }
}

/* One block of 32 values to 8-bit codes: d = max|x| / 127, q = round(x / d). Returns d; the
 * two Q8 formats differ only in how they store it. */
static float q8_block(int8_t qs[QK], const float *xb) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK; j++) qs[j] = (int8_t)lrintf(xb[j] * id);
    return d;
}

void quantize_row_q8_0(block_q8_0 *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++) out[i].d = f32_to_f16(q8_block(out[i].qs, x + i * QK));
}

void quantize_row_q8_act(block_q8_act *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++) out[i].d = q8_block(out[i].qs, x + i * QK);
}

void quantize_row_q4_0(block_q4_0 *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++) {
        const float *xb = x + i * QK;
        /* the scale maps the value of largest magnitude (with its sign) to -8, so the full range
         * [-8, 7] is used on the side that needs it */
        float amax = 0.0f, vmax = 0.0f;
        for (int j = 0; j < QK; j++)
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                vmax = xb[j];
            }
        float d = vmax / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[i].d = f32_to_f16(d);
        for (int j = 0; j < QK / 2; j++) {
            int lo = (int)(xb[j] * id + 8.5f), hi = (int)(xb[j + QK / 2] * id + 8.5f);
            lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
            hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
            out[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

int quantize_row(void *out, const float *x, dtype t, int64_t n) {
    switch (t) {
    case DT_F32: memcpy(out, x, (size_t)n * sizeof(float)); return 0;
    case DT_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = f32_to_f16(x[i]);
        return 0;
    case DT_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = f32_to_bf16(x[i]);
        return 0;
    case DT_Q8_0: quantize_row_q8_0(out, x, n); return 0;
    case DT_Q4_0: quantize_row_q4_0(out, x, n); return 0;
    default: return -1;
    }
}
