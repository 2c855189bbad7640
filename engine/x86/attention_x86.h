/* x86/attention_x86: what the attention helper files of engine/x86/ share (internal to them),
 * besides x86_target.h's target attributes: the 8-lane exp (step for step forward.c's
 * attn_exp). Include it only under #if defined(__x86_64__) || defined(__i386__). No state. */
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

#endif
