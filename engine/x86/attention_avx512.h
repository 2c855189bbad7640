/* x86/attention_avx512: the AVX-512 helpers of forward.c's blockwise attention (internal to the
 * engine and its tests): two blocks of 8 positions for up to 8 query rows of a kv head at once,
 * the positions in the lanes of the scores and the softmax step, the values in zmm. They do the
 * scalar loops' float operations in the same order (mul, then add; no FMA), so the results are
 * attention_head's bits. Call only when mm_avx512_supported(); elsewhere an empty stub. */
#ifndef LS_X86_ATTENTION_AVX512_H
#define LS_X86_ATTENTION_AVX512_H

#include <stddef.h>
#include <stdint.h>

#define ATTN512_MAX_HEAD_DIM 128

/* kt (head_dim, 16) = the first nk (<= 16) rows of k (nk, head_dim) transposed, rows past nk as
 * zeros: kt[i * 16 + p] = k[p * head_dim + i]. head_dim a multiple of 16. */
void attn_keys16_t_avx512(float *kt, const float *k, int nk, int head_dim);

/* nb (1 or 2) blocks of 8 positions, keys kt (head_dim, 16) as attn_keys16_t_avx512 lays them
 * out and values v (8 * nb, head_dim) as F32, for nr (1..8) query rows that all see them, the
 * rows given as qt (head_dim, 8): qt[i * 8 + r] = q[r][i] (lanes r >= nr: anything finite, e.g.
 * 0). For each row r < nr and each block in turn, attention_head's block step: s[j] = the sum
 * over i, in order, of q[r][i] * k[j][i]; attn_softmax8 on s with max[r] and the sums
 * sumr[r * 8 + j] (row r's 8 partial sums); then out[r] (head_dim) *= shrink when it rescaled,
 * and += w[j] * v[j] for the block's j in order. The same bits as nb calls of the scalar step.
 * head_dim a multiple of 16, at most ATTN512_MAX_HEAD_DIM. */
void attn_block16_avx512(float *const *out, int nr, int nb, const float *qt, float max[8],
                         float sumr[64], const float *kt, const float *v, int head_dim,
                         float scale);

/* out (n) = the n halves at h as F32 (exact), n a multiple of 16: a block's contiguous keys or
 * values at once. */
void attn_f16_to_f32_avx512(float *out, const uint16_t *h, int n);

/* out (nr, n) = nr Q8_0 cache rows of n elements (row j at (char *)rows + j * stride) as F32:
 * each element its block's scale times its code, kv_get's values (the products are exact); n a
 * multiple of 32. */
void attn_dequant_q8_0_avx512(float *out, const void *rows, size_t stride, int nr, int n);

#endif
