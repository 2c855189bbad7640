/* test_gguf: the GGUF reader and the llama2.c loader against files this test writes itself: a
 * valid tiny model in several variants, one malformed file per kind of damage (each must fail
 * with a message naming the problem), every metadata value type round-tripping, large arrays
 * read as views (opening them allocates in proportion to a small fraction of the file), and
 * every prefix class of the real kjv-demo.gguf (truncation must fail cleanly). Files live in
 * check_tmp_path's folder (check.h), removed at exit even when the test is killed. */
#include "check.h"
#include "common.h"
#include "gguf.h"
#include "gguf_builder.h"
#include "model.h"

#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static const char *write_spec(gspec *s, const char *name, size_t cut) {
    gbuf b = {0};
    gspec_write(s, &b);
    const char *path = check_tmp_path(name);
    CHECK(write_bytes(path, b.p, b.n > cut ? b.n - cut : 0) == 0, "writing %s", path);
    gb_free(&b);
    return path;
}

/* ---- malformed GGUF files: one mutation of the valid tiny model each ------------------------- */

static void m_magic(gspec *s) {
    memcpy(s->magic, "GGUG", 4);
}
static void m_v1(gspec *s) {
    s->version = 1;
}
static void m_v4(gspec *s) {
    s->version = 4;
}
static void m_nkv_huge(gspec *s) {
    s->n_kv_override = (int64_t)1 << 40;
}
static void m_nt_huge(gspec *s) {
    s->n_tensors_override = (int64_t)1 << 40;
}
static void m_nkv_short(gspec *s) {
    s->n_kv_override = s->n_kv - 1;
} /* a kv read as a tensor */
static void m_str_huge(gspec *s) {
    gbuf *b = kv_set(s, "general.name", GGUF_STRING);
    gb_u64(b, (uint64_t)1 << 60);
    gb_put(b, "abc", 3);
}
static void m_key_utf8(gspec *s) {
    kv_str(s, "general.\xff", "x");
}
static void m_val_utf8(gspec *s) {
    kv_str(s, "general.name", "caf\xc3\x28");
}
static void m_overlong(gspec *s) {
    kv_str(s, "general.name", "\xc0\xaf");
}
static void m_surrogate(gspec *s) {
    kv_str(s, "general.name", "\xed\xa0\x80");
}
static void m_dup_key(gspec *s) {
    kv_u32(s, "llama.block_count", TM_LAYERS);
    gkv *kv = &s->kv[s->n_kv++];
    *kv = *kv_find(s, "llama.block_count");
    kv->val = (gbuf){0};
    gb_u32(&kv->val, TM_LAYERS);
}
static void m_empty_key(gspec *s) {
    kv_u32(s, "", 1);
}
static void m_vtype(gspec *s) {
    gb_u32(kv_set(s, "general.x", 13), 0);
}
static void m_arr_count(gspec *s) {
    gbuf *b = kv_set(s, "general.x", GGUF_ARRAY);
    gb_u32(b, GGUF_UINT32);
    gb_u64(b, (uint64_t)1 << 40);
    gb_u32(b, 7);
}
static void m_arr_elem(gspec *s) {
    gbuf *b = kv_set(s, "general.x", GGUF_ARRAY);
    gb_u32(b, 77);
    gb_u64(b, 1);
}
static void m_depth_bomb(gspec *s) {
    gbuf *b = kv_set(s, "general.x", GGUF_ARRAY);
    for (int d = 0; d < 200; d++) { /* 200 nested arrays of one array each */
        gb_u32(b, GGUF_ARRAY);
        gb_u64(b, 1);
    }
    gb_u32(b, GGUF_UINT8);
    gb_u64(b, 0);
}
static void m_bool2(gspec *s) {
    gb_u8(kv_set(s, "tokenizer.ggml.add_bos_token", GGUF_BOOL), 2);
}
static void m_align48(gspec *s) {
    kv_u32(s, "general.alignment", 48);
}
static void m_align0(gspec *s) {
    kv_u32(s, "general.alignment", 0);
}
static void m_align_str(gspec *s) {
    kv_str(s, "general.alignment", "32");
}
static void m_ndims5(gspec *s) {
    s->t[3].n_dims = 5;
}
static void m_ndims0(gspec *s) {
    s->t[3].n_dims = 0;
}
static void m_zero_dim(gspec *s) {
    t_find(s, "blk.0.attn_q.weight")->ne[1] = 0;
}
static void m_ttype(gspec *s) {
    t_find(s, "blk.0.attn_q.weight")->type = 99;
}
static void m_dup_tensor(gspec *s) {
    gtensor *t = t_find(s, "blk.1.attn_q.weight");
    t->name[4] = '0';
}
static void m_name_huge(gspec *s) {
    gtensor *t = t_find(s, "blk.1.attn_q.weight");
    memset(t->name, 'x', 300);
    t->name_len = 300;
}
static void m_misaligned(gspec *s) {
    t_find(s, "output_norm.weight")->offset = 32 * TM_VOCAB * 4 + 4;
}
static void m_oob(gspec *s) {
    s->t[s->n_t - 1].offset = (int64_t)1 << 40;
}
static void m_overlap(gspec *s) {
    t_find(s, "output_norm.weight")->offset = 0;
}
static void m_ne_overflow(gspec *s) {
    gtensor *t = t_find(s, "blk.0.attn_q.weight");
    t->ne[0] = (uint64_t)1 << 32;
    t->ne[1] = (uint64_t)1 << 32;
}
static void m_ne_neg(gspec *s) {
    t_find(s, "blk.0.attn_q.weight")->ne[0] = (uint64_t)1 << 63;
}
static void m_q8_row(gspec *s) {
    gtensor *t = t_find(s, "blk.0.ffn_down.weight");
    t->type = 8; /* Q8_0 rows of 48: not whole blocks */
    t->ne[0] = 48;
}
static void m_no_block_count(gspec *s) {
    kv_del(s, "llama.block_count");
}
static void m_dim_str(gspec *s) {
    kv_str(s, "llama.embedding_length", "32");
}
static void m_kv_heads(gspec *s) {
    kv_u32(s, "llama.attention.head_count_kv", 3);
}
static void m_heads(gspec *s) {
    kv_u32(s, "llama.attention.head_count", 5);
}
static void m_no_tensor(gspec *s) {
    t_del(s, "blk.1.ffn_up.weight");
}
static void m_no_embd(gspec *s) {
    t_del(s, "token_embd.weight");
}
static void m_shape(gspec *s) {
    t_find(s, "blk.0.attn_k.weight")->ne[1] = TM_DIM;
}
static void m_shape3d(gspec *s) {
    gtensor *t = t_find(s, "blk.0.ffn_up.weight");
    t->n_dims = 3;
    t->ne[1] = TM_HIDDEN / 2;
    t->ne[2] = 2;
}
static void m_norm_f16(gspec *s) {
    t_find(s, "output_norm.weight")->type = 1;
}
static void m_q8_1(gspec *s) { /* a type GGUF defines and the engine does not compute */
    t_find(s, "blk.0.attn_q.weight")->type = 9;
}
static void m_vocab(gspec *s) {
    kv_del(s, "tokenizer.ggml.scores");
    kv_del(s, "tokenizer.ggml.token_type");
    tm_tokens(s, TM_VOCAB - 1);
}
static void m_arch(gspec *s) {
    kv_str(s, "general.architecture", "gpt2");
}
static void m_no_arch(gspec *s) {
    kv_del(s, "general.architecture");
}
static void m_tok_model(gspec *s) {
    kv_str(s, "tokenizer.ggml.model", "gpt2");
}
static void m_no_tok(gspec *s) {
    kv_del(s, "tokenizer.ggml.model");
}
static void m_scores_n(gspec *s) {
    gbuf *b = kv_set(s, "tokenizer.ggml.scores", GGUF_ARRAY);
    gb_u32(b, GGUF_FLOAT32);
    gb_u64(b, 1);
    gb_f32(b, 0.0f);
}
static void m_tokens_type(gspec *s) {
    gbuf *b = kv_set(s, "tokenizer.ggml.tokens", GGUF_ARRAY);
    gb_u32(b, GGUF_UINT8);
    gb_u64(b, 1);
    gb_u8(b, 0);
}
static void m_bos(gspec *s) {
    kv_u32(s, "tokenizer.ggml.bos_token_id", 5000);
}
static void m_blocks(gspec *s) {
    kv_u32(s, "llama.block_count", 1000000);
}
static void m_dim_huge(gspec *s) {
    kv_u32(s, "llama.embedding_length", 0x80000000u);
}
static void m_vocab_key(gspec *s) {
    kv_u32(s, "llama.vocab_size", 100);
}
static void m_eps(gspec *s) {
    kv_f32(s, "llama.attention.layer_norm_rms_epsilon", -1.0f);
}
static void m_rope_dim(gspec *s) {
    kv_u32(s, "llama.rope.dimension_count", 7);
}
static void m_theta_nan(gspec *s) {
    kv_f32(s, "llama.rope.freq_base", NAN);
}

static const struct {
    const char *name;
    void (*mutate)(gspec *);
    const char *word; /* the message must contain it */
    size_t cut;       /* bytes cut off the end of the file */
} bad_gguf[] = {
    {"magic", m_magic, "magic", 0},
    {"version1", m_v1, "version 1", 0},
    {"version4", m_v4, "version 4", 0},
    {"n_kv_huge", m_nkv_huge, "metadata count", 0},
    {"n_tensors_huge", m_nt_huge, "tensor count", 0},
    {"n_kv_short", m_nkv_short, "tensor", 0},
    {"string_huge", m_str_huge, "string length", 0},
    {"key_utf8", m_key_utf8, "UTF-8", 0},
    {"value_utf8", m_val_utf8, "UTF-8", 0},
    {"overlong_utf8", m_overlong, "UTF-8", 0},
    {"surrogate_utf8", m_surrogate, "UTF-8", 0},
    {"dup_key", m_dup_key, "duplicate metadata key 'llama.block_count'", 0},
    {"empty_key", m_empty_key, "empty", 0},
    {"value_type", m_vtype, "unknown value type 13", 0},
    {"array_count", m_arr_count, "array count", 0},
    {"array_elem_type", m_arr_elem, "element type 77", 0},
    {"depth_bomb", m_depth_bomb, "nested", 0},
    {"bool2", m_bool2, "bool", 0},
    {"align48", m_align48, "alignment", 0},
    {"align0", m_align0, "alignment", 0},
    {"align_string", m_align_str, "general.alignment", 0},
    {"n_dims5", m_ndims5, "n_dims 5", 0},
    {"n_dims0", m_ndims0, "n_dims 0", 0},
    {"zero_dim", m_zero_dim, "zero", 0},
    {"tensor_type", m_ttype, "unknown tensor type 99", 0},
    {"dup_tensor", m_dup_tensor, "duplicate tensor name 'blk.0.attn_q.weight'", 0},
    {"name_huge", m_name_huge, "string length", 0},
    {"misaligned", m_misaligned, "not aligned", 0},
    {"out_of_bounds", m_oob, "out of bounds", 0},
    {"cut_data", NULL, "out of bounds", 4},
    {"overlap", m_overlap, "overlap", 0},
    {"ne_overflow", m_ne_overflow, "overflow", 0},
    {"ne_2pow63", m_ne_neg, "overflow", 0},
    {"q8_row", m_q8_row, "multiple", 0},
    {"no_block_count", m_no_block_count, "llama.block_count", 0},
    {"dim_string", m_dim_str, "llama.embedding_length", 0},
    {"kv_heads", m_kv_heads, "divide", 0},
    {"heads", m_heads, "divide", 0},
    {"no_tensor", m_no_tensor, "missing tensor 'blk.1.ffn_up.weight'", 0},
    {"no_embd", m_no_embd, "token_embd.weight", 0},
    {"shape", m_shape, "blk.0.attn_k.weight' has shape", 0},
    {"shape3d", m_shape3d, "shape", 0},
    {"norm_f16", m_norm_f16, "must be F32", 0},
    {"q8_1", m_q8_1, "'blk.0.attn_q.weight' has type Q8_1, which is not supported", 0},
    {"vocab_mismatch", m_vocab, "vocab size", 0},
    {"arch", m_arch, "gpt2", 0},
    {"no_arch", m_no_arch, "general.architecture", 0},
    {"tok_model", m_tok_model, "tokenizer.ggml.model", 0},
    {"no_tok", m_no_tok, "tokenizer.ggml.model", 0},
    {"scores_count", m_scores_n, "tokenizer.ggml.scores", 0},
    {"tokens_type", m_tokens_type, "tokenizer.ggml.tokens", 0},
    {"bos_range", m_bos, "bos_token_id", 0},
    {"block_count_huge", m_blocks, "block count", 0},
    {"dim_huge", m_dim_huge, "llama.embedding_length", 0},
    {"vocab_key", m_vocab_key, "llama.vocab_size", 0},
    {"eps", m_eps, "epsilon", 0},
    {"rope_dim", m_rope_dim, "rope", 0},
    {"theta_nan", m_theta_nan, "freq_base", 0},
};

static void test_bad_gguf(void) {
    for (size_t i = 0; i < sizeof bad_gguf / sizeof bad_gguf[0]; i++) {
        gspec s;
        tiny_model(&s, 0, true);
        if (bad_gguf[i].mutate) bad_gguf[i].mutate(&s);
        const char *path = write_spec(&s, "bad.gguf", bad_gguf[i].cut);
        gspec_free(&s);
        char err[LS_ERR_LEN] = "";
        model *m = model_load(path, NULL, err, sizeof err);
        if (getenv("LS_TEST_VERBOSE")) printf("%-18s %s\n", bad_gguf[i].name, err);
        CHECK(m == NULL && strstr(err, bad_gguf[i].word) != NULL,
              "case %s: expected an error containing \"%s\", got \"%s\"", bad_gguf[i].name,
              bad_gguf[i].word, m ? "(loaded)" : err);
        model_free(m);
    }
}

/* ---- valid variants ------------------------------------------------------------------------ */

static void test_good_gguf(void) {
    const struct {
        const char *name;
        uint32_t type;
        bool untied;
        uint32_t version, align;
    } good[] = {{"f32", 0, true, 3, 32},     {"tied", 0, false, 3, 32}, {"v2", 0, true, 2, 32},
                {"align64", 0, true, 3, 64}, {"f16", 1, true, 3, 32},   {"bf16", 30, true, 3, 32},
                {"q8_0", 8, false, 3, 32},   {"q4_0", 2, true, 3, 32}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        gspec s;
        tiny_model(&s, good[i].type, good[i].untied);
        s.version = good[i].version;
        if (good[i].align != 32) {
            kv_u32(&s, "general.alignment", good[i].align);
            s.align = good[i].align;
        }
        const char *path = write_spec(&s, "good.gguf", 0);
        gspec_free(&s);
        char err[LS_ERR_LEN] = "";
        model *m = model_load(path, NULL, err, sizeof err);
        CHECK(m != NULL, "%s: %s", good[i].name, err);
        if (!m) continue;
        CHECK(m->cfg.dim == TM_DIM && m->cfg.n_layers == TM_LAYERS && m->cfg.n_heads == TM_HEADS &&
                  m->cfg.n_kv_heads == TM_KV_HEADS && m->cfg.head_dim == TM_HEAD_DIM &&
                  m->cfg.hidden_dim == TM_HIDDEN && m->cfg.vocab_size == TM_VOCAB &&
                  m->cfg.ctx_len == 64 && m->cfg.rope_dim == TM_HEAD_DIM,
              "%s: config", good[i].name);
        CHECK(m->gguf->version == good[i].version && m->gguf->alignment == good[i].align,
              "%s: version %u alignment %llu", good[i].name, m->gguf->version,
              (unsigned long long)m->gguf->alignment);
        CHECK(m->gguf->data_offset % good[i].align == 0, "%s: data offset", good[i].name);
        CHECK((m->output.data == m->tok_embd.data) == !good[i].untied, "%s: tied", good[i].name);
        CHECK(m->layers[1].wq.type == (dtype)good[i].type && m->out_norm.type == DT_F32,
              "%s: types", good[i].name);
        CHECK(m->tok && tok_n_vocab(m->tok) == TM_VOCAB, "%s: tokenizer", good[i].name);
        if (good[i].type == 0) {
            const float *x = m->out_norm.data;
            size_t off = (size_t)((const uint8_t *)x - (m->gguf->map.data + m->gguf->data_offset));
            /* the builder writes 0.01 * ((i % 7) - 3) at float i of the data section */
            CHECK(x[0] == 0.01f * (float)((int)(off / 4 % 7) - 3), "%s: data", good[i].name);
        }
        model_free(m);
    }
}

/* ---- every value type round-trips ---------------------------------------------------------- */

/* Element i of array a (a zeroed value, type UINT8, when there is none). */
static gguf_value item(const gguf_value *a, uint64_t i) {
    gguf_value e;
    if (!a || gguf_arr_get(a, i, &e) != 0) memset(&e, 0, sizeof e);
    return e;
}

static void test_roundtrip(void) {
    gspec s;
    gspec_init(&s);
    gb_u8(kv_set(&s, "t.u8", GGUF_UINT8), 200);
    gb_u8(kv_set(&s, "t.i8", GGUF_INT8), (uint8_t)-5);
    uint16_t u16 = 60000, i16 = (uint16_t)-30000;
    gb_put(kv_set(&s, "t.u16", GGUF_UINT16), &u16, 2);
    gb_put(kv_set(&s, "t.i16", GGUF_INT16), &i16, 2);
    gb_u32(kv_set(&s, "t.u32", GGUF_UINT32), 4000000000u);
    gb_u32(kv_set(&s, "t.i32", GGUF_INT32), (uint32_t)-2000000000);
    kv_f32(&s, "t.f32", 1.5f);
    kv_bool(&s, "t.bool", true);
    kv_str(&s, "t.str", "h\xc3\xa9llo \xf0\x9f\x99\x82");
    gb_u64(kv_set(&s, "t.u64", GGUF_UINT64), (uint64_t)1 << 63);
    gb_u64(kv_set(&s, "t.i64", GGUF_INT64), (uint64_t) - ((int64_t)1 << 62));
    double f64 = 3.25;
    gb_put(kv_set(&s, "t.f64", GGUF_FLOAT64), &f64, 8);
    gbuf *b = kv_set(&s, "t.arr_arr_str", GGUF_ARRAY); /* [["a", "bc"], []] */
    gb_u32(b, GGUF_ARRAY), gb_u64(b, 2);
    gb_u32(b, GGUF_STRING), gb_u64(b, 2), gb_str(b, "a"), gb_str(b, "bc");
    gb_u32(b, GGUF_STRING), gb_u64(b, 0);
    b = kv_set(&s, "t.depth4", GGUF_ARRAY); /* [[[[7, 8]]]]: the deepest allowed */
    for (int d = 0; d < 3; d++)
        gb_u32(b, GGUF_ARRAY), gb_u64(b, 1);
    gb_u32(b, GGUF_INT16), gb_u64(b, 2);
    uint16_t seven = 7, eight = (uint16_t)-8;
    gb_put(b, &seven, 2), gb_put(b, &eight, 2);
    b = kv_set(&s, "t.empty_f64", GGUF_ARRAY);
    gb_u32(b, GGUF_FLOAT64), gb_u64(b, 0);
    b = kv_set(&s, "t.bools", GGUF_ARRAY);
    gb_u32(b, GGUF_BOOL), gb_u64(b, 3), gb_u8(b, 1), gb_u8(b, 0), gb_u8(b, 1);
    const char *path = write_spec(&s, "values.gguf", 0);
    int n_kv = s.n_kv;
    char err[LS_ERR_LEN] = "";
    gguf_file *f = gguf_open(path, err, sizeof err);
    CHECK(f != NULL, "values: %s", err);
    if (f) {
        CHECK(f->n_kv == (uint64_t)n_kv && f->n_tensors == 0, "counts");
        for (int i = 0; i < n_kv; i++)
            CHECK(f->kv[i].key.len == s.kv[i].key_len &&
                      !memcmp(f->kv[i].key.s, s.kv[i].key, s.kv[i].key_len) &&
                      f->kv[i].value.type == s.kv[i].type,
                  "kv %d in file order", i);
        const gguf_value *v;
        v = gguf_get(f, "t.u8");
        CHECK(v && v->type == GGUF_UINT8 && v->u == 200, "u8");
        v = gguf_get(f, "t.i8");
        CHECK(v && v->type == GGUF_INT8 && v->i == -5, "i8");
        v = gguf_get(f, "t.u16");
        CHECK(v && v->u == 60000, "u16");
        v = gguf_get(f, "t.i16");
        CHECK(v && v->i == -30000, "i16");
        v = gguf_get(f, "t.u32");
        CHECK(v && v->u == 4000000000u, "u32");
        v = gguf_get(f, "t.i32");
        CHECK(v && v->i == -2000000000, "i32");
        v = gguf_get(f, "t.f32");
        CHECK(v && v->type == GGUF_FLOAT32 && v->f == 1.5, "f32");
        v = gguf_get(f, "t.bool");
        CHECK(v && v->type == GGUF_BOOL && v->b, "bool");
        v = gguf_get(f, "t.str");
        CHECK(v && gguf_str_eq(v->str, "h\xc3\xa9llo \xf0\x9f\x99\x82"), "string");
        v = gguf_get(f, "t.u64");
        CHECK(v && v->u == (uint64_t)1 << 63, "u64");
        v = gguf_get(f, "t.i64");
        CHECK(v && v->i == -((int64_t)1 << 62), "i64");
        v = gguf_get(f, "t.f64");
        CHECK(v && v->type == GGUF_FLOAT64 && v->f == 3.25, "f64");
        v = gguf_get(f, "t.arr_arr_str");
        gguf_value a0 = item(v, 0), a1 = item(v, 1);
        CHECK(v && v->arr.elem == GGUF_ARRAY && v->arr.n == 2 && a0.arr.n == 2 &&
                  gguf_str_eq(item(&a0, 1).str, "bc") && gguf_str_eq(item(&a0, 0).str, "a") &&
                  a1.arr.elem == GGUF_STRING && a1.arr.n == 0,
              "array of arrays of strings");
        gguf_value e;
        CHECK(v && gguf_arr_get(v, 2, &e) == -1 && gguf_arr_get(&a0, 2, &e) == -1 &&
                  gguf_arr_get(&a1, 0, &e) == -1 && gguf_arr_get(&a0, UINT64_MAX, &e) == -1,
              "index out of range");
        CHECK(gguf_arr_get(gguf_get(f, "t.u8"), 0, &e) == -1, "not an array");
        v = gguf_get(f, "t.depth4");
        gguf_value d4 = v ? *v : (gguf_value){0};
        for (int d = 0; d < 3; d++)
            d4 = d4.type == GGUF_ARRAY && d4.arr.n == 1 ? item(&d4, 0) : (gguf_value){0};
        CHECK(d4.type == GGUF_ARRAY && d4.arr.elem == GGUF_INT16 && d4.arr.n == 2 &&
                  item(&d4, 0).i == 7 && item(&d4, 1).i == -8,
              "four nested arrays");
        v = gguf_get(f, "t.empty_f64");
        CHECK(v && v->arr.n == 0 && v->arr.elem == GGUF_FLOAT64, "empty");
        v = gguf_get(f, "t.bools");
        CHECK(v && v->arr.n == 3 && item(v, 0).b && !item(v, 1).b && item(v, 2).b, "bools");
        /* typed getters */
        int64_t i;
        double d;
        bool bo;
        gguf_str str;
        const gguf_value *arr;
        CHECK(gguf_get_int(f, "t.u32", &i, err, sizeof err) == 0 && i == 4000000000, "get_int u32");
        CHECK(gguf_get_int(f, "t.i8", &i, err, sizeof err) == 0 && i == -5, "get_int i8");
        CHECK(gguf_get_int(f, "t.u64", &i, err, sizeof err) == -1 && strstr(err, "t.u64"),
              "u64 range");
        CHECK(gguf_get_int(f, "t.str", &i, err, sizeof err) == -1 && strstr(err, "string"),
              "int type");
        CHECK(gguf_get_int(f, "t.absent", &i, err, sizeof err) == 1, "absent");
        CHECK(gguf_get_float(f, "t.f32", &d, err, sizeof err) == 0 && d == 1.5, "get_float");
        CHECK(gguf_get_float(f, "t.bool", &d, err, sizeof err) == -1, "float type");
        CHECK(gguf_get_bool(f, "t.bool", &bo, err, sizeof err) == 0 && bo, "get_bool");
        CHECK(gguf_get_bool(f, "t.u8", &bo, err, sizeof err) == -1 && strstr(err, "bool"),
              "bool type");
        CHECK(gguf_get_str(f, "t.str", &str, err, sizeof err) == 0 && str.len == 11, "get_str");
        CHECK(gguf_get_str(f, "t.u8", &str, err, sizeof err) == -1 && strstr(err, "uint8"),
              "str type");
        CHECK(gguf_get_array(f, "t.bools", GGUF_BOOL, &arr, err, sizeof err) == 0 &&
                  arr->arr.n == 3,
              "get_array");
        CHECK(gguf_get_array(f, "t.bools", GGUF_INT8, &arr, err, sizeof err) == -1 &&
                  strstr(err, "array of bool"),
              "array type: %s", err);
        CHECK(gguf_find_tensor(f, "token_embd.weight") == NULL, "no tensors");
        gguf_close(f);
    }
    /* five levels of arrays is one too many */
    b = kv_set(&s, "t.depth5", GGUF_ARRAY);
    for (int d = 0; d < 4; d++)
        gb_u32(b, GGUF_ARRAY), gb_u64(b, 1);
    gb_u32(b, GGUF_UINT8), gb_u64(b, 0);
    path = write_spec(&s, "values.gguf", 0);
    gspec_free(&s);
    f = gguf_open(path, err, sizeof err);
    CHECK(f == NULL && strstr(err, "t.depth5") && strstr(err, "nested"), "depth 5: %s", err);
    gguf_close(f);
}

/* ---- large arrays: views into the mapping, memory in proportion to the file --------------- */

/* Bytes the allocator has handed out and not taken back: the sanitizers' count in their
 * builds, glibc's otherwise (arena bytes in use plus mmapped chunks). */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));
static size_t heap_in_use(void) {
    if (__sanitizer_get_current_allocated_bytes) return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

#define BIG_U8 (4u << 20) /* a 4 MiB uint8 array: 128 MiB when each element was a gguf_value */
#define N_STRS 200000

static void str_of(char *out, size_t cap, uint64_t i) {
    snprintf(out, cap, "s%llu", (unsigned long long)(i * 7919 % 1000003));
}

static void test_large_arrays(void) {
    gspec s;
    gspec_init(&s);
    gbuf *b = kv_set(&s, "t.big_u8", GGUF_ARRAY);
    gb_u32(b, GGUF_UINT8), gb_u64(b, BIG_U8);
    for (uint32_t i = 0; i < BIG_U8; i++)
        gb_u8(b, (uint8_t)(i * 31));
    b = kv_set(&s, "t.strs", GGUF_ARRAY);
    gb_u32(b, GGUF_STRING), gb_u64(b, N_STRS);
    for (uint64_t i = 0; i < N_STRS; i++) {
        char str[32];
        str_of(str, sizeof str, i);
        gb_str(b, str);
    }
    b = kv_set(&s, "t.nested", GGUF_ARRAY); /* [[1000 strings], [1000 strings]]: walked */
    gb_u32(b, GGUF_ARRAY), gb_u64(b, 2);
    for (int k = 0; k < 2; k++) {
        gb_u32(b, GGUF_STRING), gb_u64(b, 1000);
        for (uint64_t i = 0; i < 1000; i++) {
            char str[32];
            str_of(str, sizeof str, i + 1000 * (uint64_t)k);
            gb_str(b, str);
        }
    }
    gbuf out = {0};
    gspec_write(&s, &out);
    size_t file_size = out.n;
    const char *path = check_tmp_path("large-arrays.gguf");
    CHECK(write_bytes(path, out.p, out.n) == 0, "writing %s", path);
    gb_free(&out);
    gspec_free(&s);

    char err[LS_ERR_LEN] = "";
    size_t before = heap_in_use();
    gguf_file *f = gguf_open(path, err, sizeof err);
    size_t after = heap_in_use();
    CHECK(f != NULL, "large arrays: %s", err);
    if (!f) return;
    /* the bound: a thirty-second of the file (the string index takes 8 bytes per 64 strings of
     * at least 8 bytes each) plus a fixed allowance for the tables and the file struct */
    size_t used = after > before ? after - before : 0, bound = file_size / 32 + 65536;
    CHECK(used <= bound, "opening a %zu-byte file allocated %zu bytes (bound %zu)", file_size, used,
          bound);
    printf("large arrays: a %zu-byte file, %zu bytes allocated to open it\n", file_size, used);

    const gguf_value *v = gguf_get(f, "t.big_u8");
    CHECK(v && v->arr.n == BIG_U8 && item(v, 0).u == 0 && item(v, 1).u == 31 &&
              item(v, BIG_U8 - 1).u == (uint8_t)((BIG_U8 - 1) * 31),
          "uint8 elements");
    v = gguf_get(f, "t.strs");
    static const uint64_t probe[] = {0, 1, 62, 63, 64, 65, 127, 128, 4097, N_STRS - 1};
    int bad = 0;
    for (size_t k = 0; v && k < sizeof probe / sizeof probe[0]; k++) {
        char want[32];
        str_of(want, sizeof want, probe[k]);
        bad += !gguf_str_eq(item(v, probe[k]).str, want);
    }
    for (uint64_t i = 0; v && i < N_STRS; i += 997) { /* a sweep across the strides */
        char want[32];
        str_of(want, sizeof want, i);
        bad += !gguf_str_eq(item(v, i).str, want);
    }
    CHECK(v && v->arr.n == N_STRS && bad == 0, "%d strings read back wrong", bad);
    gguf_value e;
    CHECK(v && gguf_arr_get(v, N_STRS, &e) == -1, "past the last string");
    v = gguf_get(f, "t.nested");
    gguf_value inner = item(v, 1);
    char want[32];
    str_of(want, sizeof want, 1999);
    CHECK(inner.arr.n == 1000 && gguf_str_eq(item(&inner, 999).str, want), "nested strings");
    gguf_close(f);
}

/* ---- truncated copies of the real kjv-demo.gguf ------------------------------------------- */

static void test_truncated_real(void) {
    mapfile src;
    char err[LS_ERR_LEN];
    if (map_open(&src, check_model_path("kjv-demo.gguf"), err, sizeof err) != 0) {
        CHECK(0, "%s", err);
        return;
    }
    const char *path = check_tmp_path("cut.gguf");
    CHECK(write_bytes(path, src.data, src.size) == 0, "copy");
    /* every byte of the fixed header, every 37th of the metadata and tensor infos, then the data */
    size_t cuts[1200], n = 0;
    for (size_t c = 0; c < 32; c++)
        cuts[n++] = c;
    for (size_t c = 32; c < 24000; c += 37)
        cuts[n++] = c;
    for (size_t k = 1; k < 64; k++)
        cuts[n++] = src.size / 64 * k;
    cuts[n++] = src.size - 1;
    int n_bad = 0;
    for (size_t i = n; i-- > 0;) { /* longest first: each cut shortens the same file */
        if (truncate(path, (off_t)cuts[i]) != 0) {
            CHECK(0, "truncate to %zu", cuts[i]);
            break;
        }
        err[0] = 0;
        model *m = model_load(path, NULL, err, sizeof err);
        bool ok = m == NULL && strstr(err, "truncated");
        if (!ok && n_bad++ < 5) CHECK(0, "cut at %zu: \"%s\"", cuts[i], m ? "(loaded)" : err);
        model_free(m);
    }
    CHECK(n_bad == 0, "%d truncations were not reported as such", n_bad);
    map_close(&src);
}

#include "test_gguf_llama2c.h"

int main(void) {
    if (!check_tmp_path("good.gguf")) return 1; /* the folder: removed at exit (check.h) */
    test_good_gguf();
    test_bad_gguf();
    test_roundtrip();
    test_large_arrays();
    test_truncated_real();
    test_llama2c();
    return check_summary();
}
