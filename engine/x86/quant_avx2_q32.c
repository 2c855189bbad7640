/* x86/quant_avx2_q32: AVX2 twins of the scalar dot products of the 32-element block types beyond
 * Q4_0 (quant_dot.c: Q4_1, Q5_0, Q5_1, IQ4_NL) for one or two activation rows. A pass computes 8
 * (weight row, activation row) pairs: 8 weight rows against one activation row (decode), 4
 * against 2. Each weight block is decoded once per pass, each 8 exact integer sums share one
 * reduction tree, and the twin's float steps per block run in lanes, one per pair, in its
 * order: the same bits. More activation rows take x86/avx2.c's lanes tiles, and IQ4_NL its 8x1
 * and 4x2 tiles too; with AVX-512 VNNI, x86/avx512.c's tiles take these types instead and send
 * here only the rows past their last 16-row decode tile. Never allocates. */
#include "quant_avx2.h"

#include "x86.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include "x86_simd.h"

/* The 32 nibbles of a 16-byte Q4_0-style block in element order (low nibbles first). */
INLINE __m256i nibbles32(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* 0x10 in byte j where bit j of the 32-bit little-endian qh is set: Q5_0/Q5_1's fifth bits. */
INLINE __m256i fifth_bits(const uint8_t qh[4]) {
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    b = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x10));
}


/* Q4_1 and Q5_1 have a min: the twin adds the activation block's sum times m * x.d. */
INLINE bool q32_has_min(dtype t) {
    return t == DT_Q4_1 || t == DT_Q5_1;
}

/* A block's 32 weight values in element order: the codes (0..31) of Q4_1/Q5_1, the codes
 * minus 16 of Q5_0, the table values of IQ4_NL. Every block starts with its F16 d. */
INLINE __m256i q32_values(dtype t, const uint8_t *blk) {
    switch (t) {
    case DT_Q4_1: return nibbles32(blk + 4);
    case DT_Q5_1: return _mm256_or_si256(nibbles32(blk + 8), fifth_bits(blk + 4));
    case DT_Q5_0:
        return _mm256_sub_epi8(_mm256_or_si256(nibbles32(blk + 6), fifth_bits(blk + 2)),
                               _mm256_set1_epi8(16));
    default: return iq4_values32(blk + 2);
    }
}

/* The exact sum of values times activation codes x, as 8 int32 partial sums: maddubs straight
 * for the unsigned codes, with the sign moved onto x for the signed values. */
INLINE __m256i q32_isum(dtype t, __m256i v, __m256i x) {
    const __m256i p16 = q32_has_min(t) ? _mm256_maddubs_epi16(v, x) : dot_signed16(v, x);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* The twin's float steps of one block for 8 lanes: sum + ((float)isum * (d * x.d)), plus
 * (float)asum * (m * x.d) inside the parentheses for the types with a min. */
INLINE __m256 q32_steps(dtype t, __m256 sum, __m256i isum, __m128i d16, __m128i m16, __m256i asum,
                        __m256 xd) {
    __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(_mm256_cvtph_ps(d16), xd));
    if (q32_has_min(t))
        s = _mm256_add_ps(s, _mm256_mul_ps(_mm256_cvtepi32_ps(asum),
                                           _mm256_mul_ps(_mm256_cvtph_ps(m16), xd)));
    return _mm256_add_ps(sum, s);
}

/* One pass over the nb blocks: R weight rows against TT activation rows (R * TT = 8) into one
 * vector of sums; pair l, in lane l, is (rows[l % R], xs[l / R]). */
INLINE __m256 q32_pass(dtype t, const uint8_t *const rows[], size_t rb,
                       const block_q8_act *const xs[], int R, int TT, int nb) {
    const size_t bb = q32_bytes(t);
    __m256 sum = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i v[8], xv[2];
        uint16_t dh[8], mh[8];
        int32_t as[2] = {0, 0};
        for (int i = 0; i < R; i++) {
            const uint8_t *blk = rows[i] + (size_t)b * bb;
            /* the same block of the next pass's row (rows are contiguous, R apart): rows are
             * too short for the hardware prefetcher to ramp up on each (see tile_quant) */
            _mm_prefetch((const char *)blk + (size_t)R * rb, _MM_HINT_T1);
            v[i] = q32_values(t, blk);
            memcpy(&dh[i], blk, 2);
            if (q32_has_min(t)) memcpy(&mh[i], blk + 2, 2);
        }
        for (int j = 0; j < TT; j++) {
            xv[j] = _mm256_loadu_si256((const __m256i *)xs[j][b].qs);
            if (q32_has_min(t)) /* the activation block's sum, once for the R rows */
                as[j] = hsum_i32(_mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_set1_epi8(1), xv[j]), _mm256_set1_epi16(1)));
        }
        const __m128i d16 = _mm_setr_epi16((short)dh[0 % R], (short)dh[1 % R], (short)dh[2 % R],
                                           (short)dh[3 % R], (short)dh[4 % R], (short)dh[5 % R],
                                           (short)dh[6 % R], (short)dh[7 % R]);
        const __m128i m16 = _mm_setr_epi16((short)mh[0 % R], (short)mh[1 % R], (short)mh[2 % R],
                                           (short)mh[3 % R], (short)mh[4 % R], (short)mh[5 % R],
                                           (short)mh[6 % R], (short)mh[7 % R]);
        __m256i p[8];
        for (int l = 0; l < 8; l++) p[l] = q32_isum(t, v[l % R], xv[l / R]);
        const __m256 xd = _mm256_setr_ps(xs[0 / R][b].d, xs[1 / R][b].d, xs[2 / R][b].d,
                                         xs[3 / R][b].d, xs[4 / R][b].d, xs[5 / R][b].d,
                                         xs[6 / R][b].d, xs[7 / R][b].d);
        const __m256i va = _mm256_setr_epi32(as[0 / R], as[1 / R], as[2 / R], as[3 / R],
                                             as[4 / R], as[5 / R], as[6 / R], as[7 / R]);
        sum = q32_steps(t, sum, hsum8x8(p), d16, m16, va, xd);
    }
    return sum;
}

/* Rows [r0, r1) against the T activation rows in passes of R x TT; a ragged pass repeats its
 * last weight or activation row and keeps only the lanes that exist. */
INLINE void q32_rows(dtype t, int R, int TT, float *out, const block_q8_act *xq, const tensor *w,
                     int T, int r0, int r1) {
    const int n_out = (int)w->ne[1], nb = (int)w->ne[0] / QK;
    const size_t rb = dtype_row_bytes(t, (int)w->ne[0]);
    const uint8_t *base = w->data;
    for (int r = r0; r < r1; r += R) {
        const uint8_t *rows[8];
        for (int i = 0; i < R; i++) rows[i] = base + (size_t)(r + i < r1 ? r + i : r1 - 1) * rb;
        for (int t0 = 0; t0 < T; t0 += TT) {
            const block_q8_act *xs[2];
            for (int j = 0; j < TT; j++) xs[j] = xq + (size_t)(t0 + j < T ? t0 + j : T - 1) * nb;
            float o[8];
            _mm256_storeu_ps(o, q32_pass(t, rows, rb, xs, R, TT, nb));
            for (int k = 0; k < 8; k++)
                if (r + k % R < r1 && t0 + k / R < T)
                    out[(size_t)(t0 + k / R) * n_out + r + k % R] = o[k];
        }
    }
}

/* One function per type and shape, so that each inlines its type's constant steps. */
#define Q32_KERNELS(name, type)                                                                  \
    TARGET static void name(float *out, const block_q8_act *xq, const tensor *w, int T, int r0, \
                            int r1) {                                                           \
        if (T == 1)                                                                             \
            q32_rows(type, 8, 1, out, xq, w, T, r0, r1);                                        \
        else                                                                                    \
            q32_rows(type, 4, 2, out, xq, w, T, r0, r1);                                        \
    }
Q32_KERNELS(rows_q4_1, DT_Q4_1)
Q32_KERNELS(rows_q5_0, DT_Q5_0)
Q32_KERNELS(rows_q5_1, DT_Q5_1)
Q32_KERNELS(rows_iq4_nl, DT_IQ4_NL)

void qdot_rows_avx2_q32(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                        int r1) {
    switch (w->type) {
    case DT_Q4_1: rows_q4_1(out, xq, w, T, r0, r1); return;
    case DT_Q5_0: rows_q5_0(out, xq, w, T, r0, r1); return;
    case DT_Q5_1: rows_q5_1(out, xq, w, T, r0, r1); return;
    case DT_IQ4_NL: rows_iq4_nl(out, xq, w, T, r0, r1); return;
    default: return; /* mm_q32_x86 says which */
    }
}

#else /* not x86 */

void qdot_rows_avx2_q32(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                        int r1) {
    (void)out, (void)xq, (void)w, (void)T, (void)r0, (void)r1;
}

#endif
