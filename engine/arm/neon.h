/* arm/neon: the AArch64 Advanced SIMD (NEON) kernels behind matmul (internal to
 * engine/matmul.c and its tests). Advanced SIMD and the F16 <-> F32 conversions are part of
 * every AArch64 CPU, so nothing is probed at run time; on other architectures
 * mm_neon_supported() is false and nothing else is called.
 * Determinism, as on x86: for F32/F16/BF16 every (weight row, activation row) pair has its own
 * two 4-lane accumulators (elements k % 8 < 4 and >= 4), filled in increasing k with fused
 * multiply-adds and reduced in one fixed order, whatever the tile, T, the chunking of rows or
 * the thread count; the results differ from the scalar kernels by float rounding only. For
 * Q8_0/Q4_0 the block sums are exact integers and the float steps per block are the scalar
 * kernel's, so the results are dot_q8_0/dot_q4_0's bits. */
#ifndef LS_ARM_NEON_H
#define LS_ARM_NEON_H

#include "tensor.h"

#include <stdbool.h>

/* True on AArch64 (little-endian), false elsewhere. */
bool mm_neon_supported(void);

/* out (T, n_out), columns [r0, r1) only: out[t][r] = dot(w row r, x row t), w->ne = {n_in,
 * n_out}; x (T, n_in) F32 for F32/F16/BF16 weights, xq (T, n_in / QK) for Q8_0/Q4_0. */
void mm_rows_neon(float *out, const float *x, const block_q8_act *xq, const tensor *w, int T,
                  int r0, int r1);

/* Same result as quantize_row_q8_act, bit for bit (same rounding, same scale): out (n / QK)
 * from x (n), n a multiple of QK. Call only when mm_neon_supported(). */
void quantize_row_q8_act_neon(block_q8_act *out, const float *x, int64_t n);

/* arm/neon_quant.c: true on AArch64 for the block types beyond Q8_0/Q4_0 that have a kernel
 * there (Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K, IQ4_XS). */
bool qdot_neon_has(dtype t);

/* out (T, n_out), columns [r0, r1) only: out[t][r] = dot(w row r, activation row t), with xq
 * (T, n_in / QK) for the 32-element types and xk (T, n_in / QK_K) for the 256-element ones; the
 * bits of the scalar twins in quant_dot.c. Call only when qdot_neon_has(w->type). */
void qdot_rows_neon(float *out, const block_q8_act *xq, const block_q8_K *xk, const tensor *w,
                    int T, int r0, int r1);

#endif
