/* x86/attention_avx2: the AVX2 helpers of forward.c's blockwise attention (internal to the engine
 * and its tests). Each does exactly the float operations of forward.c's scalar loops, in the
 * same order (mul, then add; no FMA), so the SIMD attention gives the scalar one's bits. Call
 * only when mm_avx2_supported(); elsewhere they are empty stubs and forward.c runs its loops.
 * No allocation, no state. */
#ifndef LS_X86_ATTENTION_AVX2_H
#define LS_X86_ATTENTION_AVX2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATTN_MAX_HEAD_DIM 512

/* attn_exp's constants (forward.c has the algorithm; the SIMD twin uses the same ones).
 * exp(x) = 2^n * exp(r), n = round(x / ln 2) by adding and subtracting 1.5 * 2^23, r = x - n *
 * ln 2 in two steps (ln 2 = LN2_HI + LN2_LO, LN2_HI with 9 significant bits so n * LN2_HI is
 * exact), exp(r) by its Taylor polynomial to degree 7 (|r| <= ln 2 / 2: truncation error
 * below 4e-9, under a float's half ulp). */
#define ATTN_EXP_LO (-87.0f) /* below: 0 (exp would be under 1.7e-38, near FLT_MIN) */
#define ATTN_EXP_HI 88.0f    /* above: exp(88), finite (attention only takes x <= 0) */
#define ATTN_EXP_LOG2E 1.44269504088896341f
#define ATTN_EXP_ROUND 12582912.0f /* 1.5 * 2^23 */
#define ATTN_EXP_LN2_HI 0.693359375f
#define ATTN_EXP_LN2_LO (-2.12194440e-4f)
#define ATTN_EXP_C7 (1.0f / 5040.0f)
#define ATTN_EXP_C6 (1.0f / 720.0f)
#define ATTN_EXP_C5 (1.0f / 120.0f)
#define ATTN_EXP_C4 (1.0f / 24.0f)
#define ATTN_EXP_C3 (1.0f / 6.0f)
#define ATTN_EXP_C2 0.5f

/* A block of 8 keys laid out once for many query rows: kt (head_dim, 8), kt[i * 8 + j] =
 * k[j * stride + i] as F32 (exact; k F32 or F16). */
void attn_keys8_t_avx2(float *kt, const void *k, bool f16, size_t stride, int head_dim);
/* s (8): s[j] = sum over i, in increasing order, of q[i] * kt[i * 8 + j]. */
void attn_scores8t_avx2(float s[8], const float *q, const float *kt, int head_dim);
/* attn_scores8t_avx2 for nq query rows q[r] into s (nq, 8), four at a time (the same bits). */
void attn_scores8t_rows_avx2(float *s, const float *const *q, int nq, const float *kt,
                             int head_dim);
/* The first n (<= 8) value rows v + j * stride (F32 or F16) into out (head_dim), each element
 * as the scalar loops do it: out *= shrink when rescale, then out += w[j] * v[j] for j < n in
 * order. out stays in registers across the rows; rows j >= n are not read. */
void attn_accum8_avx2(float *out, bool rescale, float shrink, const float w[8], int n,
                      const void *v, bool f16, size_t stride, int head_dim);
/* out (nr, n) = nr F16 rows of n elements, row j at v + j * stride, as F32 (exact). */
void attn_f16_rows_avx2(float *out, const uint16_t *v, size_t stride, int nr, int n);
/* attn_keys8_t_avx2 for 8 rows of Q8_0 blocks, row j at (char *)k + j * row_bytes, head_dim a
 * multiple of 32: kt[i * 8 + j] = d * q of element i of row j (exact in F32). */
void attn_keys8_t_q8_0_avx2(float *kt, const void *k, size_t row_bytes, int head_dim);
/* attn_accum8_avx2 for the first n (<= 8) value rows of Q8_0 blocks (row j at (char *)v + j *
 * row_bytes, head_dim a multiple of 32), each value d * q: the same operations, the same bits. */
void attn_accum8_q8_0_avx2(float *out, bool rescale, float shrink, const float w[8], int n,
                           const void *v, size_t row_bytes, int head_dim);
/* out (n) = d * q of n / 32 Q8_0 blocks at blocks (n a multiple of 32): exact in F32, so the
 * same bits as any scalar dequantization. */
void attn_dequant_q8_0_avx2(float *out, const void *blocks, int n);
/* attn_exp's steps on 8 lanes: out[j] = attn_exp(x[j]), the same bits (see forward.h). */
void attn_exp8_avx2(float out[8], const float x[8]);
/* attn_softmax8 (forward.h) with AVX2: the same operations, the same bits. */
bool attn_softmax8_avx2(float w[8], float *shrink, float *max, float sum[8], const float s[8],
                        float scale);
/* One block of 8 positions, keys k and values v (8, head_dim) as F32, for nr (1..8) query rows
 * that all see them, the rows given as qt (head_dim, 8): qt[i * 8 + r] = q[r][i] (lanes r >= nr:
 * anything finite, e.g. 0). For each row r < nr, attention_head's block step: s[j] = the sum over
 * i, in order, of q[r][i] * k[j][i]; attn_softmax8 on s with max[r] and the sums sumt[j * 8 + r]
 * (the 8 partial sums of row r, one lane of each of sumt's 8 rows); then out[r] *= shrink when
 * it rescaled, and += w[j] * v[j] for j = 0..7 in order. The rows are the lanes of the scores
 * and the softmax step, the values in ymm two rows at a time: the same operations, the same
 * bits. head_dim a multiple of 8. */
void attn_block8_avx2(float *const *out, int nr, const float *qt, float max[8], float sumt[64],
                      const float *k, const float *v, int head_dim, float scale);
/* out (n) *= c. */
void attn_scale_avx2(float *out, float c, int n);
/* out (n) += w * v (n), v F32 or F16. */
void attn_axpy_avx2(float *out, float w, const void *v, bool f16, int n);

#endif
