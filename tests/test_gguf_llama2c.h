/* test_gguf_llama2c: the llama2.c checkpoint half of test_gguf (included by test_gguf.c, which
 * provides tmp_path): a tiny checkpoint whose every array holds a marker value, so each view's
 * place in the file is checked, plus malformed headers and sizes, and the tokenizer.bin paths. */
#ifndef LS_TEST_GGUF_LLAMA2C_H
#define LS_TEST_GGUF_LLAMA2C_H

enum {
    L2_DIM = 32,
    L2_HIDDEN = 64,
    L2_LAYERS = 2,
    L2_HEADS = 4,
    L2_KV = 2,
    L2_VOCAB = 264,
    L2_SEQ = 16
};

/* Array k of the checkpoint, in memory_map_weights order: floats per layer (or in all when
 * not per layer). Layer l of array k holds (k + 1) * 100 + l. */
static const struct {
    const char *name;
    size_t per; /* floats per layer, or in all */
    bool layered;
} l2_arrays[] = {
    {"token_embedding", (size_t)L2_VOCAB *L2_DIM, false},
    {"rms_att", L2_DIM, true},
    {"wq", L2_DIM *L2_DIM, true},
    {"wk", L2_DIM *(L2_DIM / L2_HEADS * L2_KV), true},
    {"wv", L2_DIM *(L2_DIM / L2_HEADS * L2_KV), true},
    {"wo", L2_DIM *L2_DIM, true},
    {"rms_ffn", L2_DIM, true},
    {"w1", L2_DIM *L2_HIDDEN, true},
    {"w2", L2_DIM *L2_HIDDEN, true},
    {"w3", L2_DIM *L2_HIDDEN, true},
    {"rms_final", L2_DIM, false},
    {"freq_cis_real", L2_SEQ *(L2_DIM / L2_HEADS) / 2, false},
    {"freq_cis_imag", L2_SEQ *(L2_DIM / L2_HEADS) / 2, false},
    {"wcls", (size_t)L2_VOCAB *L2_DIM, false},
};

/* A checkpoint with header h (vocab negative: wcls present), extra floats appended (negative:
 * removed). */
static const char *l2_write(const char *name, const int32_t h[7], int extra) {
    gbuf b = {0};
    gb_put(&b, h, 7 * sizeof(int32_t));
    size_t n_arrays = h[5] < 0 ? 14 : 13;
    for (size_t k = 0; k < n_arrays; k++)
        for (int l = 0; l < (l2_arrays[k].layered ? L2_LAYERS : 1); l++)
            for (size_t i = 0; i < l2_arrays[k].per; i++)
                gb_f32(&b, (float)((k + 1) * 100 + l));
    for (int i = 0; i < extra; i++)
        gb_f32(&b, 0.0f);
    if (extra < 0) b.n -= (size_t)-extra * 4;
    const char *path = check_tmp_path(name);
    CHECK(write_bytes(path, b.p, b.n) == 0, "writing %s", path);
    gb_free(&b);
    return path;
}

/* The first and last float of a view hold marker (k + 1) * 100 + l. */
static void l2_check_view(const tensor *t, size_t k, int l) {
    const float *x = t->data;
    size_t n = (size_t)(t->ne[0] * t->ne[1]);
    float want = (float)((k + 1) * 100 + l);
    CHECK(x[0] == want && x[n - 1] == want, "%s layer %d: %g..%g, want %g", l2_arrays[k].name, l,
          (double)x[0], (double)x[n - 1], (double)want);
}

static void l2_write_tokenizer(const char *path, int n) {
    gbuf b = {0};
    gb_u32(&b, 16);
    for (int i = 0; i < n; i++) {
        char piece[16];
        tm_piece(piece, i, i >= 259 ? tm_words[(i - 259) % 5] : NULL);
        gb_f32(&b, i < 259 ? 0.0f : (float)-i);
        gb_u32(&b, (uint32_t)strlen(piece));
        gb_put(&b, piece, strlen(piece));
    }
    CHECK(write_bytes(path, b.p, b.n) == 0, "writing %s", path);
    gb_free(&b);
}

static void test_llama2c(void) {
    const int32_t good[7] = {L2_DIM, L2_HIDDEN, L2_LAYERS, L2_HEADS, L2_KV, -L2_VOCAB, L2_SEQ};
    char err[LS_ERR_LEN] = "";
    const char *path = l2_write("model.bin", good, 0);
    model *m = model_load(path, NULL, err, sizeof err);
    CHECK(m != NULL, "tiny llama2.c: %s", err);
    if (m) {
        CHECK(m->cfg.dim == L2_DIM && m->cfg.hidden_dim == L2_HIDDEN &&
                  m->cfg.n_layers == L2_LAYERS && m->cfg.n_heads == L2_HEADS &&
                  m->cfg.n_kv_heads == L2_KV && m->cfg.vocab_size == L2_VOCAB &&
                  m->cfg.ctx_len == L2_SEQ && m->cfg.head_dim == L2_DIM / L2_HEADS &&
                  m->cfg.rope_dim == L2_DIM / L2_HEADS && m->cfg.rope_theta == 10000.0f &&
                  m->cfg.norm_eps == 1e-5f,
              "llama2.c config");
        CHECK(m->tok == NULL, "no tokenizer.bin beside it yet");
        l2_check_view(&m->tok_embd, 0, 0);
        l2_check_view(&m->out_norm, 10, 0);
        l2_check_view(&m->output, 13, 0);
        for (int l = 0; l < L2_LAYERS; l++) {
            const layer_weights *w = &m->layers[l];
            const tensor *ts[] = {&w->attn_norm, &w->wq,     &w->wk,     &w->wv,  &w->wo,
                                  &w->ffn_norm,  &w->w_gate, &w->w_down, &w->w_up};
            for (size_t k = 0; k < 9; k++)
                l2_check_view(ts[k], k + 1, l);
        }
        CHECK(m->layers[0].w_down.ne[0] == L2_HIDDEN && m->layers[0].w_down.ne[1] == L2_DIM &&
                  m->layers[0].wk.ne[1] == L2_KV * (L2_DIM / L2_HEADS),
              "llama2.c shapes");
    }
    model_free(m);
    /* tied: positive vocab, no wcls */
    int32_t tied[7];
    memcpy(tied, good, sizeof tied);
    tied[5] = L2_VOCAB;
    path = l2_write("model.bin", tied, 0);
    m = model_load(path, NULL, err, sizeof err);
    CHECK(m && m->output.data == m->tok_embd.data, "tied llama2.c: %s", m ? "" : err);
    model_free(m);

    /* the tokenizer: tokenizer.bin beside the model, or a path given */
    path = l2_write("model.bin", good, 0);
    l2_write_tokenizer(check_tmp_path("tokenizer.bin"), L2_VOCAB);
    m = model_load(path, NULL, err, sizeof err);
    CHECK(m && m->tok && tok_n_vocab(m->tok) == L2_VOCAB, "tokenizer.bin beside: %s", m ? "" : err);
    model_free(m);
    unlink(check_tmp_path("tokenizer.bin"));
    l2_write_tokenizer(check_tmp_path("tok.bin"), L2_VOCAB);
    m = model_load(path, check_tmp_path("tok.bin"), err, sizeof err);
    CHECK(m && m->tok && tok_n_vocab(m->tok) == L2_VOCAB, "tokenizer given: %s", m ? "" : err);
    model_free(m);
    tokenizer *t = model_load_tokenizer(check_tmp_path("tok.bin"), err, sizeof err);
    CHECK(t && tok_n_vocab(t) == L2_VOCAB, "model_load_tokenizer(tok.bin): %s", t ? "" : err);
    tok_free(t);
    err[0] = 0;
    t = model_load_tokenizer(path, err, sizeof err);
    CHECK(!t && strstr(err, "checkpoint"), "model_load_tokenizer(model.bin): %s", err);
    tok_free(t);
    /* a checkpoint passed as the tokenizer */
    err[0] = 0;
    m = model_load(path, path, err, sizeof err);
    CHECK(m == NULL && strstr(err, "checkpoint"), "checkpoint as tokenizer: %s", err);
    model_free(m);
    /* a tokenizer with fewer entries than the vocabulary */
    l2_write_tokenizer(check_tmp_path("tok.bin"), L2_VOCAB - 10);
    err[0] = 0;
    m = model_load(path, check_tmp_path("tok.bin"), err, sizeof err);
    CHECK(m == NULL && err[0], "short tokenizer must fail");
    model_free(m);

    const struct {
        const char *name;
        int32_t h[7];
        int extra;
        const char *word;
    } bad[] = {
        {"one float short",
         {L2_DIM, L2_HIDDEN, L2_LAYERS, L2_HEADS, L2_KV, -L2_VOCAB, L2_SEQ},
         -1,
         "match"},
        {"one float extra",
         {L2_DIM, L2_HIDDEN, L2_LAYERS, L2_HEADS, L2_KV, -L2_VOCAB, L2_SEQ},
         1,
         "match"},
        {"tied header, untied size",
         {L2_DIM, L2_HIDDEN, L2_LAYERS, L2_HEADS, L2_KV, L2_VOCAB, L2_SEQ},
         L2_VOCAB * L2_DIM,
         "match"},
        {"negative dim",
         {-32, L2_HIDDEN, L2_LAYERS, L2_HEADS, L2_KV, -L2_VOCAB, L2_SEQ},
         0,
         "out of range"},
        {"zero layers",
         {L2_DIM, L2_HIDDEN, 0, L2_HEADS, L2_KV, -L2_VOCAB, L2_SEQ},
         0,
         "out of range"},
        {"heads do not divide dim",
         {L2_DIM, L2_HIDDEN, L2_LAYERS, 5, 5, -L2_VOCAB, L2_SEQ},
         0,
         "divide"},
        {"kv heads do not divide",
         {L2_DIM, L2_HIDDEN, L2_LAYERS, L2_HEADS, 3, -L2_VOCAB, L2_SEQ},
         0,
         "divide"},
        {"vocab INT32_MIN",
         {L2_DIM, L2_HIDDEN, L2_LAYERS, L2_HEADS, L2_KV, INT32_MIN, L2_SEQ},
         0,
         "out of range"},
        {"absurd sizes", {1 << 20, 1 << 20, 65536, 1 << 16, 1 << 16, 1 << 24, 1 << 24}, 0, "match"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = l2_write("bad.bin", bad[i].h, bad[i].extra);
        err[0] = 0;
        m = model_load(path, NULL, err, sizeof err);
        CHECK(m == NULL && strstr(err, bad[i].word), "llama2.c %s: \"%s\"", bad[i].name,
              m ? "(loaded)" : err);
        model_free(m);
    }
    /* shorter than its header */
    path = check_tmp_path("bad.bin");
    CHECK(write_bytes(path, good, 10) == 0, "write");
    m = model_load(path, NULL, err, sizeof err);
    CHECK(m == NULL && strstr(err, "truncated"), "10-byte checkpoint: %s", err);
    model_free(m);
}

#endif
