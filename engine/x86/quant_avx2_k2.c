/* x86/quant_avx2_k2: AVX2 twins of the scalar dot products of Q2_K, Q3_K and IQ4_XS
 * (quant_dot.c), the types of the small mixes (Q2_K, Q3_K_M) and the non-linear 4-bit ones.
 * As in quant_avx2.c: the same exact integers per block as the scalar twin, then its float
 * steps per block in the same order, so the same bits. One activation row (decode) reads each
 * block straight from the weights with a prefetch ahead; several (prefill) decode each weight
 * block once for a group of up to 8 activation rows. Never allocates. */
#include "quant_avx2.h"

#include "x86.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include "x86_simd.h"

INLINE float k2_h2f(uint16_t h) { /* exact, as f16_to_f32 (see quant_avx2.c) */
    return _cvtsh_ss(h);
}

/* Sub-block scales 2j (low 128 bits) and 2j + 1 (high) as 8 int16 lanes each, from 16 int8
 * scales (signed: Q3_K's are -32..31; Q2_K's 0..15). */
INLINE __m256i scale_pair(__m128i sc8, int j) {
    const __m128i idx = _mm_set_epi64x((long long)(0x0101010101010101ULL * (uint64_t)(2 * j + 1)),
                                       (long long)(0x0101010101010101ULL * (uint64_t)(2 * j)));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, idx));
}

/* Q2_K and Q3_K share their layout: element 128h + 32k + l (k < 4, l < 32) is bits 2k, 2k + 1
 * of qs[32h + l], so group j = 4h + k (elements 32j .. 32j + 31, sub-blocks 2j and 2j + 1) is
 * one shift of the 32 bytes qs[32h ..]. Q3_K's third bit of group j is bit j of hmask[l]. */
INLINE __m256i q23_codes(__m256i q, __m256i hm, int j, bool q3) {
    const int k = j % 4;
    __m256i c = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), _mm256_set1_epi8(3));
    if (q3) { /* code + 4 (0..7): a clear bit subtracts 4, done with the bsums below */
        const __m256i bit = _mm256_set1_epi8((char)(1 << j));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
        c = _mm256_or_si256(c, _mm256_and_si256(set, _mm256_set1_epi8(4)));
    }
    return c;
}

/* Q2_K: the 4-bit scales (low nibbles) as int8, and the mins (high nibbles) as 16 int16. */
INLINE __m128i q2_K_scales8(const block_q2_K *w) {
    return _mm_and_si128(_mm_loadu_si128((const __m128i *)w->scales), _mm_set1_epi8(0x0f));
}
INLINE __m256i q2_K_mins16(const block_q2_K *w) {
    const __m128i s = _mm_loadu_si128((const __m128i *)w->scales);
    return _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0x0f)));
}

/* sum over the 16 sub-blocks of v[s] * bsums[s] (exact). */
INLINE int32_t dot_bsums(__m256i v16, const block_q8_K *x) {
    return hsum_i32(_mm256_madd_epi16(v16, _mm256_loadu_si256((const __m256i *)x->bsums)));
}

/* A Q2_K/Q3_K block decoded once for a group of activation rows. */
typedef struct {
    __m256i c[8];  /* group j's 32 codes (Q3_K: code + 4) */
    __m256i sc[8]; /* scale_pair(j) */
    __m256i v16;   /* Q2_K: the mins; Q3_K: the scales (for the bsums terms) */
    float d, dmin;
} k23_block;

INLINE void decode_q23(k23_block *kb, bool q3, const uint8_t *blk) {
    const block_q2_K *b2 = (const block_q2_K *)blk;
    const block_q3_K *b3 = (const block_q3_K *)blk;
    const __m128i sc8 = q3 ? q3_K_scales8(b3->scales) : q2_K_scales8(b2);
    const __m256i hm = q3 ? _mm256_loadu_si256((const __m256i *)b3->hmask) : _mm256_setzero_si256();
    const uint8_t *qs = q3 ? b3->qs : b2->qs;
    for (int h = 0; h < 2; h++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
        for (int k = 0; k < 4; k++)
            kb->c[4 * h + k] = q23_codes(q, hm, 4 * h + k, q3);
    }
    for (int j = 0; j < 8; j++)
        kb->sc[j] = scale_pair(sc8, j);
    kb->v16 = q3 ? _mm256_cvtepi8_epi16(sc8) : q2_K_mins16(b2);
    kb->d = k2_h2f(q3 ? b3->d : b2->d);
    kb->dmin = q3 ? 0.0f : k2_h2f(b2->dmin);
}

/* sum += this block's share: dot_q2_K's or dot_q3_K's float steps. */
INLINE void acc_q23(const k23_block *kb, bool q3, const block_q8_K *x, float *sum) {
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * j));
        acc =
            _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(kb->c[j], xv), kb->sc[j]));
    }
    const int32_t bs = dot_bsums(kb->v16, x);
    if (q3)
        *sum += (float)(hsum_i32(acc) - 4 * bs) * (kb->d * x->d);
    else
        *sum += (float)hsum_i32(acc) * (kb->d * x->d) - (float)bs * (kb->dmin * x->d);
}

#define K2_PF_AHEAD 1024 /* bytes of weights prefetched ahead of the block being read */

/* One activation row (decode): acc_q23's integers and float steps, straight from the block. */
INLINE float dot1_q23(bool q3, const uint8_t *row, const block_q8_K *x, int nb) {
    const size_t bb = q3 ? sizeof(block_q3_K) : sizeof(block_q2_K);
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bb;
        for (size_t ahead = K2_PF_AHEAD; ahead < K2_PF_AHEAD + bb; ahead += 64)
            _mm_prefetch((const char *)blk + ahead, _MM_HINT_T0);
        const block_q2_K *b2 = (const block_q2_K *)blk;
        const block_q3_K *b3 = (const block_q3_K *)blk;
        const __m128i sc8 = q3 ? q3_K_scales8(b3->scales) : q2_K_scales8(b2);
        const __m256i hm =
            q3 ? _mm256_loadu_si256((const __m256i *)b3->hmask) : _mm256_setzero_si256();
        const uint8_t *qs = q3 ? b3->qs : b2->qs;
        __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int j = 4 * h + k;
                const __m256i c = q23_codes(q, hm, j, q3);
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * j));
                acc = _mm256_add_epi32(
                    acc, _mm256_madd_epi16(_mm256_maddubs_epi16(c, xv), scale_pair(sc8, j)));
            }
        }
        const int32_t bs = dot_bsums(q3 ? _mm256_cvtepi8_epi16(sc8) : q2_K_mins16(b2), &x[b]);
        if (q3)
            sum += (float)(hsum_i32(acc) - 4 * bs) * (k2_h2f(b3->d) * x[b].d);
        else
            sum += (float)hsum_i32(acc) * (k2_h2f(b2->d) * x[b].d) -
                   (float)bs * (k2_h2f(b2->dmin) * x[b].d);
    }
    return sum;
}

typedef struct {
    __m256i v[8];  /* sub-block s's 32 table values */
    __m256i sc[8]; /* its scale, 16 int16 lanes */
    float d;
} xs_block;

INLINE void decode_iq4_xs(xs_block *kb, const block_iq4_xs *w) {
    for (int s = 0; s < 8; s++) {
        kb->v[s] = iq4_values32(w->qs + 16 * s);
        kb->sc[s] = _mm256_set1_epi16((short)iq4_xs_scale(w, s));
    }
    kb->d = k2_h2f(w->d);
}

INLINE void acc_iq4_xs(const xs_block *kb, const block_q8_K *x, float *sum) {
    __m256i acc = _mm256_setzero_si256();
    for (int s = 0; s < 8; s++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * s));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(dot_signed16(kb->v[s], xv), kb->sc[s]));
    }
    *sum += (float)hsum_i32(acc) * (kb->d * x->d);
}

INLINE float dot1_iq4_xs(const block_iq4_xs *w, const block_q8_K *x, int nb) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        for (size_t ahead = K2_PF_AHEAD; ahead < K2_PF_AHEAD + sizeof *w; ahead += 64)
            _mm_prefetch((const char *)&w[b] + ahead, _MM_HINT_T0);
        __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * s));
            const __m256i sc = _mm256_set1_epi16((short)iq4_xs_scale(&w[b], s));
            acc = _mm256_add_epi32(
                acc, _mm256_madd_epi16(dot_signed16(iq4_values32(w[b].qs + 16 * s), xv), sc));
        }
        sum += (float)hsum_i32(acc) * (k2_h2f(w[b].d) * x[b].d);
    }
    return sum;
}

/* The 256-element rows: one activation row straight from the weights; several in groups of up
 * to K2T, each weight block decoded once per group, each row accumulating its blocks in order
 * exactly as the scalar kernel does. */
#define K2T 8
INLINE void rows_k2(dtype t, float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                    int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1], nb = n / QK_K;
    const size_t bb = kq_bytes(t), rb = dtype_row_bytes(t, n); /* rb once: a lookup */
    const uint8_t *base = w->data;
    if (T == 1) {
        for (int r = r0; r < r1; r++)
            out[r] = t == DT_IQ4_XS
                         ? dot1_iq4_xs((const block_iq4_xs *)(base + (size_t)r * rb), xk, nb)
                         : dot1_q23(t == DT_Q3_K, base + (size_t)r * rb, xk, nb);
        return;
    }
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = base + (size_t)r * rb;
        for (int t0 = 0; t0 < T; t0 += K2T) {
            const int tn = T - t0 < K2T ? T - t0 : K2T;
            float sum[K2T] = {0};
            for (int b = 0; b < nb; b++) {
                const uint8_t *blk = row + (size_t)b * bb;
                if (t == DT_IQ4_XS) {
                    xs_block kb;
                    decode_iq4_xs(&kb, (const block_iq4_xs *)blk);
                    for (int i = 0; i < tn; i++)
                        acc_iq4_xs(&kb, xk + (size_t)(t0 + i) * nb + b, &sum[i]);
                } else {
                    k23_block kb;
                    decode_q23(&kb, t == DT_Q3_K, blk);
                    for (int i = 0; i < tn; i++)
                        acc_q23(&kb, t == DT_Q3_K, xk + (size_t)(t0 + i) * nb + b, &sum[i]);
                }
            }
            for (int i = 0; i < tn; i++)
                out[(size_t)(t0 + i) * n_out + r] = sum[i];
        }
    }
}

TARGET static void rows_q2_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                             int r1) {
    rows_k2(DT_Q2_K, out, xk, w, T, r0, r1);
}
TARGET static void rows_q3_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                             int r1) {
    rows_k2(DT_Q3_K, out, xk, w, T, r0, r1);
}
TARGET static void rows_iq4_xs(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                               int r1) {
    rows_k2(DT_IQ4_XS, out, xk, w, T, r0, r1);
}

bool qdot_avx2_k2_has(dtype t) {
    return mm_avx2_supported() &&
           (t == DT_Q2_K || t == DT_Q3_K || t == DT_IQ4_XS);
}

void qdot_rows_avx2_k2(float *out, const block_q8_act *xq, const block_q8_K *xk, const tensor *w,
                       int T, int r0, int r1) {
    (void)xq; /* the 32-element types: x86/quant_avx2_q32.c */
    switch (w->type) {
    case DT_Q2_K:
        rows_q2_K(out, xk, w, T, r0, r1);
        return;
    case DT_Q3_K:
        rows_q3_K(out, xk, w, T, r0, r1);
        return;
    case DT_IQ4_XS:
        rows_iq4_xs(out, xk, w, T, r0, r1);
        return;
    default:
        return; /* qdot_avx2_k2_has says which */
    }
}

#else /* not x86 */

bool qdot_avx2_k2_has(dtype t) {
    (void)t;
    return false;
}

void qdot_rows_avx2_k2(float *out, const block_q8_act *xq, const block_q8_K *xk, const tensor *w,
                       int T, int r0, int r1) {
    (void)out, (void)xq, (void)xk, (void)w, (void)T, (void)r0, (void)r1;
}

#endif
