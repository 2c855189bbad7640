/* x86/attention_avx512: one block of 8 positions for up to 8 query rows of a kv head (see
 * attention_avx512.h). The rows are the lanes of the scores and of the softmax step, so neither
 * needs a transposed key block nor a horizontal reduction; the softmax step takes two positions
 * per zmm, the values four rows of 64 elements at a time. Bit-identical to forward.c's scalar
 * loops (tests/test_matmul.c, tests/test_forward.c). */
#include "attention_avx512.h"
#include "tensor.h"

#if defined(__x86_64__) || defined(__i386__)
#include "attention_x86.h"

/* Rows r0 .. r0 + NR - 1, elements c0 .. c0 + 16 * NZ - 1 of out: the rescale (rows whose bit
 * is set in resc), then the 8 weighted value rows, each element's operations in the scalar
 * order; the NR x NZ outputs stay in registers across the 8 rows. */
INLINE512 void values_rows(float *const *out, int r0, int NR, int NZ, int resc,
                           const float shrink[8], const float w[64], const float *v, int head_dim,
                           int c0) {
    __m512 o[4][4];
    for (int r = 0; r < NR; r++)
        for (int z = 0; z < NZ; z++) {
            o[r][z] = _mm512_loadu_ps(out[r0 + r] + c0 + 16 * z);
            if (resc >> (r0 + r) & 1)
                o[r][z] = _mm512_mul_ps(o[r][z], _mm512_set1_ps(shrink[r0 + r]));
        }
    for (int j = 0; j < 8; j++) {
        __m512 x[4];
        for (int z = 0; z < NZ; z++)
            x[z] = _mm512_loadu_ps(v + (size_t)j * head_dim + c0 + 16 * z);
        for (int r = 0; r < NR; r++) {
            const __m512 wr = _mm512_set1_ps(w[j * 8 + r0 + r]);
            for (int z = 0; z < NZ; z++)
                o[r][z] = _mm512_add_ps(o[r][z], _mm512_mul_ps(wr, x[z]));
        }
    }
    for (int r = 0; r < NR; r++)
        for (int z = 0; z < NZ; z++)
            _mm512_storeu_ps(out[r0 + r] + c0 + 16 * z, o[r][z]);
}

/* values_rows over the whole row (64 elements at a time, then 16) with NR a constant. */
INLINE512 void values_group(float *const *out, int r0, int NR, int resc, const float shrink[8],
                            const float w[64], const float *v, int head_dim) {
    int c0 = 0;
    for (; c0 + 64 <= head_dim; c0 += 64)
        values_rows(out, r0, NR, 4, resc, shrink, w, v, head_dim, c0);
    for (; c0 < head_dim; c0 += 16)
        values_rows(out, r0, NR, 1, resc, shrink, w, v, head_dim, c0);
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

/* {a, b} as one zmm, and its halves */
INLINE512 __m512 pair(__m256 a, __m256 b) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(a)),
                                               _mm256_castps_pd(b), 1));
}
INLINE512 __m256 lo(__m512 v) { return _mm512_castps512_ps256(v); }
INLINE512 __m256 hi(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* attn_lanes_weights (attention_x86.h) with positions j and j + 4 in one zmm: the same
 * operations on each lane, so the same bits. */
INLINE512 int lanes_weights16(float shrink[8], float w[64], const float *qt, float max[8],
                              float sumt[64], const float *k, int head_dim, float scale) {
    __m256 s[8];
    scores_rows8(s, qt, k, head_dim);
    const __m512 sc = _mm512_set1_ps(scale);
    __m512 sp[4], sm[4];
    __m256 m4[4];
    for (int j = 0; j < 4; j++) {
        sp[j] = _mm512_mul_ps(pair(s[j], s[j + 4]), sc);
        sm[j] = pair(_mm256_loadu_ps(sumt + 8 * j), _mm256_loadu_ps(sumt + 8 * (j + 4)));
        m4[j] = _mm256_max_ps(lo(sp[j]), hi(sp[j]));
    }
    const __m256 bm = _mm256_max_ps(_mm256_max_ps(m4[0], m4[2]), _mm256_max_ps(m4[1], m4[3]));
    __m256 mx = _mm256_loadu_ps(max);
    const __m256 up = _mm256_cmp_ps(bm, mx, _CMP_GT_OQ);
    const int resc = _mm256_movemask_ps(up);
    if (resc) {
        const __m256 sh = exp8(_mm256_sub_ps(mx, bm));
        _mm256_storeu_ps(shrink, sh);
        const __m512 sh2 = pair(sh, sh);
        for (int j = 0; j < 4; j++)
            sm[j] = _mm512_mask_mul_ps(sm[j], (__mmask16)(resc | resc << 8), sm[j], sh2);
        mx = _mm256_blendv_ps(mx, bm, up);
        _mm256_storeu_ps(max, mx);
    }
    const __m512 mx2 = pair(mx, mx);
    for (int j = 0; j < 4; j++) {
        const __m512 wj = exp16(_mm512_sub_ps(sp[j], mx2));
        const __m512 st = _mm512_add_ps(sm[j], wj);
        _mm256_storeu_ps(w + 8 * j, lo(wj));
        _mm256_storeu_ps(w + 8 * (j + 4), hi(wj));
        _mm256_storeu_ps(sumt + 8 * j, lo(st));
        _mm256_storeu_ps(sumt + 8 * (j + 4), hi(st));
    }
    return resc;
}

/* attn_block8_avx512's body, inlined once per head_dim the models use (see there). */
INLINE512 void block8(float *const *out, int nr, const float *qt, float max[8], float sumt[64],
                      const float *k, const float *v, int head_dim, float scale) {
    float shrink[8], w[64];
    const int resc = lanes_weights16(shrink, w, qt, max, sumt, k, head_dim, scale);
    int r0 = 0;
    for (; r0 + 4 <= nr; r0 += 4)
        values_group(out, r0, 4, resc, shrink, w, v, head_dim);
    switch (nr - r0) {
    case 3: values_group(out, r0, 3, resc, shrink, w, v, head_dim); break;
    case 2: values_group(out, r0, 2, resc, shrink, w, v, head_dim); break;
    case 1: values_group(out, r0, 1, resc, shrink, w, v, head_dim); break;
    default: break;
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

TARGET512 void attn_block8_avx512(float *const *out, int nr, const float *qt, float max[8],
                                  float sumt[64], const float *k, const float *v, int head_dim,
                                  float scale) {
    /* a constant head_dim lets the scores address the 8 key rows from one base register (a
     * variable one took 8 pointers, more than the free registers) and unroll the loops */
    if (head_dim == 64)
        block8(out, nr, qt, max, sumt, k, v, 64, scale);
    else if (head_dim == 128)
        block8(out, nr, qt, max, sumt, k, v, 128, scale);
    else
        block8(out, nr, qt, max, sumt, k, v, head_dim, scale);
}

#else /* not x86: forward.c runs its scalar loops */

void attn_block8_avx512(float *const *out, int nr, const float *qt, float max[8], float sumt[64],
                        const float *k, const float *v, int head_dim, float scale) {
    (void)out, (void)nr, (void)qt, (void)max, (void)sumt, (void)k, (void)v, (void)head_dim;
    (void)scale;
}

void attn_f16_to_f32_avx512(float *out, const uint16_t *h, int n) {
    (void)out, (void)h, (void)n;
}

void attn_dequant_q8_0_avx512(float *out, const void *rows, size_t stride, int nr, int n) {
    (void)out, (void)rows, (void)stride, (void)nr, (void)n;
}

#endif
