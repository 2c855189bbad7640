/* tensor: element types, F16/BF16 conversion, and the Q8_0/Q4_0 block codecs (scalar reference
 * code; these are the oracles the fast kernels are tested against). Never allocates. */
#include "tensor.h"

#include <math.h>
#include <string.h>

const char *dtype_name(uint32_t type) {
    switch (type) {
    case DT_F32: return "F32";
    case DT_F16: return "F16";
    case DT_Q4_0: return "Q4_0";
    case DT_Q8_0: return "Q8_0";
    case DT_BF16: return "BF16";
    default: return NULL;
    }
}

bool dtype_supported(uint32_t type) { return dtype_name(type) != NULL; }

int dtype_block_elems(dtype t) { return (t == DT_Q4_0 || t == DT_Q8_0) ? QK : 1; }

size_t dtype_block_bytes(dtype t) {
    switch (t) {
    case DT_F32: return 4;
    case DT_F16:
    case DT_BF16: return 2;
    case DT_Q4_0: return sizeof(block_q4_0);
    case DT_Q8_0: return sizeof(block_q8_0);
    }
    return 0;
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

void quantize_row(void *out, const float *x, dtype t, int64_t n) {
    switch (t) {
    case DT_F32: memcpy(out, x, (size_t)n * sizeof(float)); return;
    case DT_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = f32_to_f16(x[i]);
        return;
    case DT_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = f32_to_bf16(x[i]);
        return;
    case DT_Q8_0: quantize_row_q8_0(out, x, n); return;
    case DT_Q4_0: quantize_row_q4_0(out, x, n); return;
    }
}
