/* matmul: out (T, n_out) = x (T, n_in) @ W^T for W of any stored type. Holds the scalar
 * kernels (the readable reference and the test oracle) and the dispatch to the SIMD kernels
 * of engine/x86/ and engine/arm/ when the CPU has them. Each output element is one dot product
 * of a weight row with an activation row, accumulated in a fixed order, so the result never
 * depends on the thread count or on which other rows share the call. Never allocates: the
 * quantized-activation buffer comes from mm_scratch. */
#include "matmul.h"
#include "common.h"
#include "arm/neon.h"
#include "x86/quant_avx2.h"
#include "x86/quant_avx512.h"
#include "x86/x86.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

static atomic_bool force_scalar; /* set by tests and benchmarks; read once per matmul call */

void mm_force_scalar(bool on) { atomic_store_explicit(&force_scalar, on, memory_order_relaxed); }

void mm_force_avx2(bool on) { mm_avx512_allow(!on); }

bool mm_using_simd(void) {
    return !atomic_load_explicit(&force_scalar, memory_order_relaxed) &&
           (mm_avx2_supported() || mm_neon_supported());
}

const char *mm_kernels(void) {
    if (!mm_using_simd()) return "scalar";
    if (mm_neon_supported()) return "neon";
    return mm_avx512_supported() ? "avx2+avx512" : "avx2";
}

int mm_scratch_init(mm_scratch *s, int max_T, int max_n_in) {
    size_t n;
    s->max_T = max_T;
    s->max_n_in = max_n_in;
    if (ls_mul_size((size_t)max_T * (size_t)((max_n_in + QK - 1) / QK), sizeof(block_q8_act), &n))
        return -1;
    s->xq = ls_alloc(n);
    s->xr = NULL;
    s->xk = NULL;
    s->xkr = NULL;
    s->xb = NULL;
    if (!s->xq) return -1;
    if (ls_mul_size((size_t)max_T * (size_t)((max_n_in + QK_K - 1) / QK_K), sizeof(block_q8_K), &n))
        goto fail;
    s->xk = ls_alloc(n);
    if (!s->xk) goto fail;
    if (ls_mul_size((size_t)((max_T + 3) / 4) * (size_t)((max_n_in + QK - 1) / QK),
                    sizeof(q8_act_x4), &n))
        goto fail;
    s->xr = ls_alloc(n);
    if (!s->xr) goto fail;
    if (ls_mul_size((size_t)((max_T + 3) / 4) * (size_t)((max_n_in + QK_K - 1) / QK_K),
                    sizeof(q8_K_x4), &n))
        goto fail;
    s->xkr = ls_alloc(n);
    if (!s->xkr) goto fail;
    /* untouched (so not resident) unless mm_bf16_dot is on */
    if (ls_mul_size((size_t)max_T * (size_t)max_n_in, sizeof(uint16_t), &n)) goto fail;
    s->xb = ls_alloc(n);
    if (!s->xb) goto fail;
    return 0;
fail:
    mm_scratch_free(s);
    return -1;
}

void mm_scratch_free(mm_scratch *s) {
    free(s->xq);
    free(s->xr);
    free(s->xk);
    free(s->xkr);
    free(s->xb);
    s->xq = NULL;
    s->xr = NULL;
    s->xk = NULL;
    s->xkr = NULL;
    s->xb = NULL;
}

float dot_f32(const float *w, const float *x, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += w[i] * x[i];
    return sum;
}

float dot_f16(const uint16_t *w, const float *x, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += f16_to_f32(w[i]) * x[i];
    return sum;
}

float dot_bf16(const uint16_t *w, const float *x, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += bf16_to_f32(w[i]) * x[i];
    return sum;
}

/* A BF16 input or an F32 value as vdpbf16ps reads it: denormals as zero (of their sign). */
static float daz(float f) {
    return fabsf(f) < FLT_MIN ? copysignf(0.0f, f) : f;
}

float bf16_pair_step(float acc, uint16_t w0, uint16_t x0, uint16_t w1, uint16_t x1) {
    const float a = daz(fmaf(daz(bf16_to_f32(w1)), daz(bf16_to_f32(x1)), daz(acc)));
    return daz(fmaf(daz(bf16_to_f32(w0)), daz(bf16_to_f32(x0)), a));
}

float dot_bf16_pairs(const uint16_t *w, const uint16_t *x, int n) {
    float lane[16] = {0};
    for (int k = 0; k < n; k += 32)
        for (int l = 0; l < 16; l++)
            lane[l] = bf16_pair_step(lane[l], w[k + 2 * l], x[k + 2 * l], w[k + 2 * l + 1],
                                     x[k + 2 * l + 1]);
    for (int h = 8; h >= 1; h /= 2)
        for (int l = 0; l < h; l++) lane[l] += lane[l + h];
    return lane[0];
}

static atomic_bool bf16_dot_on;

bool mm_bf16_dot_supported(void) { return mm_avx512bf16_supported(); }

bool mm_set_bf16_dot(bool on) {
    if (on && !mm_bf16_dot_supported()) return false;
    atomic_store_explicit(&bf16_dot_on, on, memory_order_relaxed);
    return true;
}

bool mm_bf16_dot(void) {
    /* off again while mm_avx512_allow(false) stands in for a CPU without AVX-512 */
    return atomic_load_explicit(&bf16_dot_on, memory_order_relaxed) && mm_bf16_dot_supported();
}

/* Quantized kernels: an exact integer sum per block, scaled once per block. */
float dot_q8_0(const block_q8_0 *w, const block_q8_act *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < QK; j++) isum += (int32_t)w[b].qs[j] * (int32_t)x[b].qs[j];
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d);
    }
    return sum;
}

float dot_q4_0(const block_q4_0 *w, const block_q8_act *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < QK / 2; j++) {
            isum += ((w[b].qs[j] & 0x0f) - 8) * (int32_t)x[b].qs[j];
            isum += ((w[b].qs[j] >> 4) - 8) * (int32_t)x[b].qs[j + QK / 2];
        }
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d);
    }
    return sum;
}

bool dtype_uses_q8_K(dtype t) {
    return t == DT_Q2_K || t == DT_Q3_K || t == DT_Q4_K || t == DT_Q5_K || t == DT_Q6_K ||
           t == DT_IQ4_XS;
}

/* The types whose activations are quantized in 32-element blocks (block_q8_act). */
static bool uses_q8_act(dtype t) {
    return t == DT_Q8_0 || t == DT_Q4_0 || t == DT_Q4_1 || t == DT_Q5_0 || t == DT_Q5_1 ||
           t == DT_IQ4_NL;
}

float dot_row(const void *w, dtype t, const block_q8_act *xq, const block_q8_K *xk, int n) {
    switch (t) {
    case DT_Q8_0: return dot_q8_0(w, xq, n);
    case DT_Q4_0: return dot_q4_0(w, xq, n);
    case DT_Q4_1: return dot_q4_1(w, xq, n);
    case DT_Q5_0: return dot_q5_0(w, xq, n);
    case DT_Q5_1: return dot_q5_1(w, xq, n);
    case DT_IQ4_NL: return dot_iq4_nl(w, xq, n);
    case DT_Q2_K: return dot_q2_K(w, xk, n);
    case DT_Q3_K: return dot_q3_K(w, xk, n);
    case DT_Q4_K: return dot_q4_K(w, xk, n);
    case DT_Q5_K: return dot_q5_K(w, xk, n);
    case DT_Q6_K: return dot_q6_K(w, xk, n);
    case DT_IQ4_XS: return dot_iq4_xs(w, xk, n);
    default: return NAN; /* float types: dot_f32/f16/bf16 */
    }
}

/* The types the SIMD kernels of x86/avx2.c, x86/avx512.c and arm/neon.c compute (with
 * AVX-512 VNNI also Q4_1, Q5_0, Q5_1 and IQ4_NL: mm_q32_vnni); the other block types go to
 * x86/quant_avx2*.c or arm/neon_quant.c (qdot_avx2_has, qdot_neon_has). */
static bool simd_type(dtype t) {
    return t == DT_F32 || t == DT_F16 || t == DT_BF16 || t == DT_Q8_0 || t == DT_Q4_0 ||
           mm_q32_x86(t);
}

typedef struct {
    float *out;
    const float *x;
    const block_q8_act *xq;
    const block_q8_K *xk; /* the activations in 256-element blocks, or NULL */
    const q8_act_x4 *xr;  /* xq repacked for the VNNI kernels, or NULL */
    const q8_K_x4 *xkr;   /* xk repacked for the AVX2 lanes tiles, or NULL */
    const uint16_t *xb;   /* the activations in BF16 for mm_bf16_dot, or NULL */
    const tensor *w;
    int T;
    bool simd;
} mm_job;

/* What a share [r0, r1) of a SIMD product reads and writes, declared to ThreadSanitizer, which
 * does not instrument the kernels (engine/common.h): every form of the activations the call
 * prepared, and the share's columns of out. */
static void mm_footprint(const mm_job *j, int r0, int r1) {
    const size_t n_in = (size_t)j->w->ne[0], n_out = (size_t)j->w->ne[1], T = (size_t)j->T;
    const size_t groups = (T + 3) / 4; /* xr and xkr hold the rows by groups of 4 */
    LS_TSAN_READ(j->x, T * n_in * sizeof *j->x);
    if (j->xq) LS_TSAN_READ(j->xq, T * (n_in / QK) * sizeof *j->xq);
    if (j->xr) LS_TSAN_READ(j->xr, groups * (n_in / QK) * sizeof *j->xr);
    if (j->xk) LS_TSAN_READ(j->xk, T * (n_in / QK_K) * sizeof *j->xk);
    if (j->xkr) LS_TSAN_READ(j->xkr, groups * (n_in / QK_K) * sizeof *j->xkr);
    if (j->xb) LS_TSAN_READ(j->xb, T * n_in * sizeof *j->xb);
    for (size_t t = 0; t < T; t++)
        LS_TSAN_WRITE(j->out + t * n_out + r0, (size_t)(r1 - r0) * sizeof *j->out);
}

/* Thread ith's share: a contiguous run of output columns (weight rows), rounded to whole
 * 4-row tiles; the reduction dimension is never split. */
static void mm_rows(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const int n_in = (int)j->w->ne[0], n_out = (int)j->w->ne[1];
    const int per = ((n_out + nth - 1) / nth + 3) & ~3;
    const int r0 = ith * per < n_out ? ith * per : n_out;
    const int r1 = r0 + per < n_out ? r0 + per : n_out;
    if (j->simd) {
        if (r0 >= r1) return;
        mm_footprint(j, r0, r1);
        if (j->xb) { /* x86/bf16_avx512.c */
            x86_rows_bf16_dot(j->out, j->xb, j->w, j->T, r0, r1);
            return;
        }
        /* x86/quant_avx512.c: the K-quant VNNI kernels, but where xkr is set for the lanes */
        if (qdot_avx512_has(j->w->type) && !j->xkr)
            qdot_rows_avx512(j->out, j->xk, j->w, j->T, r0, r1);
        else if (!simd_type(j->w->type) && mm_neon_supported()) /* arm/neon_quant.c */
            qdot_rows_neon(j->out, j->xq, j->xk, j->w, j->T, r0, r1);
        else if (!simd_type(j->w->type)) /* x86/quant_avx2.c, x86/quant_avx2_k2.c */
            qdot_rows_avx2(j->out, j->xq, j->xk, j->xkr, j->w, j->T, r0, r1);
        else if (mm_neon_supported())
            mm_rows_neon(j->out, j->x, j->xq, j->w, j->T, r0, r1);
        else
            mm_rows_x86(j->out, j->x, j->xq, j->xr, j->w, j->T, r0, r1);
        return;
    }
    for (int r = r0; r < r1; r++) {
        const void *row = tensor_row(j->w, r);
        for (int t = 0; t < j->T; t++) {
            float *o = &j->out[(size_t)t * n_out + r];
            const float *xt = j->x + (size_t)t * n_in;
            const block_q8_act *xqt = j->xq ? j->xq + (size_t)t * (n_in / QK) : NULL;
            const block_q8_K *xkt = j->xk ? j->xk + (size_t)t * (n_in / QK_K) : NULL;
            switch (j->w->type) {
            case DT_F32: *o = dot_f32(row, xt, n_in); break;
            case DT_F16: *o = dot_f16(row, xt, n_in); break;
            case DT_BF16:
                *o = j->xb ? dot_bf16_pairs(row, j->xb + (size_t)t * n_in, n_in)
                           : dot_bf16(row, xt, n_in);
                break;
            default: *o = dot_row(row, j->w->type, xqt, xkt, n_in); break;
            }
        }
    }
}

/* A row quantizer to block_q8_act: quantize_row_q8_act or its twin for this ISA. */
typedef void (*q8_act_quantizer)(block_q8_act *out, const float *x, int64_t n);

/* The activation quantizer matmul uses: each ISA's own when simd, else the scalar one. All of
 * them write the same bytes; the SIMD ones are only faster. */
static q8_act_quantizer act_quantizer(bool simd) {
    if (simd && mm_avx2_supported()) return quantize_row_q8_act_avx2;
    if (simd && mm_neon_supported()) return quantize_row_q8_act_neon;
    return quantize_row_q8_act;
}

/* The same for block_q8_K: quantize_row_q8_K or its AVX2 twin (x86/quant_avx2.c). */
typedef void (*q8_K_quantizer)(block_q8_K *out, const float *x, int64_t n);

static q8_K_quantizer act_quantizer_K(bool simd) {
    return simd && mm_avx2_supported() ? quantize_row_q8_K_avx2 : quantize_row_q8_K;
}

typedef struct {
    block_q8_act *xq;
    q8_act_x4 *xr;  /* also repack into this (groups of 4 rows), or NULL */
    block_q8_K *xk; /* instead of xq: 256-element blocks */
    q8_K_x4 *xkr;   /* also repack xk into this (groups of 4 rows), or NULL */
    const float *x;
    int T, n_in;
    q8_act_quantizer quantize;  /* for xq */
    q8_K_quantizer quantize_K; /* for xk */
} quant_job;

/* What quant_rows does with group g (rows 4g .. 4g + 3), declared to ThreadSanitizer for the
 * SIMD quantizers and repackers it does not instrument (engine/common.h). */
static void quant_footprint(const quant_job *j, int g) {
    const size_t n_in = (size_t)j->n_in, t0 = 4 * (size_t)g;
    const size_t nt = (size_t)j->T - t0 < 4 ? (size_t)j->T - t0 : 4;
    LS_TSAN_READ(j->x + t0 * n_in, nt * n_in * sizeof *j->x);
    if (j->xk) LS_TSAN_WRITE(j->xk + t0 * (n_in / QK_K), nt * (n_in / QK_K) * sizeof *j->xk);
    if (j->xkr) LS_TSAN_WRITE(j->xkr + (size_t)g * (n_in / QK_K), n_in / QK_K * sizeof *j->xkr);
    if (j->xq) LS_TSAN_WRITE(j->xq + t0 * (n_in / QK), nt * (n_in / QK) * sizeof *j->xq);
    if (j->xr) LS_TSAN_WRITE(j->xr + (size_t)g * (n_in / QK), n_in / QK * sizeof *j->xr);
}

/* Work goes by groups of 4 rows, so a thread repacks the rows it has just quantized. */
static void quant_rows(void *arg, int ith, int nth) {
    const quant_job *j = arg;
    const int nb = j->n_in / QK;
    for (int g = ith; 4 * g < j->T; g += nth) {
        quant_footprint(j, g);
        for (int t = 4 * g; j->xk && t < 4 * g + 4 && t < j->T; t++)
            j->quantize_K(j->xk + (size_t)t * (j->n_in / QK_K), j->x + (size_t)t * j->n_in,
                          j->n_in);
        if (j->xk && j->xkr)
            mm_repack_K_x4(j->xkr + (size_t)g * (j->n_in / QK_K), j->xk, j->T, 4 * g,
                           j->n_in / QK_K);
        for (int t = 4 * g; j->xq && t < 4 * g + 4 && t < j->T; t++)
            j->quantize(j->xq + (size_t)t * nb, j->x + (size_t)t * j->n_in, j->n_in);
        if (j->xq && j->xr) mm_repack_x4(j->xr + (size_t)g * nb, j->xq, j->T, 4 * g, nb);
    }
}

/* The fewest activation rows for which weights of type t take the tiles on repacked activations
 * (xr), or 0 where none does. With AVX-512 VNNI: the 16-row tiles from x86_rows16_min (Q4_0's
 * beat the decode tiles from 2 rows: T = 3 88-103 -> 108-113 GMAC/s, T = 2 75-80 -> 78-81,
 * bench-matmul, one core, from DRAM, Zen 5; Q8_0's its AVX2 tiles from 2, T = 2 24-30 -> 33-47,
 * but not for one row, 23-24 -> 17-21), and for mm_q32_vnni's types the 4 x 4 tiles from
 * MM_DEC_T_MAX + 1 (the decode tiles read xq up to there; IQ4_NL's 16-row tiles lost to them at
 * T = 3, 93-97 -> 87-88, T = 2 72-73 -> 67-69). With AVX2 alone: the 32-element types' lanes
 * tiles from 3 rows (2 rows as 4 would waste half of them). matmul picks the kernels by it and
 * mm_row_tiling reports it. */
static int xr_tile_min(dtype t) {
    if (mm_avx512_supported()) return mm_q32_vnni(t) ? MM_DEC_T_MAX + 1 : x86_rows16_min(t);
    return (t == DT_Q4_0 || t == DT_Q8_0 || mm_q32_x86(t)) && mm_avx2_supported() ? 3 : 0;
}

void mm_row_tiling(dtype t, int *exact, int *group) {
    *exact = 1, *group = 1;
    if (!mm_using_simd()) return;
    int min = xr_tile_min(t);
    /* the 16-row tiles take rows one by one: where they take every T the repacked activations
     * serve (Q4_0, Q8_0, IQ4_NL), so does the kernel */
    if (min > 0 && mm_avx512_supported() && x86_rows16_min(t) == min) return;
    if (min == 0) min = qdot_avx2_lanes_min(t);
    if (min > 0) *exact = min - 1, *group = 4;
}

static int64_t inline_macs = 1 << 18; /* see matmul(); tests set 0 to exercise the pool */

void mm_set_inline_macs(int64_t macs) { inline_macs = macs; }
int64_t mm_inline_macs(void) { return inline_macs; }

void matmul(float *out, const float *x, const tensor *w, int T, mm_scratch *s, pool *p) {
    assert(T >= 0 && T <= s->max_T && w->ne[0] <= s->max_n_in); /* the scratch's size */
    const bool simd = mm_using_simd() && (simd_type(w->type) || qdot_avx2_has(w->type) ||
                                          qdot_neon_has(w->type));
    mm_job j = {out, x, NULL, NULL, NULL, NULL, NULL, w, T, simd};
    if (w->type == DT_BF16 && mm_bf16_dot() && w->ne[0] % 32 == 0) {
        LS_TSAN_READ(x, (size_t)T * w->ne[0] * sizeof *x); /* see mm_footprint */
        LS_TSAN_WRITE(s->xb, (size_t)T * w->ne[0] * sizeof *s->xb);
        x86_round_bf16(s->xb, x, (int64_t)T * w->ne[0]); /* f32_to_bf16's bits, any path */
        j.xb = s->xb;
    } else if (dtype_uses_q8_K(w->type)) {
        const int min = qdot_avx2_lanes_min(w->type);
        const bool lanes = simd && min > 0 && T >= min && T < qdot_avx2_lanes_max(w->type);
        quant_job q = {NULL, NULL, s->xk, lanes ? s->xkr : NULL, x, T, (int)w->ne[0], NULL,
                       act_quantizer_K(simd)};
        if (T < 2 * pool_size(p))
            quant_rows(&q, 0, 1);
        else
            pool_run(p, quant_rows, &q);
        j.xk = s->xk;
        j.xkr = q.xkr;
    } else if (uses_q8_act(w->type)) {
        /* fewer rows than xr_tile_min need no repacking: the decode tiles read xq, and
         * the AVX2 4 x 2 and 8 x 1 tiles too */
        const int min = xr_tile_min(w->type);
        q8_act_x4 *xr = simd && min > 0 && T >= min ? s->xr : NULL;
        quant_job q = {s->xq, xr, NULL, NULL, x, T, (int)w->ne[0], act_quantizer(simd), NULL};
        /* a few rows are quicker to quantize here than to hand to the pool */
        if (T < 2 * pool_size(p))
            quant_rows(&q, 0, 1);
        else
            pool_run(p, quant_rows, &q);
        j.xq = s->xq;
        j.xr = q.xr;
    }
    /* Below about a quarter of a million multiply-adds, waking the pool costs more than the
     * work (and far more when another process holds the other core); the split by output rows
     * gives the same bits on one thread as on many. */
    if ((int64_t)w->ne[0] * w->ne[1] * T < inline_macs)
        mm_rows(&j, 0, 1);
    else
        pool_run(p, mm_rows, &j);
}
