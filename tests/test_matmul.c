/* test_matmul: the scalar matmul path equals its row kernels bit for bit; the SIMD path equals
 * its scalar twin within a tight tolerance; both are bit-identical whatever the thread count and
 * the number of rows in the block; the row kernels agree with double-precision sums over the
 * dequantized operands. Sizes are deliberately awkward (not multiples of the vector width, the
 * block or the register tile). */
#include "check.h"
#include "arm/neon.h"
#include "forward.h"
#include "matmul.h"
#include "x86/attention_avx2.h"
#include "x86/attention_avx512.h"
#include "x86/quant_avx2.h"
#include "x86/x86.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 23) - 1.0f;
}

/* Builds an (n_out, n_in) weight tensor of type t from random values (random codes and scales
 * for the types quantize_row cannot write); caller frees t->data. */
static tensor make_weights(dtype t, int n_in, int n_out, unsigned seed) {
    float *w = malloc((size_t)n_in * n_out * sizeof *w);
    uint8_t *data = malloc(dtype_row_bytes(t, n_in) * n_out + 64);
    unsigned s = seed;
    if (quantize_row(data, (float[QK_K]){0}, t, dtype_block_elems(t)) != 0) {
        size_t nbytes = dtype_row_bytes(t, n_in) * n_out, bb = dtype_block_bytes(t);
        for (size_t i = 0; i < nbytes; i++) data[i] = (uint8_t)(frand(&s) * 128.0f + 128.0f);
        for (size_t b = 0; b < nbytes / bb; b++)
            for (const int *f = dtype_f16_fields(t); *f >= 0; f++) {
                uint16_t h = f32_to_f16(frand(&s) * 0.05f);
                memcpy(data + b * bb + *f, &h, 2);
            }
        free(w);
        return (tensor){data, t, 2, {n_in, n_out, 1, 1}, NULL};
    }
    for (int i = 0; i < n_in * n_out; i++) w[i] = frand(&s);
    for (int r = 0; r < n_out; r++)
        quantize_row(data + dtype_row_bytes(t, n_in) * r, w + (size_t)r * n_in, t, n_in);
    free(w);
    tensor ten = {data, t, 2, {n_in, n_out, 1, 1}, NULL};
    return ten;
}

/* True when matmul takes w's BF16 rows through dot_bf16_pairs (mm_bf16_dot). */
static bool bf16_pairs(const tensor *w) {
    return w->type == DT_BF16 && mm_bf16_dot() && w->ne[0] % 32 == 0;
}

static float row_kernel(const tensor *w, int r, const float *x, const block_q8_act *xq,
                        const block_q8_K *xk, int n) {
    const void *row = tensor_row(w, r);
    if (bf16_pairs(w)) {
        uint16_t *xb = malloc((size_t)n * sizeof *xb);
        quantize_row(xb, x, DT_BF16, n);
        const float v = dot_bf16_pairs(row, xb, n);
        free(xb);
        return v;
    }
    switch (w->type) {
    case DT_F32: return dot_f32(row, x, n);
    case DT_F16: return dot_f16(row, x, n);
    case DT_BF16: return dot_bf16(row, x, n);
    case DT_Q8_0: return dot_q8_0(row, xq, n);
    case DT_Q4_0: return dot_q4_0(row, xq, n);
    default: return dot_row(row, w->type, xq, xk, n);
    }
}

/* out (T, n_out) through matmul on a pool of `threads`, with the scalar or the SIMD kernels. */
static void run(float *out, const float *x, const tensor *w, int T, mm_scratch *ms, int threads,
                bool scalar) {
    pool *p = pool_create(threads);
    mm_force_scalar(scalar);
    matmul(out, x, w, T, ms, p);
    mm_force_scalar(false);
    pool_destroy(p);
}

/* Checks one weight type and shape on both paths:
 *  - scalar path: every output equals its row kernel bit for bit, whatever the thread count
 *    and the block (T rows vs the row alone), and is close to the double-precision sum;
 *  - SIMD path (when the CPU has it): bit-identical across 1/2/3 threads and between the row in
 *    a block of T and the row alone (the determinism contract of matmul.h), and within
 *    SIMD_TOL * sum|w * x| of the scalar twin for F32/F16/BF16 (float rounding only: the vector
 *    kernels sum 8 lanes and then reduce); for Q8_0/Q4_0 equal to it bit for bit (the block
 *    sums are exact integers and the float steps per block are the scalar kernel's). */
#define SIMD_TOL 1e-5
static void test_type(dtype t, int n_in, int n_out, int T) {
    tensor w = make_weights(t, n_in, n_out, 11u + (unsigned)n_in + (unsigned)n_out);
    float *x = malloc((size_t)T * n_in * sizeof *x);
    float *out = malloc((size_t)T * n_out * sizeof *out);
    float *simd = malloc((size_t)T * n_out * sizeof *simd);
    float *other = malloc((size_t)T * n_out * sizeof *other);
    float *out1 = malloc((size_t)n_out * sizeof *out1);
    float *wrow = malloc((size_t)n_in * sizeof *wrow);
    block_q8_act *xq = malloc((size_t)(n_in / QK + 1) * sizeof *xq);
    block_q8_K *xk = malloc((size_t)(n_in / QK_K + 1) * sizeof *xk);
    unsigned s = 99u + (unsigned)T;
    for (int i = 0; i < T * n_in; i++) x[i] = frand(&s) * 3.0f;
    /* every block type computes on quantized activations: 256-element blocks (kq) or 32 */
    bool kq = dtype_uses_q8_K(t), quant = dtype_block_elems(t) > 1 && !kq;
    bool has_simd = mm_using_simd();
    /* BF16 through vdpbf16ps: on the activations rounded to BF16, bit for bit with the twin */
    const bool pairs = bf16_pairs(&w);
    mm_scratch ms;
    CHECK(mm_scratch_init(&ms, T, n_in) == 0, "scratch");
    int mismatches = 0, alone_mismatch = 0, inaccurate = 0;
    int simd_threads = 0, simd_alone = 0, simd_far = 0;
    double worst = 0;
    if (has_simd) run(simd, x, &w, T, &ms, 1, false);
    for (int threads = 1; threads <= 3; threads++) {
        run(out, x, &w, T, &ms, threads, true);
        if (has_simd && threads > 1) {
            run(other, x, &w, T, &ms, threads, false);
            simd_threads += memcmp(other, simd, (size_t)T * n_out * sizeof(float)) != 0;
        }
        for (int tt = 0; tt < T; tt++) {
            const float *xt = x + (size_t)tt * n_in;
            if (quant) quantize_row_q8_act(xq, xt, n_in);
            if (kq) quantize_row_q8_K(xk, xt, n_in);
            /* the same row alone in a block of one */
            run(out1, xt, &w, 1, &ms, threads, true);
            for (int r = 0; r < n_out; r++) {
                float want = row_kernel(&w, r, xt, xq, xk, n_in);
                float got = out[(size_t)tt * n_out + r];
                if (memcmp(&want, &got, 4) != 0) mismatches++;
                if (memcmp(&out1[r], &got, 4) != 0) alone_mismatch++;
            }
            if (has_simd) {
                run(out1, xt, &w, 1, &ms, threads, false);
                simd_alone += memcmp(out1, simd + (size_t)tt * n_out, n_out * sizeof(float)) != 0;
            }
            if (threads > 1) continue;
            for (int r = 0; r < n_out; r++) {
                /* accuracy: the double sum over the dequantized operands */
                float got = out[(size_t)tt * n_out + r];
                dequantize_row(wrow, tensor_row(&w, r), t, n_in);
                double ref = 0, mag = 0;
                for (int i = 0; i < n_in; i++) {
                    double xi = quant   ? (double)xq[i / QK].d * xq[i / QK].qs[i % QK]
                                : kq    ? (double)xk[i / QK_K].d * xk[i / QK_K].qs[i % QK_K]
                                : pairs ? (double)bf16_to_f32(f32_to_bf16(xt[i]))
                                        : xt[i];
                    ref += (double)wrow[i] * xi;
                    mag += fabs((double)wrow[i] * xi);
                }
                if (fabs(ref - got) > 1e-5 * mag + 1e-6) inaccurate++;
                if (!has_simd) continue;
                double diff = fabs((double)simd[(size_t)tt * n_out + r] - got);
                if (quant || kq || pairs ? diff != 0 : diff > SIMD_TOL * mag + 1e-6) simd_far++;
                if (mag > 0 && diff / mag > worst) worst = diff / mag;
            }
        }
    }
    const char *tn = dtype_name(t);
    CHECK(mismatches == 0, "%s %dx%d T=%d: %d outputs differ from the scalar kernel", tn, n_out,
          n_in, T, mismatches);
    CHECK(alone_mismatch == 0, "%s %dx%d T=%d: %d outputs depend on the block's other rows", tn,
          n_out, n_in, T, alone_mismatch);
    CHECK(inaccurate == 0, "%s %dx%d T=%d: %d outputs far from the double reference", tn, n_out,
          n_in, T, inaccurate);
    CHECK(simd_threads == 0, "%s %dx%d T=%d: SIMD outputs depend on the thread count", tn, n_out,
          n_in, T);
    CHECK(simd_alone == 0, "%s %dx%d T=%d: SIMD outputs of %d rows depend on the block's other rows",
          tn, n_out, n_in, T, simd_alone);
    CHECK(simd_far == 0, "%s %dx%d T=%d: %d SIMD outputs %s the scalar ones", tn, n_out, n_in, T,
          simd_far, quant || kq || pairs ? "differ from" : "beyond 1e-5 of sum|w*x| from");
    if (has_simd && T == 7)
        printf("%-5s %4dx%-4d T=%d: SIMD within %.2g of sum|w*x| of scalar\n", tn, n_out, n_in, T,
               worst);
    mm_scratch_free(&ms);
    free((void *)w.data);
    free(x);
    free(out);
    free(simd);
    free(other);
    free(out1);
    free(wrow);
    free(xq);
    free(xk);
}

/* The SIMD activation quantizer writes the same bytes as the scalar one (zero blocks,
 * ties at .5, large and tiny magnitudes). */
static void test_quantize_act(void) {
    void (*simd)(block_q8_act *, const float *, int64_t) =
        mm_avx2_supported() ? quantize_row_q8_act_avx2
        : mm_neon_supported() ? quantize_row_q8_act_neon : NULL;
    if (!simd) return;
    enum { N = QK * 40 };
    float x[N];
    block_q8_act a[N / QK], b[N / QK];
    unsigned s = 5;
    for (int i = 0; i < N; i++) x[i] = frand(&s) * (i < N / 2 ? 10.0f : 1e-3f);
    for (int i = 0; i < QK; i++) x[i] = 0.0f;                 /* block 0: all zero */
    for (int i = QK; i < 2 * QK; i++) x[i] = (float)(i - QK - 16) + 0.5f; /* .5 ties */
    x[2 * QK] = 127.0f;
    quantize_row_q8_act(a, x, N);
    simd(b, x, N);
    int diff = 0;
    for (int i = 0; i < N / QK; i++)
        diff += a[i].d != b[i].d || memcmp(a[i].qs, b[i].qs, QK) != 0;
    CHECK(diff == 0, "SIMD activation quantizer differs from the scalar one in %d blocks", diff);
}

/* The AVX2 256-element activation quantizer writes the same bytes as quantize_row_q8_K: zero
 * blocks, ties at .5, +-127 at the maximum, large, tiny and mixed magnitudes, and the bsums. */
static void test_quantize_act_K(void) {
    if (!mm_avx2_supported()) return;
    enum { NB = 12, N = QK_K * NB };
    static float x[N];
    static block_q8_K a[NB], b[NB];
    unsigned s = 23;
    for (int i = 0; i < N; i++)
        x[i] = frand(&s) * (i < N / 3 ? 10.0f : i < 2 * N / 3 ? 1e-3f : 3e4f);
    for (int i = 0; i < QK_K; i++) x[i] = 0.0f; /* block 0: all zero */
    for (int i = QK_K; i < 2 * QK_K; i++) x[i] = (float)(i - QK_K - 128) + 0.5f; /* ties */
    x[2 * QK_K + 7] = 127.0f;
    x[3 * QK_K + 255] = -1e6f;
    for (int i = 4 * QK_K; i < 5 * QK_K; i++) x[i] = i % 2 ? 127.0f : -127.0f; /* bsums at 0 */
    for (int i = 5 * QK_K; i < 6 * QK_K; i++) x[i] = 1.0f; /* every bsum at 16 x 127 */
    quantize_row_q8_K(a, x, N);
    quantize_row_q8_K_avx2(b, x, N);
    int diff = 0;
    for (int i = 0; i < NB; i++)
        diff += a[i].d != b[i].d || memcmp(a[i].qs, b[i].qs, QK_K) != 0 ||
                memcmp(a[i].bsums, b[i].bsums, sizeof a[i].bsums) != 0;
    CHECK(diff == 0, "AVX2 q8_K activation quantizer differs from the scalar one in %d blocks",
          diff);
}

/* The attention helpers do the scalar loops' float operations exactly: bit-identical results
 * for F32 and F16 rows, head_dim (64 + 32 + 8 + 5) going through every chunk width. */
static void test_attention_helpers(void) {
    if (!mm_avx2_supported()) return;
    enum { HD = 109, STRIDE = 3 * HD + 7 };
    float q[HD], kf[8 * STRIDE], out_a[HD], out_b[HD], s8[8];
    uint16_t kh[8 * STRIDE];
    unsigned s = 17;
    for (int i = 0; i < HD; i++) q[i] = frand(&s);
    for (int i = 0; i < 8 * STRIDE; i++) {
        kh[i] = f32_to_f16(frand(&s));
        kf[i] = frand(&s);
    }
    int diff = 0;
    for (int f16 = 0; f16 <= 1; f16++) {
        float kt[8 * HD];
        attn_keys8_t_avx2(kt, f16 ? (const void *)kh : (const void *)kf, f16, STRIDE, HD);
        attn_scores8t_avx2(s8, q, kt, HD);
        for (int j = 0; j < 8; j++) {
            float want = 0.0f;
            for (int i = 0; i < HD; i++)
                want += q[i] * (f16 ? f16_to_f32(kh[j * STRIDE + i]) : kf[j * STRIDE + i]);
            diff += memcmp(&want, &s8[j], 4) != 0;
        }
        for (int i = 0; i < HD; i++) out_a[i] = out_b[i] = q[i];
        attn_scale_avx2(out_a, 0.37f, HD);
        attn_axpy_avx2(out_a, 0.81f, f16 ? (const void *)kh : (const void *)kf, f16, HD);
        for (int i = 0; i < HD; i++) {
            out_b[i] *= 0.37f;
            out_b[i] += 0.81f * (f16 ? f16_to_f32(kh[i]) : kf[i]);
        }
        diff += memcmp(out_a, out_b, sizeof out_a) != 0;
        /* the block form: the first n value rows in one pass, rescaled first or not */
        float w[8];
        for (int j = 0; j < 8; j++) w[j] = frand(&s) + 0.5f;
        for (int n = 1; n <= 8; n++)
            for (int rescale = 0; rescale <= 1; rescale++) {
                for (int i = 0; i < HD; i++) out_a[i] = out_b[i] = q[i];
                attn_accum8_avx2(out_a, rescale, 0.61f, w, n,
                                 f16 ? (const void *)kh : (const void *)kf, f16, STRIDE, HD);
                for (int i = 0; i < HD && rescale; i++) out_b[i] *= 0.61f;
                for (int j = 0; j < n; j++)
                    for (int i = 0; i < HD; i++)
                        out_b[i] += w[j] * (f16 ? f16_to_f32(kh[j * STRIDE + i])
                                                : kf[j * STRIDE + i]);
                diff += memcmp(out_a, out_b, sizeof out_a) != 0;
            }
        if (f16) {
            float rows[3 * HD];
            attn_f16_rows_avx2(rows, kh + 1, STRIDE, 3, HD);
            for (int j = 0; j < 3; j++)
                for (int i = 0; i < HD; i++) {
                    float want = f16_to_f32(kh[1 + j * STRIDE + i]);
                    diff += memcmp(&want, &rows[j * HD + i], 4) != 0;
                }
        }
        /* fifteen query rows at once (groups of eight and four, then three alone) */
        float s8t[8];
        float qs[15][HD], srows[15 * 8];
        const float *qp[15];
        for (int r = 0; r < 15; r++) {
            for (int i = 0; i < HD; i++) qs[r][i] = frand(&s);
            qp[r] = qs[r];
        }
        attn_scores8t_rows_avx2(srows, qp, 15, kt, HD);
        for (int r = 0; r < 15; r++) {
            attn_scores8t_avx2(s8t, qs[r], kt, HD);
            diff += memcmp(s8t, srows + 8 * r, sizeof s8t) != 0;
        }
    }
    CHECK(diff == 0, "attention helpers differ from the scalar loops in %d places", diff);
}

/* attn_exp8_avx2 and attn_softmax8_avx2 give attn_exp's and attn_softmax8's bits: exp on a
 * sweep of [-100, 100] in steps that hit every binade, the edges, infinities and NaN; the
 * softmax step on random blocks (some lanes -INFINITY, as a row's partial block), starting from
 * no state and from states that do or do not need a rescale. */
static void test_attention_softmax(void) {
    if (!mm_avx2_supported()) return;
    int diff = 0, n_exp = 0;
    float x[8], a[8];
    const float edges[] = {0.0f, -0.0f, -87.0f, -87.00001f, -86.99999f, 88.0f, 88.5f, 1e-30f,
                           -1e-30f, -INFINITY, INFINITY, NAN, -0.34657359f, 0.34657359f,
                           -0.3465736f, 0.3465736f, -103.97f, 89.0f};
    const int n_edges = (int)(sizeof edges / sizeof edges[0]);
    for (int k = 0; k < n_edges + 200000; k += 8) {
        for (int j = 0; j < 8; j++) {
            int i = k + j;
            x[j] = i < n_edges ? edges[i] : -100.0f + 200.0f * (float)(i - n_edges) / 200000.0f;
        }
        attn_exp8_avx2(a, x);
        for (int j = 0; j < 8; j++) {
            float want = attn_exp(x[j]);
            diff += memcmp(&want, &a[j], 4) != 0;
            n_exp++;
        }
    }
    unsigned s = 99;
    int n_soft = 0;
    for (int trial = 0; trial < 3000; trial++) {
        float sc[8], w_a[8], w_b[8], sum_a[8], sum_b[8], max_a, max_b, sh_a = 7, sh_b = 7;
        int cnt = 1 + trial % 8, start = trial % 3;
        for (int j = 0; j < 8; j++) {
            sc[j] = j < cnt ? 20.0f * frand(&s) : -INFINITY;
            sum_a[j] = sum_b[j] = start ? 4.0f * (frand(&s) + 1.0f) : 0.0f;
        }
        /* no state; a max below the block's (rescale); one above it (none) */
        max_a = max_b = start == 0 ? -INFINITY : start == 1 ? -30.0f : 30.0f;
        bool ra = attn_softmax8_avx2(w_a, &sh_a, &max_a, sum_a, sc, 0.125f);
        bool rb = attn_softmax8(w_b, &sh_b, &max_b, sum_b, sc, 0.125f);
        diff += ra != rb || memcmp(w_a, w_b, sizeof w_a) != 0 ||
                memcmp(sum_a, sum_b, sizeof sum_a) != 0 || memcmp(&max_a, &max_b, 4) != 0 ||
                memcmp(&sh_a, &sh_b, 4) != 0;
        n_soft++;
    }
    CHECK(diff == 0, "attn_exp8_avx2 / attn_softmax8_avx2 differ from attn_exp / attn_softmax8 "
                     "in %d of %d cases", diff, n_exp + n_soft);
}

/* The rows of a block-step test: q (8 rows, those past nr zero) and its lanes layout qt; the
 * SIMD step's outputs and state (out_a, max_a, sum_a in the step's layout) and the scalar
 * reference's (out_b, max_b, sum_b). */
typedef struct {
    float q[8][ATTN512_MAX_HEAD_DIM], qt[ATTN512_MAX_HEAD_DIM * 8];
    float out_a[8][ATTN512_MAX_HEAD_DIM], out_b[8][ATTN512_MAX_HEAD_DIM];
    float max_a[8], sum_a[64], max_b[8], sum_b[8][8];
    float *oa[8];
} block_rows;

static void block_rows_init(block_rows *t, int nr, int hd, unsigned *s) {
    for (int r = 0; r < 8; r++) {
        for (int i = 0; i < hd; i++) {
            t->q[r][i] = r < nr ? 2.0f * frand(s) : 0.0f;
            t->qt[i * 8 + r] = t->q[r][i];
            t->out_a[r][i] = t->out_b[r][i] = 0.0f;
        }
        t->max_a[r] = t->max_b[r] = -INFINITY;
        for (int j = 0; j < 8; j++) t->sum_a[j * 8 + r] = t->sum_b[r][j] = 0.0f;
        t->oa[r] = t->out_a[r];
    }
}

/* attention_head's block step, scalar, for row r of t: the scores of the 8 keys k (8, hd) in
 * order, attn_softmax8, the rescale, then the 8 weighted values v (8, hd). */
static void ref_block_step(block_rows *t, int r, const float *k, const float *v, int hd,
                           float scale) {
    float sc[8], w[8], shrink;
    for (int j = 0; j < 8; j++) {
        sc[j] = 0.0f;
        for (int i = 0; i < hd; i++) sc[j] += t->q[r][i] * k[j * hd + i];
    }
    if (attn_softmax8(w, &shrink, &t->max_b[r], t->sum_b[r], sc, scale))
        for (int i = 0; i < hd; i++) t->out_b[r][i] *= shrink;
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < hd; i++) t->out_b[r][i] += w[j] * v[j * hd + i];
}

/* Whether row r's output, maximum or sums differ between the step and the reference; the
 * step's sums as rows in lanes (sum_a[j * 8 + r]) or row by row (sum_a[r * 8 + j]). */
static bool block_row_differs(const block_rows *t, int r, int hd, bool sums_in_lanes) {
    float sum_a[8];
    for (int j = 0; j < 8; j++) sum_a[j] = t->sum_a[sums_in_lanes ? j * 8 + r : r * 8 + j];
    return memcmp(t->out_a[r], t->out_b[r], (size_t)hd * sizeof(float)) != 0 ||
           memcmp(sum_a, t->sum_b[r], sizeof sum_a) != 0 ||
           memcmp(&t->max_a[r], &t->max_b[r], 4) != 0;
}

/* attn_block8_avx2 gives the scalar block step's bits for each of its 1..8 rows: the scores
 * loop, attn_softmax8, the rescale and the weighted values, over 7 blocks in a row (the first
 * from no state; scores that grow, so that some rows rescale in later blocks and others not),
 * head_dim 16 to 128 through the 32- and 8-element value chunks. */
static void test_attention_block8(void) {
    enum { MAXD = ATTN512_MAX_HEAD_DIM };
    static const int hds[] = {16, 48, 64, 80, 128};
    static block_rows t;
    unsigned s = 5;
    int diff = 0, n_cmp = 0;
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
        for (int nr = 1; nr <= 8; nr++) {
            const int hd = hds[hi];
            static float k[8 * MAXD], v[8 * MAXD];
            block_rows_init(&t, nr, hd, &s);
            const float scale = 1.0f / sqrtf((float)hd);
            for (int blk = 0; blk < 7; blk++) {
                for (int i = 0; i < 8 * hd; i++) {
                    k[i] = (1.0f + 0.5f * (float)blk) * frand(&s);
                    v[i] = frand(&s);
                }
                attn_block8_avx2(t.oa, nr, t.qt, t.max_a, t.sum_a, k, v, hd, scale);
                for (int r = 0; r < nr; r++, n_cmp++) {
                    ref_block_step(&t, r, k, v, hd, scale);
                    diff += block_row_differs(&t, r, hd, true);
                }
            }
        }
    CHECK(diff == 0, "attn_block8_avx2 differs from the scalar block step in %d of %d rows", diff,
          n_cmp);
}

/* attn_block16_avx512 (with keys from attn_keys16_t_avx512) gives the scalar block step's bits
 * for each of its 1..8 rows, block after block: 6 calls taking 2, 1, 2, 2, 1, 2 blocks (the
 * first from no state; scores that grow, so that some rows rescale in later blocks, in the
 * first or the second block of a call, and others not), head_dim 16 to 128 through the 64-
 * and 16-element value chunks. */
static void test_attention_blocks16(void) {
    enum { MAXD = ATTN512_MAX_HEAD_DIM, NC = 6 };
    static const int hds[] = {16, 48, 64, 80, 128}, nbs[NC] = {2, 1, 2, 2, 1, 2};
    static block_rows t;
    unsigned s = 9;
    int diff = 0, n_cmp = 0;
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
        for (int nr = 1; nr <= 8; nr++) {
            const int hd = hds[hi];
            static float k[16 * MAXD], kt[16 * MAXD], v[16 * MAXD];
            block_rows_init(&t, nr, hd, &s);
            const float scale = 1.0f / sqrtf((float)hd);
            for (int c = 0, blk = 0; c < NC; c++) {
                for (int i = 0; i < 16 * hd; i++) {
                    k[i] = (1.0f + 0.5f * (float)(blk + i / (8 * hd))) * frand(&s);
                    v[i] = frand(&s);
                }
                attn_keys16_t_avx512(kt, k, 8 * nbs[c], hd);
                attn_block16_avx512(t.oa, nr, nbs[c], t.qt, t.max_a, t.sum_a, kt, v, hd, scale);
                for (int b = 0; b < nbs[c]; b++, blk++)
                    for (int r = 0; r < nr; r++)
                        ref_block_step(&t, r, k + b * 8 * hd, v + b * 8 * hd, hd, scale);
                for (int r = 0; r < nr; r++, n_cmp++) diff += block_row_differs(&t, r, hd, false);
            }
        }
    CHECK(diff == 0, "attn_block16_avx512 differs from the scalar block step in %d of %d rows",
          diff, n_cmp);
}

/* matmul of random weights (seed) and activations (seed + 2) with flip(0) in effect, then with
 * flip(1): true when both give the same bits. */
static bool same_both_ways(dtype t, int n_in, int n_out, int T, unsigned seed, void (*flip)(int),
                           pool *p) {
    tensor w = make_weights(t, n_in, n_out, seed);
    float *x = malloc((size_t)T * n_in * sizeof *x);
    float *a = malloc((size_t)T * n_out * sizeof *a);
    float *b = malloc((size_t)T * n_out * sizeof *b);
    unsigned s = seed + 2u;
    for (int k = 0; k < T * n_in; k++) x[k] = frand(&s) * 2.0f;
    mm_scratch ms;
    CHECK(mm_scratch_init(&ms, T, n_in) == 0, "scratch");
    flip(0);
    matmul(a, x, &w, T, &ms, p);
    flip(1);
    matmul(b, x, &w, T, &ms, p);
    const bool same = memcmp(a, b, (size_t)T * n_out * sizeof *a) == 0;
    mm_scratch_free(&ms);
    free((void *)w.data);
    free(x);
    free(a);
    free(b);
    return same;
}

static void avx512_then_avx2(int second) { mm_avx512_allow(!second); }

/* The AVX-512 kernels (when the CPU has them) give the AVX2 kernels' bits, every type: the float
 * ones hold two AVX2 pairs per zmm, the quantized ones sum blocks exactly. Shapes cover the K
 * chunks (n_in > 512, packed weights when T > 2), the groups of activation rows (T > 64), ragged
 * tiles (row counts not a multiple of 8 or 2, T not a multiple of 6) and tails of n_in (n_in % 8 !=
 * 0, and n_in < 8), Q4_0's decode tiles for T = 1, and Q4_0's and Q8_0's 16-row tiles from 2
 * activation rows to 150, in one tile or several (and over K in two chunks: n_in 2100, T 14),
 * beside the 4-row tiles that take the rows past the last 16 of a thread's share; the float tiles
 * with each K chunk a CPU may use (512, 4096) and a short one, rows longer than the longest chunk
 * (4100) and more activation rows than a group (T = 150 > TG), both with the weights converted into
 * a buffer from 3 rows and converted in registers by each tile. The float tiles take every T >= 2
 * here, whatever this CPU's mm_float_zmm_min and mm_float_buf_min. */
static void test_avx512_matches_avx2(void) {
    if (!mm_avx512_supported()) return;
    const dtype types[] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0};
    /* T = 1 with n_out 53: tiles of 16 decode rows (VNNI) and a ragged rest */
    const int shapes[][3] = {{701, 13, 75}, {37, 29, 2}, {37, 7, 9}, {1030, 9, 21}, {701, 53, 1},
                             {37, 16, 1}, {5, 11, 12}, {2048, 19, 13}, {701, 35, 3},
                             {4100, 9, 7}, {300, 17, 150}, {701, 40, 4}, {300, 67, 24},
                             {96, 33, 10}, {2100, 40, 14}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    /* the zmm float tiles' K chunk: Intel's, Zen 4's (whole rows up to 4096) and a short one */
    const int kcs[] = {512, 4096, 64};
    pool *p = pool_create(2);
    mm_set_float_zmm_min(2);
    for (int kc = 0; kc < 4; kc++) {
        for (int i = 0; i < 5; i++)
            for (int s = 0; s < n_shapes; s++) {
                bool quant = types[i] == DT_Q8_0 || types[i] == DT_Q4_0;
                if (kc > 0 && quant) continue; /* the chunk is the float tiles' only */
                /* kc 3: no buffer (each tile converts its weights), with Intel's chunk */
                mm_set_float_kc(kcs[kc % 3]);
                mm_set_float_buf_min(kc == 3 ? 1000 : 3);
                int n_in = quant ? (shapes[s][0] / QK + 1) * QK : shapes[s][0];
                int n_out = shapes[s][1], T = shapes[s][2];
                CHECK(same_both_ways(types[i], n_in, n_out, T, 5u + (unsigned)s,
                                     avx512_then_avx2, p),
                      "%s %dx%d T=%d, K chunk %d%s: AVX-512 and AVX2 kernels differ",
                      dtype_name(types[i]), n_out, n_in, T, kcs[kc % 3],
                      kc == 3 ? ", no buffer" : "");
                mm_avx512_allow(true);
            }
    }
    mm_set_float_kc(0);
    mm_set_float_zmm_min(0);
    mm_set_float_buf_min(0);
    pool_destroy(p);
}

/* The AVX2 float tiles give the same bits whether each tile converts its F16/BF16 weights in
 * registers or reads an F32 buffer converted once per K chunk (mm_float_avx2_buf_min), and
 * whether every tile or only a chunk's first prefetches the next rows (mm_float_pf_once), on
 * any CPU with AVX2 (the CPU table turns both on for Zen 1, and the buffer from 64 rows for Zen 5
 * without AVX-512): K chunks of 64, 512 and 4096 (the buffer holds at most 1024), rows off the
 * vector width and longer than the buffer, T from the buffer's threshold (3) to more than a group
 * (150), so both the 4 x 2 and the 4 x 3 tiles, several threads. */
static void in_tiles_then_buffer(int second) {
    mm_set_float_avx2_buf_min(second ? 3 : 0);
    mm_set_float_pf_once(second);
}

static void test_avx2_float_buffer(void) {
    if (!mm_avx2_supported()) return;
    const dtype types[] = {DT_F32, DT_F16, DT_BF16};
    const int shapes[][3] = {{701, 13, 3}, {37, 9, 7}, {1030, 9, 21}, {2100, 6, 5},
                             {300, 17, 150}, {4100, 5, 4}, {5, 7, 3}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    const int kcs[] = {64, 512, 4096};
    pool *p = pool_create(2);
    mm_avx512_allow(false);
    for (int i = 0; i < 3; i++)
        for (int s = 0; s < n_shapes; s++)
            for (int kc = 0; kc < 3; kc++) {
                mm_set_float_kc(kcs[kc]);
                const int n_in = shapes[s][0], n_out = shapes[s][1], T = shapes[s][2];
                CHECK(same_both_ways(types[i], n_in, n_out, T, 31u + (unsigned)s,
                                     in_tiles_then_buffer, p),
                      "%s %dx%d T=%d, K chunk %d: the AVX2 tiles' buffer changes the results",
                      dtype_name(types[i]), n_out, n_in, T, kcs[kc]);
            }
    mm_avx512_allow(true);
    mm_set_float_kc(0);
    mm_set_float_avx2_buf_min(-1);
    mm_set_float_pf_once(-1);
    pool_destroy(p);
}

/* Every shape of the Q4_0 VNNI decode tile (8, 16 and 32 rows, each prefetch distance) gives
 * the scalar twin's bits, whichever one this CPU would pick: T = 1-3 (32-row tiles take T = 1
 * only), row counts that leave ragged rests after 32-, 16- and 8-row tiles, split over 1 and 2
 * threads (each thread's share starts its own run of tiles). */
static void test_dec_tiles(void) {
    if (!mm_avx512_supported()) return;
    const int shapes[][3] = {{32 * 23, 77, 1}, {32 * 23, 77, 2}, {32 * 23, 77, 3},
                             {64, 100, 1},     {32, 45, 3},      {32 * 5, 8, 1}};
    printf("Q4_0 decode tile on this CPU: variant %d (%d rows, prefetch %d ahead)\n",
           mm_dec_tile_default(), mm_dec_tiles[mm_dec_tile_default()].rows,
           mm_dec_tiles[mm_dec_tile_default()].pf_tiles);
    CHECK(mm_dec_tile_default() >= 0 && mm_dec_tile_default() < MM_DEC_TILES, "default tile");
    for (int s = 0; s < 6; s++) {
        int n_in = shapes[s][0], n_out = shapes[s][1], T = shapes[s][2];
        tensor w = make_weights(DT_Q4_0, n_in, n_out, 21u + (unsigned)s);
        float *x = malloc((size_t)T * n_in * sizeof *x);
        float *want = malloc((size_t)T * n_out * sizeof *want);
        float *got = malloc((size_t)T * n_out * sizeof *got);
        unsigned seed = 5u + (unsigned)s;
        for (int k = 0; k < T * n_in; k++) x[k] = frand(&seed) * 2.0f;
        mm_scratch ms;
        CHECK(mm_scratch_init(&ms, T, n_in) == 0, "scratch");
        run(want, x, &w, T, &ms, 1, true);
        for (int v = 0; v < MM_DEC_TILES; v++)
            for (int threads = 1; threads <= 2; threads++) {
                mm_set_dec_tile(v);
                CHECK(mm_dec_tile() == v, "variant %d not in force", v);
                memset(got, 0xff, (size_t)T * n_out * sizeof *got);
                run(got, x, &w, T, &ms, threads, false);
                CHECK(memcmp(want, got, (size_t)T * n_out * sizeof *got) == 0,
                      "Q4_0 %dx%d T=%d: decode tile %d (%d rows, prefetch %d) on %d threads "
                      "differs from the scalar kernel",
                      n_out, n_in, T, v, mm_dec_tiles[v].rows, mm_dec_tiles[v].pf_tiles, threads);
            }
        mm_set_dec_tile(-1);
        mm_scratch_free(&ms);
        free((void *)w.data);
        free(x);
        free(want);
        free(got);
    }
    CHECK(mm_dec_tile() == mm_dec_tile_default(), "back to the CPU's tile");
}

/* Weights repacked for --repack give the scalar twins' bits: Q4_0 and IQ4_NL for the decode
 * tiles (groups of 16 rows; dot_q4_0, dot_iq4_nl) at T = 1-3 and (prefill and batched steps,
 * which read the weights in place) T = 4 and 7; the K-quants and IQ4_XS for the row-by-row
 * decode kernels (groups of 8) at T = 1-3 and 7 and past every type's switch to the tiles (T =
 * 19, in place). On 1-3 threads: row counts with a ragged rest after the groups, thread shares
 * that start and end inside a group (53 rows over 2 and 3 threads), fewer rows than a group
 * (nothing to repack). Also with the AVX2 kernels, whose one-row tiles and passes read the copy
 * of Q4_0, IQ4_NL, Q4_K, Q5_K and Q6_K. The other 32-element types are not repacked. */
static void test_dec_repack(dtype type) {
    if (!mm_avx2_supported()) return;
    const bool kq = dtype_uses_q8_K(type);
    /* without AVX-512 VNNI, only Q4_K, Q5_K and Q6_K of the K-quants have a reader */
    if (kq && !mm_avx512_supported() && !qdot_avx2_packed(type)) return;
    const int blk = kq ? QK_K : QK, group = kq ? 8 : 16;
    const int shapes[][2] = {{blk * 23, 53}, {blk * 2, 48}, {blk, kq ? 5 : 13}, {blk * 7, 100}};
    const int Ts[] = {1, 2, 3, kq ? 7 : 4, kq ? 19 : 7};
    for (int s = 0; s < 4; s++) {
        int n_in = shapes[s][0], n_out = shapes[s][1];
        tensor w = make_weights(type, n_in, n_out, 31u + (unsigned)s);
        size_t nbytes = mm_dec_packed_bytes(&w);
        size_t want_bytes = kq ? (size_t)(n_out / group) * group * dtype_row_bytes(type, n_in)
                               : (size_t)(n_out / group) * (size_t)(n_in / QK) * 288;
        CHECK(nbytes == want_bytes, "%s packed size %zu", dtype_name(type), nbytes);
        void *packed = nbytes ? malloc(nbytes) : NULL;
        if (packed) mm_dec_repack(packed, &w);
        tensor wp = w;
        wp.packed = packed;
        for (int ti = 0; ti < 5; ti++) {
            int T = Ts[ti];
            float *x = malloc((size_t)T * n_in * sizeof *x);
            float *want = malloc((size_t)T * n_out * sizeof *want);
            float *got = malloc((size_t)T * n_out * sizeof *got);
            unsigned seed = 13u + (unsigned)(s * 7 + T);
            for (int k = 0; k < T * n_in; k++) x[k] = frand(&seed) * 2.0f;
            mm_scratch ms;
            CHECK(mm_scratch_init(&ms, T, n_in) == 0, "scratch");
            run(want, x, &w, T, &ms, 1, true);
            /* twice: the AVX-512 kernels, then the AVX2 ones (which read the copy of Q4_0,
             * IQ4_NL, Q4_K, Q5_K and Q6_K for one activation row, and ignore the others') */
            for (int v = 0; v < 2; v++) {
                mm_avx512_allow(v == 0);
                for (int threads = 1; threads <= 3; threads++) {
                    memset(got, 0xff, (size_t)T * n_out * sizeof *got);
                    run(got, x, &wp, T, &ms, threads, false);
                    CHECK(memcmp(want, got, (size_t)T * n_out * sizeof *got) == 0,
                          "%s %dx%d T=%d repacked, %d threads%s: differs from the scalar kernel",
                          dtype_name(type), n_out, n_in, T, threads, v ? ", AVX2" : "");
                }
            }
            mm_avx512_allow(true);
            mm_scratch_free(&ms);
            free(x);
            free(want);
            free(got);
        }
        free(packed);
        free((void *)w.data);
    }
    const dtype other[] = {DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q8_0};
    for (int i = 0; i < 4; i++) {
        tensor w = make_weights(other[i], 64, 48, 41u);
        CHECK(mm_dec_packed_bytes(&w) == 0, "%s would be repacked", dtype_name(other[i]));
        free((void *)w.data);
    }
}

/* The K-quant and IQ4_XS kernels of x86/quant_avx512.c give the AVX2 kernels' bits (which are
 * the scalar twins'), every type of dtype_uses_q8_K: the tiles' passes of 8 activation rows,
 * whole and ragged (T = 24, 33, and 17 and 21 for the types that tile below 18), tiles of 16
 * weight rows, whole and ragged (n_out 37 and 70 over 2 threads, and fewer than 16), rows of more
 * than one chunk of 4 super-blocks (n_in 1280, 2048), and the row-by-row kernels on both sides of
 * each type's switch to the tiles (T = 1 .. 12; one_t_max in x86/quant_avx512.c). On the AVX2
 * side, Q4_K, Q5_K and Q6_K take the lanes tiles from 3, 6 and 12 rows (qdot_avx2_lanes_min):
 * 1 to 4 groups of 4 per tile, ragged groups and ragged 4-row tiles. */
static void test_kquant_avx512_matches_avx2(void) {
    if (!mm_avx512_supported()) return;
    const dtype types[] = {DT_Q2_K, DT_Q3_K, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_IQ4_XS};
    const int shapes[][3] = {{256, 7, 2},    {768, 9, 8},   {512, 5, 9},   {1280, 13, 17},
                             {256, 3, 21},   {1280, 37, 5}, {2048, 70, 12}, {768, 21, 1},
                             {1280, 37, 3},  {512, 19, 24}, {768, 37, 33}, {256, 16, 11}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    pool *p = pool_create(2);
    for (int i = 0; i < 6; i++)
        for (int s = 0; s < n_shapes; s++) {
            int n_in = shapes[s][0], n_out = shapes[s][1], T = shapes[s][2];
            tensor w = make_weights(types[i], n_in, n_out, 11u + (unsigned)s);
            float *x = malloc((size_t)T * n_in * sizeof *x);
            float *a = malloc((size_t)T * n_out * sizeof *a);
            float *b = malloc((size_t)T * n_out * sizeof *b);
            unsigned seed = 3u + (unsigned)s;
            for (int k = 0; k < T * n_in; k++) x[k] = frand(&seed) * 2.0f;
            mm_scratch ms;
            CHECK(mm_scratch_init(&ms, T, n_in) == 0, "scratch");
            matmul(a, x, &w, T, &ms, p);
            mm_avx512_allow(false);
            matmul(b, x, &w, T, &ms, p);
            mm_avx512_allow(true);
            CHECK(memcmp(a, b, (size_t)T * n_out * sizeof *a) == 0,
                  "%s %dx%d T=%d: AVX-512 and AVX2 K-quant kernels differ", dtype_name(types[i]),
                  n_out, n_in, T);
            mm_scratch_free(&ms);
            free((void *)w.data);
            free(x);
            free(a);
            free(b);
        }
    pool_destroy(p);
}

static void test_kquant_decode_rows_once(const char *isa) {
    const dtype types[] = {DT_Q2_K, DT_Q3_K, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_IQ4_XS};
    const int n_ins[] = {256, 1280, 2048}, n_outs[] = {1, 3, 4, 7, 8, 9, 13, 21, 37};
    pool *p[2] = {pool_create(1), pool_create(2)};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int bad = 0;
        for (int a = 0; a < 3; a++)
            for (int o = 0; o < 9; o++) {
                const int n_in = n_ins[a], n_out = n_outs[o], T = 1 + (a + o) % 3;
                tensor w = make_weights(types[i], n_in, n_out, 5u + (unsigned)(a * 9 + o));
                float *x = malloc((size_t)T * n_in * sizeof *x);
                float *got = malloc((size_t)T * n_out * sizeof *got);
                block_q8_K *xk = malloc((size_t)(n_in / QK_K) * sizeof *xk);
                unsigned seed = 7u + (unsigned)o;
                for (int k = 0; k < T * n_in; k++) x[k] = frand(&seed) * 2.0f;
                mm_scratch ms;
                CHECK(mm_scratch_init(&ms, T, n_in) == 0, "scratch");
                for (int th = 0; th < 2; th++) {
                    matmul(got, x, &w, T, &ms, p[th]);
                    for (int tt = 0; tt < T; tt++) {
                        quantize_row_q8_K(xk, x + (size_t)tt * n_in, n_in);
                        for (int r = 0; r < n_out; r++) {
                            float want = dot_row(tensor_row(&w, r), types[i], NULL, xk, n_in);
                            bad += memcmp(&want, &got[(size_t)tt * n_out + r], 4) != 0;
                        }
                    }
                }
                mm_scratch_free(&ms);
                free((void *)w.data);
                free(x);
                free(got);
                free(xk);
            }
        CHECK(bad == 0, "%s decode (%s): %d outputs differ from the scalar twin",
              dtype_name(types[i]), isa, bad);
    }
    pool_destroy(p[0]);
    pool_destroy(p[1]);
}

/* The decode kernels of x86/quant_avx512.c (T < 4) give the scalar twins' bits, every type of
 * dtype_uses_q8_K: groups of 8 weight rows reduced together with the float steps in vector
 * lanes, whole and ragged (n_out 1 .. 37: fewer rows than a group, a remainder row by row, a
 * thread's share that ends inside a group), rows of 1, 5 and 8 super-blocks, T = 1, 2, 3. Then
 * the same with AVX-512 off: x86/quant_avx2.c's 8-row passes (Q4_K, Q5_K, Q6_K) and row kernels. */
static void test_kquant_decode_rows(void) {
    for (int v = 0; v < 2; v++) {
        if (v == 0 && !mm_avx512_supported()) continue;
        mm_avx512_allow(v == 0);
        test_kquant_decode_rows_once(v ? "AVX2" : "AVX-512");
    }
    mm_avx512_allow(true);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* under qemu (test-arm.sh), a hang shows the last check */
    mm_set_inline_macs(0); /* every product through the pool: the thread tests mean it */
    printf("SIMD kernels: %s\n", mm_kernels());
    test_quantize_act();
    test_quantize_act_K();
    test_attention_helpers();
    test_attention_softmax();
    if (mm_avx512_supported()) test_attention_blocks16();
    if (mm_avx2_supported()) test_attention_block8();
    test_avx512_matches_avx2();
    test_avx2_float_buffer();
    test_dec_tiles();
    test_dec_repack(DT_Q4_0);
    test_dec_repack(DT_IQ4_NL);
    {
        const dtype kq[] = {DT_Q2_K, DT_Q3_K, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_IQ4_XS};
        for (int i = 0; i < 6; i++) test_dec_repack(kq[i]);
    }
    test_kquant_avx512_matches_avx2();
    test_kquant_decode_rows();
    const dtype types[] = {DT_F32,  DT_F16,  DT_BF16, DT_Q8_0, DT_Q4_0,
                           DT_Q8_0, DT_Q4_0, DT_F32,  DT_F16,  DT_BF16};
    printf("AVX-512 VNNI kernels: %s\n", mm_avx512_supported() ? "yes" : "no");
    for (int i = 0; i < 10; i++) {
        bool quant = types[i] == DT_Q8_0 || types[i] == DT_Q4_0;
        /* the quantized types twice: with the AVX-512 VNNI kernels (when the CPU has them),
         * then with the AVX2 ones; both must equal the scalar twins bit for bit. The float
         * types twice: decode tiles on consecutive rows, then spread (mm_float_dec_spread); a
         * row alone (T = 1) must equal it in a block of T, bit for bit */
        mm_avx512_allow(i < 5 || i >= 7);
        mm_set_float_dec_spread(i >= 7);
        /* n_in: below, at and off the vector width; n_out: not a multiple of the 4-row tile */
        int n_in_a = quant ? 32 : 37, n_in_b = quant ? 32 * 23 : 701, n_in_c = quant ? 64 : 8;
        test_type(types[i], n_in_a, 13, 1);
        test_type(types[i], n_in_a, 6, 3);
        test_type(types[i], n_in_b, 29, 7);
        test_type(types[i], n_in_b, 3, 5);
        test_type(types[i], n_in_b, 21, 1); /* 8-row decode tiles and a remainder */
        /* decode: 16-row VNNI tiles (one, or one per thread) with ragged rests */
        test_type(types[i], n_in_b, 53, 1);
        test_type(types[i], n_in_a, 35, 1);
        test_type(types[i], n_in_c, 9, 7);
        if (!quant) test_type(types[i], 5, 7, 3);
        test_type(types[i], n_in_b, 30, 2);  /* a group of 4 activation rows, half empty */
        test_type(types[i], n_in_b, 53, 3);  /* Q4_0: its 16-row tiles for 3 rows */
        test_type(types[i], n_in_c, 31, 21); /* 4 groups of 4 rows per tile, and a ragged one */
    }
    mm_avx512_allow(true);
    mm_set_float_dec_spread(-1);
    /* BF16 on BF16 activations (--bf16-dot), where the CPU has vdpbf16ps: the 4 x 6 tiles and
     * their ragged edges (n_out off 4, T off 6), blocks of activation rows (2048 elements: 60
     * rows per block), rows not a multiple of 32 (the default path), every thread count */
    printf("AVX512_BF16 (--bf16-dot): %s\n", mm_bf16_dot_supported() ? "yes" : "no");
    /* a CPU whose vdpbf16ps computes otherwise than the twin would lose --bf16-dot silently */
    CHECK(mm_bf16_dot_supported() == mm_avx512bf16_cpuid(),
          "the CPU has AVX512_BF16, but its vdpbf16ps differs from dot_bf16_pairs (the probe)");
    CHECK(mm_set_bf16_dot(true) == mm_bf16_dot_supported(), "mm_set_bf16_dot");
    if (mm_bf16_dot()) {
        for (int spread = 0; spread < 2; spread++) { /* decode: rows consecutive, or spread */
            mm_set_float_dec_spread(spread);
            test_type(DT_BF16, 32, 13, 1);
            test_type(DT_BF16, 32 * 23, 53, 1);
        }
        mm_set_float_dec_spread(-1);
        test_type(DT_BF16, 64, 6, 3);
        test_type(DT_BF16, 32 * 23, 29, 7);
        test_type(DT_BF16, 96, 31, 13);
        test_type(DT_BF16, 2048, 9, 67);
        test_type(DT_BF16, 701, 21, 5);
        mm_avx512_allow(false); /* a CPU without AVX-512: the default path again */
        CHECK(!mm_bf16_dot(), "--bf16-dot stays on without AVX-512");
        mm_avx512_allow(true);
    }
    mm_set_bf16_dot(false);
    /* the other block types (engine/quant_dot.c): one block, several, and 11 activation rows
     * (the K-quant kernels take groups of 8: one group and a remainder) */
    const dtype deq[] = {DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q2_K, DT_Q3_K,
                         DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_IQ4_NL, DT_IQ4_XS};
    for (size_t i = 0; i < sizeof deq / sizeof deq[0]; i++) {
        int be = dtype_block_elems(deq[i]);
        test_type(deq[i], be, 13, 1);
        test_type(deq[i], 3 * be, 29, 7);
        test_type(deq[i], 2 * be, 9, 11);
        if (be != QK) continue;
        /* the 32-element types twice: with the AVX-512 VNNI tiles (when the CPU has them: 16-row
         * decode tiles up to 3 activation rows, 16-row tiles on repacked rows beyond, in
         * registers up to 12 rows, from a buffer over K in chunks of 64 blocks past that, and 4
         * x 4 tiles for the rows past a thread's last 16), then with the AVX2 passes (8 weight
         * rows for one activation row, 4 for two) and lanes tiles (from 3 rows, on repacked
         * rows); row counts off the 16, 8 and 4 (ragged tiles and passes) and odd and larger T */
        for (int v = 0; v < 2; v++) {
            mm_avx512_allow(v == 0);
            test_type(deq[i], 7 * be, 19, 1);
            test_type(deq[i], 5 * be, 23, 2);
            test_type(deq[i], 4 * be, 10, 3);
            test_type(deq[i], 23 * be, 53, 1);
            test_type(deq[i], 3 * be, 35, 3);
            test_type(deq[i], 3 * be, 13, 17);
            test_type(deq[i], 2 * be, 31, 21);
            test_type(deq[i], 2 * be, 6, 64);
            test_type(deq[i], 3 * be, 35, 9);
            test_type(deq[i], 70 * be, 20, 18);
        }
        mm_avx512_allow(true);
    }
    return check_summary();
}
