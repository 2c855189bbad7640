/* arm/neon: AArch64 Advanced SIMD kernels for out (T, n_out) = x (T, n_in) @ W^T, kept
 * small: plain register tiles, no cache blocking.
 * F32/F16/BF16: a tile is up to 4 weight rows x 2 activation rows; each weight vector is
 * loaded (and converted) once per 8-element step and used for both activation rows. A pair's
 * accumulation never depends on the tile (see matmul_neon.h).
 * Q8_0/Q4_0: per weight row, each block is unpacked once and used for up to 4 activation rows;
 * the block sums are exact (widening multiplies into int16, which cannot overflow: two products
 * of |w| <= 128 and |x| <= 127 per lane, then pairwise into int32), and the float steps per
 * block are the scalar kernel's, so bit-identical to matmul.c.
 * The scalar kernels in matmul.c are the reference these are tested against (tests/test_matmul.c,
 * run on AArch64 under qemu by scripts/test-arm.sh). Never allocates. */
#include "neon.h"

#if defined(__aarch64__) && defined(__ARM_NEON) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#include <arm_neon.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

bool mm_neon_supported(void) {
    return true;
}

/* 8 weights of a row from element k, as F32 (all three conversions are exact). */
INLINE void load8(dtype type, const void *row, int k, float32x4_t v[2]) {
    if (type == DT_F32) {
        v[0] = vld1q_f32((const float *)row + k);
        v[1] = vld1q_f32((const float *)row + k + 4);
        return;
    }
    const uint16_t *p = (const uint16_t *)row + k;
    if (type == DT_F16) {
        v[0] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
        v[1] = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p + 4)));
    } else { /* BF16: the top half of an F32 */
        v[0] = vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
        v[1] = vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p + 4), 16));
    }
}

/* The last n - k (< 8) weights, zero-padded: the padded lanes add 0 * 0. */
INLINE void load8_tail(dtype type, const void *row, int k, int n, float32x4_t v[2]) {
    float buf[8] = {0};
    for (int i = k; i < n; i++)
        buf[i - k] = type == DT_F32   ? ((const float *)row)[i]
                     : type == DT_F16 ? f16_to_f32(((const uint16_t *)row)[i])
                                      : bf16_to_f32(((const uint16_t *)row)[i]);
    v[0] = vld1q_f32(buf);
    v[1] = vld1q_f32(buf + 4);
}

/* One NW x NT tile: out[t * ldo + r] = dot(weight row r, x row t) for r < NW, t < NT; weight
 * rows rb bytes apart, x rows n floats apart. */
INLINE void tile_float(dtype type, float *out, size_t ldo, const uint8_t *w, size_t rb,
                       const float *x, int n, int NW, int NT) {
    float32x4_t acc[4][2][2];
    for (int r = 0; r < NW; r++)
        for (int t = 0; t < NT; t++)
            acc[r][t][0] = acc[r][t][1] = vdupq_n_f32(0.0f);
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        float32x4_t wv[4][2];
        for (int r = 0; r < NW; r++)
            load8(type, w + r * rb, k, wv[r]);
        for (int t = 0; t < NT; t++) {
            float32x4_t x0 = vld1q_f32(x + (size_t)t * n + k);
            float32x4_t x1 = vld1q_f32(x + (size_t)t * n + k + 4);
            for (int r = 0; r < NW; r++) {
                acc[r][t][0] = vfmaq_f32(acc[r][t][0], wv[r][0], x0);
                acc[r][t][1] = vfmaq_f32(acc[r][t][1], wv[r][1], x1);
            }
        }
    }
    if (k < n) {
        float32x4_t wv[4][2];
        for (int r = 0; r < NW; r++)
            load8_tail(type, w + r * rb, k, n, wv[r]);
        for (int t = 0; t < NT; t++) {
            float buf[8] = {0};
            memcpy(buf, x + (size_t)t * n + k, (size_t)(n - k) * sizeof(float));
            float32x4_t x0 = vld1q_f32(buf), x1 = vld1q_f32(buf + 4);
            for (int r = 0; r < NW; r++) {
                acc[r][t][0] = vfmaq_f32(acc[r][t][0], wv[r][0], x0);
                acc[r][t][1] = vfmaq_f32(acc[r][t][1], wv[r][1], x1);
            }
        }
    }
    for (int r = 0; r < NW; r++)
        for (int t = 0; t < NT; t++)
            out[(size_t)t * ldo + r] = vaddvq_f32(vaddq_f32(acc[r][t][0], acc[r][t][1]));
}

static void rows_float(dtype type, float *out, const float *x, const tensor *w, int T, int r0,
                       int r1) {
    const int n = (int)w->ne[0];
    const size_t ldo = (size_t)w->ne[1], rb = dtype_row_bytes(type, n);
    const uint8_t *base = w->data;
    for (int t = 0; t < T; t += 2) {
        const float *xt = x + (size_t)t * n;
        float *o = out + (size_t)t * ldo;
        const bool two = t + 1 < T;
        int r = r0;
        for (; r + 4 <= r1; r += 4) {
            if (two)
                tile_float(type, o + r, ldo, base + r * rb, rb, xt, n, 4, 2);
            else
                tile_float(type, o + r, ldo, base + r * rb, rb, xt, n, 4, 1);
        }
        for (; r < r1; r++) {
            if (two)
                tile_float(type, o + r, ldo, base + r * rb, rb, xt, n, 1, 2);
            else
                tile_float(type, o + r, ldo, base + r * rb, rb, xt, n, 1, 1);
        }
    }
}

/* The exact sum of 32 products of one weight block (w0: elements 0-15, w1: 16-31) and one
 * activation block. */
INLINE int32_t block_dot(int8x16_t w0, int8x16_t w1, const int8_t *xq) {
    int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
    int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0);
    int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), w1, x1);
    return vaddvq_s32(vpadalq_s16(vpaddlq_s16(p0), p1));
}

#define QT 4 /* activation rows per quantized tile */

static void rows_quant(dtype type, float *out, const block_q8_act *xq, const tensor *w, int T,
                       int r0, int r1) {
    const int n = (int)w->ne[0], nb = n / QK;
    const size_t ldo = (size_t)w->ne[1];
    const int8x16_t eight = vdupq_n_s8(8);
    const uint8x16_t low4 = vdupq_n_u8(0x0f);
    for (int r = r0; r < r1; r++) {
        const void *row = tensor_row(w, r);
        for (int t0 = 0; t0 < T; t0 += QT) {
            const int nt = T - t0 < QT ? T - t0 : QT;
            float sum[QT] = {0};
            for (int b = 0; b < nb; b++) {
                int8x16_t w0, w1;
                uint16_t dh;
                if (type == DT_Q8_0) {
                    const block_q8_0 *blk = (const block_q8_0 *)row + b;
                    w0 = vld1q_s8(blk->qs);
                    w1 = vld1q_s8(blk->qs + 16);
                    dh = blk->d;
                } else { /* Q4_0: element i < 16 in the low nibble of byte i, 16 + i in its high */
                    const block_q4_0 *blk = (const block_q4_0 *)row + b;
                    uint8x16_t q = vld1q_u8(blk->qs);
                    w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, low4)), eight);
                    w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight);
                    dh = blk->d;
                }
                const float dw = f16_to_f32(dh);
                for (int i = 0; i < nt; i++) {
                    const block_q8_act *xb = &xq[(size_t)(t0 + i) * nb + b];
                    /* the scalar kernel's float steps: mul, mul, add */
                    sum[i] += (float)block_dot(w0, w1, xb->qs) * (dw * xb->d);
                }
            }
            for (int i = 0; i < nt; i++)
                out[(size_t)(t0 + i) * ldo + r] = sum[i];
        }
    }
}

void mm_rows_neon(float *out, const float *x, const block_q8_act *xq, const tensor *w, int T,
                  int r0, int r1) {
    switch (w->type) {
    case DT_F32:
    case DT_F16:
    case DT_BF16:
        rows_float(w->type, out, x, w, T, r0, r1);
        break;
    case DT_Q8_0:
    case DT_Q4_0:
        rows_quant(w->type, out, xq, w, T, r0, r1);
        break;
    default: break; /* matmul sends only the types above here (simd_type in matmul.c) */
    }
}

/* Per block: d = max|x| / 127 and q = round-to-nearest-even(x * (1/d)), exactly the scalar
 * quantizer's operations (vmaxnm ignores NaN as fmaxf does; vcvtn rounds like lrintf in the
 * default rounding mode; |q| <= 127, so the narrowing never saturates). */
void quantize_row_q8_act_neon(block_q8_act *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++) {
        const float *xb = x + i * QK;
        float32x4_t v[8], m = vdupq_n_f32(0.0f);
        for (int j = 0; j < 8; j++) {
            v[j] = vld1q_f32(xb + 4 * j);
            m = vmaxnmq_f32(m, vabsq_f32(v[j]));
        }
        float d = vmaxnmvq_f32(m) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[i].d = d;
        const float32x4_t vid = vdupq_n_f32(id);
        for (int j = 0; j < 4; j++) {
            int32x4_t a = vcvtnq_s32_f32(vmulq_f32(v[2 * j], vid));
            int32x4_t b = vcvtnq_s32_f32(vmulq_f32(v[2 * j + 1], vid));
            vst1_s8(out[i].qs + 8 * j, vqmovn_s16(vcombine_s16(vqmovn_s32(a), vqmovn_s32(b))));
        }
    }
}

#else /* not AArch64: the kernels of engine/x86/ or the scalar ones */

bool mm_neon_supported(void) {
    return false;
}

void mm_rows_neon(float *out, const float *x, const block_q8_act *xq, const tensor *w, int T,
                  int r0, int r1) {
    (void)out, (void)x, (void)xq, (void)w, (void)T, (void)r0, (void)r1;
}

void quantize_row_q8_act_neon(block_q8_act *out, const float *x, int64_t n) {
    (void)out, (void)x, (void)n;
}

#endif
