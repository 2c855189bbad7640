/* forward: the LLaMA-2 forward pass over a batch of rows (tokens) from one or more sequences.
 * Owns only per-step scratch, sized once in fwd_create for max_tokens rows; the weights belong
 * to the model and the keys/values to each sequence's kv_cache. Nothing here allocates, locks
 * (besides the pool's hand-off) or logs during a step. Every result element is computed by the
 * same operations whatever the thread count or the batch's other rows (see matmul.h). */
#include "forward.h"
#include "common.h"
#include "x86/attention_avx2.h"
#include "x86/attention_avx512.h"
#include "x86/x86.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FWD_MAX_ROPE_DIM 1024
static void rope_freqs(double *freq, const model *m);

struct fwd_ctx {
    const model *m;
    pool *p;
    int max_tokens;
    mm_scratch mm;
    float *x;     /* (max_tokens, dim) residual stream */
    float *xb;    /* (max_tokens, dim) normalised input of a sub-layer */
    float *xb2;   /* (max_tokens, dim) output of a sub-layer */
    float *q;     /* (max_tokens, n_heads * head_dim) */
    float *k;     /* (max_tokens, kv_dim) */
    float *v;     /* (max_tokens, kv_dim) */
    float *att;   /* (max_tokens, n_heads * head_dim) attention output */
    float *hb;    /* (max_tokens, hidden_dim) gate, then swiglu output */
    float *hb2;   /* (max_tokens, hidden_dim) up */
    float *x_alt; /* (max_tokens, dim) the next residual stream (x and x_alt swap) */
    double *rope_freq; /* (rope_dim / 2) theta^(-2i/rope_dim) */
    /* prefill attention: rows grouped into blocks of up to ATTN_QB consecutive positions of
     * one sequence; block b is rows qblock_rows[qblock_first[b] ...], qblock_n[b] of them */
    int n_qblocks;
    int *qblock_rows;  /* (max_tokens) */
    int *qblock_first; /* (max_tokens) */
    int *qblock_n;     /* (max_tokens) */
    bool *row_taken;   /* (max_tokens) scratch of group_rows */
};

fwd_ctx *fwd_create(const model *m, int max_tokens, pool *p, char *err, size_t errlen) {
    const model_config *c = &m->cfg;
    if (max_tokens < 1) {
        ls_fail(err, errlen, "max_tokens must be positive, got %d", max_tokens);
        return NULL;
    }
    if (c->rope_dim > FWD_MAX_ROPE_DIM) {
        ls_fail(err, errlen, "rope dimension %d above the supported %d", c->rope_dim,
                FWD_MAX_ROPE_DIM);
        return NULL;
    }
    fwd_ctx *f = calloc(1, sizeof *f);
    if (!f) goto oom;
    f->m = m;
    f->p = p;
    f->max_tokens = max_tokens;
    size_t T = (size_t)max_tokens, q_dim = (size_t)c->n_heads * c->head_dim,
           kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    int max_in = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    if ((int)q_dim > max_in) max_in = (int)q_dim;
    if (mm_scratch_init(&f->mm, max_tokens, max_in) != 0) goto oom;
    f->x = ls_alloc(T * c->dim * sizeof(float));
    f->xb = ls_alloc(T * c->dim * sizeof(float));
    f->xb2 = ls_alloc(T * c->dim * sizeof(float));
    f->q = ls_alloc(T * q_dim * sizeof(float));
    f->k = ls_alloc(T * kv_dim * sizeof(float));
    f->v = ls_alloc(T * kv_dim * sizeof(float));
    f->att = ls_alloc(T * q_dim * sizeof(float));
    f->hb = ls_alloc(T * c->hidden_dim * sizeof(float));
    f->hb2 = ls_alloc(T * c->hidden_dim * sizeof(float));
    f->x_alt = ls_alloc(T * c->dim * sizeof(float));
    f->rope_freq = ls_alloc((size_t)(c->rope_dim / 2 + 1) * sizeof(double));
    f->qblock_rows = ls_alloc(T * sizeof(int));
    f->qblock_first = ls_alloc(T * sizeof(int));
    f->qblock_n = ls_alloc(T * sizeof(int));
    f->row_taken = ls_alloc(T * sizeof(bool));
    if (!f->x || !f->xb || !f->xb2 || !f->q || !f->k || !f->v || !f->att || !f->hb || !f->hb2 ||
        !f->x_alt || !f->rope_freq || !f->qblock_rows || !f->qblock_first || !f->qblock_n ||
        !f->row_taken)
        goto oom;
    rope_freqs(f->rope_freq, m);
    return f;
oom:
    fwd_free(f);
    ls_fail(err, errlen, "out of memory for forward scratch of %d rows", max_tokens);
    return NULL;
}

void fwd_free(fwd_ctx *f) {
    if (!f) return;
    mm_scratch_free(&f->mm);
    free(f->x);
    free(f->xb);
    free(f->xb2);
    free(f->q);
    free(f->k);
    free(f->v);
    free(f->att);
    free(f->hb);
    free(f->hb2);
    free(f->x_alt);
    free(f->rope_freq);
    free(f->qblock_rows);
    free(f->qblock_first);
    free(f->qblock_n);
    free(f->row_taken);
    free(f);
}

/* --- the layers --- */

void rmsnorm(float *out, const float *x, const float *w, int T, int C, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * C;
        float *ot = out + (size_t)t * C;
        float ss = 0.0f;
        for (int i = 0; i < C; i++) ss += xt[i] * xt[i];
        float scale = 1.0f / sqrtf(ss / (float)C + eps);
        for (int i = 0; i < C; i++) ot[i] = xt[i] * scale * w[i];
    }
}

void rope(float *x, int n_heads, int head_dim, int rope_dim, int pos, float theta) {
    /* pair i of every head turns by the same angle: compute it once, in double, then apply */
    for (int i = 0; i < rope_dim / 2; i++) {
        double freq = pow((double)theta, -2.0 * i / (double)rope_dim);
        double angle = (double)pos * freq;
        float c = (float)cos(angle), s = (float)sin(angle);
        for (int h = 0; h < n_heads; h++) {
            float *pair = x + (size_t)h * head_dim + 2 * i;
            float x0 = pair[0], x1 = pair[1];
            pair[0] = x0 * c - x1 * s;
            pair[1] = x0 * s + x1 * c;
        }
    }
}

void softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

void swiglu(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* Reads one cached key or value element as F32 (Q8_0: d * q, exact in F32). */
static inline float kv_get(const void *row, kv_type type, int i) {
    if (type == KV_Q8_0) {
        const block_q8_0 *b = (const block_q8_0 *)row + i / QK;
        return f16_to_f32(b->d) * (float)b->qs[i % QK];
    }
    return type == KV_F16 ? f16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

/* n elements into a cache row at row (Q8_0: n a multiple of 32, row at a block's start). */
static void kv_put(void *row, kv_type type, const float *src, int n) {
    if (type == KV_Q8_0) {
        assert(n % QK == 0);
        quantize_row_q8_0(row, src, n);
    } else if (type == KV_F16) {
        for (int i = 0; i < n; i++) ((uint16_t *)row)[i] = f32_to_f16(src[i]);
    } else {
        memcpy(row, src, (size_t)n * sizeof(float));
    }
}

/* out (nr, n): n elements of nr Q8_0 cache rows, row j at (char *)row + j * stride, as F32 with
 * kv_get's values (with simd, attn_dequant_q8_0_avx512 or _avx2: the same bits, the products
 * being exact). */
static void kv_dequant_q8_0(float *out, const void *row, size_t stride, int nr, int n,
                            bool simd) {
    if (simd && mm_avx512_supported()) {
        attn_dequant_q8_0_avx512(out, row, stride, nr, n); /* n: a multiple of QK (kv_create) */
        return;
    }
    for (int j = 0; j < nr; j++) {
        const void *r = (const char *)row + (size_t)j * stride;
        if (simd) {
            attn_dequant_q8_0_avx2(out + (size_t)j * n, r, n);
            continue;
        }
        for (int i = 0; i < n; i++) out[(size_t)j * n + i] = kv_get(r, KV_Q8_0, i);
    }
}

static inline uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* The operand order of x86's maxps/minps (NaN in b gives b): the SIMD twin's bits. */
static inline float max_ps(float a, float b) { return a > b ? a : b; }
static inline float min_ps(float a, float b) { return a < b ? a : b; }

float attn_exp(float x) {
    /* each step is one IEEE operation, as in attn_exp8_avx2 (no FMA: -ffp-contract=off) */
    float xc = min_ps(ATTN_EXP_HI, max_ps(ATTN_EXP_LO, x));
    float t = xc * ATTN_EXP_LOG2E + ATTN_EXP_ROUND; /* n in its low mantissa bits */
    float n = t - ATTN_EXP_ROUND;
    float r = xc - n * ATTN_EXP_LN2_HI;
    r = r - n * ATTN_EXP_LN2_LO;
    float p = ATTN_EXP_C7;
    p = p * r + ATTN_EXP_C6;
    p = p * r + ATTN_EXP_C5;
    p = p * r + ATTN_EXP_C4;
    p = p * r + ATTN_EXP_C3;
    p = p * r + ATTN_EXP_C2;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* 2^n: n + 127 into the exponent field (bits(t) = bits(1.5 * 2^23) + n, whose high bits
     * the shift drops); n is in [-126, 127] after the clamp */
    float pow2 = bits_f32((f32_bits(t) + 127u) << 23);
    float e = p * pow2;
    return x < ATTN_EXP_LO ? 0.0f : e;
}

bool attn_softmax8(float w[8], float *shrink, float *max, float sum[8], const float s[8],
                   float scale) {
    float v[8], m4[4];
    for (int j = 0; j < 8; j++) v[j] = s[j] * scale;
    for (int j = 0; j < 4; j++) m4[j] = max_ps(v[j], v[j + 4]);
    float m2a = max_ps(m4[0], m4[2]), m2b = max_ps(m4[1], m4[3]);
    float bm = max_ps(m2a, m2b);
    bool rescale = bm > *max;
    if (rescale) {
        *shrink = attn_exp(*max - bm); /* 0 on the first block */
        for (int j = 0; j < 8; j++) sum[j] *= *shrink;
        *max = bm;
    }
    for (int j = 0; j < 8; j++) {
        w[j] = attn_exp(v[j] - *max);
        sum[j] += w[j];
    }
    return rescale;
}

/* The 8 partial sums of attn_softmax8, added in lane order. */
static float attn_sum8(const float sum[8]) {
    float total = 0.0f;
    for (int j = 0; j < 8; j++) total += sum[j];
    return total;
}

/* One (row, head) of causal attention over its sequence's cache, positions 0..n_pos - 1, in
 * blocks of 8 positions with an online softmax (running max and sum) so no score buffer of
 * context length is needed. The plain reference: attention_block computes the same bits with
 * its SIMD helpers. */
void attention_head(float *out /* (head_dim) */, const float *q /* (head_dim) */,
                    const kv_cache *kv, int layer, int kv_head, int n_pos, int head_dim) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    float max = -INFINITY, sum[8] = {0};
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t0 = 0; t0 < n_pos; t0 += 8) {
        const int cnt = n_pos - t0 < 8 ? n_pos - t0 : 8;
        float s[8], w[8], shrink;
        for (int j = 0; j < 8; j++) {
            s[j] = -INFINITY; /* a position past the end: weight 0 */
            if (j >= cnt) continue;
            const void *krow = kv_k_head(kv, layer, kv_head, t0 + j);
            float score = 0.0f;
            for (int i = 0; i < head_dim; i++) score += q[i] * kv_get(krow, kv->type, i);
            s[j] = score;
        }
        if (attn_softmax8(w, &shrink, &max, sum, s, scale))
            for (int i = 0; i < head_dim; i++) out[i] *= shrink;
        for (int j = 0; j < cnt; j++) {
            const void *vrow = kv_v_head(kv, layer, kv_head, t0 + j);
            for (int i = 0; i < head_dim; i++) out[i] += w[j] * kv_get(vrow, kv->type, i);
        }
    }
    const float total = attn_sum8(sum);
    for (int i = 0; i < head_dim; i++) out[i] /= total;
}

/* --- the step's work besides the matrix products, split over the pool ---
 * Every kernel below does, for each output element, exactly the float operations of its scalar
 * twin above, in the same order; the pool only decides which thread runs which rows, columns or
 * (rows, head) items. So results are bit-identical whatever the thread count or batch. */

/* x_out (C) = x + y (y NULL: x), out (C) = rmsnorm(x_out) * w, columns [c0, c1) only; the sum
 * of squares always runs over the whole row, in rmsnorm's order. */
static void add_rmsnorm_row(float *x_out, float *out, const float *x, const float *y,
                            const float *w, int C, float eps, int c0, int c1) {
    float ss = 0.0f;
    if (y)
        for (int i = 0; i < C; i++) {
            float v = x[i] + y[i];
            ss += v * v;
        }
    else
        for (int i = 0; i < C; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)C + eps);
    for (int i = c0; i < c1; i++) {
        float v = y ? x[i] + y[i] : x[i];
        if (x_out) x_out[i] = v;
        out[i] = v * scale * w[i];
    }
}

typedef struct {
    float *x_out, *out;
    const float *x, *y, *w;
    int T, C;
    float eps;
} norm_job;

static void norm_rows(void *arg, int ith, int nth) {
    const norm_job *j = arg;
    for (int t = ith; t < j->T; t += nth) {
        size_t o = (size_t)t * j->C;
        add_rmsnorm_row(j->x_out ? j->x_out + o : NULL, j->out + o, j->x + o,
                        j->y ? j->y + o : NULL, j->w, j->C, j->eps, 0, j->C);
    }
}

void fwd_add_rmsnorm(float *x_out, float *out, const float *x, const float *y, const float *w,
                     int T, int C, float eps, pool *p) {
    norm_job j = {x_out, out, x, y, w, T, C, eps};
    /* one row alone: the whole row's sum of squares is the work, and splitting its columns
     * would make every thread repeat it; the owner does it without a hand-off */
    if (T < 2 || pool_size(p) < 2)
        norm_rows(&j, 0, 1);
    else
        pool_run(p, norm_rows, &j);
}

typedef struct {
    float *out;
    const float *gate, *up;
    size_t n;
} swiglu_job;

static void swiglu_part(void *arg, int ith, int nth) {
    const swiglu_job *j = arg;
    size_t per = ((j->n + (size_t)nth - 1) / (size_t)nth + 15) & ~(size_t)15; /* whole lines */
    size_t i0 = per * (size_t)ith, i1 = i0 + per < j->n ? i0 + per : j->n;
    if (i0 < i1) swiglu(j->out + i0, j->gate + i0, j->up + i0, (int)(i1 - i0));
}

void fwd_swiglu(float *out, const float *gate, const float *up, size_t n, pool *p) {
    swiglu_job j = {out, gate, up, n};
    /* a few thousand elements cost less than a hand-off (see mm_set_inline_macs) */
    if ((int64_t)n * 16 < mm_inline_macs())
        swiglu_part(&j, 0, 1);
    else
        pool_run(p, swiglu_part, &j);
}

/* freq (rope_dim / 2): theta^(-2i/rope_dim), as rope computes it, divided by the linear
 * scaling factor and by rope_freqs.weight's factor of pair i (Llama 3.1+) when present. */
static void rope_freqs(double *freq, const model *m) {
    const model_config *c = &m->cfg;
    double scale = c->rope_scale > 0.0f ? (double)c->rope_scale : 1.0;
    for (int i = 0; i < c->rope_dim / 2; i++) {
        freq[i] = pow((double)c->rope_theta, -2.0 * i / (double)c->rope_dim) / scale;
        if (m->rope_factors) freq[i] /= (double)m->rope_factors[i];
    }
}

/* cs (rope_dim): cos, sin of pair i's angle at pos, in rope's precision. */
static void rope_cos_sin(float *cs, const double *freq, int rope_dim, int pos) {
    for (int i = 0; i < rope_dim / 2; i++) {
        double angle = (double)pos * freq[i];
        cs[2 * i] = (float)cos(angle);
        cs[2 * i + 1] = (float)sin(angle);
    }
}

/* rope on heads [h0, h1) of x (n_heads, head_dim) with a table from rope_cos_sin. */
static void rope_heads(float *x, const float *cs, int head_dim, int rope_dim, int h0, int h1) {
    for (int h = h0; h < h1; h++) {
        float *xh = x + (size_t)h * head_dim;
        for (int i = 0; i < rope_dim / 2; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1], x0 = xh[2 * i], x1 = xh[2 * i + 1];
            xh[2 * i] = x0 * c - x1 * s;
            xh[2 * i + 1] = x0 * s + x1 * c;
        }
    }
}

#define ATTN_KB 8    /* positions per block of the online softmax */
#define ATTN_QB 8    /* prompt rows per prefill block (group_rows); heads per decode call */
#define ATTN_QMAX 32 /* rows one attention_block call can take (rows x heads in prefill) */
/* The keys and values of positions t0 .. t0 + n - 1 of a kv head as F32 (n, head_dim), for the
 * rows-in-lanes phase: *kf, *vf point into an F32 cache, or at kbuf, vbuf, where an F16 cache's
 * (with AVX-512 when z512) or a Q8_0 cache's are converted. */
static void lanes_kv_f32(const float **kf, const float **vf, const kv_cache *kv, int layer,
                         int kv_head, int t0, int n, int head_dim, bool z512, float *kbuf,
                         float *vbuf) {
    const char *k0 = kv_k_head(kv, layer, kv_head, t0);
    const char *v0 = kv_v_head(kv, layer, kv_head, t0);
    *kf = kbuf, *vf = vbuf;
    if (kv->type == KV_F16 && z512) { /* front to back (transposing F16 rows read slower) */
        attn_f16_to_f32_avx512(kbuf, (const uint16_t *)k0, n * head_dim);
        attn_f16_to_f32_avx512(vbuf, (const uint16_t *)v0, n * head_dim);
    } else if (kv->type == KV_F16) { /* the block as one row of n * head_dim */
        attn_f16_rows_avx2(kbuf, (const uint16_t *)k0, 0, 1, n * head_dim);
        attn_f16_rows_avx2(vbuf, (const uint16_t *)v0, 0, 1, n * head_dim);
    } else if (kv->type == KV_Q8_0) {
        const size_t head_bytes = kv_row_bytes(kv->type, head_dim);
        kv_dequant_q8_0(kbuf, k0, head_bytes, n, head_dim, true);
        kv_dequant_q8_0(vbuf, v0, head_bytes, n, head_dim, true);
    } else {
        *kf = (const float *)k0, *vf = (const float *)v0;
    }
}

/* attention_block_lanes's blocks with AVX-512, two at a time: their keys and values as F32 once
 * (lanes_kv_f32; kbuf, vbuf: (2 * ATTN_KB, head_dim), attention_block's buffers), the keys
 * transposed once for every group (attn_keys16_t_avx512), then each group's attn_block16_avx512.
 * qt, mx, st (the sums as sumr) and scale as attention_block_lanes sets them up. */
static void lanes_blocks16(float *const *out, int nq, const kv_cache *kv, int layer, int kv_head,
                           int head_dim, float scale, const int *done, int t_end,
                           float (*qt)[ATTN512_MAX_HEAD_DIM * 8], float (*mx)[8],
                           float (*st)[ATTN_KB * 8], float *kbuf, float *vbuf) {
    enum { SPAN = 2 * ATTN_KB };
    float kt[ATTN512_MAX_HEAD_DIM * SPAN];
    assert(head_dim <= ATTN512_MAX_HEAD_DIM && SPAN * head_dim <= ATTN_KB * ATTN_MAX_HEAD_DIM);
    for (int t0 = 0; t0 < t_end; t0 += SPAN) {
        const int nk = t_end - t0 < SPAN ? t_end - t0 : SPAN; /* a multiple of ATTN_KB */
        const float *kf, *vf;
        lanes_kv_f32(&kf, &vf, kv, layer, kv_head, t0, nk, head_dim, true, kbuf, vbuf);
        attn_keys16_t_avx512(kt, kf, nk, head_dim);
        for (int g = 0; g < (nq + 7) / 8; g++) {
            const int nb = (done[g] - t0) / ATTN_KB; /* the blocks group g sees here */
            if (nb > 0)
                attn_block16_avx512(out + 8 * g, nq - 8 * g < 8 ? nq - 8 * g : 8,
                                    nb < 2 ? nb : 2, qt[g], mx[g], st[g], kt, vf, head_dim,
                                    scale);
        }
    }
}

/* The rows-in-lanes phase of attention_block (its arguments, and its state max, sum, out as it
 * sets them up): for each group of 8 consecutive query rows with at least 4 of them, the full
 * blocks of 8 positions from position 0 that every row of the group sees go through
 * lanes_blocks16 two at a time (the positions in lanes), or attn_block8_avx2 one at a time
 * without z512 (the rows in lanes), the blocks' keys and values as F32 once (lanes_kv_f32) for
 * all the groups.
 * done[g] = the positions group g took (a multiple of ATTN_KB; 0 for a group of fewer than 4
 * rows); each row's max, sum and out are then what attention_block's loop leaves after those
 * blocks, so that it goes on from there. */
static void attention_block_lanes(float *const *out, const float *const *q, int nq,
                                  const kv_cache *kv, int layer, int kv_head, int pos0, int step,
                                  int rep, int head_dim, float *max, float (*sum)[ATTN_KB],
                                  int *done, float *kbuf, float *vbuf, bool z512) {
    enum { NG = ATTN_QMAX / 8 };
    const float scale = 1.0f / sqrtf((float)head_dim);
    /* group g: its rows as lanes (head_dim, 8), its maxima and its sums (sumt layout) */
    float qt[NG][ATTN512_MAX_HEAD_DIM * 8], mx[NG][8], st[NG][ATTN_KB * 8];
    int t_end = 0;
    for (int g = 0; g < (nq + 7) / 8; g++) {
        const int r0 = 8 * g, nr = nq - r0 < 8 ? nq - r0 : 8;
        const int last = pos0 + r0 / rep * step; /* the position of the group's first row */
        done[g] = nr >= 4 ? (last + 1) / ATTN_KB * ATTN_KB : 0;
        if (!done[g]) continue;
        t_end = done[g] > t_end ? done[g] : t_end;
        for (int r = 0; r < 8; r++) {
            for (int i = 0; i < head_dim; i++) qt[g][i * 8 + r] = r < nr ? q[r0 + r][i] : 0.0f;
            mx[g][r] = r < nr ? max[r0 + r] : -INFINITY;
            for (int j = 0; j < ATTN_KB; j++) /* z512: row-major; AVX2: rows in lanes */
                st[g][z512 ? r * 8 + j : j * 8 + r] = r < nr ? sum[r0 + r][j] : 0.0f;
        }
    }
    if (z512) {
        lanes_blocks16(out, nq, kv, layer, kv_head, head_dim, scale, done, t_end, qt, mx, st, kbuf,
                       vbuf);
    } else {
        for (int t0 = 0; t0 < t_end; t0 += ATTN_KB) {
            const float *kf, *vf;
            lanes_kv_f32(&kf, &vf, kv, layer, kv_head, t0, ATTN_KB, head_dim, false, kbuf, vbuf);
            for (int g = 0; g < (nq + 7) / 8; g++)
                if (t0 < done[g])
                    attn_block8_avx2(out + 8 * g, nq - 8 * g < 8 ? nq - 8 * g : 8, qt[g], mx[g],
                                     st[g], kf, vf, head_dim, scale);
        }
    }
    for (int g = 0; g < (nq + 7) / 8; g++)
        for (int r = 0; done[g] && r < 8 && 8 * g + r < nq; r++) {
            max[8 * g + r] = mx[g][r];
            for (int j = 0; j < ATTN_KB; j++)
                sum[8 * g + r][j] = st[g][z512 ? r * 8 + j : j * 8 + r];
        }
}

/* Attention of nq query rows of one sequence and one kv head at positions pos0 + (r / rep) *
 * step (row r sees positions 0 .. its own): step 1 for consecutive prompt rows, rep of them
 * (the kv head's query heads, or 1) at each position; step 0 for the query heads of one kv head
 * at one position (a decode row). Blockwise: each block
 * of ATTN_KB cached keys and values is used by every query row of the block while it is in L1;
 * with the SIMD helpers a full block's keys are laid out transposed once (attn_keys8_t_avx2)
 * and scored for all its rows, an F16 or Q8_0 block's values converted to F32 once when several
 * rows share them, and each row takes the block's values in one pass over its output
 * (attn_accum8_avx2); first, attention_block_lanes takes each group of 4-8 rows over the full
 * blocks all its rows see, the rows in lanes (head_dim a multiple of 16 up to 128). Each row
 * keeps its own softmax state and goes through attention_head's blocks of 8 positions with its
 * float operations (attn_softmax8 or its SIMD twins), so every row's result is bit-identical to
 * attention_head's, whatever nq and whichever path. nq <= ATTN_QMAX. Longer than 100 lines:
 * the block loop's SIMD and scalar paths share their softmax state and read best in one place. */
/* No software prefetch: a kv head's keys and values are each one contiguous stream (kv_cache.h),
 * which the hardware prefetchers follow; prefetching 4 blocks ahead, useful when the slices
 * were 128 bytes every 512, made decode at 4k slower (11.4 against 12.1 tok/s, TinyLlama shape,
 * F16 cache, docs/PERFORMANCE.md); in attention_block_lanes, 2-16 blocks ahead gave nothing this
 * host could measure. */
static void attention_block(float *const *out /* nq x (head_dim) */,
                            const float *const *q /* nq x (head_dim) */, int nq,
                            const kv_cache *kv, int layer, int kv_head, int pos0, int step,
                            int rep, int head_dim, bool simd) {
    assert(nq >= 1 && nq <= ATTN_QMAX && rep >= 1 && (!simd || head_dim <= ATTN_MAX_HEAD_DIM));
    const float scale = 1.0f / sqrtf((float)head_dim);
    const bool f16 = kv->type == KV_F16, q8 = kv->type == KV_Q8_0;
    /* the kv head's positions follow each other at head_bytes (its elements: head_dim) */
    const size_t head_bytes = kv_row_bytes(kv->type, head_dim);
    float max[ATTN_QMAX], sum[ATTN_QMAX][ATTN_KB], scores[ATTN_QMAX * ATTN_KB];
    /* a full block's keys transposed (head_dim, ATTN_KB), or a Q8_0 partial block's keys as F32
     * (ATTN_KB, head_dim); the block's values as F32 (ATTN_KB, head_dim) */
    float kt[ATTN_KB * ATTN_MAX_HEAD_DIM], vt[ATTN_KB * ATTN_MAX_HEAD_DIM];
    for (int r = 0; r < nq; r++) {
        max[r] = -INFINITY;
        for (int j = 0; j < ATTN_KB; j++) sum[r][j] = 0.0f;
        for (int i = 0; i < head_dim; i++) out[r][i] = 0.0f;
    }
    const int n_max = pos0 + (nq - 1) / rep * step + 1;
    /* what the SIMD helpers read and write, declared to ThreadSanitizer (engine/common.h) */
    LS_TSAN_READ(kv_k_head(kv, layer, kv_head, 0), (size_t)n_max * head_bytes);
    LS_TSAN_READ(kv_v_head(kv, layer, kv_head, 0), (size_t)n_max * head_bytes);
    for (int r = 0; r < nq; r++) {
        LS_TSAN_READ(q[r], (size_t)head_dim * sizeof **q);
        LS_TSAN_WRITE(out[r], (size_t)head_dim * sizeof **out);
    }
    /* done[r / 8]: the positions row r took in attention_block_lanes */
    int done[ATTN_QMAX / 8] = {0}, t_start = 0;
    if (simd && head_dim % 16 == 0 && head_dim <= ATTN512_MAX_HEAD_DIM) {
        attention_block_lanes(out, q, nq, kv, layer, kv_head, pos0, step, rep, head_dim, max, sum,
                              done, kt, vt, mm_avx512_supported());
        t_start = n_max;
        for (int g = 0; g < (nq + 7) / 8; g++) t_start = done[g] < t_start ? done[g] : t_start;
    }
    for (int t0 = t_start; t0 < n_max; t0 += ATTN_KB) {
        const int kbn = n_max - t0 < ATTN_KB ? n_max - t0 : ATTN_KB;
        const char *k0 = kv_k_head(kv, layer, kv_head, t0);
        const char *v0 = kv_v_head(kv, layer, kv_head, t0);
        const bool full = simd && kbn == ATTN_KB;
        /* rows that see position t0 (with step 0, every row sees every position) */
        const int r_first = step && t0 > pos0 ? (t0 - pos0) * rep : 0;
        const float *kf = NULL, *vf = NULL; /* the block as F32 (kbn, head_dim), or NULL */
        if (full) { /* the keys transposed once, then the 8-wide scores of every row */
            if (q8)
                attn_keys8_t_q8_0_avx2(kt, k0, head_bytes, head_dim);
            else
                attn_keys8_t_avx2(kt, k0, f16, (size_t)head_dim, head_dim);
            attn_scores8t_rows_avx2(scores + r_first * ATTN_KB, q + r_first, nq - r_first, kt,
                                    head_dim);
            if (f16 && nq - r_first > 1) {
                attn_f16_rows_avx2(vt, (const uint16_t *)v0, (size_t)head_dim, kbn, head_dim);
                vf = vt;
            } else if (q8 && nq - r_first > 1) {
                kv_dequant_q8_0(vt, v0, head_bytes, kbn, head_dim, simd);
                vf = vt;
            }
        } else if (q8 && head_dim <= ATTN_MAX_HEAD_DIM) {
            /* Q8_0 outside the SIMD full-block path: the block's keys and values as F32 once,
             * not each element through kv_get for every row */
            kv_dequant_q8_0(kt, k0, head_bytes, kbn, head_dim, simd);
            kv_dequant_q8_0(vt, v0, head_bytes, kbn, head_dim, simd);
            kf = kt, vf = vt;
        }
        for (int r = r_first; r < nq; r++) {
            if (t0 < done[r / 8]) continue; /* taken by attention_block_lanes */
            const float *qr = q[r];
            float *o = out[r], *s = scores + r * ATTN_KB;
            const int last = pos0 + r / rep * step; /* the row's own position */
            const int cnt = last + 1 - t0 < kbn ? last + 1 - t0 : kbn;
            for (int j = 0; j < ATTN_KB; j++) {
                if (j >= cnt) {
                    s[j] = -INFINITY; /* not seen by this row: weight 0 */
                } else if (!full) {
                    const void *krow = k0 + (size_t)j * head_bytes;
                    float score = 0.0f;
                    if (kf)
                        for (int i = 0; i < head_dim; i++) score += qr[i] * kf[j * head_dim + i];
                    else
                        for (int i = 0; i < head_dim; i++)
                            score += qr[i] * kv_get(krow, kv->type, i);
                    s[j] = score;
                }
            }
            float w[ATTN_KB], shrink = 1.0f;
            if (simd) {
                bool rescale = attn_softmax8_avx2(w, &shrink, &max[r], sum[r], s, scale);
                if (vf)
                    attn_accum8_avx2(o, rescale, shrink, w, cnt, vf, false, (size_t)head_dim,
                                     head_dim);
                else if (q8)
                    attn_accum8_q8_0_avx2(o, rescale, shrink, w, cnt, v0, head_bytes, head_dim);
                else
                    attn_accum8_avx2(o, rescale, shrink, w, cnt, v0, f16, (size_t)head_dim,
                                     head_dim);
                continue;
            }
            if (attn_softmax8(w, &shrink, &max[r], sum[r], s, scale))
                for (int i = 0; i < head_dim; i++) o[i] *= shrink;
            for (int j = 0; j < cnt; j++) {
                const void *vrow = v0 + (size_t)j * head_bytes;
                if (vf)
                    for (int i = 0; i < head_dim; i++) o[i] += w[j] * vf[j * head_dim + i];
                else
                    for (int i = 0; i < head_dim; i++)
                        o[i] += w[j] * kv_get(vrow, kv->type, i);
            }
        }
    }
    for (int r = 0; r < nq; r++) {
        const float total = attn_sum8(sum[r]);
        for (int i = 0; i < head_dim; i++) out[r][i] /= total;
    }
}

/* The attention helpers are x86 (AVX2) only; elsewhere the scalar loops, the same bits. */
static bool attn_simd(int head_dim) {
    return mm_using_simd() && mm_avx2_supported() && head_dim <= ATTN_MAX_HEAD_DIM;
}

void attention_rows(float *out, const float *q, size_t q_stride, int nq, int rep,
                    const kv_cache *kv, int layer, int kv_head, int pos0, int head_dim) {
    assert(rep >= 1 && rep <= ATTN_QMAX);
    const bool simd = attn_simd(head_dim);
    const int chunk = ATTN_QMAX / rep * rep; /* whole positions */
    for (int r0 = 0; r0 < nq; r0 += chunk) {
        int n = nq - r0 < chunk ? nq - r0 : chunk;
        float *o[ATTN_QMAX];
        const float *qr[ATTN_QMAX];
        for (int r = 0; r < n; r++) {
            o[r] = out + (size_t)(r0 + r) * q_stride;
            qr[r] = q + (size_t)(r0 + r) * q_stride;
        }
        attention_block(o, qr, n, kv, layer, kv_head, pos0 + r0 / rep, 1, rep, head_dim, simd);
    }
}

/* Rows of a chunk with their sequence's K/V written to the cache, then attention. */
typedef struct {
    fwd_ctx *f;
    kv_cache *const *caches;
    const int32_t *pos, *seq;
    int layer, T;
} attn_job;

/* RoPE on q and k of row t, kv heads [g0, g1) (and their query heads), then K/V of those heads
 * into the row's cache. */
static void rope_kv_row(const attn_job *j, int t, int g0, int g1, float *cs) {
    fwd_ctx *f = j->f;
    const model_config *c = &f->m->cfg;
    const int hd = c->head_dim, kv_dim = c->n_kv_heads * hd, group = c->n_heads / c->n_kv_heads;
    float *qt = f->q + (size_t)t * c->n_heads * hd, *kt = f->k + (size_t)t * kv_dim;
    const float *vt = f->v + (size_t)t * kv_dim;
    rope_cos_sin(cs, f->rope_freq, c->rope_dim, j->pos[t]);
    rope_heads(qt, cs, hd, c->rope_dim, g0 * group, g1 * group);
    rope_heads(kt, cs, hd, c->rope_dim, g0, g1);
    kv_cache *kv = j->caches[j->seq[t]];
    for (int g = g0; g < g1; g++) {
        kv_put(kv_k_head(kv, j->layer, g, j->pos[t]), kv->type, kt + (size_t)g * hd, hd);
        kv_put(kv_v_head(kv, j->layer, g, j->pos[t]), kv->type, vt + (size_t)g * hd, hd);
    }
}

/* Prefill: RoPE and K/V writes for whole rows (rows of one sequence need each other's K/V). */
static void rope_kv_rows(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    float cs[FWD_MAX_ROPE_DIM];
    for (int t = ith; t < j->T; t += nth) rope_kv_row(j, t, 0, j->f->m->cfg.n_kv_heads, cs);
}

/* Every row from a different sequence (a decode step): per (row, kv head), RoPE, the K/V write
 * and the attention of that kv head's query heads, in one hand-off. */
static void rope_kv_attention_items(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const model_config *c = &j->f->m->cfg;
    const int hd = c->head_dim, q_dim = c->n_heads * hd, group = c->n_heads / c->n_kv_heads;
    const bool simd = attn_simd(hd);
    float cs[FWD_MAX_ROPE_DIM];
    for (int it = ith; it < j->T * c->n_kv_heads; it += nth) {
        int t = it / c->n_kv_heads, g = it % c->n_kv_heads;
        rope_kv_row(j, t, g, g + 1, cs);
        /* the kv head's query heads share each block of keys (up to ATTN_QB at a time) */
        for (int h0 = g * group; h0 < (g + 1) * group; h0 += ATTN_QB) {
            const int n = (g + 1) * group - h0 < ATTN_QB ? (g + 1) * group - h0 : ATTN_QB;
            float *o[ATTN_QB];
            const float *qh[ATTN_QB];
            for (int r = 0; r < n; r++) {
                o[r] = j->f->att + (size_t)t * q_dim + (size_t)(h0 + r) * hd;
                qh[r] = j->f->q + (size_t)t * q_dim + (size_t)(h0 + r) * hd;
            }
            attention_block(o, qh, n, j->caches[j->seq[t]], j->layer, g, j->pos[t], 0, 1, hd,
                            simd);
        }
    }
}

/* Prefill: items (block of up to ATTN_QB rows of one sequence, kv head), dealt round-robin so
 * that the long late blocks are shared. The kv head's query heads go through attention_block
 * together, as many whole positions (all group heads of each) as ATTN_QMAX allows, so that
 * they share each transposed key block; a group wider than ATTN_QMAX goes a position at a time
 * in slices of heads. */
static void attention_items(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const fwd_ctx *f = j->f;
    const model_config *c = &f->m->cfg;
    const int hd = c->head_dim, q_dim = c->n_heads * hd, group = c->n_heads / c->n_kv_heads;
    const bool simd = attn_simd(hd);
    /* positions per call, and query heads per call at one position */
    const int per = group <= ATTN_QMAX ? ATTN_QMAX / group : 1;
    const int heads = group <= ATTN_QMAX ? group : ATTN_QMAX;
    for (int it = ith; it < f->n_qblocks * c->n_kv_heads; it += nth) {
        const int b = it / c->n_kv_heads, g = it % c->n_kv_heads, n = f->qblock_n[b];
        const int *rows = f->qblock_rows + f->qblock_first[b];
        const kv_cache *kv = j->caches[j->seq[rows[0]]];
        for (int r0 = 0; r0 < n; r0 += per)
            for (int h0 = 0; h0 < group; h0 += heads) {
                const int np = n - r0 < per ? n - r0 : per;
                const int nh = group - h0 < heads ? group - h0 : heads;
                float *o[ATTN_QMAX];
                const float *qr[ATTN_QMAX];
                for (int r = 0; r < np; r++) /* row r0 + r's heads, in order */
                    for (int h = 0; h < nh; h++) {
                        size_t at = (size_t)rows[r0 + r] * q_dim +
                                    (size_t)(g * group + h0 + h) * hd;
                        o[r * nh + h] = f->att + at;
                        qr[r * nh + h] = f->q + at;
                    }
                attention_block(o, qr, np * nh, kv, j->layer, g, j->pos[rows[r0]], 1, nh, hd,
                                simd);
            }
    }
}

/* Groups the chunk's rows into prefill attention blocks (see fwd_ctx). Rows of one sequence are
 * at consecutive positions in batch order (check_batch), so a block's positions are too.
 * Returns true when no two rows share a sequence (a decode step). */
static bool group_rows(fwd_ctx *f, const int32_t *seq, int T) {
    bool *taken = f->row_taken;
    for (int t = 0; t < T; t++) taken[t] = false;
    int n_blocks = 0, n_rows = 0;
    bool distinct = true;
    for (int t = 0; t < T; t++) {
        if (taken[t]) continue;
        int n = 0;
        f->qblock_first[n_blocks] = n_rows;
        for (int u = t; u < T && n < ATTN_QB; u++)
            if (!taken[u] && seq[u] == seq[t]) {
                taken[u] = true;
                f->qblock_rows[n_rows++] = u;
                n++;
            }
        f->qblock_n[n_blocks++] = n;
        distinct &= n == 1; /* two rows of a sequence would share a block */
    }
    f->n_qblocks = n_blocks;
    return distinct;
}

/* Runs rows [0, T) of one chunk through every layer; leaves every row's final residual,
 * normalised by out_norm, in f->xb. */
static void forward_chunk(fwd_ctx *f, kv_cache *const *caches, const int32_t *token,
                          const int32_t *pos, const int32_t *seq, int T) {
    assert(T >= 1 && T <= f->max_tokens); /* the scratch's rows */
    const model *m = f->m;
    const model_config *c = &m->cfg;
    const int dim = c->dim;

    for (int t = 0; t < T; t++)
        dequantize_row(f->x + (size_t)t * dim, tensor_row(&m->tok_embd, token[t]),
                       m->tok_embd.type, dim);
    const bool decode_step = group_rows(f, seq, T);
    int64_t attn_macs = 0; /* scores and weighted values of every row, for every head */
    for (int t = 0; t < T; t++) attn_macs += 2 * (int64_t)(pos[t] + 1) * c->n_heads * c->head_dim;
    fwd_add_rmsnorm(NULL, f->xb, f->x, NULL, m->layers[0].attn_norm.data, T, dim, c->norm_eps,
                    f->p);

    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *w = &m->layers[l];
        float *tmp;
        /* attention; f->xb holds rmsnorm(x) * attn_norm */
        matmul(f->q, f->xb, &w->wq, T, &f->mm, f->p);
        matmul(f->k, f->xb, &w->wk, T, &f->mm, f->p);
        matmul(f->v, f->xb, &w->wv, T, &f->mm, f->p);
        attn_job aj = {f, caches, pos, seq, l, T};
        if (decode_step && attn_macs < mm_inline_macs()) {
            rope_kv_attention_items(&aj, 0, 1); /* small: cheaper than a hand-off, same bits */
        } else if (decode_step) {
            pool_run(f->p, rope_kv_attention_items, &aj);
        } else {
            pool_run(f->p, rope_kv_rows, &aj);
            pool_run(f->p, attention_items, &aj);
        }
        matmul(f->xb2, f->att, &w->wo, T, &f->mm, f->p);
        /* x += attention output; xb = rmsnorm(x) * ffn_norm */
        fwd_add_rmsnorm(f->x_alt, f->xb, f->x, f->xb2, w->ffn_norm.data, T, dim, c->norm_eps,
                        f->p);
        tmp = f->x, f->x = f->x_alt, f->x_alt = tmp;
        /* feed-forward */
        matmul(f->hb, f->xb, &w->w_gate, T, &f->mm, f->p);
        matmul(f->hb2, f->xb, &w->w_up, T, &f->mm, f->p);
        fwd_swiglu(f->hb, f->hb, f->hb2, (size_t)T * c->hidden_dim, f->p);
        matmul(f->xb2, f->hb, &w->w_down, T, &f->mm, f->p);
        /* x += feed-forward output; xb = the next layer's input (or the classifier's) */
        const float *next_norm =
            l + 1 < c->n_layers ? m->layers[l + 1].attn_norm.data : m->out_norm.data;
        fwd_add_rmsnorm(f->x_alt, f->xb, f->x, f->xb2, next_norm, T, dim, c->norm_eps, f->p);
        tmp = f->x, f->x = f->x_alt, f->x_alt = tmp;
    }
}

/* Checks the whole batch before any cache is touched, so a bad batch changes nothing. */
static int check_batch(const fwd_ctx *f, kv_cache *const *caches, int n_caches,
                       const fwd_batch *b, char *err, size_t errlen) {
    const model_config *c = &f->m->cfg;
    if (b->n_tokens < 1) return ls_fail(err, errlen, "empty batch");
    for (int i = 0; i < b->n_tokens; i++) {
        int tok = b->token[i], s = b->seq[i], p = b->pos[i];
        if (tok < 0 || tok >= c->vocab_size)
            return ls_fail(err, errlen, "token id %d out of range [0, %d)", tok, c->vocab_size);
        if (s < 0 || s >= n_caches || !caches[s])
            return ls_fail(err, errlen, "row %d: sequence %d has no KV cache", i, s);
        const kv_cache *kv = caches[s];
        if (kv->n_layers != c->n_layers || kv->kv_dim != c->n_kv_heads * c->head_dim)
            return ls_fail(err, errlen, "sequence %d: KV cache shape does not match the model", s);
        if (p < 0 || p >= kv->n_ctx)
            return ls_fail(err, errlen, "position %d is outside the context of %d tokens", p,
                           kv->n_ctx);
        /* the previous row of the same sequence fixes where this one must be */
        int prev = i - 1;
        while (prev >= 0 && b->seq[prev] != s) prev--;
        int expect_max = prev >= 0 ? b->pos[prev] + 1 : kv->n;
        if (prev >= 0 ? p != expect_max : p > expect_max)
            return ls_fail(err, errlen, "sequence %d: position %d leaves a gap (next is %d)", s,
                           p, expect_max);
    }
    return 0;
}

int fwd_decode(fwd_ctx *f, kv_cache *const *caches, int n_caches, const fwd_batch *b,
               float *logits, char *err, size_t errlen) {
    const model *m = f->m;
    const int dim = m->cfg.dim, vocab = m->cfg.vocab_size;
    if (check_batch(f, caches, n_caches, b, err, errlen) != 0) return -1;

    size_t n_out = 0, n_hidden = 0;
    for (int start = 0; start < b->n_tokens; start += f->max_tokens) {
        int T = b->n_tokens - start < f->max_tokens ? b->n_tokens - start : f->max_tokens;
        forward_chunk(f, caches, b->token + start, b->pos + start, b->seq + start, T);
        for (int t = 0; t < T; t++) {
            kv_cache *kv = caches[b->seq[start + t]];
            kv->n = b->pos[start + t] + 1;
        }
        if (b->hidden) /* before the gather below overwrites rows of xb */
            for (int t = 0; t < T; t++)
                if (b->hidden[start + t])
                    memcpy(b->hidden_out + n_hidden++ * dim, f->xb + (size_t)t * dim,
                           (size_t)dim * sizeof(float));
        /* gather the normalised rows whose logits are wanted (in order), classify */
        int n_sel = 0;
        for (int t = 0; t < T; t++) {
            int row = start + t;
            bool want = b->logits ? b->logits[row] : row == b->n_tokens - 1;
            if (!want) continue;
            if (n_sel != t)
                memcpy(f->xb + (size_t)n_sel * dim, f->xb + (size_t)t * dim,
                       (size_t)dim * sizeof(float));
            n_sel++;
        }
        if (n_sel > 0) matmul(logits + n_out * vocab, f->xb, &m->output, n_sel, &f->mm, f->p);
        n_out += (size_t)n_sel;
    }
    return 0;
}
