/* x86/quant_avx512: AVX-512 VNNI kernels for the K-quants and IQ4_XS, prefill tiles and row-by-row
 * decode (internal to engine/matmul.c and its tests); the same bits as the scalar twins in
 * quant_dot.c and the AVX2 kernels in x86/quant_avx2.c. Stateless and thread-safe; never allocates.
 */
#ifndef LS_X86_QUANT_AVX512_H
#define LS_X86_QUANT_AVX512_H

#include "matmul.h"

#include <stdbool.h>

/* True when mm_avx512_supported() and there is a tile here for type t (the types of
 * dtype_uses_q8_K: Q2_K .. Q6_K, IQ4_XS). */
bool qdot_avx512_has(dtype t);

/* out (T, n_out), columns [r0, r1) only: out[t][r] = dot(w row r, xk row t), xk (T, n_in /
 * QK_K): tiles of 16 weight rows for T >= 4, row by row below. Call only when
 * qdot_avx512_has(w->type). */
void qdot_rows_avx512(float *out, const block_q8_K *xk, const tensor *w, int T, int r0, int r1);

/* The opt-in --repack for these types (through x86.h mm_dec_packed_bytes and mm_dec_repack):
 * each group of 8 rows becomes one stream, block 0 of the 8 rows, then block 1, and so on, which
 * the row-by-row decode kernels read with w->packed set (fewer than one_t_max activation rows;
 * the tiles read w->data), and so do x86/quant_avx2.c's 8-row decode passes of Q4_K, Q5_K and
 * Q6_K without AVX-512 (qdot_avx2_packed). The same bits. The bytes a tensor's copy takes
 * (whole groups of 8 only; 0 when neither qdot_avx512_has(w->type) nor qdot_avx2_packed), and
 * the copy itself into dst. */
size_t qdot_avx512_packed_bytes(const tensor *w);
void qdot_avx512_repack(void *dst, const tensor *w);

#endif
