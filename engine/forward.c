/* forward: the LLaMA-2 forward pass over a batch of rows (tokens) from one or more sequences.
 * Owns only per-step scratch, sized once in fwd_create for max_tokens rows; the weights belong
 * to the model and the keys/values to each sequence's kv_cache. Nothing here allocates, locks
 * (besides the pool's hand-off) or logs during a step. Every result element is computed by the
 * same operations whatever the thread count or the batch's other rows (see matmul.h). */
#include "forward.h"
#include "common.h"
#include "matmul_avx2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
};

fwd_ctx *fwd_create(const model *m, int max_tokens, pool *p, char *err, size_t errlen) {
    const model_config *c = &m->cfg;
    if (max_tokens < 1) {
        ls_fail(err, errlen, "max_tokens must be positive, got %d", max_tokens);
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
    if (!f->x || !f->xb || !f->xb2 || !f->q || !f->k || !f->v || !f->att || !f->hb || !f->hb2)
        goto oom;
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

/* Reads one cached key or value element as F32. */
static inline float kv_get(const void *row, kv_type type, int i) {
    return type == KV_F16 ? f16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

static void kv_put(void *row, kv_type type, const float *src, int n) {
    if (type == KV_F16)
        for (int i = 0; i < n; i++) ((uint16_t *)row)[i] = f32_to_f16(src[i]);
    else
        memcpy(row, src, (size_t)n * sizeof(float));
}

typedef struct {
    fwd_ctx *f;
    kv_cache *const *caches;
    const int32_t *pos, *seq;
    int layer, T;
} attn_job;

/* One (row, head) of causal attention over its sequence's cache, positions 0..pos, with an
 * online softmax (running max and sum) so no score buffer of context length is needed.
 * simd: compute the scores 8 positions at a time and the value updates 8 elements at a time
 * with the AVX2 helpers, which do exactly the float operations of these loops (the result is
 * bit-identical either way). */
static void attention_head(float *out /* (head_dim) */, const float *q /* (head_dim) */,
                           const kv_cache *kv, int layer, int kv_head, int n_pos, int head_dim,
                           bool simd) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    const bool f16 = kv->type == KV_F16;
    const size_t esz = f16 ? 2 : 4, off = (size_t)kv_head * head_dim;
    float max = -INFINITY, sum = 0.0f;
    float scores[8];
    int scores_from = -8; /* scores[] holds positions scores_from..scores_from+7 */
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0; t < n_pos; t++) {
        const void *krow = kv_k_row(kv, layer, t), *vrow = kv_v_row(kv, layer, t);
        float score = 0.0f;
        if (simd && t >= scores_from + 8 && t + 8 <= n_pos) {
            attn_scores8_avx2(scores, q, (const char *)krow + off * esz, f16, (size_t)kv->kv_dim,
                              head_dim);
            scores_from = t;
        }
        if (t < scores_from + 8)
            score = scores[t - scores_from];
        else
            for (int i = 0; i < head_dim; i++) score += q[i] * kv_get(krow, kv->type, off + i);
        score *= scale;
        if (score > max) {
            float shrink = expf(max - score); /* 0 on the first position */
            sum *= shrink;
            if (simd)
                attn_scale_avx2(out, shrink, head_dim);
            else
                for (int i = 0; i < head_dim; i++) out[i] *= shrink;
            max = score;
        }
        float w = expf(score - max);
        sum += w;
        if (simd)
            attn_axpy_avx2(out, w, (const char *)vrow + off * esz, f16, head_dim);
        else
            for (int i = 0; i < head_dim; i++) out[i] += w * kv_get(vrow, kv->type, off + i);
    }
    for (int i = 0; i < head_dim; i++) out[i] /= sum;
}

static void attention_rows(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    const model_config *c = &j->f->m->cfg;
    const int n_items = j->T * c->n_heads, q_dim = c->n_heads * c->head_dim;
    const int group = c->n_heads / c->n_kv_heads;
    const int per = (n_items + nth - 1) / nth;
    const bool simd = mm_using_simd() && c->head_dim <= ATTN_MAX_HEAD_DIM;
    for (int it = ith * per; it < n_items && it < (ith + 1) * per; it++) {
        int t = it / c->n_heads, h = it % c->n_heads;
        attention_head(j->f->att + (size_t)t * q_dim + (size_t)h * c->head_dim,
                       j->f->q + (size_t)t * q_dim + (size_t)h * c->head_dim,
                       j->caches[j->seq[t]], j->layer, h / group, j->pos[t] + 1, c->head_dim, simd);
    }
}

static void add_rows(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* Runs rows [0, T) of one chunk through every layer; fills f->x with the final residual. */
static void forward_chunk(fwd_ctx *f, kv_cache *const *caches, const int32_t *token,
                          const int32_t *pos, const int32_t *seq, int T) {
    const model *m = f->m;
    const model_config *c = &m->cfg;
    const int dim = c->dim, hd = c->head_dim, kv_dim = c->n_kv_heads * hd;
    const int q_dim = c->n_heads * hd;

    for (int t = 0; t < T; t++)
        dequantize_row(f->x + (size_t)t * dim, tensor_row(&m->tok_embd, token[t]),
                       m->tok_embd.type, dim);

    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *w = &m->layers[l];
        /* attention */
        rmsnorm(f->xb, f->x, w->attn_norm.data, T, dim, c->norm_eps);
        matmul(f->q, f->xb, &w->wq, T, &f->mm, f->p);
        matmul(f->k, f->xb, &w->wk, T, &f->mm, f->p);
        matmul(f->v, f->xb, &w->wv, T, &f->mm, f->p);
        for (int t = 0; t < T; t++) {
            float *qt = f->q + (size_t)t * q_dim, *kt = f->k + (size_t)t * kv_dim;
            rope(qt, c->n_heads, hd, c->rope_dim, pos[t], c->rope_theta);
            rope(kt, c->n_kv_heads, hd, c->rope_dim, pos[t], c->rope_theta);
            kv_cache *kv = caches[seq[t]];
            kv_put(kv_k_row(kv, l, pos[t]), kv->type, kt, kv_dim);
            kv_put(kv_v_row(kv, l, pos[t]), kv->type, f->v + (size_t)t * kv_dim, kv_dim);
        }
        attn_job aj = {f, caches, pos, seq, l, T};
        pool_run(f->p, attention_rows, &aj);
        matmul(f->xb2, f->att, &w->wo, T, &f->mm, f->p);
        add_rows(f->x, f->xb2, (size_t)T * dim);
        /* feed-forward */
        rmsnorm(f->xb, f->x, w->ffn_norm.data, T, dim, c->norm_eps);
        matmul(f->hb, f->xb, &w->w_gate, T, &f->mm, f->p);
        matmul(f->hb2, f->xb, &w->w_up, T, &f->mm, f->p);
        swiglu(f->hb, f->hb, f->hb2, T * c->hidden_dim);
        matmul(f->xb2, f->hb, &w->w_down, T, &f->mm, f->p);
        add_rows(f->x, f->xb2, (size_t)T * dim);
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

    size_t n_out = 0;
    for (int start = 0; start < b->n_tokens; start += f->max_tokens) {
        int T = b->n_tokens - start < f->max_tokens ? b->n_tokens - start : f->max_tokens;
        forward_chunk(f, caches, b->token + start, b->pos + start, b->seq + start, T);
        for (int t = 0; t < T; t++) {
            kv_cache *kv = caches[b->seq[start + t]];
            kv->n = b->pos[start + t] + 1;
        }
        /* gather the rows whose logits are wanted, normalise, classify */
        int n_sel = 0;
        for (int t = 0; t < T; t++) {
            int row = start + t;
            bool want = b->logits ? b->logits[row] : row == b->n_tokens - 1;
            if (!want) continue;
            rmsnorm(f->xb + (size_t)n_sel * dim, f->x + (size_t)t * dim, m->out_norm.data, 1,
                    dim, m->cfg.norm_eps);
            n_sel++;
        }
        if (n_sel > 0) matmul(logits + n_out * vocab, f->xb, &m->output, n_sel, &f->mm, f->p);
        n_out += (size_t)n_sel;
    }
    return 0;
}
