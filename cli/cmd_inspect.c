/* cmd_inspect: `llamaserve inspect PATH` prints what a model file holds: for a GGUF file every
 * metadata key (type and value, long arrays abbreviated) and the tensor table; for a llama2.c
 * checkpoint the header's config and the tensor table its layout implies. Reads through the
 * engine's validating readers only, so a damaged file gives a one-line error, never a crash.
 * Never loads weights into memory beyond the read-only mapping. */
#include "cli.h"
#include "common.h"
#include "gguf.h"
#include "llama2c.h"
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define INSPECT_ARRAY_SHOWN 3   /* array items shown before "..." */
#define INSPECT_ARRAY_ALL 8     /* arrays up to this many items are shown whole */
#define INSPECT_STRING_SHOWN 64 /* bytes of a string shown before "..." */

static void usage(FILE *f) {
    fprintf(f, "usage: llamaserve inspect [--help] PATH\n\n"
               "Prints a model file's contents: for GGUF, the metadata (key, type, value) and the\n"
               "tensor table (name, type, shape, offset, bytes); for a llama2.c checkpoint, the\n"
               "header's config and the tensor table its layout implies.\n\n"
               "options:\n"
               "  -h, --help   show this help and exit\n");
}

/* A string, quoted, with control characters, quotes and backslashes escaped; long strings are
 * cut at a character boundary. */
static void print_str(gguf_str s) {
    size_t n = (size_t)s.len;
    bool cut = n > INSPECT_STRING_SHOWN;
    if (cut) {
        n = INSPECT_STRING_SHOWN;
        while (n > 0 && ((unsigned char)s.s[n] & 0xC0) == 0x80)
            n--; /* not inside a character */
    }
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c == '\t')
            printf("\\t");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    printf(cut ? "\"... (%llu bytes)" : "\"", (unsigned long long)s.len);
}

static void print_value(const gguf_value *v) {
    switch (v->type) {
    case GGUF_UINT8:
    case GGUF_UINT16:
    case GGUF_UINT32:
    case GGUF_UINT64:
        printf("%llu", (unsigned long long)v->u);
        break;
    case GGUF_INT8:
    case GGUF_INT16:
    case GGUF_INT32:
    case GGUF_INT64:
        printf("%lld", (long long)v->i);
        break;
    case GGUF_FLOAT32:
    case GGUF_FLOAT64:
        printf("%.9g", v->f);
        break;
    case GGUF_BOOL:
        printf("%s", v->b ? "true" : "false");
        break;
    case GGUF_STRING:
        print_str(v->str);
        break;
    case GGUF_ARRAY: {
        uint64_t n = v->arr.n;
        const char *tn = v->arr.elem == GGUF_STRING ? "string" : gguf_type_name(v->arr.elem);
        printf("[%llu %s%s", (unsigned long long)n, tn, n == 1 ? "" : "s");
        uint64_t shown = n <= INSPECT_ARRAY_ALL ? n : INSPECT_ARRAY_SHOWN;
        for (uint64_t i = 0; i < shown; i++) {
            gguf_value e;
            if (gguf_arr_get(v, i, &e) != 0) break;
            printf(i ? ", " : ": ");
            print_value(&e);
        }
        printf(shown < n ? ", ...]" : "]");
        break;
    }
    }
}

static void print_shape(const int64_t *ne, uint32_t n_dims) {
    char buf[112]; /* four 20-digit numbers and separators */
    size_t len = 0;
    for (uint32_t d = 0; d < n_dims && d < 4; d++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%lld", d ? ", " : "[",
                                (long long)ne[d]);
    snprintf(buf + len, sizeof buf - len, "]");
    printf("%-20s", buf);
}

static int inspect_gguf(const char *path) {
    char err[LS_ERR_LEN];
    gguf_file *f = gguf_open(path, err, sizeof err);
    if (!f) {
        fprintf(stderr, "llamaserve inspect: %s\n", err);
        return 1;
    }
    printf("file: %s\nformat: GGUF v%u, alignment %llu, data section at %llu, %llu metadata keys, "
           "%llu tensors\n",
           path, f->version, (unsigned long long)f->alignment, (unsigned long long)f->data_offset,
           (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors);
    printf("\nmetadata:\n");
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        printf("  %-44.*s %-8s ", (int)kv->key.len, kv->key.s, gguf_type_name(kv->value.type));
        print_value(&kv->value);
        putchar('\n');
    }
    if (f->n_tensors) {
        printf("\ntensors:\n  %-32s %-6s %-20s %12s %12s\n", "name", "type", "shape", "offset",
               "bytes");
        uint64_t total = 0;
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const gguf_tensor *t = &f->tensors[i];
            printf("  %-32.*s %-6s ", (int)t->name.len, t->name.s, dtype_ggml_name(t->type));
            print_shape(t->ne, t->n_dims);
            printf(" %12llu %12llu\n", (unsigned long long)t->offset,
                   (unsigned long long)t->nbytes);
            total += t->nbytes;
        }
        printf("  %llu tensors, %llu bytes of weights\n", (unsigned long long)f->n_tensors,
               (unsigned long long)total);
    }
    bool vocab_only = f->n_tensors == 0;
    gguf_close(f);
    if (vocab_only) {
        printf("\nmodel: none (a vocabulary-only file: no tensors)\n");
        return 0;
    }
    /* whether the engine can run it: the full model check, tokenizer included */
    model *m = model_load(path, NULL, err, sizeof err);
    if (m) {
        const model_config *c = &m->cfg;
        printf(
            "\nmodel: dim %d, %d layers, %d heads, %d kv heads, head dim %d, hidden %d, vocab %d,"
            " context %d, rope dim %d theta %g, eps %g, %s output\n",
            c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->hidden_dim,
            c->vocab_size, c->ctx_len, c->rope_dim, (double)c->rope_theta, (double)c->norm_eps,
            m->output.data == m->tok_embd.data ? "tied" : "untied");
        if (c->rope_scale > 0.0f && c->rope_scale != 1.0f)
            printf("rope scaling: linear, factor %g\n", (double)c->rope_scale);
        if (m->rope_factors) {
            float lo = m->rope_factors[0], hi = lo;
            for (int i = 1; i < c->rope_dim / 2; i++) {
                lo = fminf(lo, m->rope_factors[i]);
                hi = fmaxf(hi, m->rope_factors[i]);
            }
            printf("rope scaling: rope_freqs.weight, %d frequency divisors from %g to %g\n",
                   c->rope_dim / 2, (double)lo, (double)hi);
        }
        if (m->tok && tok_get_kind(m->tok) == TOK_BPE)
            printf("tokenizer: byte-level BPE, %d pieces\n", tok_n_vocab(m->tok));
        model_free(m);
    } else {
        printf("\nmodel: not loadable as a model: %s\n", err);
    }
    return 0;
}

static int inspect_llama2c(const char *path) {
    char err[LS_ERR_LEN];
    mapfile map;
    if (map_open(&map, path, err, sizeof err) != 0) {
        fprintf(stderr, "llamaserve inspect: %s\n", err);
        return 1;
    }
    llama2c_layout lay;
    if (llama2c_parse(map.data, map.size, &lay, err, sizeof err) != 0) {
        map_close(&map);
        /* perhaps a llama2.c tokenizer.bin */
        char tok_err[LS_ERR_LEN];
        tokenizer *t = model_load_tokenizer(path, tok_err, sizeof tok_err);
        if (t) {
            printf("file: %s\nformat: llama2.c tokenizer, %d tokens (BOS %d, EOS %d)\n", path,
                   tok_n_vocab(t), tok_bos(t), tok_eos(t));
            tok_free(t);
            return 0;
        }
        fprintf(stderr, "llamaserve inspect: %s: not GGUF, and not a llama2.c checkpoint: %s\n",
                path, err);
        return 1;
    }
    map_close(&map);
    const model_config *c = &lay.cfg;
    printf("file: %s\nformat: llama2.c checkpoint, %zu bytes\n\nheader:\n", path, lay.file_size);
    printf("  dim         %d\n  hidden_dim  %d\n  n_layers    %d\n  n_heads     %d\n"
           "  n_kv_heads  %d\n  vocab_size  %d (%s classifier)\n  seq_len     %d\n",
           c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
           lay.shared_classifier ? "shared" : "separate", c->ctx_len);
    printf("derived: head_dim %d, kv_dim %d, rope dim %d theta %g, eps %g\n", c->head_dim,
           c->n_kv_heads * c->head_dim, c->rope_dim, (double)c->rope_theta, (double)c->norm_eps);
    long long L = c->n_layers, dim = c->dim, hid = c->hidden_dim, kv = c->n_kv_heads * c->head_dim;
    long long V = c->vocab_size;
    const struct {
        const char *name;
        size_t off;
        int n_dims;
        long long shape[3];
    } rows[] = {
        {"token_embedding_table", lay.tok_embd, 2, {V, dim}},
        {"rms_att_weight", lay.rms_att, 2, {L, dim}},
        {"wq", lay.wq, 3, {L, dim, dim}},
        {"wk", lay.wk, 3, {L, kv, dim}},
        {"wv", lay.wv, 3, {L, kv, dim}},
        {"wo", lay.wo, 3, {L, dim, dim}},
        {"rms_ffn_weight", lay.rms_ffn, 2, {L, dim}},
        {"w1", lay.w1, 3, {L, hid, dim}},
        {"w2", lay.w2, 3, {L, dim, hid}},
        {"w3", lay.w3, 3, {L, hid, dim}},
        {"rms_final_weight", lay.rms_final, 1, {dim}},
        {"freq_cis_real (unused)", lay.freq_cis_real, 2, {c->ctx_len, c->head_dim / 2}},
        {"freq_cis_imag (unused)", lay.freq_cis_imag, 2, {c->ctx_len, c->head_dim / 2}},
        {"wcls", lay.wcls, 2, {V, dim}},
    };
    printf("\ntensors (all F32; shapes in llama2.c's row-major order):\n  %-24s %-22s %12s %12s\n",
           "name", "shape", "offset", "bytes");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (i == 13 && lay.shared_classifier) {
            printf("  %-24s (shared with token_embedding_table)\n", "wcls");
            continue;
        }
        char shape[64];
        size_t len = 0;
        long long n = 1;
        for (int d = 0; d < rows[i].n_dims; d++) {
            len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%lld", d ? ", " : "(",
                                    rows[i].shape[d]);
            n *= rows[i].shape[d];
        }
        snprintf(shape + len, sizeof shape - len, ")");
        printf("  %-24s %-22s %12zu %12lld\n", rows[i].name, shape, rows[i].off, n * 4);
    }
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            usage(stdout);
            return 0;
        }
        if (!options_done && !strcmp(a, "--")) {
            options_done = true;
        } else if (!options_done && a[0] == '-' && a[1] != '\0') {
            fprintf(stderr,
                    "llamaserve inspect: unknown option '%s' (try 'llamaserve inspect --help')\n",
                    a);
            return 2;
        } else if (path) {
            fprintf(stderr, "llamaserve inspect: one PATH expected, got '%s' and '%s'\n", path, a);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        fprintf(stderr, "llamaserve inspect: missing PATH (try 'llamaserve inspect --help')\n");
        return 2;
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "llamaserve inspect: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char magic[4];
    bool gguf = fread(magic, 1, 4, fp) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(fp);
    int rc = gguf ? inspect_gguf(path) : inspect_llama2c(path);
    fflush(stdout);
    return rc;
}
