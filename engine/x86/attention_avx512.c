/* x86/attention_avx512: two blocks of 8 positions for up to 8 query rows of a kv head (see
 * attention_avx512.h). The 16 positions are the lanes of the scores (from keys transposed once
 * for every row) and of the softmax step, each row one chain per lane over head_dim as the scalar
 * loop; the values take four rows of 64 elements at a time. Bit-identical to forward.c's scalar
 * loops (tests/test_matmul.c, tests/test_forward.c). */
#include "attention_avx512.h"
#include "tensor.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include "attention_x86.h"

/* Rows r0 .. r0 + NR - 1, elements c0 .. c0 + 16 * NZ - 1 of out, block by block (nb of
 * them): the rescale (rows whose bit is set in resc[b]), then the block's 8 weighted value rows,
 * each element's operations in the scalar order; the NR x NZ outputs stay in registers across
 * the nb * 8 rows. w[r * 16 + p]: row r's weight of position p (block b: p = 8b .. 8b + 7). */
INLINE512 void values_rows(float *const *out, int r0, int NR, int NZ, int nb, const int resc[2],
                           const float shrink[2][8], const float w[128], const float *v,
                           int head_dim, int c0) {
    __m512 o[4][4];
    for (int r = 0; r < NR; r++)
        for (int z = 0; z < NZ; z++) o[r][z] = _mm512_loadu_ps(out[r0 + r] + c0 + 16 * z);
    for (int b = 0; b < nb; b++) {
        for (int r = 0; r < NR; r++)
            if (resc[b] >> (r0 + r) & 1)
                for (int z = 0; z < NZ; z++)
                    o[r][z] = _mm512_mul_ps(o[r][z], _mm512_set1_ps(shrink[b][r0 + r]));
        for (int j = 8 * b; j < 8 * b + 8; j++) {
            __m512 x[4];
            for (int z = 0; z < NZ; z++)
                x[z] = _mm512_loadu_ps(v + (size_t)j * head_dim + c0 + 16 * z);
            for (int r = 0; r < NR; r++) {
                const __m512 wr = _mm512_set1_ps(w[(r0 + r) * 16 + j]);
                for (int z = 0; z < NZ; z++)
                    o[r][z] = _mm512_add_ps(o[r][z], _mm512_mul_ps(wr, x[z]));
            }
        }
    }
    for (int r = 0; r < NR; r++)
        for (int z = 0; z < NZ; z++) _mm512_storeu_ps(out[r0 + r] + c0 + 16 * z, o[r][z]);
}

/* values_rows over the whole row (64 elements at a time, then 16) with NR a constant. */
INLINE512 void values_group(float *const *out, int r0, int NR, int nb, const int resc[2],
                            const float shrink[2][8], const float w[128], const float *v,
                            int head_dim) {
    int c0 = 0;
    for (; c0 + 64 <= head_dim; c0 += 64)
        values_rows(out, r0, NR, 4, nb, resc, shrink, w, v, head_dim, c0);
    for (; c0 < head_dim; c0 += 16)
        values_rows(out, r0, NR, 1, nb, resc, shrink, w, v, head_dim, c0);
}

/* exp8 (attention_x86.h) on 16 lanes, step for step. */
INLINE512 __m512 exp16(__m512 x) {
    const __m512 round = _mm512_set1_ps(ATTN_EXP_ROUND);
    __m512 xc =
        _mm512_min_ps(_mm512_set1_ps(ATTN_EXP_HI), _mm512_max_ps(_mm512_set1_ps(ATTN_EXP_LO), x));
    __m512 t = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(ATTN_EXP_LOG2E)), round);
    __m512 n = _mm512_sub_ps(t, round);
    __m512 r = _mm512_sub_ps(xc, _mm512_mul_ps(n, _mm512_set1_ps(ATTN_EXP_LN2_HI)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(ATTN_EXP_LN2_LO)));
    __m512 p = _mm512_set1_ps(ATTN_EXP_C7);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(ATTN_EXP_C6));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(ATTN_EXP_C5));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(ATTN_EXP_C4));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(ATTN_EXP_C3));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(ATTN_EXP_C2));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
    __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(127)), 23);
    __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(ATTN_EXP_LO), _CMP_LT_OQ);
    return _mm512_maskz_mov_ps((__mmask16)~under, y);
}

/* s[r] (lanes: the 16 positions) = the sum over i, in order, of qt[i * 8 + r] * kt[i * 16 + p]
 * for rows r < NR: NR add chains in flight, each key element used by NR rows. */
INLINE512 void scores_cols(__m512 s[8], int NR, const float *qt, const float *kt, int head_dim) {
    for (int r = 0; r < NR; r++)
        s[r] = _mm512_setzero_ps();
    for (int i = 0; i < head_dim; i++) {
        const __m512 ki = _mm512_loadu_ps(kt + 16 * i);
        for (int r = 0; r < NR; r++)
            s[r] = _mm512_add_ps(s[r], _mm512_mul_ps(_mm512_set1_ps(qt[i * 8 + r]), ki));
    }
}

/* attn_softmax8's max tree (positions j and j + 4, then 0 and 2, 1 and 3, then the two) on each
 * 8-lane half of x: lane 0 (8) ends with the first (second) block's maximum, its operands in
 * the scalar order. */
INLINE512 __m512 block_max2(__m512 x) {
    x = _mm512_max_ps(x, _mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(2, 3, 0, 1)));
    x = _mm512_max_ps(x, _mm512_permute_ps(x, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_max_ps(x, _mm512_permute_ps(x, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* The new maxima bm[r] of one block against max (rows in lanes): the rows that rescale as a
 * bit mask, shrink[r] = attn_exp(max[r] - bm[r]) for them, max updated; as attn_lanes_weights. */
INLINE512 int block_rescale(float shrink[8], float max[8], const float bm[8]) {
    const __m256 b = _mm256_loadu_ps(bm), mx = _mm256_loadu_ps(max);
    const __m256 up = _mm256_cmp_ps(b, mx, _CMP_GT_OQ);
    const int resc = _mm256_movemask_ps(up);
    if (resc) {
        _mm256_storeu_ps(shrink, exp8(_mm256_sub_ps(mx, b)));
        _mm256_storeu_ps(max, _mm256_blendv_ps(mx, b, up));
    }
    return resc;
}

/* attn_block16_avx512's body, inlined once per head_dim the models use (see there). */
INLINE512 void block16(float *const *out, int nr, int nb, const float *qt, float max[8],
                       float sumr[64], const float *kt, const float *v, int head_dim,
                       float scale) {
    const int NR = nr <= 4 ? 4 : 8;
    __m512 s[8];
    if (NR == 4)
        scores_cols(s, 4, qt, kt, head_dim);
    else
        scores_cols(s, 8, qt, kt, head_dim);
    /* attn_softmax8 of each block, row by row with the positions in lanes; the maxima, the
     * rescale factors and the rows' new maxima (m[b]) through rows-in-lanes steps */
    float bm[2][8], shrink[2][8], m[2][8], w[128];
    int resc[2] = {0, 0};
    for (int r = 0; r < 8; r++) {
        if (r < NR) {
            s[r] = _mm512_mul_ps(s[r], _mm512_set1_ps(scale));
            const __m512 x = block_max2(s[r]);
            bm[0][r] = _mm512_cvtss_f32(x);
            bm[1][r] = _mm512_cvtss_f32(_mm512_shuffle_f32x4(x, x, 2));
        } else {
            bm[0][r] = bm[1][r] = -INFINITY;
        }
    }
    for (int b = 0; b < nb; b++) {
        resc[b] = block_rescale(shrink[b], max, bm[b]);
        memcpy(m[b], max, sizeof m[b]);
    }
    for (int r = 0; r < NR; r++) {
        const __m512 mr = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(m[0][r]),
                                               _mm512_set1_ps(m[nb - 1][r]));
        const __m512 wr = exp16(_mm512_sub_ps(s[r], mr));
        _mm512_storeu_ps(w + 16 * r, wr);
        __m256 st = _mm256_loadu_ps(sumr + 8 * r);
        for (int b = 0; b < nb; b++) {
            if (resc[b] >> r & 1)
                st = _mm256_mul_ps(st, _mm256_set1_ps(shrink[b][r]));
            const __m256 wb = b ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(wr), 1))
                                : _mm512_castps512_ps256(wr);
            st = _mm256_add_ps(st, wb);
        }
        _mm256_storeu_ps(sumr + 8 * r, st);
    }
    int r0 = 0;
    for (; r0 + 4 <= nr; r0 += 4)
        values_group(out, r0, 4, nb, resc, shrink, w, v, head_dim);
    switch (nr - r0) {
    case 3: values_group(out, r0, 3, nb, resc, shrink, w, v, head_dim); break;
    case 2: values_group(out, r0, 2, nb, resc, shrink, w, v, head_dim); break;
    case 1: values_group(out, r0, 1, nb, resc, shrink, w, v, head_dim); break;
    default: break;
    }
}

/* Rows c .. c + 15 of kt (head_dim, 16) from the 16 key rows a (elements c .. c + 15): a 16 x 16
 * transpose in 64 shuffles (pairs of rows, quads, then 128-bit lanes twice). */
INLINE512 void transpose16(float *kt, __m512 a[16], int c) {
    __m512 b[16];
    for (int p = 0; p < 16; p += 2) {
        b[p] = _mm512_unpacklo_ps(a[p], a[p + 1]);
        b[p + 1] = _mm512_unpackhi_ps(a[p], a[p + 1]);
    }
    for (int g = 0; g < 16; g += 4) { /* a[g + e], 128-bit lane l: rows g .. g + 3 of 4l + e */
        const __m512d b0 = _mm512_castps_pd(b[g]), b1 = _mm512_castps_pd(b[g + 1]);
        const __m512d b2 = _mm512_castps_pd(b[g + 2]), b3 = _mm512_castps_pd(b[g + 3]);
        a[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(b0, b2));
        a[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(b0, b2));
        a[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b1, b3));
        a[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b1, b3));
    }
    for (int e = 0; e < 4; e++) {
        const __m512 x0 = _mm512_shuffle_f32x4(a[e], a[4 + e], 0x88);
        const __m512 x1 = _mm512_shuffle_f32x4(a[e], a[4 + e], 0xDD);
        const __m512 x2 = _mm512_shuffle_f32x4(a[8 + e], a[12 + e], 0x88);
        const __m512 x3 = _mm512_shuffle_f32x4(a[8 + e], a[12 + e], 0xDD);
        _mm512_storeu_ps(kt + 16 * (c + e), _mm512_shuffle_f32x4(x0, x2, 0x88));
        _mm512_storeu_ps(kt + 16 * (c + 4 + e), _mm512_shuffle_f32x4(x1, x3, 0x88));
        _mm512_storeu_ps(kt + 16 * (c + 8 + e), _mm512_shuffle_f32x4(x0, x2, 0xDD));
        _mm512_storeu_ps(kt + 16 * (c + 12 + e), _mm512_shuffle_f32x4(x1, x3, 0xDD));
    }
}

TARGET512 void attn_keys16_t_avx512(float *kt, const float *k, int nk, int head_dim) {
    for (int c = 0; c < head_dim; c += 16) {
        __m512 a[16];
        for (int p = 0; p < 16; p++)
            a[p] = p < nk ? _mm512_loadu_ps(k + (size_t)p * head_dim + c) : _mm512_setzero_ps();
        transpose16(kt, a, c);
    }
}

TARGET512 void attn_f16_to_f32_avx512(float *out, const uint16_t *h, int n) {
    for (int i = 0; i < n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
}

TARGET512 void attn_dequant_q8_0_avx512(float *out, const void *rows, size_t stride, int nr,
                                       int n) {
    for (int j = 0; j < nr; j++) {
        const block_q8_0 *b = (const void *)((const char *)rows + (size_t)j * stride);
        for (int i = 0; i < n; i += QK, b++) {
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(b->d)); /* exact, as f16_to_f32 */
            for (int c = 0; c < QK; c += 16) {
                const __m128i q8 = _mm_loadu_si128((const __m128i *)(b->qs + c));
                const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8));
                _mm512_storeu_ps(out + (size_t)j * n + i + c, _mm512_mul_ps(d, q));
            }
        }
    }
}

TARGET512 void attn_block16_avx512(float *const *out, int nr, int nb, const float *qt,
                                   float max[8], float sumr[64], const float *kt, const float *v,
                                   int head_dim, float scale) {
    /* a constant head_dim lets the loops unroll and the value rows be addressed from one base */
    if (head_dim == 64)
        block16(out, nr, nb, qt, max, sumr, kt, v, 64, scale);
    else if (head_dim == 128)
        block16(out, nr, nb, qt, max, sumr, kt, v, 128, scale);
    else
        block16(out, nr, nb, qt, max, sumr, kt, v, head_dim, scale);
}

#else /* not x86: forward.c runs its scalar loops */

void attn_block16_avx512(float *const *out, int nr, int nb, const float *qt, float max[8],
                         float sumr[64], const float *kt, const float *v, int head_dim,
                         float scale) {
    (void)out, (void)nr, (void)nb, (void)qt, (void)max, (void)sumr, (void)kt, (void)v;
    (void)head_dim, (void)scale;
}

void attn_keys16_t_avx512(float *kt, const float *k, int nk, int head_dim) {
    (void)kt, (void)k, (void)nk, (void)head_dim;
}

void attn_f16_to_f32_avx512(float *out, const uint16_t *h, int n) {
    (void)out, (void)h, (void)n;
}

void attn_dequant_q8_0_avx512(float *out, const void *rows, size_t stride, int nr, int n) {
    (void)out, (void)rows, (void)stride, (void)nr, (void)n;
}

#endif
