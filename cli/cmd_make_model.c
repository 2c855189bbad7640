/* cmd_make_model: `llamaserve make-model`, writes a random-weight model of a real shape (for
 * benchmarks: speed does not depend on the values) as GGUF or as a llama2.c checkpoint. The GGUF
 * carries a minimal placeholder vocabulary (special tokens, the 256 byte pieces, filler pieces)
 * so that it loads like any model, or the tokenizer.* metadata of a vocabulary GGUF given with
 * --vocab (a real tokenizer, e.g. Llama 3's). Llama 3 shapes get rope_freqs.weight by Meta's
 * Llama 3.1 formula. Writes through gguf_write.h; the weights are encoded with the engine's own
 * f32_to_f16 / quantize_row_* functions. */
#include "cli.h"

#include "args.h"
#include "common.h"
#include "gguf.h"
#include "gguf_write.h"
#include "tensor.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: llamaserve make-model --shape SHAPE [--type TYPE] [--format FORMAT] OUT\n"
               "\n"
               "Writes a model with random weights of a real shape, for benchmarks.\n"
               "\n"
               "  --shape SHAPE     tinyllama (TinyLlama-1.1B: dim 2048, 22 layers, 32 heads,\n"
               "                    4 KV heads, FFN 5632, vocab 32000), stories110m (dim 768,\n"
               "                    12 layers, 12 heads, FFN 2048, vocab 32000), llama3.2-1b\n"
               "                    (dim 2048, 16 layers, 32 heads, 8 KV heads, FFN 8192, tied,\n"
               "                    RoPE base 500000 with Llama 3.1 rope_freqs; needs --vocab)\n"
               "                    or tiny-llama3 (a test shape: dim 64, 2 layers, 4 heads,\n"
               "                    2 KV heads, FFN 160, vocab 512, rope_freqs)\n"
               "  --vocab GGUF      copy the tokenizer (every tokenizer.* key) from this GGUF;\n"
               "                    the vocabulary size is then its token count\n"
               "  --type TYPE       f32, f16, bf16, q8_0, q4_0, q5_0, q2_k, q3_k, q4_k, q5_k,\n"
               "                    q6_k or iq4_xs for the matrices (default f16; the K-quants\n"
               "                    and iq4_xs get random codes;\n"
               "                    norms are always F32)\n"
               "  --format FORMAT   gguf (default) or llama2c (F32 only, shared classifier)\n"
               "  --seed S          random seed (default 1)\n"
               "  --ctx-len N       the context length written in the file (default: the\n"
               "                    shape's), e.g. to benchmark a small shape at 4k tokens\n"
               "  -h, --help        this help\n");
}

typedef struct {
    const char *name;
    int dim, n_layers, n_heads, n_kv_heads, hidden_dim, vocab, ctx_len;
    int tied; /* output shares the token embedding */
    float rope_theta;
    /* Llama 3.1 rope scaling (rope_freqs.weight); factor 0: none */
    float rope_factor, low_freq_factor, high_freq_factor;
    int original_ctx;
    int needs_vocab; /* only with --vocab (a placeholder vocabulary would not be this model) */
} shape;

static const shape shapes[] = {
    {"tinyllama", 2048, 22, 32, 4, 5632, 32000, 2048, 0, 10000.0f, 0, 0, 0, 0, 0},
    {"stories110m", 768, 12, 12, 12, 2048, 32000, 1024, 1, 10000.0f, 0, 0, 0, 0, 0},
    /* Llama 3.2 1B's config.json: rope_scaling factor 32, low 1, high 4, original 8192 */
    {"llama3.2-1b", 2048, 16, 32, 8, 8192, 128256, 131072, 1, 500000.0f, 32, 1, 4, 8192, 1},
    /* small enough for tests; the original context (64) puts pairs in all three bands of the
     * formula (kept, blended, divided) */
    {"tiny-llama3", 64, 2, 4, 2, 160, 512, 256, 1, 10000.0f, 8, 1, 4, 64, 0},
};

/* Llama 3.1's frequency scaling (Meta's apply_scaling): the divisor of pair i's frequency, as
 * rope_freqs.weight holds it. */
static float llama3_rope_factor(const shape *s, int i) {
    int rope_dim = s->dim / s->n_heads;
    double freq = pow((double)s->rope_theta, -2.0 * i / rope_dim);
    double wavelen = 2.0 * M_PI / freq, ctx = s->original_ctx;
    if (wavelen < ctx / s->high_freq_factor) return 1.0f;
    if (wavelen > ctx / s->low_freq_factor) return s->rope_factor;
    double smooth = (ctx / wavelen - s->low_freq_factor) /
                    (s->high_freq_factor - s->low_freq_factor);
    return (float)(1.0 / ((1.0 - smooth) / s->rope_factor + smooth));
}

/* ---- random values --------------------------------------------------------------------- */

static uint64_t rng_state;

/* Uniform in [-1, 1) (xorshift64*). */
static float frand(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return (float)(r >> 40) * (1.0f / 8388608.0f) - 1.0f;
}

/* ---- writing ----------------------------------------------------------------------------- */

/* Writes n_rows rows of ne0 random values scaled by `scale`, encoded as type t; for the types
 * quantize_row cannot encode (the K-quants, ...), random codes with scales of that size. */
static void put_random_rows(gw_file *o, dtype t, int64_t ne0, int64_t n_rows, float scale,
                            float *row, void *enc) {
    for (int64_t r = 0; r < n_rows; r++) {
        for (int64_t i = 0; i < ne0; i++) row[i] = frand() * scale;
        if (t == DT_F32) { /* as it is (enc may be NULL then) */
            gw_put(o, row, (size_t)ne0 * sizeof(float));
            continue;
        }
        if (quantize_row(enc, row, t, ne0) != 0) {
            uint8_t *b = enc;
            const size_t bytes = dtype_row_bytes(t, ne0), bb = dtype_block_bytes(t);
            for (size_t i = 0; i < bytes; i++) b[i] = (uint8_t)(frand() * 128.0f + 128.0f);
            for (size_t k = 0; k < bytes / bb; k++)
                for (const int *f = dtype_f16_fields(t); *f >= 0; f++) {
                    uint16_t h = f32_to_f16(scale / 16.0f);
                    memcpy(b + k * bb + *f, &h, 2);
                }
        }
        gw_put(o, enc, dtype_row_bytes(t, ne0));
    }
}

/* A norm vector: ones plus a little noise, like a trained model's. */
static void put_norm(gw_file *o, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = 1.0f + 0.1f * frand();
        gw_put(o, &v, 4);
    }
}

/* One tensor of the model, in file order. */
typedef struct {
    char name[48];
    int64_t ne0, ne1; /* ne1 = 1: a vector (norm or rope_freqs, F32) */
} tensor_spec;

static int list_tensors(const shape *s, tensor_spec *ts) {
    int n = 0, kv_dim = s->dim / s->n_heads * s->n_kv_heads;
#define ADD(nm, a, b) (snprintf(ts[n].name, sizeof ts[n].name, "%s", nm), ts[n].ne0 = a, ts[n++].ne1 = b)
    ADD("token_embd.weight", s->dim, s->vocab);
    ADD("output_norm.weight", s->dim, 1);
    if (!s->tied) ADD("output.weight", s->dim, s->vocab);
    if (s->rope_factor > 0) ADD("rope_freqs.weight", s->dim / s->n_heads / 2, 1);
    for (int l = 0; l < s->n_layers; l++) {
        const struct {
            const char *nm;
            int64_t a, b;
        } per[] = {{"attn_norm", s->dim, 1},         {"attn_q", s->dim, s->dim},
                   {"attn_k", s->dim, kv_dim},       {"attn_v", s->dim, kv_dim},
                   {"attn_output", s->dim, s->dim},  {"ffn_norm", s->dim, 1},
                   {"ffn_gate", s->dim, s->hidden_dim}, {"ffn_down", s->hidden_dim, s->dim},
                   {"ffn_up", s->dim, s->hidden_dim}};
        for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
            char nm[48];
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, per[k].nm);
            ADD(nm, per[k].a, per[k].b);
        }
    }
#undef ADD
    return n;
}

#define GGUF_ALIGN 32

/* The placeholder vocabulary: <unk> <s> </s>, <0x00>..<0xFF>, then "t<id>" pieces. */
static void put_vocab(gw_file *o, int vocab) {
    char piece[32];
    gw_kv_array(o, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)vocab);
    for (int i = 0; i < vocab; i++) {
        if (i < 3)
            snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259)
            snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else
            snprintf(piece, sizeof piece, "t%d", i);
        gw_str(o, piece);
    }
    gw_kv_array(o, "tokenizer.ggml.scores", GGUF_FLOAT32, (uint64_t)vocab);
    for (int i = 0; i < vocab; i++) {
        float sc = i < 259 ? 0.0f : -(float)i;
        gw_put(o, &sc, 4);
    }
    gw_kv_array(o, "tokenizer.ggml.token_type", GGUF_INT32, (uint64_t)vocab);
    for (int i = 0; i < vocab; i++) {
        int32_t ty = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1; /* unknown, control, byte, normal */
        gw_put(o, &ty, 4);
    }
}

static size_t tensor_bytes(const tensor_spec *t, dtype mat) {
    return t->ne1 == 1 ? (size_t)t->ne0 * 4 : dtype_row_bytes(mat, t->ne0) * (size_t)t->ne1;
}

static size_t align_up(size_t n) { return (n + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN; }

static bool is_tokenizer_key(const gguf_kv *kv) {
    return kv->key.len > 10 && memcmp(kv->key.s, "tokenizer.", 10) == 0;
}

static int write_gguf(gw_file *o, const shape *s, dtype mat, const gguf_file *vocab, float *row,
                      void *enc) {
    static tensor_spec ts[4 + 9 * 64];
    int n = list_tensors(s, ts);
    uint64_t n_kv = 12 + (vocab ? 0 : 6);
    for (uint64_t i = 0; vocab && i < vocab->n_kv; i++)
        n_kv += is_tokenizer_key(&vocab->kv[i]);
    gw_put(o, "GGUF", 4);
    gw_u32(o, 3);
    gw_u64(o, (uint64_t)n);
    gw_u64(o, n_kv);
    gw_kv_str(o, "general.architecture", "llama");
    gw_kv_str(o, "general.name", s->name);
    gw_kv_u32(o, "llama.context_length", (uint32_t)s->ctx_len);
    gw_kv_u32(o, "llama.embedding_length", (uint32_t)s->dim);
    gw_kv_u32(o, "llama.block_count", (uint32_t)s->n_layers);
    gw_kv_u32(o, "llama.feed_forward_length", (uint32_t)s->hidden_dim);
    gw_kv_u32(o, "llama.attention.head_count", (uint32_t)s->n_heads);
    gw_kv_u32(o, "llama.attention.head_count_kv", (uint32_t)s->n_kv_heads);
    gw_kv_u32(o, "llama.rope.dimension_count", (uint32_t)(s->dim / s->n_heads));
    gw_kv_f32(o, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gw_kv_f32(o, "llama.rope.freq_base", s->rope_theta);
    gw_kv_u32(o, "llama.vocab_size", (uint32_t)s->vocab);
    if (vocab) {
        for (uint64_t i = 0; i < vocab->n_kv; i++)
            if (is_tokenizer_key(&vocab->kv[i])) gw_kv_copy(o, &vocab->kv[i]);
    } else {
        gw_kv_str(o, "tokenizer.ggml.model", "llama");
        put_vocab(o, s->vocab);
        gw_kv_u32(o, "tokenizer.ggml.bos_token_id", 1);
        gw_kv_u32(o, "tokenizer.ggml.eos_token_id", 2);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        gw_str(o, ts[i].name);
        gw_u32(o, ts[i].ne1 == 1 ? 1 : 2);
        gw_u64(o, (uint64_t)ts[i].ne0);
        if (ts[i].ne1 != 1) gw_u64(o, (uint64_t)ts[i].ne1);
        gw_u32(o, ts[i].ne1 == 1 ? DT_F32 : (uint32_t)mat);
        gw_u64(o, off);
        off = align_up(off + tensor_bytes(&ts[i], mat));
    }
    long here = ftell(o->fp);
    if (here < 0) return -1;
    gw_zeros(o, align_up((size_t)here) - (size_t)here);
    for (int i = 0; i < n; i++) {
        if (!strcmp(ts[i].name, "rope_freqs.weight")) {
            for (int k = 0; k < ts[i].ne0; k++) {
                float f = llama3_rope_factor(s, k);
                gw_put(o, &f, 4);
            }
        } else if (ts[i].ne1 == 1)
            put_norm(o, ts[i].ne0);
        else
            put_random_rows(o, mat, ts[i].ne0, ts[i].ne1, 1.0f / sqrtf((float)ts[i].ne0), row,
                            enc);
        size_t b = tensor_bytes(&ts[i], mat);
        gw_zeros(o, align_up(b) - b);
    }
    return o->failed ? -1 : 0;
}

/* run.c's layout: header, then each kind of weight for all layers at once (see llama2c.h). */
static int write_llama2c(gw_file *o, const shape *s, float *row) {
    int kv_dim = s->dim / s->n_heads * s->n_kv_heads, hd = s->dim / s->n_heads;
    int32_t h[7] = {s->dim, s->hidden_dim, s->n_layers, s->n_heads, s->n_kv_heads, s->vocab,
                    s->ctx_len};
    gw_put(o, h, sizeof h);
    float sd = 1.0f / sqrtf((float)s->dim), sh = 1.0f / sqrtf((float)s->hidden_dim);
    int L = s->n_layers;
    put_random_rows(o, DT_F32, s->dim, s->vocab, sd, row, NULL);    /* token_embedding */
    put_norm(o, (int64_t)L * s->dim);                               /* rms_att */
    put_random_rows(o, DT_F32, s->dim, (int64_t)L * s->dim, sd, row, NULL);  /* wq */
    put_random_rows(o, DT_F32, s->dim, (int64_t)L * kv_dim, sd, row, NULL);  /* wk */
    put_random_rows(o, DT_F32, s->dim, (int64_t)L * kv_dim, sd, row, NULL);  /* wv */
    put_random_rows(o, DT_F32, s->dim, (int64_t)L * s->dim, sd, row, NULL);  /* wo */
    put_norm(o, (int64_t)L * s->dim);                               /* rms_ffn */
    put_random_rows(o, DT_F32, s->dim, (int64_t)L * s->hidden_dim, sd, row, NULL); /* w1 */
    put_random_rows(o, DT_F32, s->hidden_dim, (int64_t)L * s->dim, sh, row, NULL); /* w2 */
    put_random_rows(o, DT_F32, s->dim, (int64_t)L * s->hidden_dim, sd, row, NULL); /* w3 */
    put_norm(o, s->dim);                                            /* rms_final */
    gw_zeros(o, (size_t)s->ctx_len * (size_t)(hd / 2) * 4 * 2);    /* freq_cis_real, _imag */
    return o->failed ? -1 : 0;
}

/* --vocab: the vocabulary GGUF whose tokens the output carries (*out, sv->vocab its size);
 * without it, *out is NULL. 0, or the exit status after a message: 2 for a bad combination
 * (llama2c output, or a shape that needs a vocabulary), 1 for a file that cannot be read. */
static int open_vocab(const char *path, bool llama2c, const shape *s, shape *sv,
                      gguf_file **out) {
    char err[LS_ERR_LEN] = "";
    const gguf_value *tokens;
    *out = NULL;
    if (!path) {
        if (!s->needs_vocab) return 0;
        fprintf(stderr, "llamaserve make-model: --shape %s needs --vocab (a vocabulary GGUF such "
                        "as llama3-vocab.gguf)\n", s->name);
        return 2;
    }
    if (llama2c) {
        fprintf(stderr, "llamaserve make-model: --vocab is for GGUF output\n");
        return 2;
    }
    gguf_file *v = gguf_open(path, err, sizeof err);
    if (!v || gguf_get_array(v, "tokenizer.ggml.tokens", GGUF_STRING, &tokens, err,
                             sizeof err) != 0) {
        fprintf(stderr, "llamaserve make-model: %s: %s\n", path,
                v ? (err[0] ? err : "no tokenizer.ggml.tokens") : err);
        gguf_close(v);
        return 1;
    }
    sv->vocab = (int)tokens->arr.n;
    *out = v;
    return 0;
}

int cmd_make_model(int argc, char **argv) {
    static const struct option opts[] = {{"shape", required_argument, 0, 'S'},
                                          {"type", required_argument, 0, 'T'},
                                          {"format", required_argument, 0, 'F'},
                                          {"seed", required_argument, 0, 's'},
                                          {"vocab", required_argument, 0, 'V'},
                                          {"ctx-len", required_argument, 0, 'C'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    const char *shape_name = NULL, *type_name = "f16", *format = "gguf", *vocab_path = NULL;
    uint64_t seed = 1;
    long long ctx_len = 0; /* 0: the shape's */
    char err[LS_ERR_LEN];
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'S': shape_name = optarg; break;
        case 'T': type_name = optarg; break;
        case 'F': format = optarg; break;
        case 'V': vocab_path = optarg; break;
        case 's':
            if (cfg_parse_u64(optarg, &seed, "--seed", err, sizeof err) != 0) {
                fprintf(stderr, "llamaserve make-model: %s\n", err);
                return 2;
            }
            break;
        case 'C':
            if (cfg_parse_int(optarg, 1, 1 << 20, &ctx_len, "--ctx-len", err, sizeof err) != 0) {
                fprintf(stderr, "llamaserve make-model: %s\n", err);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        case ':':
            fprintf(stderr, "llamaserve make-model: %s needs a value\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "llamaserve make-model: unknown option '%s'\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind != argc - 1 || !shape_name) {
        fprintf(stderr, "llamaserve make-model: need --shape and one output path\n");
        return 2;
    }
    const shape *s = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, shape_name)) s = &shapes[i];
    static const struct {
        const char *name;
        dtype t;
    } types[] = {{"f32", DT_F32},   {"f16", DT_F16},   {"bf16", DT_BF16},
                 {"q8_0", DT_Q8_0}, {"q4_0", DT_Q4_0}, {"q5_0", DT_Q5_0},
                 {"q2_k", DT_Q2_K}, {"q3_k", DT_Q3_K}, {"q4_k", DT_Q4_K},
                 {"q5_k", DT_Q5_K}, {"q6_k", DT_Q6_K}, {"iq4_xs", DT_IQ4_XS}};
    int ti = -1;
    for (int i = 0; i < (int)(sizeof types / sizeof types[0]); i++)
        if (!strcmp(types[i].name, type_name)) ti = i;
    bool llama2c = !strcmp(format, "llama2c");
    if (!s || ti < 0 || (!llama2c && strcmp(format, "gguf")) ||
        (llama2c && types[ti].t != DT_F32)) {
        fprintf(stderr, "llamaserve make-model: bad --shape, --type or --format (llama2c is F32 "
                        "only; see --help)\n");
        return 2;
    }
    shape sv = *s; /* the vocabulary size follows --vocab, the context --ctx-len */
    if (ctx_len > 0) sv.ctx_len = (int)ctx_len;
    gguf_file *vocab = NULL;
    int vrc = open_vocab(vocab_path, llama2c, s, &sv, &vocab);
    if (vrc) return vrc;
    s = &sv;
    const char *path = argv[optind];
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    int max_row = s->hidden_dim > s->dim ? s->hidden_dim : s->dim;
    float *row = malloc((size_t)max_row * sizeof *row);
    void *enc = malloc((size_t)max_row * 4);
    gw_file o = {fopen(path, "wb"), 0, 0};
    int rc = -1;
    if (row && enc && o.fp)
        rc = llama2c ? write_llama2c(&o, s, row)
                     : write_gguf(&o, s, types[ti].t, vocab, row, enc);
    gguf_close(vocab);
    if (o.fp && fclose(o.fp) != 0) rc = -1;
    free(row);
    free(enc);
    if (rc != 0) {
        fprintf(stderr, "llamaserve make-model: cannot write %s\n", path);
        return 1;
    }
    return 0;
}
