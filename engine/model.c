/* model: turns a GGUF file or a llama2.c checkpoint into a model (config + weight views +
 * tokenizer). Owns the model struct, its layer table and its tokenizer; the weights stay in the
 * read-only mapping and are never copied or converted here. Every shape is checked against the
 * header before a view is handed out, so the forward pass can trust them. */
#include "model.h"
#include "common.h"
#include "llama2c.h"
#include "x86/x86.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL_MAX_DIM (1 << 20) /* generous caps that keep int arithmetic on sizes safe */
#define MODEL_MAX_COUNT (1 << 24)

int model_check_config(const model_config *c, char *err, size_t errlen) {
    const struct {
        const char *what;
        int v, max;
    } ranges[] = {
        {"embedding length (dim)", c->dim, MODEL_MAX_DIM},
        {"feed-forward length (hidden_dim)", c->hidden_dim, MODEL_MAX_DIM},
        {"block count (n_layers)", c->n_layers, 65536},
        {"head count (n_heads)", c->n_heads, 65536},
        {"kv head count (n_kv_heads)", c->n_kv_heads, 65536},
        {"vocab size", c->vocab_size, MODEL_MAX_COUNT},
        {"context length", c->ctx_len, MODEL_MAX_COUNT},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (ranges[i].v <= 0 || ranges[i].v > ranges[i].max)
            return ls_fail(err, errlen, "%s %d is out of range (1..%d)", ranges[i].what,
                           ranges[i].v, ranges[i].max);
    if (c->dim % c->n_heads != 0)
        return ls_fail(err, errlen, "head count %d does not divide dim %d", c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads != 0)
        return ls_fail(err, errlen, "kv head count %d does not divide head count %d", c->n_kv_heads,
                       c->n_heads);
    if (c->head_dim != c->dim / c->n_heads || c->head_dim % 2 != 0)
        return ls_fail(err, errlen, "head dim %d must be dim / n_heads and even", c->head_dim);
    if (c->rope_dim <= 0 || c->rope_dim > c->head_dim || c->rope_dim % 2 != 0)
        return ls_fail(err, errlen, "rope dimension count %d must be even and in 2..head_dim %d",
                       c->rope_dim, c->head_dim);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return ls_fail(err, errlen, "rope freq_base %g must be positive", (double)c->rope_theta);
    if (!(c->rope_scale >= 0.0f) || !isfinite(c->rope_scale))
        return ls_fail(err, errlen, "rope scaling factor %g must be positive",
                       (double)c->rope_scale);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return ls_fail(err, errlen, "rms norm epsilon %g must be positive", (double)c->norm_eps);
    return 0;
}

/* ---- tokenizer from GGUF metadata ----------------------------------------------------------- */

/* A special token id: def when absent, -1 with a message when out of [0, n_vocab). */
static int token_id(const gguf_file *f, const char *key, int def, int n_vocab, int *out, char *err,
                    size_t errlen) {
    int64_t v;
    int r = gguf_get_int(f, key, &v, err, errlen);
    if (r < 0) return -1;
    if (r == 1) {
        *out = def;
        return 0;
    }
    if (v < 0 || v >= n_vocab)
        return ls_fail(err, errlen, "%s %lld is out of range (vocab of %d)", key, (long long)v,
                       n_vocab);
    *out = (int)v;
    return 0;
}

static int bool_key(const gguf_file *f, const char *key, bool def, bool *out, char *err,
                    size_t errlen) {
    int r = gguf_get_bool(f, key, out, err, errlen);
    if (r == 1) *out = def;
    return r < 0 ? -1 : 0;
}

/* The vocabulary arrays of a GGUF's metadata: tokens (1..MODEL_MAX_COUNT entries), and scores
 * and token types (NULL when absent) with as many; *bpe when tokenizer.ggml.model is gpt2. */
static int vocab_arrays(const gguf_file *f, bool *bpe, const gguf_value **tokens,
                        const gguf_value **sc, const gguf_value **ty, char *err, size_t errlen) {
    gguf_str model_name;
    int r = gguf_get_str(f, "tokenizer.ggml.model", &model_name, err, errlen);
    if (r < 0) return -1;
    if (r == 1) return ls_fail(err, errlen, "no tokenizer: missing key tokenizer.ggml.model");
    *bpe = gguf_str_eq(model_name, "gpt2");
    if (!*bpe && !gguf_str_eq(model_name, "llama"))
        return ls_fail(err, errlen,
                       "unsupported tokenizer.ggml.model '%.*s' (supported: 'llama', 'gpt2')",
                       (int)(model_name.len < 64 ? model_name.len : 64), model_name.s);
    r = gguf_get_array(f, "tokenizer.ggml.tokens", GGUF_STRING, tokens, err, errlen);
    if (r < 0) return -1;
    if (r == 1) return ls_fail(err, errlen, "missing key tokenizer.ggml.tokens");
    const uint64_t n = (*tokens)->arr.n;
    if (n == 0 || n > MODEL_MAX_COUNT)
        return ls_fail(err, errlen, "tokenizer.ggml.tokens has %llu entries (1..%d allowed)",
                       (unsigned long long)n, MODEL_MAX_COUNT);
    r = gguf_get_array(f, "tokenizer.ggml.scores", GGUF_FLOAT32, sc, err, errlen);
    if (r < 0) return -1;
    if (r == 0 && (*sc)->arr.n != n)
        return ls_fail(err, errlen, "tokenizer.ggml.scores has %llu entries, tokens has %d",
                       (unsigned long long)(*sc)->arr.n, (int)n);
    r = gguf_get_array(f, "tokenizer.ggml.token_type", GGUF_INT32, ty, err, errlen);
    if (r < 0) return -1;
    if (r == 0 && (*ty)->arr.n != n)
        return ls_fail(err, errlen, "tokenizer.ggml.token_type has %llu entries, tokens has %d",
                       (unsigned long long)(*ty)->arr.n, (int)n);
    return 0;
}

/* The special ids and flags into v (v->n_vocab set), and the end-of-generation ids besides EOS
 * into eog (-1 marks an absent key). */
static int vocab_ids(const gguf_file *f, bool bpe, tok_vocab *v, int eog[2], char *err,
                     size_t errlen) {
    const int n = v->n_vocab;
    if (token_id(f, "tokenizer.ggml.bos_token_id", 1 < n ? 1 : -1, n, &v->bos_id, err, errlen) ||
        token_id(f, "tokenizer.ggml.eos_token_id", 2 < n ? 2 : -1, n, &v->eos_id, err, errlen) ||
        token_id(f, "tokenizer.ggml.unknown_token_id", 0, n, &v->unk_id, err, errlen) ||
        token_id(f, "tokenizer.ggml.padding_token_id", -1, n, &v->pad_id, err, errlen) ||
        bool_key(f, "tokenizer.ggml.add_bos_token", true, &v->add_bos, err, errlen) ||
        bool_key(f, "tokenizer.ggml.add_space_prefix", !bpe, &v->add_dummy_prefix, err, errlen))
        return -1;
    if (token_id(f, "tokenizer.ggml.eot_token_id", -1, n, &eog[0], err, errlen) ||
        token_id(f, "tokenizer.ggml.eom_token_id", -1, n, &eog[1], err, errlen))
        return -1;
    v->eog_ids = eog;
    v->n_eog = 2;
    return 0;
}

/* Byte-level BPE: the kind and its defaults into v, the merges array into *mg (at most
 * MODEL_MAX_COUNT entries) and the pre-tokenizer's name into v->pre. */
static int vocab_bpe(const gguf_file *f, tok_vocab *v, const gguf_value **mg, char *err,
                     size_t errlen) {
    v->kind = TOK_BPE;
    v->add_dummy_prefix = false; /* byte-level BPE encodes spaces as they are */
    if (v->unk_id == 0 && gguf_get(f, "tokenizer.ggml.unknown_token_id") == NULL)
        v->unk_id = -1; /* SentencePiece's default id 0 is an ordinary piece here */
    int r = gguf_get_array(f, "tokenizer.ggml.merges", GGUF_STRING, mg, err, errlen);
    if (r < 0) return -1;
    if (r == 1)
        return ls_fail(err, errlen,
                       "missing key tokenizer.ggml.merges (tokenizer.ggml.model gpt2)");
    if ((*mg)->arr.n > MODEL_MAX_COUNT)
        return ls_fail(err, errlen, "tokenizer.ggml.merges has %llu entries (at most %d)",
                       (unsigned long long)(*mg)->arr.n, MODEL_MAX_COUNT);
    gguf_str pre = {0};
    if (gguf_get_str(f, "tokenizer.ggml.pre", &pre, err, errlen) < 0) return -1;
    v->pre = pre.s;
    v->pre_len = (size_t)pre.len;
    return 0;
}

/* The n strings of array a into s and lens (views into the mapping); what names it in a
 * message. */
static int copy_strings(const gguf_value *a, int n, const char **s, size_t *lens,
                        const char *what, char *err, size_t errlen) {
    gguf_value e; /* one walk over the array: each element follows the previous one */
    for (int i = 0; i < n; i++) {
        if (gguf_arr_get(a, (uint64_t)i, &e) != 0)
            return ls_fail(err, errlen, "%s: no entry %d", what, i);
        s[i] = e.str.s;
        lens[i] = (size_t)e.str.len;
    }
    return 0;
}

/* Builds the tokenizer a GGUF's metadata describes. err gets no path prefix. */
static tokenizer *tok_from_gguf(const gguf_file *f, char *err, size_t errlen) {
    tokenizer *tok = NULL;
    const char **pieces = NULL, **merges = NULL;
    size_t *lens = NULL, *merge_lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    bool bpe = false;
    const gguf_value *tokens, *sc = NULL, *ty = NULL, *mg = NULL;
    if (vocab_arrays(f, &bpe, &tokens, &sc, &ty, err, errlen)) return NULL;
    const int n = (int)tokens->arr.n;
    tok_vocab v = {.n_vocab = n};
    int eog[2];
    if (vocab_ids(f, bpe, &v, eog, err, errlen) || (bpe && vocab_bpe(f, &v, &mg, err, errlen)))
        return NULL;
    pieces = malloc((size_t)n * sizeof *pieces);
    lens = malloc((size_t)n * sizeof *lens);
    scores = calloc((size_t)n, sizeof *scores); /* no scores: every merge ranks alike */
    types = ty ? malloc((size_t)n * sizeof *types) : NULL;
    if (!pieces || !lens || !scores || (ty && !types)) {
        ls_fail(err, errlen, "out of memory for a vocabulary of %d", n);
        goto done;
    }
    /* every index is in range: the counts were checked */
    if (copy_strings(tokens, n, pieces, lens, "tokenizer.ggml.tokens", err, errlen)) goto done;
    for (int i = 0; i < n; i++) {
        gguf_value e;
        if (sc && gguf_arr_get(sc, (uint64_t)i, &e) == 0) scores[i] = (float)e.f;
        if (ty && gguf_arr_get(ty, (uint64_t)i, &e) == 0) types[i] = (int32_t)e.i;
    }
    if (mg) {
        int nm = (int)mg->arr.n;
        merges = malloc((size_t)(nm ? nm : 1) * sizeof *merges);
        merge_lens = malloc((size_t)(nm ? nm : 1) * sizeof *merge_lens);
        if (!merges || !merge_lens) {
            ls_fail(err, errlen, "out of memory for %d merges", nm);
            goto done;
        }
        if (copy_strings(mg, nm, merges, merge_lens, "tokenizer.ggml.merges", err, errlen))
            goto done;
        v.merges = merges;
        v.merge_lens = merge_lens;
        v.n_merges = nm;
    }
    v.pieces = pieces;
    v.piece_lens = lens;
    v.scores = scores;
    v.types = types;
    tok = tok_create(&v, err, errlen);
done:
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    free(merges);
    free(merge_lens);
    return tok;
}

/* ---- model from GGUF ----------------------------------------------------------------------- */

static bool engine_type(uint32_t t) { return dtype_supported(t); }

/* Takes tensor `name` into out after checking its shape is {ne0, ne1} ({ne0} when vector) and
 * its type is one the engine computes with (F32 only when vector). */
static int take(const gguf_file *f, const char *name, int64_t ne0, int64_t ne1, bool vector,
                tensor *out, char *err, size_t errlen) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) return ls_fail(err, errlen, "missing tensor '%s'", name);
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return ls_fail(
            err, errlen,
            "tensor '%s' has shape [%lld, %lld, %lld, %lld], the header implies [%lld, %lld]", name,
            (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
            (long long)ne0, (long long)ne1);
    const char *tn = dtype_ggml_name(t->type);
    if (vector && t->type != DT_F32)
        return ls_fail(err, errlen, "tensor '%s' has type %s, norms must be F32", name, tn);
    if (!engine_type(t->type))
        return ls_fail(
            err, errlen,
            "tensor '%s' has type %s, which is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, "
            "Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)",
            name, tn ? tn : "unknown");
    size_t align = t->type == DT_F32 ? 4 : 2;
    if ((uintptr_t)t->data % align != 0)
        return ls_fail(err, errlen, "tensor '%s' data is not %zu-byte aligned", name, align);
    out->data = t->data;
    out->type = (dtype)t->type;
    out->n_dims = vector ? 1 : 2;
    out->ne[0] = ne0;
    out->ne[1] = ne1;
    out->ne[2] = out->ne[3] = 1;
    return 0;
}

/* An int key in 1..INT_MAX: required (def < 0) or def when absent. */
static int int_key(const gguf_file *f, const char *key, int def, int *out, char *err,
                   size_t errlen) {
    int64_t v;
    int r = gguf_get_int(f, key, &v, err, errlen);
    if (r < 0) return -1;
    if (r == 1) {
        if (def < 0) return ls_fail(err, errlen, "missing key %s", key);
        *out = def;
        return 0;
    }
    if (v <= 0 || v > INT_MAX)
        return ls_fail(err, errlen, "%s %lld is out of range", key, (long long)v);
    *out = (int)v;
    return 0;
}

static int float_key(const gguf_file *f, const char *key, float def, float *out, char *err,
                     size_t errlen) {
    double v;
    int r = gguf_get_float(f, key, &v, err, errlen);
    if (r < 0) return -1;
    *out = r == 1 ? def : (float)v;
    return 0;
}

/* Reads the config and every weight view of a GGUF into m. err gets no path prefix. */
/* llama.rope.scaling.type: none (or absent) gives 1, linear gives llama.rope.scaling.factor
 * (or the older llama.rope.scale_linear); others (yarn, longrope) are refused by name. */
static int rope_scaling(const gguf_file *f, float *scale, char *err, size_t errlen) {
    gguf_str type;
    *scale = 1.0f;
    int r = gguf_get_str(f, "llama.rope.scaling.type", &type, err, errlen);
    if (r < 0) return -1;
    if (r == 1 || gguf_str_eq(type, "linear")) {
        if (float_key(f, "llama.rope.scale_linear", 1.0f, scale, err, errlen)) return -1;
        if (r == 0 && float_key(f, "llama.rope.scaling.factor", *scale, scale, err, errlen))
            return -1;
    } else if (!gguf_str_eq(type, "none")) {
        return ls_fail(err, errlen,
                       "unsupported llama.rope.scaling.type '%.*s' (supported: none, linear)",
                       (int)(type.len < 32 ? type.len : 32), type.s);
    }
    if (!(*scale > 0.0f) || !isfinite(*scale))
        return ls_fail(err, errlen, "rope scaling factor %g must be positive", (double)*scale);
    return 0;
}

static int load_gguf_weights(model *m, char *err, size_t errlen) {
    const gguf_file *f = m->gguf;
    model_config *c = &m->cfg;
    gguf_str arch;
    int r = gguf_get_str(f, "general.architecture", &arch, err, errlen);
    if (r < 0) return -1;
    if (r == 1) return ls_fail(err, errlen, "missing key general.architecture");
    if (!gguf_str_eq(arch, "llama"))
        return ls_fail(err, errlen, "unsupported general.architecture '%.*s' (only 'llama')",
                       (int)(arch.len < 64 ? arch.len : 64), arch.s);
    if (int_key(f, "llama.context_length", -1, &c->ctx_len, err, errlen) ||
        int_key(f, "llama.embedding_length", -1, &c->dim, err, errlen) ||
        int_key(f, "llama.block_count", -1, &c->n_layers, err, errlen) ||
        int_key(f, "llama.feed_forward_length", -1, &c->hidden_dim, err, errlen) ||
        int_key(f, "llama.attention.head_count", -1, &c->n_heads, err, errlen) ||
        int_key(f, "llama.attention.head_count_kv", c->n_heads, &c->n_kv_heads, err, errlen))
        return -1;
    c->head_dim = c->dim / c->n_heads;
    if (int_key(f, "llama.rope.dimension_count", c->head_dim, &c->rope_dim, err, errlen) ||
        float_key(f, "llama.rope.freq_base", 10000.0f, &c->rope_theta, err, errlen) ||
        float_key(f, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &c->norm_eps, err, errlen) ||
        rope_scaling(f, &c->rope_scale, err, errlen))
        return -1;
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) return ls_fail(err, errlen, "missing tensor 'token_embd.weight'");
    if (emb->ne[1] > MODEL_MAX_COUNT)
        return ls_fail(err, errlen, "token_embd.weight has %lld rows, too many",
                       (long long)emb->ne[1]);
    c->vocab_size = (int)emb->ne[1];
    int vocab_key = 0;
    r = int_key(f, "llama.vocab_size", c->vocab_size, &vocab_key, err, errlen);
    if (r < 0) return -1;
    if (vocab_key != c->vocab_size)
        return ls_fail(err, errlen,
                       "llama.vocab_size %d disagrees with token_embd.weight's %d rows", vocab_key,
                       c->vocab_size);
    if (model_check_config(c, err, errlen) != 0) return -1;
    /* each layer needs nine tensors: a block count the file cannot hold allocates nothing */
    if ((uint64_t)c->n_layers > f->n_tensors / 9)
        return ls_fail(err, errlen, "block_count %d needs more tensors than the file's %llu",
                       c->n_layers, (unsigned long long)f->n_tensors);
    int64_t dim = c->dim, hid = c->hidden_dim, vocab = c->vocab_size;
    int64_t q_dim = (int64_t)c->n_heads * c->head_dim,
            kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    if (take(f, "token_embd.weight", dim, vocab, false, &m->tok_embd, err, errlen) ||
        take(f, "output_norm.weight", dim, 1, true, &m->out_norm, err, errlen))
        return -1;
    if (gguf_find_tensor(f, "output.weight")) {
        if (take(f, "output.weight", dim, vocab, false, &m->output, err, errlen)) return -1;
    } else {
        m->output = m->tok_embd; /* tied embeddings */
    }
    if (gguf_find_tensor(f, "rope_freqs.weight")) { /* Llama 3.1+: per-pair frequency factors */
        tensor rf;
        if (take(f, "rope_freqs.weight", c->rope_dim / 2, 1, true, &rf, err, errlen)) return -1;
        const float *ff = rf.data;
        for (int i = 0; i < c->rope_dim / 2; i++)
            if (!(ff[i] > 0.0f) || !isfinite(ff[i]))
                return ls_fail(err, errlen, "rope_freqs.weight[%d] = %g must be positive", i,
                               (double)ff[i]);
        m->rope_factors = ff;
    }
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return ls_fail(err, errlen, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        layer_weights *w = &m->layers[l];
        const struct {
            const char *name;
            int64_t ne0, ne1;
            tensor *out;
        } want[] = {
            {"attn_norm", dim, 1, &w->attn_norm}, {"attn_q", dim, q_dim, &w->wq},
            {"attn_k", dim, kv_dim, &w->wk},      {"attn_v", dim, kv_dim, &w->wv},
            {"attn_output", q_dim, dim, &w->wo},  {"ffn_norm", dim, 1, &w->ffn_norm},
            {"ffn_gate", dim, hid, &w->w_gate},   {"ffn_down", hid, dim, &w->w_down},
            {"ffn_up", dim, hid, &w->w_up},
        };
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, want[k].name);
            bool vector = want[k].ne1 == 1 && strstr(want[k].name, "norm");
            if (take(f, name, want[k].ne0, want[k].ne1, vector, want[k].out, err, errlen))
                return -1;
        }
    }
    return 0;
}

/* ---- entry points -------------------------------------------------------------------------- */

/* 1 when the file at path starts with the GGUF magic, 0 when not, -1 when unreadable. */
static int is_gguf(const char *path, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return ls_fail(err, errlen, "%s: %s", path, strerror(errno));
    char magic[4];
    size_t n = fread(magic, 1, 4, fp);
    fclose(fp);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

/* A tokenizer from a GGUF's metadata or a llama2.c tokenizer.bin of n_vocab entries (-1: all). */
static tokenizer *load_tokenizer_file(const char *path, int n_vocab, char *err, size_t errlen) {
    char sub[LS_ERR_LEN];
    int g = is_gguf(path, err, errlen);
    if (g < 0) return NULL;
    if (g) {
        gguf_file *f = gguf_open(path, err, errlen);
        if (!f) return NULL;
        tokenizer *t = tok_from_gguf(f, sub, sizeof sub);
        if (!t) ls_fail(err, errlen, "%s: %s", path, sub);
        gguf_close(f);
        return t;
    }
    mapfile map;
    if (map_open(&map, path, err, errlen) != 0) return NULL;
    llama2c_layout lay;
    int is_checkpoint = llama2c_parse(map.data, map.size, &lay, NULL, 0) == 0;
    map_close(&map);
    if (is_checkpoint) {
        ls_fail(err, errlen,
                "%s is a llama2.c model checkpoint, not a tokenizer: pass its "
                "tokenizer file (tokenizer.bin)",
                path);
        return NULL;
    }
    return tok_load_llama2c(path, n_vocab, err, errlen);
}

tokenizer *model_load_tokenizer(const char *path, char *err, size_t errlen) {
    return load_tokenizer_file(path, -1, err, errlen);
}

/* The tokenizer for a llama2.c checkpoint: tok_path, else tokenizer.bin beside the model, else
 * none (m->tok stays NULL). */
static int llama2c_tokenizer(model *m, const char *path, const char *tok_path, char *err,
                             size_t errlen) {
    char beside[1024];
    if (!tok_path) {
        const char *slash = strrchr(path, '/');
        int dir_len = slash ? (int)(slash - path + 1) : 0;
        if (snprintf(beside, sizeof beside, "%.*stokenizer.bin", dir_len, path) >=
            (int)sizeof beside)
            return 0;
        if (access(beside, F_OK) != 0) return 0;
        tok_path = beside;
    }
    m->tok = load_tokenizer_file(tok_path, m->cfg.vocab_size, err, errlen);
    return m->tok ? 0 : -1;
}

model *model_load(const char *path, const char *tokenizer_path, char *err, size_t errlen) {
    char sub[LS_ERR_LEN];
    model *m = calloc(1, sizeof *m);
    if (!m) {
        ls_fail(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    int g = is_gguf(path, err, errlen);
    if (g < 0) goto fail;
    if (g) {
        m->gguf = gguf_open(path, err, errlen);
        if (!m->gguf) goto fail;
        if (load_gguf_weights(m, sub, sizeof sub) != 0) {
            ls_fail(err, errlen, "%s: %s", path, sub);
            goto fail;
        }
        if (tokenizer_path) {
            m->tok = model_load_tokenizer(tokenizer_path, err, errlen);
            if (!m->tok) goto fail;
        } else {
            m->tok = tok_from_gguf(m->gguf, sub, sizeof sub);
            if (!m->tok) {
                ls_fail(err, errlen, "%s: %s", path, sub);
                goto fail;
            }
        }
    } else {
        if (llama2c_load_weights(m, path, sub, sizeof sub) != 0) {
            ls_fail(err, errlen, "%s (no GGUF magic: read as a llama2.c checkpoint)", sub);
            goto fail;
        }
        if (llama2c_tokenizer(m, path, tokenizer_path, err, errlen) != 0) goto fail;
    }
    if (m->tok && tok_n_vocab(m->tok) != m->cfg.vocab_size) {
        ls_fail(err, errlen, "%s: the tokenizer has %d tokens but the model's vocab size is %d",
                path, tok_n_vocab(m->tok), m->cfg.vocab_size);
        goto fail;
    }
    return m;
fail:
    model_free(m);
    return NULL;
}

void model_free(model *m) {
    if (!m) return;
    free(m->packed);
    tok_free(m->tok);
    free(m->layers);
    gguf_close(m->gguf);
    map_close(&m->map);
    free(m);
}

/* The matrices matmul multiplies by, for model_repack: every layer's seven and the classifier
 * (the embedding is only looked up by rows). */
static int matmul_tensors(model *m, tensor **ts, int max) {
    int n = 0;
    for (int l = 0; l < m->cfg.n_layers && n + 7 <= max; l++) {
        layer_weights *w = &m->layers[l];
        tensor *lt[] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_down, &w->w_up};
        for (int k = 0; k < 7; k++) ts[n++] = lt[k];
    }
    if (n < max) ts[n++] = &m->output;
    return n;
}

int model_repack(model *m, size_t *bytes) {
    *bytes = 0;
    if (m->packed) return 0;
    const int max = 7 * m->cfg.n_layers + 1;
    tensor **ts = malloc((size_t)max * sizeof *ts);
    if (!ts) return -1;
    const int n = matmul_tensors(m, ts, max);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += mm_dec_packed_bytes(ts[i]);
    if (total == 0) goto done;
    m->packed = ls_alloc(total);
    if (!m->packed) {
        free(ts);
        return -1;
    }
    uint8_t *p = m->packed;
    for (int i = 0; i < n; i++) {
        size_t nb = mm_dec_packed_bytes(ts[i]);
        if (!nb) continue;
        mm_dec_repack(p, ts[i]);
        ts[i]->packed = p;
        p += nb;
    }
done:
    free(ts);
    *bytes = total;
    return 0;
}

/* Bytes of a tensor as stored. */
static size_t tensor_bytes(const tensor *t) {
    int be = dtype_ggml_block_elems(t->type);
    if (be <= 0) return 0;
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    return (size_t)(n / be) * dtype_ggml_block_bytes(t->type);
}

size_t model_weight_bytes(const model *m) {
    /* one row of the embedding, every layer's norms and matrices, the final norm, the classifier */
    size_t total = tensor_bytes(&m->out_norm) + tensor_bytes(&m->output);
    total += tensor_bytes(&m->tok_embd) / (size_t)(m->cfg.vocab_size > 0 ? m->cfg.vocab_size : 1);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_weights *w = &m->layers[l];
        const tensor *ts[] = {&w->attn_norm, &w->wq,     &w->wk,     &w->wv,  &w->wo,
                              &w->ffn_norm,  &w->w_gate, &w->w_down, &w->w_up};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
            total += tensor_bytes(ts[k]);
    }
    return total;
}

static void count_tensor(model_stats *st, const tensor *t) {
    if (!t->data) return;
    int64_t n = tensor_nelements(t);
    size_t bytes = tensor_bytes(t);
    st->n_params += n;
    st->bytes += bytes;
    st->n_tensors++;
    int k = 0;
    while (k < st->n_types && st->types[k].type != t->type)
        k++;
    if (k == MODEL_MAX_TYPES) return; /* more types than any loadable model has: totals only */
    if (k == st->n_types) {
        st->n_types++;
        st->types[k].type = t->type;
    }
    st->types[k].n_tensors++;
    st->types[k].n_params += n;
    st->types[k].bytes += bytes;
}

void model_get_stats(const model *m, model_stats *out) {
    memset(out, 0, sizeof *out);
    count_tensor(out, &m->tok_embd);
    count_tensor(out, &m->out_norm);
    if (m->output.data != m->tok_embd.data) count_tensor(out, &m->output);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_weights *w = &m->layers[l];
        const tensor *ts[] = {&w->attn_norm, &w->wq,     &w->wk,     &w->wv,  &w->wo,
                              &w->ffn_norm,  &w->w_gate, &w->w_down, &w->w_up};
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
            count_tensor(out, ts[k]);
    }
}
