/* x86/attention_avx512: the AVX-512 helper of forward.c's blockwise attention (internal to the
 * engine and its tests): one block of 8 positions for up to 8 query rows of a kv head at once,
 * the rows in the lanes of the scores and the softmax step, the values in zmm. It does the scalar
 * loops' float operations in the same order (mul, then add; no FMA), so the results are
 * attention_head's bits. Call only when mm_avx512_supported(); elsewhere an empty stub. */
#ifndef LS_X86_ATTENTION_AVX512_H
#define LS_X86_ATTENTION_AVX512_H

#include <stddef.h>
#include <stdint.h>

#define ATTN512_MAX_HEAD_DIM 128

/* One block of 8 positions, keys k and values v (8, head_dim) as F32, for nr (1..8) query rows
 * that all see the 8 positions, the rows given as qt (head_dim, 8): qt[i * 8 + r] = q[r][i]
 * (lanes r >= nr: anything finite, e.g. 0). For each row r < nr, attention_head's block step:
 * s[j] = the sum over i, in order, of q[r][i] * k[j][i]; attn_softmax8 on s with max[r] and the
 * sums sumt[j * 8 + r] (the 8 partial sums of row r, one lane of each of sumt's 8 rows); then
 * out[r] (head_dim) *= shrink when it rescaled, and += w[j] * v[j] for j = 0..7 in order.
 * head_dim a multiple of 16, at most ATTN512_MAX_HEAD_DIM. */
void attn_block8_avx512(float *const *out, int nr, const float *qt, float max[8], float sumt[64],
                        const float *k, const float *v, int head_dim, float scale);

/* out (n) = the n halves at h as F32 (exact), n a multiple of 16: a block's contiguous keys or
 * values at once. */
void attn_f16_to_f32_avx512(float *out, const uint16_t *h, int n);

/* out (nr, n) = nr Q8_0 cache rows of n elements (row j at (char *)rows + j * stride) as F32:
 * each element its block's scale times its code, kv_get's values (the products are exact); n a
 * multiple of 32. */
void attn_dequant_q8_0_avx512(float *out, const void *rows, size_t stride, int nr, int n);

#endif
