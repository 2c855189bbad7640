/* x86: the x86-64 kernels behind matmul (internal to engine/matmul.c, engine/forward.c and the
 * tests): AVX2+FMA+F16C in x86/avx2.c, AVX-512 VNNI and zmm tiles in x86/avx512.c. Compiled with
 * function-level target attributes, so the library still runs on any x86-64 (and builds
 * elsewhere: then mm_avx2_supported() is false and nothing else is called).
 * Determinism: for F32/F16/BF16 every (weight row, activation row) pair is accumulated in its
 * own 8-lane register, in increasing k, with one fixed horizontal reduction at the end, whether
 * it is computed in a 4x2 register tile or alone and however K is chunked; so an output never
 * depends on the tile it fell in, on T, or on the thread count. Results differ from the scalar
 * kernels by float rounding only. For Q8_0/Q4_0 the block sums are exact integers and the float
 * steps per block are the scalar kernel's (one pair per vector lane): bit-identical to
 * dot_q8_0/dot_q4_0 (for finite F16 scales). */
#ifndef LS_X86_H
#define LS_X86_H

#include "tensor.h"

#include <stdbool.h>

/* True when the CPU reports AVX2, FMA and F16C (checked once). */
bool mm_avx2_supported(void);

/* True when the CPU (and the OS) also give AVX-512 F/BW/VL with VNNI (checked once) and
 * mm_avx512_allow has not turned them off. Then the kernels for several activation rows (from
 * 2, 3 or more by type and CPU: matmul.c's xr, mm_float_zmm_min) use AVX-512: Q8_0/Q4_0
 * vpdpbusd on activations repacked by mm_repack_x4 (exact integer block sums, the scalar
 * kernel's float steps per block); F32/F16/BF16 512-bit FMAs that each do two pairs' AVX2
 * operations (lanes 0-7 and 8-15). Q4_0 with one activation row (decode; up to MM_DEC_T_MAX
 * with --repack's copy) uses VNNI decode tiles of 16 weight rows on xq as it is. The results
 * are the AVX2 kernels' bits. */
bool mm_avx512_supported(void);
/* True when mm_avx512_supported() and t is Q4_1, Q5_0, Q5_1 or IQ4_NL: then mm_rows_x86 takes t as
 * Q4_0 (the VNNI decode tiles up to MM_DEC_T_MAX activation rows, else the VNNI tiles on xr: 16
 * weight rows where x86_rows16 says, 4 x 4 otherwise), with the bits of their scalar twins
 * (quant_dot.c). */
bool mm_q32_vnni(dtype t);
/* Whether T activation rows of type t take the 16-row VNNI tiles of x86/avx512.c (only where
 * mm_avx512_supported()): Q4_0 and Q8_0 from 2 rows, except Q8_0 at exactly 16, which fill its
 * 4 x 4 tiles; IQ4_NL past MM_DEC_T_MAX; Q4_1, Q5_0 and Q5_1 past 16, below which the fifth
 * bits' masks and the mins cost more than the tiles save. The kernels, matmul's repacking of the
 * activations and mm_row_tiling's cost shape all ask it. x86_rows16_min(t): the fewest rows that
 * take them, 0 for a type that has none. */
bool x86_rows16(dtype t, int T);
int x86_rows16_min(dtype t);
/* True when mm_avx512_supported(), the CPU has AVX512_BF16 and its vdpbf16ps passed a probe of
 * the semantics dot_bf16_pairs (matmul.h) gives (checked once). */
bool mm_avx512bf16_supported(void);
/* The CPUID answer alone (with mm_avx512_supported()), probe or not: tests hold the two equal. */
bool mm_avx512bf16_cpuid(void);
/* x86/bf16_avx512.c: rows [r0, r1) of BF16 weights against T activation rows already in BF16
 * (xb, T x n), dot_bf16_pairs's bits; only where mm_avx512bf16_supported(). */
void x86_rows_bf16_dot(float *out, const uint16_t *xb, const tensor *w, int T, int r0, int r1);
/* f32_to_bf16 over n values (AVX-512 where mm_avx512bf16_supported(); the same bits). */
void x86_round_bf16(uint16_t *out, const float *x, int64_t n);
/* True when mm_avx2_supported() and t is Q4_1, Q5_0, Q5_1 or IQ4_NL: then mm_rows_x86 takes t
 * (with AVX-512 VNNI as mm_q32_vnni says; else the AVX2 lanes tiles on xr, or without xr the
 * passes of x86/quant_avx2_q32.c). */
bool mm_q32_x86(dtype t);
/* mm_q32_vnni's types with up to this many activation rows (decode, small batched steps) run
 * the VNNI decode tiles on xq when mm_avx512_supported(), and need no repacked xr; Q4_0 does
 * for one row (and up to this many on --repack's copy), its 16-row tiles from 2. */
#define MM_DEC_T_MAX 3
/* The shapes of the Q4_0 VNNI decode tile: weight rows per tile (8, 16 or 32; 32 only for one
 * activation row, T = 2-3 then take 16) and how many tiles ahead each tile prefetches its rows
 * into L2 (0: no prefetch). Every variant gives the same bits (dot_q4_0's); only the speed
 * depends on the CPU. */
typedef struct {
    int rows, pf_tiles;
    int hint; /* the prefetch: 0 into L2 (T1), 1 into L1 (T0), 2 non-temporal (NTA); 16 rows */
} mm_dec_shape;
#define MM_DEC_TILES 11
extern const mm_dec_shape mm_dec_tiles[MM_DEC_TILES];
/* The variant this CPU runs: a table keyed by CPUID vendor, family and model (x86/avx512.c),
 * variant 0 for CPUs not in it. Checked once; thread-safe. */
int mm_dec_tile_default(void);
/* The variant matmul uses now: mm_set_dec_tile's, else mm_dec_tile_default(). */
int mm_dec_tile(void);
/* Process-wide override for tests and benchmarks (-1 or out of range: back to the default);
 * flip it between matmul calls, not during one. */
void mm_set_dec_tile(int variant);
/* The K chunk (elements) of the zmm float tiles for T > 2: each chunk of 8 weight rows is
 * converted once into a buffer that a group of TG activation rows reads. 512 keeps it in an
 * Intel L1; Zen 4 runs faster on whole rows (up to 4096). The AVX2 float tiles take it too
 * (F32 at most 512). Chosen per CPU from the same table as
 * the decode tile; the results are the same bits whatever the chunk. mm_set_float_kc overrides
 * it for tests (a multiple of 8 in 8..4096; anything else: back to the CPU's); flip it between
 * matmul calls. */
int mm_float_kc(void);
void mm_set_float_kc(int kc);
/* The fewest activation rows for which type's matmul (F32, F16 or BF16) takes the zmm float
 * tiles rather than the AVX2 ones (the same bits): from the same table; 2 where the CPU has two
 * 512-bit FMA ports. mm_set_float_zmm_min overrides it for every type (tests; 0: back to the
 * CPU's); flip it between matmul calls. */
int mm_float_zmm_min(dtype type);
void mm_set_float_zmm_min(int t);
/* The fewest activation rows (of a group of TG) for which the zmm float tiles convert each K
 * chunk of the weights into a buffer first; below it (and always for 1-2 rows) each tile
 * converts its weights in registers. 3 on the Intel host and Zen 4; on Zen 5 the buffer's
 * extra pass costs more than it saves below 32 (F32) or 64 (F16, BF16) rows. The same bits
 * either way. mm_set_float_buf_min overrides it for every type (tests; 0: back to the CPU's);
 * flip it between matmul calls. */
int mm_float_buf_min(dtype type);
void mm_set_float_buf_min(int t);
/* With AVX-512 VNNI, the activation rows below which Q4_K, Q5_K and Q6_K take the AVX2 lanes
 * tiles (quant_avx2.h qdot_avx2_lanes_min, from 3, 6 and 12 rows) rather than the VNNI kernels:
 * 0 (never) but where the CPU table says otherwise (Zen 5: 24 for Q4_K, 16 for Q5_K). The same
 * bits either way. */
int mm_kq_lanes_max(dtype type);
/* With AVX-512 VNNI, the activation rows from which the K-quants' VNNI tiles take over from
 * their decode kernels, where the CPU table sets it (Zen 5: 10 for Q6_K); 0: quant_avx512.c's
 * default. The same bits either way. */
int mm_kq_tile_min(dtype type);
/* Whether the AVX2 float tiles for one activation row (F32, F16, BF16 decode) take weight rows a
 * quarter of the thread's share apart (rows r, r + q, r + 2q, r + 3q: four long sequential
 * streams) rather than four consecutive rows, whose short streams the CPU's prefetchers follow
 * less well. From the CPU table (Zen 5: yes); the same bits either way. mm_set_float_dec_spread
 * overrides it (tests: 0 or 1; -1: back to the CPU's); flip it between matmul calls. */
bool mm_float_dec_spread(void);
void mm_set_float_dec_spread(int on);
/* The fewest activation rows for which the AVX2 float tiles (F16, BF16; x86_simd.h
 * rows_float_block) convert each K chunk of the weights into an F32 buffer once rather than in
 * every tile; 0: never. From the CPU table (Zen 1: 3, where vcvtph2ps is slow; Zen 5: 64, when
 * AVX-512 is off; elsewhere 0).
 * The same bits either way. mm_set_float_avx2_buf_min overrides it (tests: 0 never, >= 1;
 * -1: back to the CPU's); flip it between matmul calls. */
int mm_float_avx2_buf_min(void);
void mm_set_float_avx2_buf_min(int t);
/* Whether, over a K chunk that several activation tiles share, only the first AVX2 float tile
 * prefetches the next weight rows (the others' prefetches are of lines already on their way).
 * From the CPU table (Zen 1: yes); the same bits either way. mm_set_float_pf_once overrides it
 * (0 or 1; -1: back to the CPU's); flip it between matmul calls. */
bool mm_float_pf_once(void);
void mm_set_float_pf_once(int on);
/* Weights repacked for the decode kernels (the opt-in --repack). Q4_0 and IQ4_NL: each group of
 * 16 rows becomes one stream of 288-byte block groups (16 scales, then 16 x 16 nibble bytes),
 * so a tile reads one contiguous stream, with no inserts and no gather. The K-quants and IQ4_XS:
 * each group of 8 rows becomes one stream of its rows' blocks (quant_avx512.h
 * qdot_avx512_repack). Only whole groups are repacked (the rest of a tensor is read in place);
 * the results are the in-place kernels' bits. The AVX2 decode reads the Q4_0/IQ4_NL layout too
 * (x86/avx2.c tile_packed16), and Q4_K/Q5_K/Q6_K's (x86/quant_avx2.c rows8_k). The bytes a
 * tensor's copy takes (0 when it has no whole group, or is none of those types, or the CPU lacks
 * AVX2, or AVX-512 VNNI for Q2_K, Q3_K and IQ4_XS: then there is nothing to gain), and the copy
 * itself into dst (caller allocates those bytes, any alignment; set w->packed = dst afterwards).
 * Pure functions of w; thread-safe. */
#define MM_DEC_PACK_BYTES (16 * sizeof(uint16_t) + 16 * QK / 2)
size_t mm_dec_packed_bytes(const tensor *w);
void mm_dec_repack(void *dst, const tensor *w);
/* Process-wide switch (default on) so that tests can check the AVX2 kernels on AVX-512 CPUs;
 * flip it between matmul calls, not during one. */
void mm_avx512_allow(bool on);

/* The Q8 blocks of 4 activation rows (rows past T are zero), one block position, laid out for
 * the VNNI kernels: a 16-byte broadcast of q[c] puts dword c of the 4 rows in every 128-bit
 * lane. */
typedef struct q8_act_x4 {
    int32_t q[8][4]; /* q[c][t]: bytes 4c .. 4c + 3 of row t's quants */
    float d[4];      /* row t's scale */
    int32_t s[4];    /* row t's sum of quants (exact) */
} q8_act_x4;

/* xr (nb) for rows [t0, t0 + 4) of xq (T, nb); rows >= T are zero. */
void mm_repack_x4(q8_act_x4 *xr, const block_q8_act *xq, int T, int t0, int nb);

/* out (T, n_out), columns [r0, r1) only: out[t][r] = dot(w row r, x row t), w->ne = {n_in,
 * n_out}. x (T, n_in) F32 for F32/F16/BF16 weights; xq (T, n_in / QK) for Q8_0/Q4_0 (and the
 * types of mm_q32_x86), and xr (ceil(T / 4), n_in / QK) the same through mm_repack_x4 or NULL.
 * With xr the VNNI kernels run when mm_avx512_supported() (Q4_0's read xq too), else the AVX2
 * lanes tiles; without it the AVX2 8x1 and 4x2 tiles (but mm_q32_vnni's types with T <=
 * MM_DEC_T_MAX, and Q4_0 as MM_DEC_T_MAX says, run the VNNI decode tiles when
 * mm_avx512_supported()); F32/F16/BF16 use the zmm tiles from mm_float_zmm_min(type) rows when
 * mm_avx512_supported() (and T >= 2). The results are the same bits whichever runs. */
void mm_rows_x86(float *out, const float *x, const block_q8_act *xq, const q8_act_x4 *xr,
                 const tensor *w, int T, int r0, int r1);

/* Same result as quantize_row_q8_act, bit for bit (same rounding, same scale): out (n / QK)
 * from x (n), n a multiple of QK. */
void quantize_row_q8_act_avx2(block_q8_act *out, const float *x, int64_t n);

/* The activation rows of the next tile, with left rows to go in tiles of at most max: as even as
 * max allows (16 in tiles of 6: 6, 5, 5), since filling each tile would leave a short last one
 * (6, 6, 4) that loads the same weights for fewer products. */
static inline int mm_even_tile(int left, int max) {
    const int tiles = (left + max - 1) / max;
    return (left + tiles - 1) / tiles;
}

#endif
