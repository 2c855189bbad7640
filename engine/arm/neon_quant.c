/* arm/neon_quant: AArch64 Advanced SIMD twins of the scalar dot products in quant_dot.c (Q4_1,
 * Q5_0, Q5_1, IQ4_NL on 32-element activation blocks; Q2_K..Q6_K and IQ4_XS on 256-element
 * ones). Each weight block is unpacked once into signed 8-bit codes (in element order, 16 per
 * vector) and per-16 scales, and used for up to 8 activation rows; the sums are exact integers
 * (widening multiplies, |code| <= 32 or 127), and the float steps per block are the scalar
 * twin's, so the results are its bits. Tested under qemu by scripts/test-arm.sh. Never
 * allocates. */
#include "neon.h"

#include "matmul.h"

#if defined(__aarch64__) && defined(__ARM_NEON) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#include <arm_neon.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* ---- the 32-element types --------------------------------------------------------------- */

/* 0x10 in byte j (elements 16 * half + j) where bit 16 * half + j of the little-endian qh is
 * set: Q5_0/Q5_1's fifth bits. */
INLINE uint8x16_t fifth16(uint32_t h, int half) {
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint32_t hh = h >> (16 * half);
    const uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)hh), vdup_n_u8((uint8_t)(hh >> 8)));
    return vandq_u8(vtstq_u8(v, vld1q_u8(bits)), vdupq_n_u8(0x10));
}

/* The exact sum of 32 products of a block's codes (c0: elements 0-15, c1: 16-31) and xq. */
INLINE int32_t dot32(int8x16_t c0, int8x16_t c1, const int8_t *xq) {
    const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
    const int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(c0), vget_low_s8(x0)), c0, x0);
    const int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(c1), vget_low_s8(x1)), c1, x1);
    return vaddvq_s32(vpadalq_s16(vpaddlq_s16(p0), p1));
}

INLINE int32_t act_sum(const int8_t *xq) {
    return vaddlvq_s8(vld1q_s8(xq)) + vaddlvq_s8(vld1q_s8(xq + 16));
}

/* A 32-element block: codes, scale d and (Q4_1/Q5_1) the offset m, both F32. */
typedef struct {
    int8x16_t c[2];
    float d, m;
    bool has_m;
} q32_block;

INLINE void decode_q32(q32_block *kb, dtype t, const uint8_t *blk) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    uint16_t d16, m16 = 0;
    memcpy(&d16, blk, 2);
    const uint8_t *qs = blk + 2;
    uint32_t h = 0;
    if (t == DT_Q4_1 || t == DT_Q5_1) memcpy(&m16, blk + 2, 2), qs += 2;
    if (t == DT_Q5_0 || t == DT_Q5_1) memcpy(&h, qs, 4), qs += 4;
    const uint8x16_t q = vld1q_u8(qs);
    uint8x16_t lo = vandq_u8(q, m4), hi = vshrq_n_u8(q, 4);
    if (t == DT_IQ4_NL) {
        const int8x16_t tbl = vld1q_s8(iq4_levels);
        kb->c[0] = vqtbl1q_s8(tbl, lo);
        kb->c[1] = vqtbl1q_s8(tbl, hi);
    } else {
        if (t == DT_Q5_0 || t == DT_Q5_1) {
            lo = vorrq_u8(lo, fifth16(h, 0));
            hi = vorrq_u8(hi, fifth16(h, 1));
        }
        kb->c[0] = vreinterpretq_s8_u8(lo);
        kb->c[1] = vreinterpretq_s8_u8(hi);
        if (t == DT_Q5_0) { /* codes - 16 */
            kb->c[0] = vsubq_s8(kb->c[0], vdupq_n_s8(16));
            kb->c[1] = vsubq_s8(kb->c[1], vdupq_n_s8(16));
        }
    }
    kb->d = f16_to_f32(d16);
    kb->m = f16_to_f32(m16);
    kb->has_m = t == DT_Q4_1 || t == DT_Q5_1;
}

/* sum += the block's share: dot_q4_1/q5_0/q5_1/iq4_nl's float steps. */
INLINE void acc_q32(const q32_block *kb, const block_q8_act *x, float *sum) {
    const int32_t isum = dot32(kb->c[0], kb->c[1], x->qs);
    if (kb->has_m)
        *sum += (float)isum * (kb->d * x->d) + (float)act_sum(x->qs) * (kb->m * x->d);
    else
        *sum += (float)isum * (kb->d * x->d);
}

/* ---- the 256-element types -------------------------------------------------------------- */

/* A super-block: element 16i + j is byte j of c[i]; chunk i's scale (and min) are sc[i] (and
 * mn[i]): a sub-block of 32 has its scale in two chunks. */
typedef struct {
    int8x16_t c[16];
    int16_t sc[16], mn[16];
    float d, dmin;
    bool has_min;
} k_block;

/* Q2_K and Q3_K: element 128h + 32k + l is bits 2k, 2k + 1 of qs[32h + l] (chunk 8h + 2k +
 * l / 16); Q3_K's third bit is bit 4h + k of hmask[l], and a clear one subtracts 4. */
INLINE void decode_q23(k_block *kb, bool q3, const uint8_t *blk) {
    const block_q2_K *b2 = (const block_q2_K *)blk;
    const block_q3_K *b3 = (const block_q3_K *)blk;
    const uint8_t *qs = q3 ? b3->qs : b2->qs;
    const uint8x16_t three = vdupq_n_u8(3);
    for (int h = 0; h < 2; h++)
        for (int half = 0; half < 2; half++) {
            const uint8x16_t q = vld1q_u8(qs + 32 * h + 16 * half);
            const uint8x16_t hm = q3 ? vld1q_u8(b3->hmask + 16 * half) : vdupq_n_u8(0);
            for (int k = 0; k < 4; k++) {
                uint8x16_t c = vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * k))), three);
                if (q3) {
                    const uint8x16_t set = vtstq_u8(hm, vdupq_n_u8((uint8_t)(1 << (4 * h + k))));
                    c = vsubq_u8(vorrq_u8(c, vandq_u8(set, vdupq_n_u8(4))), vdupq_n_u8(4));
                }
                kb->c[8 * h + 2 * k + half] = vreinterpretq_s8_u8(c);
            }
        }
    if (q3) {
        int sc[16];
        q3_K_scales(sc, b3->scales);
        for (int i = 0; i < 16; i++)
            kb->sc[i] = (int16_t)sc[i], kb->mn[i] = 0;
        kb->d = f16_to_f32(b3->d);
        kb->dmin = 0.0f;
    } else {
        for (int i = 0; i < 16; i++)
            kb->sc[i] = b2->scales[i] & 0x0f, kb->mn[i] = b2->scales[i] >> 4;
        kb->d = f16_to_f32(b2->d);
        kb->dmin = f16_to_f32(b2->dmin);
    }
    kb->has_min = !q3;
}

/* Q4_K/Q5_K: sub-block s = 2p + half is the low (half 0) or high nibbles of qs[32p ..
 * 32p + 31], with (Q5_K) bit s of qh[l] as the fifth bit. */
INLINE void decode_q45(k_block *kb, bool q5, const uint8_t *blk) {
    const block_q4_K *b4 = (const block_q4_K *)blk;
    const block_q5_K *b5 = (const block_q5_K *)blk;
    const uint8_t *scales = q5 ? b5->scales : b4->scales, *qs = q5 ? b5->qs : b4->qs;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), x10 = vdupq_n_u8(0x10);
    for (int p = 0; p < 4; p++)
        for (int l16 = 0; l16 < 2; l16++) {
            const uint8x16_t q = vld1q_u8(qs + 32 * p + 16 * l16);
            uint8x16_t c[2] = {vandq_u8(q, m4), vshrq_n_u8(q, 4)};
            for (int half = 0; half < 2; half++) {
                const int s = 2 * p + half;
                if (q5) {
                    const uint8x16_t qh = vld1q_u8(b5->qh + 16 * l16);
                    const uint8x16_t set = vtstq_u8(qh, vdupq_n_u8((uint8_t)(1 << s)));
                    c[half] = vorrq_u8(c[half], vandq_u8(set, x10));
                }
                kb->c[2 * s + l16] = vreinterpretq_s8_u8(c[half]);
            }
        }
    for (int s = 0; s < 8; s++) {
        int sc, m;
        k4_scale_min(s, scales, &sc, &m);
        kb->sc[2 * s] = kb->sc[2 * s + 1] = (int16_t)sc;
        kb->mn[2 * s] = kb->mn[2 * s + 1] = (int16_t)m;
    }
    kb->d = f16_to_f32(q5 ? b5->d : b4->d);
    kb->dmin = f16_to_f32(q5 ? b5->dmin : b4->dmin);
    kb->has_min = true;
}

/* Q6_K: element 128h + 32k + l: low 4 bits from ql[64h + 32(k % 2) + l] (low nibble for k < 2),
 * high 2 from bits 2k of qh[32h + l]; code - 32. */
INLINE void decode_q6(k_block *kb, const block_q6_K *w) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f), three = vdupq_n_u8(3);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int half = 0; half < 2; half++) {
                const uint8x16_t lb = vld1q_u8(w->ql + 64 * h + 32 * (k % 2) + 16 * half);
                const uint8x16_t hb = vld1q_u8(w->qh + 32 * h + 16 * half);
                const uint8x16_t lo = k < 2 ? vandq_u8(lb, m4) : vshrq_n_u8(lb, 4);
                const uint8x16_t hi = vandq_u8(vshlq_u8(hb, vdupq_n_s8((int8_t)(-2 * k))), three);
                const uint8x16_t c = vorrq_u8(lo, vshlq_n_u8(hi, 4));
                kb->c[8 * h + 2 * k + half] = vsubq_s8(vreinterpretq_s8_u8(c), vdupq_n_s8(32));
            }
    for (int i = 0; i < 16; i++)
        kb->sc[i] = w->scales[i], kb->mn[i] = 0;
    kb->d = f16_to_f32(w->d);
    kb->dmin = 0.0f;
    kb->has_min = false;
}

/* IQ4_XS: sub-block s's 16 bytes qs[16s ..]: low nibbles elements 32s .. 32s + 15, high the
 * next 16, as table values; its scale minus 32. */
INLINE void decode_xs(k_block *kb, const block_iq4_xs *w) {
    const int8x16_t tbl = vld1q_s8(iq4_levels);
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    for (int s = 0; s < 8; s++) {
        const uint8x16_t q = vld1q_u8(w->qs + 16 * s);
        kb->c[2 * s] = vqtbl1q_s8(tbl, vandq_u8(q, m4));
        kb->c[2 * s + 1] = vqtbl1q_s8(tbl, vshrq_n_u8(q, 4));
        const int ls =
            ((w->scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) | (((w->scales_h >> (2 * s)) & 3) << 4);
        kb->sc[2 * s] = kb->sc[2 * s + 1] = (int16_t)(ls - 32);
        kb->mn[2 * s] = kb->mn[2 * s + 1] = 0;
    }
    kb->d = f16_to_f32(w->d);
    kb->dmin = 0.0f;
    kb->has_min = false;
}

INLINE void decode_k(k_block *kb, dtype t, const uint8_t *blk) {
    switch (t) {
    case DT_Q2_K:
        decode_q23(kb, false, blk);
        break;
    case DT_Q3_K:
        decode_q23(kb, true, blk);
        break;
    case DT_Q4_K:
        decode_q45(kb, false, blk);
        break;
    case DT_Q5_K:
        decode_q45(kb, true, blk);
        break;
    case DT_Q6_K:
        decode_q6(kb, (const block_q6_K *)blk);
        break;
    default:
        decode_xs(kb, (const block_iq4_xs *)blk);
        break;
    }
}

/* sum += the block's share: isum = sum over chunks of sc * (codes . x) and msum = sum of
 * mn * bsums (both exact: |chunk sum| <= 16 * 127 * 127, |sc| <= 63), then the scalar twin's
 * float steps. */
INLINE void acc_k(const k_block *kb, const block_q8_K *x, float *sum) {
    int32x4_t acc = vdupq_n_s32(0);
    for (int i = 0; i < 16; i++) {
        const int8x16_t xv = vld1q_s8(x->qs + 16 * i);
        const int16x8_t p =
            vmlal_high_s8(vmull_s8(vget_low_s8(kb->c[i]), vget_low_s8(xv)), kb->c[i], xv);
        acc = vmlaq_n_s32(acc, vpaddlq_s16(p), kb->sc[i]);
    }
    const int32_t isum = vaddvq_s32(acc);
    if (kb->has_min) {
        const int16x8_t b0 = vld1q_s16(x->bsums), b1 = vld1q_s16(x->bsums + 8);
        const int16x8_t m0 = vld1q_s16(kb->mn), m1 = vld1q_s16(kb->mn + 8);
        int32x4_t ms = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
        ms = vmlal_high_s16(ms, m0, b0);
        ms = vmlal_s16(ms, vget_low_s16(m1), vget_low_s16(b1));
        ms = vmlal_high_s16(ms, m1, b1);
        const int32_t msum = vaddvq_s32(ms);
        *sum += (float)isum * (kb->d * x->d) - (float)msum * (kb->dmin * x->d);
    } else {
        *sum += (float)isum * (kb->d * x->d);
    }
}

#define GT 8 /* activation rows per weight-block decode */

void qdot_rows_neon(float *out, const block_q8_act *xq, const block_q8_K *xk, const tensor *w,
                    int T, int r0, int r1) {
    const dtype t = w->type;
    const bool kq = dtype_uses_q8_K(t);
    const int n = (int)w->ne[0], n_out = (int)w->ne[1], nb = n / (kq ? QK_K : QK);
    const size_t bb = dtype_block_bytes(t);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = tensor_row(w, r);
        for (int t0 = 0; t0 < T; t0 += GT) {
            const int tn = T - t0 < GT ? T - t0 : GT;
            float sum[GT] = {0};
            for (int b = 0; b < nb; b++) {
                const uint8_t *blk = row + (size_t)b * bb;
                if (kq) {
                    k_block kb;
                    decode_k(&kb, t, blk);
                    for (int i = 0; i < tn; i++)
                        acc_k(&kb, xk + (size_t)(t0 + i) * nb + b, &sum[i]);
                } else {
                    q32_block kb;
                    decode_q32(&kb, t, blk);
                    for (int i = 0; i < tn; i++)
                        acc_q32(&kb, xq + (size_t)(t0 + i) * nb + b, &sum[i]);
                }
            }
            for (int i = 0; i < tn; i++)
                out[(size_t)(t0 + i) * n_out + r] = sum[i];
        }
    }
}

bool qdot_neon_has(dtype t) {
    switch (t) {
    case DT_Q4_1:
    case DT_Q5_0:
    case DT_Q5_1:
    case DT_IQ4_NL:
    case DT_Q2_K:
    case DT_Q3_K:
    case DT_Q4_K:
    case DT_Q5_K:
    case DT_Q6_K:
    case DT_IQ4_XS:
        return true;
    default:
        return false;
    }
}

#else /* not AArch64 */

bool qdot_neon_has(dtype t) {
    (void)t;
    return false;
}

void qdot_rows_neon(float *out, const block_q8_act *xq, const block_q8_K *xk, const tensor *w,
                    int T, int r0, int r1) {
    (void)out, (void)xq, (void)xk, (void)w, (void)T, (void)r0, (void)r1;
}

#endif
