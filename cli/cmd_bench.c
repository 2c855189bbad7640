/* cmd_bench: `llamaserve bench`, prompt-processing (pp: one batched forward of p tokens) and
 * token-generation (tg: n single-token steps) speed, in the manner of llama.cpp's llama-bench,
 * plus a memory read-bandwidth probe through the same thread pool, so that tg can be stated as a
 * fraction of its roofline (bandwidth / bytes of weights read per token). Needs no tokenizer:
 * the tokens are random ids. Results to stdout (a table, or one JSON object with --json). */
#include "cli.h"

#include "args.h"
#include "common.h"
#include "forward.h"
#include "kv_cache.h"
#include "matmul.h"
#include "model.h"
#include "threadpool.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: llamaserve bench --model PATH [options]\n"
               "\n"
               "Measures prompt processing (pp) and token generation (tg) speed, and the memory\n"
               "read bandwidth with the same threads (the roofline of tg).\n"
               "\n"
               "  -m, --model PATH     model file (GGUF or llama2.c .bin); no tokenizer needed\n"
               "  -p, --n-prompt N     prompt tokens, processed as one batch (default 128; 0 = skip)\n"
               "  -n, --n-gen N        tokens generated one at a time (default 64; 0 = skip)\n"
               "  -t, --threads N      threads (default 2)\n"
               "  -r, --reps N         repetitions; mean and standard deviation (default 3)\n"
               "      --kv-f16         F16 KV cache (default F32)\n"
               "      --scalar         use the scalar kernels, not the SIMD ones\n"
               "      --bw-mib N       size of the bandwidth probe's buffer (default 1024; 0 = skip)\n"
               "      --json           print one JSON object\n"
               "  -h, --help           this help\n");
}

typedef struct {
    const char *model;
    int n_prompt, n_gen, threads, reps, bw_mib;
    bool json, scalar, kv_f16;
} bench_opts;

static int parse(bench_opts *o, int argc, char **argv, char *err, size_t errlen) {
    enum { O_JSON = 256, O_SCALAR, O_KVF16, O_BW };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"n-prompt", required_argument, 0, 'p'},
        {"n-gen", required_argument, 0, 'n'}, {"threads", required_argument, 0, 't'},
        {"reps", required_argument, 0, 'r'},  {"json", no_argument, 0, O_JSON},
        {"scalar", no_argument, 0, O_SCALAR}, {"kv-f16", no_argument, 0, O_KVF16},
        {"bw-mib", required_argument, 0, O_BW}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    *o = (bench_opts){.n_prompt = 128, .n_gen = 64, .threads = 2, .reps = 3, .bw_mib = 1024};
    long long v;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:p:n:t:r:h", opts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p':
            rc = cfg_parse_int(optarg, 0, 1 << 16, &v, "--n-prompt", err, errlen);
            o->n_prompt = (int)v;
            break;
        case 'n':
            rc = cfg_parse_int(optarg, 0, 1 << 16, &v, "--n-gen", err, errlen);
            o->n_gen = (int)v;
            break;
        case 't':
            rc = cfg_parse_int(optarg, 1, 256, &v, "--threads", err, errlen);
            o->threads = (int)v;
            break;
        case 'r':
            rc = cfg_parse_int(optarg, 1, 1000, &v, "--reps", err, errlen);
            o->reps = (int)v;
            break;
        case O_BW:
            rc = cfg_parse_int(optarg, 0, 1 << 20, &v, "--bw-mib", err, errlen);
            o->bw_mib = (int)v;
            break;
        case O_JSON: o->json = true; break;
        case O_SCALAR: o->scalar = true; break;
        case O_KVF16: o->kv_f16 = true; break;
        case 'h': return 1;
        case ':': return ls_fail(err, errlen, "%s needs a value", argv[optind - 1]);
        default: return ls_fail(err, errlen, "unknown option '%s'", argv[optind - 1]);
        }
        if (rc) return -1;
    }
    if (optind < argc) return ls_fail(err, errlen, "unexpected argument '%s'", argv[optind]);
    if (!o->model) return ls_fail(err, errlen, "--model is required");
    if (o->n_prompt + o->n_gen < 1) return ls_fail(err, errlen, "nothing to do: -p 0 -n 0");
    return 0;
}

/* ---- memory bandwidth probe -------------------------------------------------------------- */

typedef struct {
    const uint64_t *buf;
    size_t n;        /* words */
    uint64_t sums[256]; /* one per thread, so the reads cannot be optimised away */
} bw_job;

/* Thread ith reads its contiguous share of the buffer once, as four interleaved sequential
 * streams with software prefetch (like a matmul tile reading four weight rows), so that one
 * thread keeps as many cache-line requests in flight as the kernels do. */
static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    size_t per = (j->n / (size_t)nth) & ~(size_t)31;
    size_t i0 = per * (size_t)ith, q = per / 4;
    const uint64_t *a = j->buf + i0, *b = a + q, *c = b + q, *d = c + q;
    uint64_t sa = 0, sb = 0, sc = 0, sd = 0;
    for (size_t i = 0; i < q; i += 8) {
        /* prefetch 2 KiB ahead in every stream, as the matmul kernels do */
        __builtin_prefetch(a + i + 256);
        __builtin_prefetch(b + i + 256);
        __builtin_prefetch(c + i + 256);
        __builtin_prefetch(d + i + 256);
        for (size_t k = 0; k < 8; k++) {
            sa += a[i + k];
            sb += b[i + k];
            sc += c[i + k];
            sd += d[i + k];
        }
    }
    j->sums[ith] = sa + sb + sc + sd;
}

/* Best of 5 passes over bytes of memory, in GB/s (1e9 bytes); 0 when it cannot allocate. */
static double probe_bandwidth(pool *p, size_t bytes) {
    uint64_t *buf = ls_alloc(bytes);
    if (!buf) return 0;
    memset(buf, 1, bytes); /* commit every page before timing */
    bw_job j = {buf, bytes / 8, {0}};
    size_t read = (j.n / (size_t)pool_size(p) & ~(size_t)31) * (size_t)pool_size(p) * 8;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = ls_now();
        pool_run(p, bw_read, &j);
        double gbs = (double)read / (ls_now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

/* ---- pp and tg ------------------------------------------------------------------------- */

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

/* One prompt of n tokens as a single batch from an empty cache; seconds, or -1. */
static double run_pp(fwd_ctx *f, kv_cache *kv, const int32_t *tok, const int32_t *pos,
                     const int32_t *seq, int n, float *logits, char *err, size_t errlen) {
    kv_clear(kv);
    fwd_batch b = {n, tok, pos, seq, NULL};
    double t0 = ls_now();
    if (fwd_decode(f, &kv, 1, &b, logits, err, errlen) != 0) return -1;
    return ls_now() - t0;
}

/* n single-token steps from an empty cache; seconds, or -1. */
static double run_tg(fwd_ctx *f, kv_cache *kv, const int32_t *tok, const int32_t *pos,
                     const int32_t *seq, int n, float *logits, char *err, size_t errlen) {
    kv_clear(kv);
    double t0 = ls_now();
    for (int i = 0; i < n; i++) {
        fwd_batch b = {1, &tok[i], &pos[i], seq, NULL};
        if (fwd_decode(f, &kv, 1, &b, logits, err, errlen) != 0) return -1;
    }
    return ls_now() - t0;
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

int cmd_bench(int argc, char **argv) {
    char err[LS_ERR_LEN] = "";
    bench_opts o;
    int prc = parse(&o, argc, argv, err, sizeof err);
    if (prc == 1) {
        usage(stdout);
        return 0;
    }
    if (prc != 0) {
        fprintf(stderr, "llamaserve bench: %s\n", err);
        return 2;
    }
    int status = 1;
    model *m = NULL;
    pool *p = NULL;
    fwd_ctx *f = NULL;
    kv_cache *kv = NULL;
    int32_t *tok = NULL, *pos = NULL, *seq = NULL;
    float *logits = NULL;
    double *pp_s = NULL, *tg_s = NULL;

    if (!(m = model_load(o.model, NULL, err, sizeof err))) goto fail;
    int n_max = o.n_prompt > o.n_gen ? o.n_prompt : o.n_gen;
    tok = malloc((size_t)n_max * sizeof *tok);
    pos = malloc((size_t)n_max * sizeof *pos);
    seq = calloc((size_t)n_max, sizeof *seq);
    logits = malloc((size_t)m->cfg.vocab_size * sizeof *logits);
    pp_s = calloc((size_t)o.reps, sizeof *pp_s);
    tg_s = calloc((size_t)o.reps, sizeof *tg_s);
    if (!tok || !pos || !seq || !logits || !pp_s || !tg_s) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    uint32_t r = 12345;
    for (int i = 0; i < n_max; i++) {
        r = r * 1664525u + 1013904223u;
        tok[i] = (int32_t)((r >> 8) % (uint32_t)m->cfg.vocab_size);
        pos[i] = i;
    }
    if (!(p = pool_create(o.threads))) {
        snprintf(err, sizeof err, "cannot start %d threads", o.threads);
        goto fail;
    }
    mm_force_scalar(o.scalar);
    int max_tokens = o.n_prompt > 1 ? o.n_prompt : 1;
    if (!(f = fwd_create(m, max_tokens, p, err, sizeof err))) goto fail;
    if (!(kv = kv_create(&m->cfg, n_max + 1, o.kv_f16 ? KV_F16 : KV_F32, err, sizeof err)))
        goto fail;

    /* the probe runs before and after the timed runs; the better figure is kept (on a shared
     * machine the load changes during a run) */
    double bw = o.bw_mib > 0 ? probe_bandwidth(p, (size_t)o.bw_mib << 20) : 0;
    /* warm-up: pages the weights in and settles the clocks */
    if (o.n_prompt > 0 && run_pp(f, kv, tok, pos, seq, o.n_prompt, logits, err, sizeof err) < 0)
        goto fail;
    if (run_tg(f, kv, tok, pos, seq, o.n_gen < 4 ? o.n_gen : 4, logits, err, sizeof err) < 0)
        goto fail;
    for (int i = 0; i < o.reps; i++) {
        if (o.n_prompt > 0 &&
            (pp_s[i] = run_pp(f, kv, tok, pos, seq, o.n_prompt, logits, err, sizeof err)) < 0)
            goto fail;
        if (o.n_gen > 0 &&
            (tg_s[i] = run_tg(f, kv, tok, pos, seq, o.n_gen, logits, err, sizeof err)) < 0)
            goto fail;
        pp_s[i] = o.n_prompt > 0 ? o.n_prompt / pp_s[i] : 0; /* now tokens per second */
        tg_s[i] = o.n_gen > 0 ? o.n_gen / tg_s[i] : 0;
    }
    double pp, pp_sd, tg, tg_sd;
    mean_sd(pp_s, o.reps, &pp, &pp_sd);
    mean_sd(tg_s, o.reps, &tg, &tg_sd);
    double bw_after = o.bw_mib > 0 ? probe_bandwidth(p, (size_t)o.bw_mib << 20) : 0;
    if (bw_after > bw) bw = bw_after;
    size_t wbytes = model_weight_bytes(m);
    double roof = bw > 0 ? bw * 1e9 / (double)wbytes : 0; /* tokens per second */
    /* on x86, AVX-512 runs blocks of rows (pp) and Q4_0 decode where the CPU has it */
    const char *kernels = mm_kernels();
    const char *wtype = dtype_name(m->layers[0].wq.type);

    if (o.json) {
        printf("{\"model\": ");
        json_str(o.model);
        printf(", \"type\": \"%s\", \"kernels\": \"%s\", \"threads\": %d, \"n_prompt\": %d, "
               "\"n_gen\": %d, \"reps\": %d, \"kv\": \"%s\", \"weights_bytes\": %zu, "
               "\"pp_tok_s\": %.3f, \"pp_tok_s_sd\": %.3f, \"tg_tok_s\": %.3f, "
               "\"tg_tok_s_sd\": %.3f, \"bandwidth_gb_s\": %.3f, \"roofline_tg_tok_s\": %.3f, "
               "\"tg_roofline_frac\": %.4f}\n",
               wtype, kernels, o.threads, o.n_prompt, o.n_gen, o.reps, o.kv_f16 ? "f16" : "f32",
               wbytes, pp, pp_sd, tg, tg_sd, bw, roof, roof > 0 ? tg / roof : 0.0);
    } else {
        printf("model: %s (%s, %.3f GB of weights per token), %d threads, %s kernels\n", o.model,
               wtype, (double)wbytes / 1e9, o.threads, kernels);
        if (o.n_prompt > 0)
            printf("pp%-5d %10.2f ± %.2f tok/s\n", o.n_prompt, pp, pp_sd);
        if (o.n_gen > 0) {
            printf("tg%-5d %10.2f ± %.2f tok/s", o.n_gen, tg, tg_sd);
            if (roof > 0) printf("   (%.0f%% of the roofline)", 100 * tg / roof);
            putchar('\n');
        }
        if (bw > 0)
            printf("read bandwidth %.2f GB/s with %d threads: roofline %.2f tok/s\n", bw,
                   o.threads, roof);
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "llamaserve bench: %s\n", err);
done:
    kv_free(kv);
    fwd_free(f);
    pool_destroy(p);
    model_free(m);
    free(tok);
    free(pos);
    free(seq);
    free(logits);
    free(pp_s);
    free(tg_s);
    return status;
}
