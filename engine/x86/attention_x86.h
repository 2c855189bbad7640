/* x86/attention_x86: what the attention helper files of engine/x86/ share (internal to them),
 * besides x86_target.h's target attributes: the 8-lane exp (step for step forward.c's
 * attn_exp), and the scores and softmax step of the rows-in-lanes block steps
 * (attn_block8_avx512, attn_block8_avx2). Include it only under
 * #if defined(__x86_64__) || defined(__i386__). No state. */
#ifndef LS_X86_ATTENTION_X86_H
#define LS_X86_ATTENTION_X86_H

#include "attention_avx2.h"
#include "x86_target.h"

#include <immintrin.h>

/* attn_exp (forward.c) on 8 lanes, step for step. */
INLINE __m256 exp8(__m256 x) {
    const __m256 round = _mm256_set1_ps(ATTN_EXP_ROUND);
    __m256 xc =
        _mm256_min_ps(_mm256_set1_ps(ATTN_EXP_HI), _mm256_max_ps(_mm256_set1_ps(ATTN_EXP_LO), x));
    __m256 t = _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(ATTN_EXP_LOG2E)), round);
    __m256 n = _mm256_sub_ps(t, round);
    __m256 r = _mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(ATTN_EXP_LN2_HI)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(ATTN_EXP_LN2_LO)));
    __m256 p = _mm256_set1_ps(ATTN_EXP_C7);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(ATTN_EXP_C6));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(ATTN_EXP_C5));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(ATTN_EXP_C4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(ATTN_EXP_C3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(ATTN_EXP_C2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(ATTN_EXP_LO), _CMP_LT_OQ);
    return _mm256_andnot_ps(under, y);
}

/* s[j] (lanes: rows) = sum over i in order of qt[i] * k[j][i]: 8 add chains in flight. */
INLINE void scores_rows8(__m256 s[8], const float *qt, const float *k, int head_dim) {
    for (int j = 0; j < 8; j++)
        s[j] = _mm256_setzero_ps();
    for (int i = 0; i < head_dim; i++) {
        const __m256 qi = _mm256_loadu_ps(qt + 8 * i);
        for (int j = 0; j < 8; j++)
            s[j] = _mm256_add_ps(s[j], _mm256_mul_ps(qi, _mm256_set1_ps(k[j * head_dim + i])));
    }
}

/* The scores and attn_softmax8 of one block of 8 positions for 8 query rows in lanes (the
 * block step attn_block8_avx2's; attn_block8_avx512 has a twin with two positions per zmm,
 * lanes_weights16; see attention_avx512.h): max and
 * sumt updated, w[j * 8 + r] = row r's weight of position j, shrink[r] row r's rescale where bit
 * r of the result is set (the rows that rescale). */
INLINE int attn_lanes_weights(float shrink[8], float w[64], const float *qt, float max[8],
                              float sumt[64], const float *k, int head_dim, float scale) {
    __m256 s[8], sm[8];
    scores_rows8(s, qt, k, head_dim);
    /* attn_softmax8, row r in lane r: the same operations on each lane */
    const __m256 sc = _mm256_set1_ps(scale);
    for (int j = 0; j < 8; j++) {
        s[j] = _mm256_mul_ps(s[j], sc);
        sm[j] = _mm256_loadu_ps(sumt + 8 * j);
    }
    /* its max tree: j and j + 4, then 0 and 2, 1 and 3, then the two */
    __m256 m4[4];
    for (int j = 0; j < 4; j++)
        m4[j] = _mm256_max_ps(s[j], s[j + 4]);
    const __m256 bm = _mm256_max_ps(_mm256_max_ps(m4[0], m4[2]), _mm256_max_ps(m4[1], m4[3]));
    __m256 mx = _mm256_loadu_ps(max);
    const __m256 up = _mm256_cmp_ps(bm, mx, _CMP_GT_OQ);
    const int resc = _mm256_movemask_ps(up);
    if (resc) { /* lanes that do not rescale keep their sums and max */
        const __m256 sh = exp8(_mm256_sub_ps(mx, bm));
        _mm256_storeu_ps(shrink, sh);
        for (int j = 0; j < 8; j++)
            sm[j] = _mm256_blendv_ps(sm[j], _mm256_mul_ps(sm[j], sh), up);
        mx = _mm256_blendv_ps(mx, bm, up);
        _mm256_storeu_ps(max, mx);
    }
    for (int j = 0; j < 8; j++) {
        const __m256 wj = exp8(_mm256_sub_ps(s[j], mx));
        _mm256_storeu_ps(w + 8 * j, wj);
        _mm256_storeu_ps(sumt + 8 * j, _mm256_add_ps(sm[j], wj));
    }
    return resc;
}

#endif
