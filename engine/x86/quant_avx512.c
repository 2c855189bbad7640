/* x86/quant_avx512: K-quant prefill on AVX-512 VNNI. A weight super-block is decoded once into
 * four zmm of 64 unsigned codes and its scales into four zmm of int16 lanes, then multiplied with
 * up to KG activation rows (vpmaddubsw, then vpdpwssd by the scales); the KG rows' lane sums are
 * reduced together. Exact integers per block and the scalar twin's float steps per block, in
 * order: the bits of dot_q4_K, dot_q5_K and dot_q6_K. */
#include "quant_avx512.h"

#include "x86.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include "x86_simd.h"

#define KG 8 /* activation rows per group: 8 accumulators + 8 weight zmm + temporaries */

/* One decoded super-block. Element 64k + e is byte e of c[k]; vpmaddubsw's int16 lane l of it
 * (elements 64k + 2l, + 1) is multiplied by int16 lane l of sc[k]. */
typedef struct {
    __m512i c[4];
    __m512i sc[4];
    __m256i mins; /* int16 lane j: what bsums[j] is multiplied by (Q4_K/Q5_K min, Q6_K scale) */
    float d, dmin;
} kblock;

INLINE512 __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

INLINE512 void decode_q45(kblock *kb, bool q5, const uint8_t *blk) {
    const block_q4_K *b4 = (const block_q4_K *)blk;
    const block_q5_K *b5 = (const block_q5_K *)blk;
    const uint8_t *scales = q5 ? b5->scales : b4->scales, *qs = q5 ? b5->qs : b4->qs;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    int sc[8], m[8];
    for (int s = 0; s < 8; s++) k4_scale_min(s, scales, &sc[s], &m[s]);
    const __m512i qh =
        q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b5->qh)) : _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) { /* sub-blocks 2k (low nibbles) and 2k + 1 (high) */
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
        __m512i c = join256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        if (q5) { /* bit s of qh[l] is the fifth bit of sub-block s's element l */
            const __m512i bit = join256(_mm256_set1_epi8((char)(1 << (2 * k))),
                                        _mm256_set1_epi8((char)(1 << (2 * k + 1))));
            c = _mm512_mask_add_epi8(c, _mm512_test_epi8_mask(qh, bit), c, _mm512_set1_epi8(0x10));
        }
        kb->c[k] = c;
        kb->sc[k] = join256(_mm256_set1_epi16((short)sc[2 * k]), _mm256_set1_epi16((short)sc[2 * k + 1]));
    }
    kb->mins = _mm256_setr_epi16((short)m[0], (short)m[0], (short)m[1], (short)m[1], (short)m[2],
                                 (short)m[2], (short)m[3], (short)m[3], (short)m[4], (short)m[4],
                                 (short)m[5], (short)m[5], (short)m[6], (short)m[6], (short)m[7],
                                 (short)m[7]);
    kb->d = _cvtsh_ss(q5 ? b5->d : b4->d);
    kb->dmin = _cvtsh_ss(q5 ? b5->dmin : b4->dmin);
}

INLINE512 void decode_q6(kblock *kb, const block_q6_K *w) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w->scales));
    for (int h = 0; h < 2; h++) { /* elements 128h + 32k .. + 31 in c[k]: low 4 bits from ql,
                                   * high 2 from qh */
        const __m256i A = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h));
        const __m256i B = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32));
        const __m256i H = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));
        const __m256i c0 = _mm256_or_si256(_mm256_and_si256(A, m4),
                                           _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
        const __m256i c1 = _mm256_or_si256(_mm256_and_si256(B, m4),
                                           _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
        const __m256i c2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4),
                                           _mm256_and_si256(H, m30));
        const __m256i c3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
        kb->c[2 * h] = join256(c0, c1);
        kb->c[2 * h + 1] = join256(c2, c3);
    }
    /* int16 lane l of zmm k covers elements 64k + 2l, + 1: sub-block 4k + l / 8 */
    const __m512i s = _mm512_castsi256_si512(s16);
    for (int k = 0; k < 4; k++) {
        const __m512i idx = _mm512_set_epi16(
            4 * k + 3, 4 * k + 3, 4 * k + 3, 4 * k + 3, 4 * k + 3, 4 * k + 3, 4 * k + 3, 4 * k + 3,
            4 * k + 2, 4 * k + 2, 4 * k + 2, 4 * k + 2, 4 * k + 2, 4 * k + 2, 4 * k + 2, 4 * k + 2,
            4 * k + 1, 4 * k + 1, 4 * k + 1, 4 * k + 1, 4 * k + 1, 4 * k + 1, 4 * k + 1, 4 * k + 1,
            4 * k, 4 * k, 4 * k, 4 * k, 4 * k, 4 * k, 4 * k, 4 * k);
        kb->sc[k] = _mm512_permutexvar_epi16(idx, s);
    }
    kb->mins = s16;
    kb->d = _cvtsh_ss(w->d);
    kb->dmin = 0.0f;
}

/* The scaled code . activation sums of one block and activation row, as 16 int32 lanes. */
INLINE512 __m512i dot_block(const kblock *kb, const int8_t *xq) {
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++)
        acc = _mm512_dpwssd_epi32(
            acc, _mm512_maddubs_epi16(kb->c[k], _mm512_loadu_si512((const void *)(xq + 64 * k))),
            kb->sc[k]);
    return acc;
}

/* Two rows' 16 lanes each to 8 partial sums each: row a in the low 256 bits, row b high. */
INLINE512 __m512i fold_pair(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                            _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}

/* Eight rows' 8 partial sums (two rows per zmm, as fold_pair leaves them) to their totals: row
 * i < 4 in out[4i], row i >= 4 in out[4(i - 4) + 2]. Exact integers. */
INLINE512 void reduce8(int32_t out[16], const __m512i x[4]) {
    const __m512i y0 = _mm512_add_epi32(_mm512_shuffle_i32x4(x[0], x[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm512_shuffle_i32x4(x[0], x[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i y1 = _mm512_add_epi32(_mm512_shuffle_i32x4(x[2], x[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm512_shuffle_i32x4(x[2], x[3], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i z = _mm512_add_epi32(_mm512_unpacklo_epi64(y0, y1), _mm512_unpackhi_epi64(y0, y1));
    _mm512_storeu_si512((void *)out,
                        _mm512_add_epi32(z, _mm512_shuffle_epi32(z, _MM_PERM_CDAB)));
}

/* One block against the KG activation rows xs[i] (rows past the group's end repeat its last):
 * the exact block sums isum[i] and the bsums products msum[i] (the mins' share for Q4_K/Q5_K,
 * the scales' for Q6_K), in the lanes reduce8 leaves them. */
INLINE512 void block_sums(const kblock *kb, const block_q8_K *const xs[KG], int32_t isum[16],
                          int32_t msum[16]) {
    __m512i xi[KG / 2], xm[KG / 2];
    const __m512i mins = join256(kb->mins, kb->mins);
    for (int i = 0; i < KG; i += 2) {
        xi[i / 2] = fold_pair(dot_block(kb, xs[i]->qs), dot_block(kb, xs[i + 1]->qs));
        const __m512i bs = join256(_mm256_loadu_si256((const __m256i *)xs[i]->bsums),
                                   _mm256_loadu_si256((const __m256i *)xs[i + 1]->bsums));
        xm[i / 2] = _mm512_madd_epi16(bs, mins);
    }
    reduce8(isum, xi);
    reduce8(msum, xm);
}

#define LANE(i) ((i) < 4 ? 4 * (i) : 4 * ((i) - 4) + 2)

INLINE512 void rows_k512(dtype t, float *out, const block_q8_K *xk, const tensor *w, int T,
                         int r0, int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1], nb = n / QK_K;
    const size_t bb = dtype_block_bytes(t);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = tensor_row(w, r);
        for (int t0 = 0; t0 < T; t0 += KG) {
            const int tn = T - t0 < KG ? T - t0 : KG;
            float sum[KG] = {0};
            for (int b = 0; b < nb; b++) {
                const block_q8_K *xs[KG];
                for (int i = 0; i < KG; i++)
                    xs[i] = xk + (size_t)(t0 + (i < tn ? i : tn - 1)) * nb + b;
                kblock kb;
                if (t == DT_Q6_K)
                    decode_q6(&kb, (const block_q6_K *)(row + (size_t)b * bb));
                else
                    decode_q45(&kb, t == DT_Q5_K, row + (size_t)b * bb);
                int32_t isum[16], msum[16];
                block_sums(&kb, xs, isum, msum);
                /* the scalar twins' float steps (dot_q45_K, dot_q6_K) */
                for (int i = 0; i < tn; i++) {
                    const float dx = xs[i]->d;
                    if (t == DT_Q6_K)
                        sum[i] += (float)(isum[LANE(i)] - 32 * msum[LANE(i)]) * (kb.d * dx);
                    else
                        sum[i] += (float)isum[LANE(i)] * (kb.d * dx) -
                                  (float)msum[LANE(i)] * (kb.dmin * dx);
                }
            }
            for (int i = 0; i < tn; i++) out[(size_t)(t0 + i) * n_out + r] = sum[i];
        }
    }
}

TARGET512 static void rows_q4_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                                int r1) {
    rows_k512(DT_Q4_K, out, xk, w, T, r0, r1);
}
TARGET512 static void rows_q5_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                                int r1) {
    rows_k512(DT_Q5_K, out, xk, w, T, r0, r1);
}
TARGET512 static void rows_q6_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                                int r1) {
    rows_k512(DT_Q6_K, out, xk, w, T, r0, r1);
}

bool qdot_avx512_has(dtype t) {
    return (t == DT_Q4_K || t == DT_Q5_K || t == DT_Q6_K) && mm_avx512_supported();
}

void qdot_rows_avx512(float *out, const block_q8_K *xk, const tensor *w, int T, int r0, int r1) {
    switch (w->type) {
    case DT_Q4_K: rows_q4_K(out, xk, w, T, r0, r1); return;
    case DT_Q5_K: rows_q5_K(out, xk, w, T, r0, r1); return;
    case DT_Q6_K: rows_q6_K(out, xk, w, T, r0, r1); return;
    default: return;
    }
}

#else /* not x86 */

bool qdot_avx512_has(dtype t) {
    (void)t;
    return false;
}
void qdot_rows_avx512(float *out, const block_q8_K *xk, const tensor *w, int T, int r0, int r1) {
    (void)out, (void)xk, (void)w, (void)T, (void)r0, (void)r1;
}

#endif
