/* x86/attention_avx2: the AVX2 helpers of forward.c's blockwise attention (internal to the engine
 * and its tests). Each does exactly the float operations of forward.c's scalar loops, in the
 * same order (mul, then add; no FMA), so the SIMD attention gives the scalar one's bits. Call
 * only when mm_avx2_supported(); elsewhere they are empty stubs and forward.c runs its loops.
 * No allocation, no state. */
#ifndef LS_X86_ATTENTION_AVX2_H
#define LS_X86_ATTENTION_AVX2_H

#include <stdbool.h>
#include <stddef.h>

#define ATTN_MAX_HEAD_DIM 512

/* A block of 8 keys laid out once for many query rows: kt (head_dim, 8), kt[i * 8 + j] =
 * k[j * stride + i] as F32 (exact; k F32 or F16). */
void attn_keys8_t_avx2(float *kt, const void *k, bool f16, size_t stride, int head_dim);
/* s (8): s[j] = sum over i, in increasing order, of q[i] * kt[i * 8 + j]. */
void attn_scores8t_avx2(float s[8], const float *q, const float *kt, int head_dim);
/* attn_scores8t_avx2 for nq query rows q[r] into s (nq, 8), four at a time (the same bits). */
void attn_scores8t_rows_avx2(float *s, const float *const *q, int nq, const float *kt,
                             int head_dim);
/* Eight value rows v + j * stride (F32 or F16) into out (head_dim), in j order, each element
 * as the scalar loops do it: out *= shrink[j] when rescale[j], then out += w[j] * v[j]. out
 * stays in registers across the 8 rows. */
void attn_accum8_avx2(float *out, const unsigned char rescale[8], const float shrink[8],
                      const float w[8], const void *v, bool f16, size_t stride, int head_dim);
/* attn_keys8_t_avx2 for 8 rows of Q8_0 blocks, row j at (char *)k + j * row_bytes, head_dim a
 * multiple of 32: kt[i * 8 + j] = d * q of element i of row j (exact in F32). */
void attn_keys8_t_q8_0_avx2(float *kt, const void *k, size_t row_bytes, int head_dim);
/* attn_accum8_avx2 for 8 value rows of Q8_0 blocks (row j at (char *)v + j * row_bytes,
 * head_dim a multiple of 32), each value d * q: the same operations, the same bits. */
void attn_accum8_q8_0_avx2(float *out, const unsigned char rescale[8], const float shrink[8],
                           const float w[8], const void *v, size_t row_bytes, int head_dim);
/* out (n) = d * q of n / 32 Q8_0 blocks at blocks (n a multiple of 32): exact in F32, so the
 * same bits as any scalar dequantization. */
void attn_dequant_q8_0_avx2(float *out, const void *blocks, int n);
/* out (n) *= c. */
void attn_scale_avx2(float *out, float c, int n);
/* out (n) += w * v (n), v F32 or F16. */
void attn_axpy_avx2(float *out, float w, const void *v, bool f16, int n);

#endif
