/* x86/quant_avx2: AVX2 kernels for some of the block types beyond Q8_0/Q4_0 (internal to
 * engine/matmul.c and its tests); the same bits as their scalar twins in quant_dot.c. */
#ifndef LS_X86_QUANT_AVX2_H
#define LS_X86_QUANT_AVX2_H

#include "matmul.h"

#include <stdbool.h>

/* True when this CPU has AVX2 and there is a kernel here for type t (Q4_K, Q5_K, Q6_K, and
 * those of qdot_avx2_k2_has; the 32-element types are x86.h mm_q32_x86's). */
bool qdot_avx2_has(dtype t);

/* The Q8_K blocks of 4 activation rows (rows past T are zero), one block position, laid out for
 * the AVX2 K-quant lanes tiles: a 16-byte broadcast of q[c] puts dword c (codes 4c .. 4c + 3) of
 * the 4 rows in every 128-bit lane; one of m[j] puts in dword t row t's sums of codes 64j ..
 * 64j + 31 and 64j + 32 .. 64j + 63 (the bsums pairwise) as an int16 pair, for one madd with
 * Q4_K/Q5_K's mins, and one of b[j] its bsums 2j and 2j + 1, for one with Q6_K's scales. */
typedef struct q8_K_x4 {
    int32_t q[QK_K / 4][4];
    float d[4];
    int32_t m[4][4];
    int32_t b[8][4];
} q8_K_x4;

/* xr (nb) for rows [t0, t0 + 4) of xk (T, nb); rows >= T are zero. */
void mm_repack_K_x4(q8_K_x4 *xr, const block_q8_K *xk, int T, int t0, int nb);

/* The activation rows [qdot_avx2_lanes_min, qdot_avx2_lanes_max) for which weights of type t
 * take the lanes tiles on activations repacked by mm_repack_K_x4; min 0 where they never do (a
 * type without them, or AVX-512 VNNI, whose kernels take the K-quants, unless the CPU table's
 * x86.h mm_kq_lanes_max says the lanes tiles win below some row count there). */
int qdot_avx2_lanes_min(dtype t);
int qdot_avx2_lanes_max(dtype t);

/* True when this CPU's AVX2 decode of type t reads --repack's copy of the K-quants
 * (qdot_avx512_repack's layout, groups of 8 rows): Q4_K, Q5_K and Q6_K without AVX-512 VNNI. */
bool qdot_avx2_packed(dtype t);

/* out (T, n_out), columns [r0, r1) only: out[t][r] = dot(w row r, activation row t), with xq
 * (T, n_in / QK) for the 32-element types and xk (T, n_in / QK_K) for the K-quants, and xkr
 * (ceil(T / 4), n_in / QK_K) xk through mm_repack_K_x4 when T is in the lanes range above,
 * else NULL. Call only when qdot_avx2_has(w->type). */
void qdot_rows_avx2(float *out, const block_q8_act *xq, const block_q8_K *xk, const q8_K_x4 *xkr,
                    const tensor *w, int T, int r0, int r1);

/* The same bytes as quantize_row_q8_K (matmul.h): out (n / QK_K) from x (n), n a multiple of
 * QK_K. Call only when mm_avx2_supported(). */
void quantize_row_q8_K_avx2(block_q8_K *out, const float *x, int64_t n);

/* x86/quant_avx2_k2.c: the same contract for Q2_K, Q3_K and IQ4_XS (qdot_rows_avx2
 * sends those types there). */
bool qdot_avx2_k2_has(dtype t);
void qdot_rows_avx2_k2(float *out, const block_q8_act *xq, const block_q8_K *xk, const tensor *w,
                       int T, int r0, int r1);

/* x86/quant_avx2_q32.c: the same contract for Q4_1, Q5_0, Q5_1 and IQ4_NL with up to 3
 * activation rows, on xq only: the rows x86/avx2.c's and x86/avx512.c's tiles leave to it
 * (mm_rows_x86). Call only when mm_q32_x86(w->type). */
void qdot_rows_avx2_q32(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                        int r1);

#endif
