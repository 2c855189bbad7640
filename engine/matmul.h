/* matmul: weights of any stored type times a block of activation rows. The one shape every
 * projection in the model has: out (T, n_out) = x (T, n_in) @ W^T, W stored as (n_out, n_in)
 * rows of its own type. For Q8_0/Q4_0 weights the activations are quantized to 8-bit blocks
 * once per call and the dot products are integer. Work is split across the pool by output rows,
 * so every output element is computed by the same sequence of operations whatever the thread
 * count and whatever other rows share the block: results are bit-identical. */
#ifndef LS_MATMUL_H
#define LS_MATMUL_H

#include "tensor.h"
#include "threadpool.h"

/* Scratch for the quantized activations of up to max_T rows of max_n_in elements. */
typedef struct {
    block_q8_act *xq;      /* (max_T, max_n_in / QK) */
    block_q8_K *xk;        /* (max_T, max_n_in / QK_K): for the K-quants and IQ4_XS */
    struct q8_act_x4 *xr;  /* (ceil(max_T / 4), max_n_in / QK): xq repacked for the VNNI kernels */
    struct q8_K_x4 *xkr;   /* (ceil(max_T / 4), max_n_in / QK_K): xk repacked for the AVX2 ones */
    uint16_t *xb;          /* (max_T, max_n_in): the activations in BF16, for mm_bf16_dot */
    int max_T, max_n_in;
} mm_scratch;

int mm_scratch_init(mm_scratch *s, int max_T, int max_n_in);
void mm_scratch_free(mm_scratch *s);

/* Products smaller than macs multiply-adds (default 2^18) run on the calling thread alone:
 * waking the pool would cost more. The result is the same bits either way; tests set 0 so that
 * every product goes through the pool. Call before any matmul, from one thread. */
void mm_set_inline_macs(int64_t macs);
/* The threshold in force; the forward pass applies it to its other jobs too. */
int64_t mm_inline_macs(void);

/* BF16 weights on BF16 activations (opt-in, --bf16-dot). By default BF16 weights multiply the
 * F32 activations. With mm_set_bf16_dot(true), matmul rounds the activations of BF16 weights to
 * BF16 (f32_to_bf16) and multiplies them as AVX512_BF16's vdpbf16ps does, 32 elements at a time
 * in 16 float lanes (dot_bf16_pairs, the scalar twin, says exactly how): about twice the
 * multiply-adds per instruction, at the price of the activations' low 16 bits. Rows whose length
 * is not a multiple of 32 keep the default. The scalar path (mm_force_scalar) computes the twin,
 * the SIMD path the instruction: the same bits, whatever the thread count or the batch. Process-
 * wide; set it before the first matmul. mm_bf16_dot_supported() says whether this CPU has the
 * instruction (and it passed a probe of its semantics); the switch is refused (false) without
 * it, so that a machine never runs the twin where users expect speed. */
bool mm_bf16_dot_supported(void);
bool mm_set_bf16_dot(bool on);
bool mm_bf16_dot(void);
/* One lane step of vdpbf16ps: fma(w0, x0, fma(w1, x1, acc)), BF16 denormal inputs and acc read
 * as zero, denormal results flushed to zero. */
float bf16_pair_step(float acc, uint16_t w0, uint16_t x0, uint16_t w1, uint16_t x1);
/* Weight row w times activation row x, both BF16, n a multiple of 32: lane l of 16 takes the
 * pairs (32s + 2l, 32s + 2l + 1) in increasing s through bf16_pair_step, then the lanes add as
 * l + l + 8, then + 4, + 2, + 1. */
float dot_bf16_pairs(const uint16_t *w, const uint16_t *x, int n);

/* out (T, n_out) = x (T, n_in) @ w^T with w->ne = {n_in, n_out}. T <= s->max_T. */
void matmul(float *out, const float *x, const tensor *w, int T, mm_scratch *s, pool *p);

/* Kernel choice. By default matmul uses the AVX2+FMA+F16C kernels (engine/x86/) when
 * the CPU reports all three (and, for blocks of T >= 2 rows on CPUs with AVX-512 F/BW/VL and
 * VNNI, the AVX-512 kernels there, which give the same bits), the NEON kernels
 * (engine/arm/neon.c) on AArch64, else the scalar row kernels below. mm_force_scalar(true) makes
 * every later matmul call use the scalar kernels (tests use it to check both paths; it is a
 * process-wide switch, meant to be flipped between forward steps, not during one).
 * SIMD results differ from the scalar ones by float rounding only (a few ulps of
 * sum |w * x|; the integer block sums of Q8_0/Q4_0 are exact), and are just as deterministic. */
void mm_force_scalar(bool on);
/* mm_force_avx2(true): on x86, the AVX2 kernels only (attention too), as a CPU without AVX-512
 * VNNI runs them; the same bits. Process-wide, like mm_force_scalar; nothing elsewhere. */
void mm_force_avx2(bool on);
/* True when matmul would use the SIMD kernels now (AVX2 and AVX-512 on x86-64, NEON on
 * AArch64: engine/arm/neon.c, the same contract). */
bool mm_using_simd(void);
/* The kernels matmul uses now: "scalar", "avx2", "avx2+avx512" or "neon". */
const char *mm_kernels(void);
/* How matmul's kernels for weights of type t take activation rows now, for a caller that models a
 * step's cost (the server's token budget): each of the first *exact rows costs its own, and beyond
 * them rows go in whole groups of *group, a ragged group costing a full one. On AVX-512 VNNI, Q4_1,
 * Q5_0 and Q5_1 run the decode tiles up to MM_DEC_T_MAX rows, then 4 x 4 tiles (exact 3, group 4;
 * past 16 rows their 16-row tiles, which this overcounts by under a group; IQ4_NL's decode tiles
 * and then its 16-row tiles, Q4_0's and Q8_0's 16-row tiles from 2 rows take any number: group 1);
 * with AVX2 alone, the 32-element types run lanes tiles of groups of 4 from 3 rows (exact 2, group
 * 4), and Q4_K, Q5_K and Q6_K from 3, 6 and 12 (exact 2, 5, 11, group 4); every other case is near
 * enough to linear: group 1. */
void mm_row_tiling(dtype t, int *exact, int *group);

/* Row kernels, the scalar reference of each type: dot product of one stored row (n elements)
 * with F32 (or quantized) activations. */
float dot_f32(const float *w, const float *x, int n);
float dot_f16(const uint16_t *w, const float *x, int n);
float dot_bf16(const uint16_t *w, const float *x, int n);
float dot_q8_0(const block_q8_0 *w, const block_q8_act *x, int n);
float dot_q4_0(const block_q4_0 *w, const block_q8_act *x, int n);
/* The other block types (engine/quant_dot.c): exact integer sums per block against 8-bit
 * activations, 32-element blocks (block_q8_act) for Q4_1/Q5_0/Q5_1/IQ4_NL and 256-element ones
 * (block_q8_K) for the K-quants and IQ4_XS. */
float dot_q4_1(const block_q4_1 *w, const block_q8_act *x, int n);
float dot_q5_0(const block_q5_0 *w, const block_q8_act *x, int n);
float dot_q5_1(const block_q5_1 *w, const block_q8_act *x, int n);
float dot_iq4_nl(const block_iq4_nl *w, const block_q8_act *x, int n);
float dot_q2_K(const block_q2_K *w, const block_q8_K *x, int n);
float dot_q3_K(const block_q3_K *w, const block_q8_K *x, int n);
float dot_q4_K(const block_q4_K *w, const block_q8_K *x, int n);
float dot_q5_K(const block_q5_K *w, const block_q8_K *x, int n);
float dot_q6_K(const block_q6_K *w, const block_q8_K *x, int n);
float dot_iq4_xs(const block_iq4_xs *w, const block_q8_K *x, int n);
/* n (a multiple of QK_K) floats into n / QK_K activation blocks. */
void quantize_row_q8_K(block_q8_K *out, const float *x, int64_t n);
/* True for the types whose activations are quantized in 256-element blocks (block_q8_K). */
bool dtype_uses_q8_K(dtype t);
/* Dot product of one stored row of any block type with its quantized activations (xq for the
 * 32-element types, xk for the 256-element ones): the scalar kernel of that type. */
float dot_row(const void *w, dtype t, const block_q8_act *xq, const block_q8_K *xk, int n);

#endif
