/* test_model: loads every real model file under ../shared/models through model_load and checks
 * the config, the tensor types and shapes, that the weights are views into the mapping (never
 * copies), that the GGUF and llama2.c copies of kjv-demo hold the same bytes, and the tokenizer
 * paths (GGUF metadata, tokenizer.bin, vocabulary-only GGUF, overrides). */
#include "check.h"
#include "common.h"
#include "model.h"

#include <string.h>

/* The mapping a model's weights must lie in. */
static const mapfile *model_map(const model *m) {
    return m->gguf ? &m->gguf->map : &m->map;
}

static bool inside(const model *m, const tensor *t, size_t bytes) {
    const mapfile *map = model_map(m);
    const uint8_t *p = t->data;
    return p && p >= map->data && bytes <= map->size &&
           (size_t)(p - map->data) <= map->size - bytes;
}

static size_t f32_bytes(const tensor *t) {
    return (size_t)(t->ne[0] * t->ne[1]) * sizeof(float);
}

/* Bytes of a tensor of type F32/F16/Q8_0/Q4_0 with rows of ne[0]. */
static size_t bytes_of(const tensor *t) {
    size_t n = (size_t)(t->ne[0] * t->ne[1]);
    switch (t->type) {
    case DT_F32:
        return n * 4;
    case DT_F16:
    case DT_BF16:
        return n * 2;
    case DT_Q8_0:
        return n / 32 * 34;
    case DT_Q4_0:
        return n / 32 * 18;
    default:
        return 0; /* not in the files this test loads */
    }
}

static void check_shape(const tensor *t, int64_t ne0, int64_t ne1, const char *what) {
    CHECK(t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 && t->ne[3] == 1,
          "%s shape [%lld, %lld], want [%lld, %lld]", what, (long long)t->ne[0],
          (long long)t->ne[1], (long long)ne0, (long long)ne1);
}

/* Checks config, shapes, types (matrices of mat_type, norms F32) and that every view is in the
 * mapping. */
static void check_model(const model *m, const model_config *want, dtype mat_type, bool tied) {
    const model_config *c = &m->cfg;
    CHECK(c->dim == want->dim, "dim %d", c->dim);
    CHECK(c->n_layers == want->n_layers, "n_layers %d", c->n_layers);
    CHECK(c->n_heads == want->n_heads, "n_heads %d", c->n_heads);
    CHECK(c->n_kv_heads == want->n_kv_heads, "n_kv_heads %d", c->n_kv_heads);
    CHECK(c->head_dim == want->head_dim, "head_dim %d", c->head_dim);
    CHECK(c->hidden_dim == want->hidden_dim, "hidden_dim %d", c->hidden_dim);
    CHECK(c->vocab_size == want->vocab_size, "vocab_size %d", c->vocab_size);
    CHECK(c->ctx_len == want->ctx_len, "ctx_len %d", c->ctx_len);
    CHECK(c->rope_dim == c->head_dim, "rope_dim %d", c->rope_dim);
    CHECK(c->rope_theta == 10000.0f, "rope_theta %g", (double)c->rope_theta);
    CHECK(c->norm_eps > 0.99e-5f && c->norm_eps < 1.01e-5f, "norm_eps %g", (double)c->norm_eps);
    int64_t dim = c->dim, hid = c->hidden_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    check_shape(&m->tok_embd, dim, c->vocab_size, "tok_embd");
    check_shape(&m->output, dim, c->vocab_size, "output");
    check_shape(&m->out_norm, dim, 1, "out_norm");
    CHECK(m->out_norm.type == DT_F32, "out_norm type %d", m->out_norm.type);
    CHECK(m->output.type == mat_type, "output type %d", m->output.type);
    CHECK(inside(m, &m->tok_embd, bytes_of(&m->tok_embd)), "tok_embd outside the mapping");
    CHECK(inside(m, &m->output, bytes_of(&m->output)), "output outside the mapping");
    CHECK(inside(m, &m->out_norm, bytes_of(&m->out_norm)), "out_norm outside the mapping");
    CHECK((m->output.data == m->tok_embd.data) == tied, "tied %d", tied);
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *w = &m->layers[l];
        const struct {
            const tensor *t;
            int64_t ne0, ne1;
            const char *name;
        } ts[] = {{&w->attn_norm, dim, 1, "attn_norm"},
                  {&w->wq, dim, dim, "wq"},
                  {&w->wk, dim, kv, "wk"},
                  {&w->wv, dim, kv, "wv"},
                  {&w->wo, dim, dim, "wo"},
                  {&w->ffn_norm, dim, 1, "ffn_norm"},
                  {&w->w_gate, dim, hid, "w_gate"},
                  {&w->w_down, hid, dim, "w_down"},
                  {&w->w_up, dim, hid, "w_up"}};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
            check_shape(ts[k].t, ts[k].ne0, ts[k].ne1, ts[k].name);
            dtype want_type = ts[k].ne1 == 1 ? DT_F32 : mat_type;
            CHECK(ts[k].t->type == want_type, "layer %d %s type %d", l, ts[k].name, ts[k].t->type);
            CHECK(inside(m, ts[k].t, bytes_of(ts[k].t)), "layer %d %s outside the mapping", l,
                  ts[k].name);
        }
    }
}

static const model_config kjv = {.dim = 256,
                                 .n_layers = 4,
                                 .n_heads = 8,
                                 .n_kv_heads = 4,
                                 .head_dim = 32,
                                 .hidden_dim = 704,
                                 .vocab_size = 1024,
                                 .ctx_len = 256};
static const model_config stories = {.dim = 64,
                                     .n_layers = 5,
                                     .n_heads = 8,
                                     .n_kv_heads = 4,
                                     .head_dim = 8,
                                     .hidden_dim = 172,
                                     .vocab_size = 512,
                                     .ctx_len = 512};

static model *load(const char *name, const char *tok) {
    char err[LS_ERR_LEN] = "";
    model *m =
        model_load(check_model_path(name), tok ? check_model_path(tok) : NULL, err, sizeof err);
    CHECK(m != NULL, "loading %s: %s", name, err);
    return m;
}

/* Every matrix of two F32 models is bytewise equal. */
static void check_same_weights(const model *a, const model *b) {
    CHECK(!memcmp(a->tok_embd.data, b->tok_embd.data, f32_bytes(&a->tok_embd)), "tok_embd differs");
    CHECK(!memcmp(a->output.data, b->output.data, f32_bytes(&a->output)), "output differs");
    CHECK(!memcmp(a->out_norm.data, b->out_norm.data, f32_bytes(&a->out_norm)), "out_norm differs");
    for (int l = 0; l < a->cfg.n_layers; l++) {
        const layer_weights *x = &a->layers[l], *y = &b->layers[l];
        const tensor *xs[] = {&x->attn_norm, &x->wq,     &x->wk,     &x->wv,  &x->wo,
                              &x->ffn_norm,  &x->w_gate, &x->w_down, &x->w_up};
        const tensor *ys[] = {&y->attn_norm, &y->wq,     &y->wk,     &y->wv,  &y->wo,
                              &y->ffn_norm,  &y->w_gate, &y->w_down, &y->w_up};
        for (int k = 0; k < 9; k++)
            CHECK(!memcmp(xs[k]->data, ys[k]->data, f32_bytes(xs[k])), "layer %d tensor %d differs",
                  l, k);
    }
}

int main(void) {
    char err[LS_ERR_LEN];
    model *g = load("kjv-demo.gguf", NULL);
    if (g) {
        check_model(g, &kjv, DT_F32, false);
        CHECK(g->tok && tok_n_vocab(g->tok) == 1024, "kjv GGUF tokenizer");
        CHECK(g->gguf && g->gguf->version == 3, "GGUF version");
        CHECK(strstr(g->path, "kjv-demo.gguf") != NULL, "path %s", g->path);
        /* weight bytes: every layer's matrices and norms, the classifier, one embedding row */
        size_t per_layer = 4 * (256 * 256 * 2 + 256 * 128 * 2 + 3 * 256 * 704 + 2 * 256);
        size_t want = 4 * per_layer + 4 * (256 + 1024 * 256 + 256);
        CHECK(model_weight_bytes(g) == want, "weight bytes %zu, want %zu", model_weight_bytes(g),
              want);
    }
    /* the same file twice: two independent models sharing page-cache pages */
    model *g2 = load("kjv-demo.gguf", NULL);
    if (g && g2) {
        CHECK(g2->tok_embd.data != g->tok_embd.data, "second load has its own mapping");
        check_same_weights(g, g2);
    }
    model_free(g2);

    model *b = load("kjv-demo.bin", "kjv-demo-tokenizer.bin");
    if (b) {
        check_model(b, &kjv, DT_F32, false);
        CHECK(b->gguf == NULL && b->map.data != NULL, "llama2.c model owns its mapping");
        CHECK(b->tok && tok_n_vocab(b->tok) == 1024, "kjv tokenizer.bin");
        if (g) check_same_weights(g, b);
    }
    model_free(b);
    /* no tokenizer.bin beside it: a llama2.c model without a tokenizer is allowed */
    b = load("kjv-demo.bin", NULL);
    if (b) CHECK(b->tok == NULL, "no tokenizer expected");
    model_free(b);
    /* a GGUF tokenizer overrides for a llama2.c checkpoint too */
    b = load("kjv-demo.bin", "kjv-demo.gguf");
    if (b) CHECK(b->tok && tok_n_vocab(b->tok) == 1024, "tokenizer from GGUF");
    model_free(b);

    const struct {
        const char *name;
        dtype type;
    } variants[] = {{"kjv-demo-f16.gguf", DT_F16},
                    {"kjv-demo-q8_0.gguf", DT_Q8_0},
                    {"kjv-demo-q4_0.gguf", DT_Q4_0}};
    for (size_t i = 0; i < 3; i++) {
        model *v = load(variants[i].name, NULL);
        if (!v) continue;
        check_model(v, &kjv, variants[i].type, false);
        CHECK(model_weight_bytes(v) < model_weight_bytes(g ? g : v) || !g, "%s smaller than F32",
              variants[i].name);
        /* the norms are stored F32 in every variant: they equal the F32 file's */
        if (g) CHECK(!memcmp(v->out_norm.data, g->out_norm.data, 256 * 4), "out_norm differs");
        model_free(v);
    }

    model *s = load("stories260K.bin", "stories260K-tok512-placeholder.bin");
    if (s) {
        check_model(s, &stories, DT_F32, true);
        CHECK(s->tok && tok_n_vocab(s->tok) == 512, "stories tokenizer");
    }
    model_free(s);

    /* a GGUF model with an explicit tokenizer: the given one overrides the metadata's */
    model *o = load("kjv-demo.gguf", "kjv-demo-tokenizer.bin");
    if (o) CHECK(o->tok && tok_n_vocab(o->tok) == 1024, "override tokenizer");
    model_free(o);
    /* ...and one whose vocabulary disagrees with the embedding is refused */
    err[0] = 0;
    o = model_load(check_model_path("kjv-demo.gguf"), check_model_path("llama2-vocab.gguf"), err,
                   sizeof err);
    CHECK(o == NULL && strstr(err, "32000") && strstr(err, "1024"), "vocab mismatch: %s", err);
    model_free(o);

    /* tokenizers alone */
    tokenizer *t = model_load_tokenizer(check_model_path("llama2-vocab.gguf"), err, sizeof err);
    CHECK(t && tok_n_vocab(t) == 32000, "llama2-vocab.gguf: %s", t ? "" : err);
    if (t) CHECK(tok_bos(t) == 1 && tok_eos(t) == 2 && tok_add_bos(t), "llama2 specials");
    tok_free(t);
    t = model_load_tokenizer(check_model_path("llama2-tokenizer.bin"), err, sizeof err);
    CHECK(t && tok_n_vocab(t) == 32000, "llama2-tokenizer.bin: %s", t ? "" : err);
    tok_free(t);
    t = model_load_tokenizer(check_model_path("kjv-demo.gguf"), err, sizeof err);
    CHECK(t && tok_n_vocab(t) == 1024, "tokenizer of kjv-demo.gguf: %s", t ? "" : err);
    tok_free(t);
    err[0] = 0;
    t = model_load_tokenizer(check_model_path("kjv-demo.bin"), err, sizeof err);
    CHECK(t == NULL && strstr(err, "checkpoint") && strstr(err, "tokenizer"), "checkpoint: %s",
          err);
    tok_free(t);
    err[0] = 0;
    t = model_load_tokenizer(check_model_path("no-such-file.bin"), err, sizeof err);
    CHECK(t == NULL && strstr(err, "no-such-file.bin"), "missing file: %s", err);
    /* a vocabulary-only GGUF is no model */
    err[0] = 0;
    o = model_load(check_model_path("llama2-vocab.gguf"), NULL, err, sizeof err);
    CHECK(o == NULL && strstr(err, "missing"), "vocab-only as model: %s", err);
    model_free(o);

    model_free(g);
    return check_summary();
}
