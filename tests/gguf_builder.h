/* gguf_builder: a small in-test GGUF writer for test_gguf and the tests that need a tiny model
 * file. A gspec lists metadata pairs (whose values are raw encoded bytes, so a test can write
 * anything, malformed included) and tensor infos; gspec_write serializes it with the data
 * section, gspec_save writes it to a file. tiny_model() fills a spec with a valid two-layer llama
 * model and a 264-token vocabulary; a test then corrupts one thing, or tiny_model_save writes it
 * as it is. Header-only, test code: aborts on out-of-memory rather than carrying error paths. */
#ifndef LS_GGUF_BUILDER_H
#define LS_GGUF_BUILDER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
} gbuf;

static void gb_put(gbuf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void gb_u8(gbuf *b, uint8_t v) {
    gb_put(b, &v, 1);
}
static void gb_u32(gbuf *b, uint32_t v) {
    gb_put(b, &v, 4);
}
static void gb_u64(gbuf *b, uint64_t v) {
    gb_put(b, &v, 8);
}
static void gb_f32(gbuf *b, float v) {
    gb_put(b, &v, 4);
}
static void gb_strn(gbuf *b, const char *s, size_t n) {
    gb_u64(b, n);
    gb_put(b, s, n);
}
static void gb_str(gbuf *b, const char *s) {
    gb_strn(b, s, strlen(s));
}
static void gb_free(gbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

typedef struct {
    char key[128];
    size_t key_len;
    uint32_t type;
    gbuf val; /* the encoded value, written after the type */
} gkv;

typedef struct {
    char name[320];
    size_t name_len;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    int64_t offset; /* -1: placed after the previous tensor, aligned */
} gtensor;

#define GSPEC_MAX 64
typedef struct {
    char magic[4];
    uint32_t version;
    int64_t n_tensors_override, n_kv_override; /* -1: the real counts */
    uint64_t align;                            /* layout alignment (the key is separate) */
    gkv kv[GSPEC_MAX];
    int n_kv;
    gtensor t[GSPEC_MAX];
    int n_t;
} gspec;

static void gspec_init(gspec *s) {
    memset(s, 0, sizeof *s);
    memcpy(s->magic, "GGUF", 4);
    s->version = 3;
    s->n_tensors_override = s->n_kv_override = -1;
    s->align = 32;
}

static void gspec_free(gspec *s) {
    for (int i = 0; i < s->n_kv; i++)
        gb_free(&s->kv[i].val);
    s->n_kv = 0;
}

static gkv *kv_find(gspec *s, const char *key) {
    for (int i = 0; i < s->n_kv; i++)
        if (s->kv[i].key_len == strlen(key) && !memcmp(s->kv[i].key, key, s->kv[i].key_len))
            return &s->kv[i];
    return NULL;
}

/* A new pair (or the existing one, emptied) with the given type; the caller writes the value. */
static gbuf *kv_set(gspec *s, const char *key, uint32_t type) {
    gkv *kv = kv_find(s, key);
    if (!kv) {
        if (s->n_kv == GSPEC_MAX) abort();
        kv = &s->kv[s->n_kv++];
        memset(kv, 0, sizeof *kv);
        kv->key_len = strlen(key);
        memcpy(kv->key, key, kv->key_len);
    }
    kv->val.n = 0;
    kv->type = type;
    return &kv->val;
}

static inline void kv_del(gspec *s, const char *key) {
    gkv *kv = kv_find(s, key);
    if (!kv) return;
    gb_free(&kv->val);
    int i = (int)(kv - s->kv);
    memmove(&s->kv[i], &s->kv[i + 1], (size_t)(s->n_kv - i - 1) * sizeof *kv);
    s->n_kv--;
}

static void kv_u32(gspec *s, const char *key, uint32_t v) {
    gb_u32(kv_set(s, key, 4), v);
}
static void kv_f32(gspec *s, const char *key, float v) {
    gb_f32(kv_set(s, key, 6), v);
}
static void kv_bool(gspec *s, const char *key, bool v) {
    gb_u8(kv_set(s, key, 7), v);
}
static void kv_str(gspec *s, const char *key, const char *v) {
    gb_str(kv_set(s, key, 8), v);
}

static gtensor *t_find(gspec *s, const char *name) {
    for (int i = 0; i < s->n_t; i++)
        if (s->t[i].name_len == strlen(name) && !memcmp(s->t[i].name, name, s->t[i].name_len))
            return &s->t[i];
    return NULL;
}

static gtensor *t_add(gspec *s, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1) {
    if (s->n_t == GSPEC_MAX) abort();
    gtensor *t = &s->t[s->n_t++];
    memset(t, 0, sizeof *t);
    t->name_len = strlen(name);
    memcpy(t->name, name, t->name_len);
    t->n_dims = ne1 > 1 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = t->ne[3] = 1;
    t->type = type;
    t->offset = -1;
    return t;
}

static inline void t_del(gspec *s, const char *name) {
    gtensor *t = t_find(s, name);
    if (!t) return;
    int i = (int)(t - s->t);
    memmove(&s->t[i], &s->t[i + 1], (size_t)(s->n_t - i - 1) * sizeof *t);
    s->n_t--;
}

/* Bytes of a tensor's data as this builder writes it (64 for types it does not know or sizes
 * that overflow: enough to be written, wrong enough to be caught). */
static size_t gt_bytes(const gtensor *t) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims && d < 4; d++)
        if (__builtin_mul_overflow(n, t->ne[d], &n) || n > (1u << 24)) return 64;
    switch (t->type) {
    case 0:
        return (size_t)n * 4;
    case 1:
    case 30:
        return (size_t)n * 2;
    case 8:
        return (size_t)n / 32 * 34;
    case 2:
        return (size_t)n / 32 * 18;
    case 3:
        return (size_t)n / 32 * 20;
    case 9:
        return (size_t)n / 32 * 36;
    default:
        return 64;
    }
}

static size_t align_up(size_t x, size_t a) {
    return (x + a - 1) / a * a;
}

/* Serializes s into out (which it resets). */
static void gspec_write(gspec *s, gbuf *out) {
    out->n = 0;
    gb_put(out, s->magic, 4);
    gb_u32(out, s->version);
    gb_u64(out, s->n_tensors_override >= 0 ? (uint64_t)s->n_tensors_override : (uint64_t)s->n_t);
    gb_u64(out, s->n_kv_override >= 0 ? (uint64_t)s->n_kv_override : (uint64_t)s->n_kv);
    for (int i = 0; i < s->n_kv; i++) {
        gb_strn(out, s->kv[i].key, s->kv[i].key_len);
        gb_u32(out, s->kv[i].type);
        gb_put(out, s->kv[i].val.p, s->kv[i].val.n);
    }
    size_t off = 0, data_size = 0;
    for (int i = 0; i < s->n_t; i++) {
        gtensor *t = &s->t[i];
        gb_strn(out, t->name, t->name_len);
        gb_u32(out, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) /* a 5th dim (a malformed case) is written as 1 */
            gb_u64(out, d < 4 ? t->ne[d] : 1);
        gb_u32(out, t->type);
        uint64_t o = t->offset >= 0 ? (uint64_t)t->offset : off;
        gb_u64(out, o);
        if (t->offset < 0) off = align_up(off + gt_bytes(t), s->align);
        /* explicit offsets past 1 GiB are meant to be out of bounds: no data is written for them */
        size_t end = (size_t)(o < (1u << 30) ? o : 0) + gt_bytes(t);
        if (end > data_size) data_size = end;
    }
    if (s->n_t == 0) return;
    size_t start = align_up(out->n, s->align);
    while (out->n < start)
        gb_u8(out, 0);
    /* data: small F32 values (0.01 * ((i % 7) - 3)), whatever the type */
    for (size_t i = 0; i < align_up(data_size, 4) / 4; i++)
        gb_f32(out, 0.01f * (float)((int)(i % 7) - 3));
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(p, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* Tiny model shape. */
enum {
    TM_DIM = 32,
    TM_HEADS = 4,
    TM_KV_HEADS = 2,
    TM_HEAD_DIM = 8,
    TM_HIDDEN = 64,
    TM_LAYERS = 2,
    TM_VOCAB = 264
};
static const char *tm_words[] = {"\xe2\x96\x81"
                                 "a",
                                 "\xe2\x96\x81"
                                 "b",
                                 "ab",
                                 "\xe2\x96\x81"
                                 "ab",
                                 "c"};

/* Piece i of the test vocabulary: the three specials, the 256 byte pieces, then word. */
static void tm_piece(char piece[16], int i, const char *word) {
    if (i == 0)
        strcpy(piece, "<unk>");
    else if (i == 1)
        strcpy(piece, "<s>");
    else if (i == 2)
        strcpy(piece, "</s>");
    else if (i < 259)
        snprintf(piece, 16, "<0x%02X>", i - 3);
    else
        snprintf(piece, 16, "%s", word);
}

/* The vocabulary's tokens array with n entries (n <= TM_VOCAB). */
static void tm_tokens(gspec *s, int n) {
    gbuf *b = kv_set(s, "tokenizer.ggml.tokens", 9);
    gb_u32(b, 8);
    gb_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        char piece[16];
        tm_piece(piece, i, i >= 259 ? tm_words[i - 259] : NULL);
        gb_str(b, piece);
    }
}

/* A valid llama model: TM_LAYERS layers, matrices of mat_type, tied when !untied. */
static inline void tiny_model(gspec *s, uint32_t mat_type, bool untied) {
    gspec_init(s);
    kv_str(s, "general.architecture", "llama");
    kv_str(s, "general.name", "tiny");
    kv_u32(s, "llama.context_length", 64);
    kv_u32(s, "llama.embedding_length", TM_DIM);
    kv_u32(s, "llama.block_count", TM_LAYERS);
    kv_u32(s, "llama.feed_forward_length", TM_HIDDEN);
    kv_u32(s, "llama.attention.head_count", TM_HEADS);
    kv_u32(s, "llama.attention.head_count_kv", TM_KV_HEADS);
    kv_f32(s, "llama.rope.freq_base", 10000.0f);
    kv_f32(s, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_str(s, "tokenizer.ggml.model", "llama");
    tm_tokens(s, TM_VOCAB);
    gbuf *b = kv_set(s, "tokenizer.ggml.scores", 9);
    gb_u32(b, 6);
    gb_u64(b, TM_VOCAB);
    for (int i = 0; i < TM_VOCAB; i++)
        gb_f32(b, i < 259 ? 0.0f : (float)(-(i - 258)));
    b = kv_set(s, "tokenizer.ggml.token_type", 9);
    gb_u32(b, 5);
    gb_u64(b, TM_VOCAB);
    for (int i = 0; i < TM_VOCAB; i++)
        gb_u32(b, i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1);
    kv_u32(s, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(s, "tokenizer.ggml.eos_token_id", 2);
    kv_u32(s, "tokenizer.ggml.unknown_token_id", 0);
    kv_bool(s, "tokenizer.ggml.add_bos_token", true);
    t_add(s, "token_embd.weight", mat_type, TM_DIM, TM_VOCAB);
    t_add(s, "output_norm.weight", 0, TM_DIM, 1);
    if (untied) t_add(s, "output.weight", mat_type, TM_DIM, TM_VOCAB);
    for (int l = 0; l < TM_LAYERS; l++) {
        char n[64];
        int kv = TM_KV_HEADS * TM_HEAD_DIM;
#define TM_T(suffix, type, a, b)                                                                   \
    (snprintf(n, sizeof n, "blk.%d." suffix ".weight", l), t_add(s, n, type, a, b))
        TM_T("attn_norm", 0, TM_DIM, 1);
        TM_T("attn_q", mat_type, TM_DIM, TM_DIM);
        TM_T("attn_k", mat_type, TM_DIM, kv);
        TM_T("attn_v", mat_type, TM_DIM, kv);
        TM_T("attn_output", mat_type, TM_DIM, TM_DIM);
        TM_T("ffn_norm", 0, TM_DIM, 1);
        TM_T("ffn_gate", mat_type, TM_DIM, TM_HIDDEN);
        TM_T("ffn_down", mat_type, TM_HIDDEN, TM_DIM);
        TM_T("ffn_up", mat_type, TM_DIM, TM_HIDDEN);
#undef TM_T
    }
}

/* Writes the file of spec s (kept: the caller still frees it) to path: 0, or -1 when it cannot
 * be written. */
static inline int gspec_save(gspec *s, const char *path) {
    gbuf out = {0};
    gspec_write(s, &out);
    int rc = write_bytes(path, out.p, out.n);
    gb_free(&out);
    return rc;
}

/* Writes tiny_model(F32 matrices, tied output) to path: 0, or -1 when it cannot be written. */
static inline int tiny_model_save(const char *path) {
    gspec s;
    tiny_model(&s, 0, false);
    int rc = gspec_save(&s, path);
    gspec_free(&s);
    return rc;
}

#endif
