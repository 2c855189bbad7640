/* cmd_perplexity: `llamaserve perplexity`, the number users check to judge a quantization,
 * computed the way llama.cpp's llama-perplexity computes it so that the two can be compared:
 * the whole file tokenized once (with BOS), cut into floor(n / c) windows of c tokens, window i
 * starting at token i * c with its first token replaced by BOS, each evaluated from an empty
 * cache, and only its second half scored (the logits at positions c/2 .. c-2 predict the tokens
 * at c/2+1 .. c-1). Reports exp(mean NLL) and its standard error. Progress on stderr. */
#include "cli.h"

#include "args.h"
#include "common.h"
#include "config.h"
#include "forward.h"
#include "matmul.h"
#include "model.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: llamaserve perplexity [--model PATH] --file TEXT [options]\n"
            "\n"
            "Perplexity of the model on a text file, as llama.cpp's llama-perplexity computes it:\n"
            "windows of c tokens, each from an empty cache, the second half of each scored.\n"
            "\n"
            "  -m, --model PATH     model file (default: the embedded demo model)\n"
            "      --tokenizer PATH tokenizer, for a llama2.c checkpoint\n"
            "  -f, --file PATH      the text (UTF-8)\n"
            "  -c, --ctx-size N     window length in tokens (default 512, at most the model's\n"
            "                       context length)\n"
            "  -t, --threads N      threads (default 2)\n"
            "      --chunks N       score at most N windows (default: all)\n"
            "      --kv-type T      KV cache type: f16 (default, as serve), f32 or q8_0\n"
            "      --bf16-dot M     BF16 weights on BF16-rounded activations, as serve's:\n"
            "                       auto (default; where the CPU has AVX512_BF16), on, off\n"
            "      --json           end stdout with one JSON line {\"ppl\", \"ppl_stderr\",\n"
            "                       \"chunks\", \"tokens_scored\"}\n"
            "  -h, --help           this help\n");
}

typedef struct {
    const char *model, *tokenizer, *file;
    int ctx, threads, max_chunks;
    bool json;
    cfg_bf16_dot bf16_dot;
    kv_type kv;
} ppl_opts;

static int parse(ppl_opts *o, int argc, char **argv, char *err, size_t errlen) {
    enum { O_TOKENIZER = 256, O_CHUNKS, O_JSON, O_KVTYPE, O_BF16DOT };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},    {"tokenizer", required_argument, 0, O_TOKENIZER},
        {"file", required_argument, 0, 'f'},     {"ctx-size", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 't'},  {"chunks", required_argument, 0, O_CHUNKS},
        {"json", no_argument, 0, O_JSON},        {"help", no_argument, 0, 'h'},
        {"kv-type", required_argument, 0, O_KVTYPE}, {"bf16-dot", required_argument, 0, O_BF16DOT},
        {0, 0, 0, 0}};
    *o = (ppl_opts){.ctx = 0, .threads = 2, .max_chunks = -1, .kv = KV_F16};
    long long v;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:f:c:t:h", opts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm': o->model = optarg; break;
        case O_TOKENIZER: o->tokenizer = optarg; break;
        case 'f': o->file = optarg; break;
        case 'c':
            rc = cfg_parse_int(optarg, 4, 1 << 20, &v, "--ctx-size", err, errlen);
            o->ctx = (int)v;
            break;
        case 't':
            rc = cfg_parse_int(optarg, 1, 256, &v, "--threads", err, errlen);
            o->threads = (int)v;
            break;
        case O_CHUNKS:
            rc = cfg_parse_int(optarg, 1, 1 << 30, &v, "--chunks", err, errlen);
            o->max_chunks = (int)v;
            break;
        case O_JSON: o->json = true; break;
        case O_BF16DOT: rc = cli_bf16_dot_parse(optarg, &o->bf16_dot, err, errlen); break;
        case O_KVTYPE:
            if (kv_type_parse(optarg, &o->kv))
                return ls_fail(err, errlen, "--kv-type: '%s' is not one of f32, f16, q8_0", optarg);
            break;
        case 'h': return 1;
        case ':': return ls_fail(err, errlen, "%s needs a value", argv[optind - 1]);
        default:
            if (optopt) return ls_fail(err, errlen, "unknown option '-%c'", optopt);
            return ls_fail(err, errlen, "unknown option '%s'", argv[optind - 1]);
        }
        if (rc) return -1;
    }
    if (optind < argc) return ls_fail(err, errlen, "unexpected argument '%s'", argv[optind]);
    if (!o->file) return ls_fail(err, errlen, "--file is required");
    if (cli_bf16_dot(o->bf16_dot, err, errlen)) return -1;
    if (!o->model) {
        static char demo[4096];
        if (cfg_find_demo_model(demo, sizeof demo, err, errlen)) return -1;
        o->model = demo;
    }
    return 0;
}

/* The whole file, NUL-terminated; caller frees. */
static char *read_text(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        ls_fail(err, errlen, "%s: cannot open", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *bigger = cap < ((size_t)1 << 30) ? realloc(buf, cap * 2) : NULL;
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        ls_fail(err, errlen, "%s: %s", path, bad ? "read error" : "too large (1 GiB at most)");
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* -log softmax(logits)[target], in double. */
static double nll(const float *logits, int vocab, int target) {
    double mx = logits[0];
    for (int i = 1; i < vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - mx);
    return log(sum) + mx - (double)logits[target];
}

/* The file's text at path as token ids (BOS first; caller frees), *n_tok of them. */
static int32_t *file_ids(const char *path, const tokenizer *tok, int *n_tok, char *err,
                         size_t errlen) {
    size_t len = 0;
    int32_t *ids = NULL;
    char *text = read_text(path, &len, err, errlen);
    if (!text) return NULL;
    if (len > (size_t)1 << 30) {
        ls_fail(err, errlen, "%s: too large", path);
        goto done;
    }
    *n_tok = tok_encode(tok, text, len, true, NULL, 0);
    if (*n_tok < 0) {
        ls_fail(err, errlen, "%s: cannot tokenize (not UTF-8 text?)", path);
        goto done;
    }
    ids = malloc(((size_t)*n_tok + 1) * sizeof *ids);
    if (!ids || tok_encode(tok, text, len, true, ids, *n_tok + 1) != *n_tok) {
        free(ids);
        ids = NULL;
        ls_fail(err, errlen, "%s: cannot tokenize", path);
    }
done:
    free(text);
    return ids;
}

/* The result from the sums of the count scored tokens' negative log-likelihoods (and of
 * their squares): the perplexity with its standard error, and with json a JSON line too. */
static void print_ppl(double sum, double sum2, long long count, int n_chunks, int c, bool json) {
    const double mean = sum / count, ppl = exp(mean);
    const double var = sum2 / count - mean * mean;
    const double se = count > 1 && var > 0 ? sqrt(var / (count - 1)) * ppl : 0;
    printf("PPL = %.4f +/- %.5f (%d windows of %d, %lld tokens scored)\n", ppl, se, n_chunks, c,
           count);
    if (json)
        printf("{\"ppl\": %.6f, \"ppl_stderr\": %.6f, \"chunks\": %d, \"tokens_scored\": %lld}\n",
               ppl, se, n_chunks, count);
}

int cmd_perplexity(int argc, char **argv) {
    char err[LS_ERR_LEN] = "";
    ppl_opts o;
    int prc = parse(&o, argc, argv, err, sizeof err);
    int parsed = cli_parsed(prc, "perplexity", usage, err);
    if (parsed >= 0) return parsed;
    int status = 1;
    model *m = NULL;
    pool *p = NULL;
    fwd_ctx *f = NULL;
    kv_cache *kv = NULL;
    int32_t *ids = NULL, *pos = NULL, *seq = NULL;
    bool *want = NULL;
    float *logits = NULL;

    if (!(m = cli_load_model(o.model, o.tokenizer, true, err, sizeof err))) goto fail;
    const int c = o.ctx ? o.ctx : (m->cfg.ctx_len < 512 ? m->cfg.ctx_len : 512);
    if (c > m->cfg.ctx_len) {
        snprintf(err, sizeof err, "--ctx-size %d exceeds the model's context length %d", c,
                 m->cfg.ctx_len);
        goto fail;
    }
    int n_tok;
    if (!(ids = file_ids(o.file, m->tok, &n_tok, err, sizeof err))) goto fail;
    int n_chunks = n_tok / c;
    if (o.max_chunks > 0 && n_chunks > o.max_chunks) n_chunks = o.max_chunks;
    if (n_chunks < 1) {
        snprintf(err, sizeof err, "%s has %d tokens: fewer than one window of %d (lower -c)",
                 o.file, n_tok, c);
        goto fail;
    }
    const int first = c / 2, n_scored = c - 1 - first, vocab = m->cfg.vocab_size;
    fprintf(stderr, "perplexity: %d tokens, %d windows of %d, %d scored per window, KV %s\n",
            n_tok, n_chunks, c, n_scored, kv_type_name(o.kv));

    if (!(p = cli_pool(o.threads, err, sizeof err))) goto fail;
    if (!(f = fwd_create(m, FWD_STEP_ROWS, p, err, sizeof err))) goto fail;
    if (!(kv = kv_create(&m->cfg, c, o.kv, err, sizeof err))) goto fail;
    pos = malloc((size_t)c * sizeof *pos);
    seq = calloc((size_t)c, sizeof *seq);
    want = malloc((size_t)c * sizeof *want);
    logits = malloc((size_t)n_scored * vocab * sizeof *logits);
    if (!pos || !seq || !want || !logits) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    for (int i = 0; i < c; i++) {
        pos[i] = i;
        want[i] = i >= first && i < c - 1;
    }
    double sum = 0, sum2 = 0, t0 = ls_now();
    long long count = 0;
    for (int k = 0; k < n_chunks; k++) {
        int32_t *w = ids + (size_t)k * c;
        const int32_t saved = w[0];
        w[0] = tok_bos(m->tok);
        kv_clear(kv);
        fwd_batch b = {.n_tokens = c, .token = w, .pos = pos, .seq = seq, .logits = want};
        int rc = fwd_decode(f, &kv, 1, &b, logits, err, sizeof err);
        w[0] = saved;
        if (rc) goto fail;
        for (int j = 0; j < n_scored; j++) {
            double v = nll(logits + (size_t)j * vocab, vocab, w[first + j + 1]);
            sum += v;
            sum2 += v * v;
            count++;
        }
        fprintf(stderr, "[%d/%d] ppl %.4f (%.1f s)\n", k + 1, n_chunks, exp(sum / count),
                ls_now() - t0);
    }
    print_ppl(sum, sum2, count, n_chunks, c, o.json);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "llamaserve perplexity: %s\n", err);
done:
    free(logits);
    free(want);
    free(seq);
    free(pos);
    free(ids);
    if (kv) kv_free(kv);
    if (f) fwd_free(f);
    if (p) pool_destroy(p);
    model_free(m);
    return status;
}
