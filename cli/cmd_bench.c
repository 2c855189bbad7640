/* cmd_bench: `llamaserve bench`, prompt-processing (pp: one batched forward of p tokens) and
 * token-generation (tg: n single-token steps) speed, in the manner of llama.cpp's llama-bench,
 * plus a memory read-bandwidth probe through the same thread pool, so that tg can be stated as a
 * fraction of its roofline (bandwidth / bytes of weights read per token), and three passes of
 * the same reader over the model file's own memory (slower where the host reads those pages
 * slowly). Needs no tokenizer:
 * the tokens are random ids. Results to stdout (a table, or one JSON object with --json).
 * With --grammar, a further run of n constrained steps measures the grammar's cost per token
 * (the mask and the advance) against the decode time, in a vocabulary of the model's or
 * --vocab's (a GGUF: Llama's SentencePiece or Llama 3's byte-level BPE). */
#include "cli.h"

#include "args.h"
#include "common.h"
#include "forward.h"
#include "gguf.h"
#include "grammar.h"
#include "sampler.h"
#include "kv_cache.h"
#include "mapfile.h"
#include "matmul.h"
#include "model.h"
#include "threadpool.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f, "usage: llamaserve bench --model PATH [options]\n"
               "\n"
               "Measures prompt processing (pp) and token generation (tg) speed, and the memory\n"
               "read bandwidth with the same threads (the roofline of tg), also over the model\n"
               "file's own memory.\n"
               "\n"
               "  -m, --model PATH     model file (GGUF or llama2.c .bin); no tokenizer needed\n"
               "  -p, --n-prompt N     prompt tokens, processed as one batch (default 128; 0 = skip)\n"
               "  -n, --n-gen N        tokens generated one at a time (default 64; 0 = skip)\n"
               "  -t, --threads N      threads (default 2)\n"
               "  -r, --reps N         repetitions; mean and standard deviation (default 3)\n"
               "  -d, --n-depth N      tokens already in the KV cache before each pp and tg run,\n"
               "                       as llama-bench's -d (default 0; within the model's context)\n"
               "      --kv-type T      KV cache type: f32 (default), f16 or q8_0\n"
               "      --kv-f16         the same as --kv-type f16\n"
               "      --cpu-clock      time pp and tg by the process's CPU time, not the wall\n"
               "                       clock: with -t 1 on a shared host, the speed it would\n"
               "                       have alone (with more threads, their spinning counts)\n"
               "      --scalar         use the scalar kernels, not the SIMD ones\n"
               "      --no-avx512      the AVX2 kernels only, as a CPU without AVX-512 VNNI\n"
               "                       runs them (the same results)\n"
               "      --no-mmap        read the model into private memory, as serve's --no-mmap\n"
               "      --repack         repack the quantized matrices for the decode kernels\n"
               "                       (as serve's --repack: private memory, same results)\n"
               "      --bf16-dot M     BF16 weights on BF16-rounded activations with the CPU's\n"
               "                       vdpbf16ps, as serve's: auto (default; where the CPU has\n"
               "                       AVX512_BF16, not with --scalar or --no-avx512), on, off\n"
               "      --bw-mib N       size of the bandwidth probe's buffer (default 1024; 0 = skip)\n"
               "      --grammar FILE   also time a GBNF grammar's mask and advance per token\n"
               "      --vocab PATH     the grammar's vocabulary from this GGUF (default: the\n"
               "                       model's); random logits when its size is not the model's\n"
               "      --json           print one JSON object\n"
               "  -h, --help           this help\n");
}

typedef struct {
    const char *model, *grammar, *vocab;
    int n_prompt, n_gen, n_depth, threads, reps, bw_mib;
    bool json, scalar, cpu_clock, repack, no_avx512, no_mmap;
    cfg_bf16_dot bf16_dot;
    kv_type kv;
} bench_opts;

static int parse(bench_opts *o, int argc, char **argv, char *err, size_t errlen) {
    enum { O_JSON = 256, O_SCALAR, O_KVF16, O_KVTYPE, O_CPU, O_BW, O_GRAMMAR, O_VOCAB, O_REPACK,
           O_NO512, O_BF16DOT, O_NOMMAP };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"n-prompt", required_argument, 0, 'p'},
        {"n-gen", required_argument, 0, 'n'}, {"threads", required_argument, 0, 't'},
        {"reps", required_argument, 0, 'r'},  {"json", no_argument, 0, O_JSON},
        {"scalar", no_argument, 0, O_SCALAR}, {"kv-f16", no_argument, 0, O_KVF16},
        {"repack", no_argument, 0, O_REPACK}, {"no-avx512", no_argument, 0, O_NO512},
        {"bw-mib", required_argument, 0, O_BW}, {"help", no_argument, 0, 'h'},
        {"grammar", required_argument, 0, O_GRAMMAR}, {"vocab", required_argument, 0, O_VOCAB},
        {"kv-type", required_argument, 0, O_KVTYPE}, {"n-depth", required_argument, 0, 'd'},
        {"cpu-clock", no_argument, 0, O_CPU}, {"bf16-dot", required_argument, 0, O_BF16DOT},
        {"no-mmap", no_argument, 0, O_NOMMAP}, {0, 0, 0, 0}};
    *o = (bench_opts){.n_prompt = 128, .n_gen = 64, .threads = 2, .reps = 3, .bw_mib = 1024,
                      .kv = KV_F32};
    long long v;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:p:n:d:t:r:h", opts, NULL)) != -1) {
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
        case 'd':
            rc = cfg_parse_int(optarg, 0, 1 << 20, &v, "--n-depth", err, errlen);
            o->n_depth = (int)v;
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
        case O_GRAMMAR: o->grammar = optarg; break;
        case O_VOCAB: o->vocab = optarg; break;
        case O_SCALAR: o->scalar = true; break;
        case O_REPACK: o->repack = true; break;
        case O_NOMMAP: o->no_mmap = true; break;
        case O_NO512: o->no_avx512 = true; break;
        case O_BF16DOT: rc = cli_bf16_dot_parse(optarg, &o->bf16_dot, err, errlen); break;
        case O_KVF16: o->kv = KV_F16; break;
        case O_CPU: o->cpu_clock = true; break;
        case O_KVTYPE:
            if (kv_type_parse(optarg, &o->kv))
                return ls_fail(err, errlen, "--kv-type: '%s' is not one of f32, f16, q8_0", optarg);
            break;
        case 'h': return 1;
        case ':': return ls_fail(err, errlen, "%s needs a value", argv[optind - 1]);
        default: return ls_fail(err, errlen, "unknown option '%s'", argv[optind - 1]);
        }
        if (rc) return -1;
    }
    if (optind < argc) return ls_fail(err, errlen, "unexpected argument '%s'", argv[optind]);
    if (!o->model) return ls_fail(err, errlen, "--model is required");
    if (o->n_prompt + o->n_gen < 1) return ls_fail(err, errlen, "nothing to do: -p 0 -n 0");
    if (o->grammar && o->n_gen < 1) return ls_fail(err, errlen, "--grammar needs -n > 0");
    if (o->bf16_dot == CFG_BF16_DOT_ON && o->no_avx512)
        return ls_fail(err, errlen, "--bf16-dot on and --no-avx512 exclude each other");
    if (o->bf16_dot == CFG_BF16_DOT_AUTO && (o->scalar || o->no_avx512))
        o->bf16_dot = CFG_BF16_DOT_OFF;
    return cli_bf16_dot(o->bf16_dot, err, errlen);
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

/* One pass of bw_read over j's buffer through the pool, in GB/s (1e9 bytes): the bytes the
 * threads' shares cover over the time; 0 when the shares are empty. */
static double read_pass(pool *p, bw_job *j) {
    size_t read = (j->n / (size_t)pool_size(p) & ~(size_t)31) * (size_t)pool_size(p) * 8;
    if (read == 0) return 0;
    double t0 = ls_now();
    pool_run(p, bw_read, j);
    return (double)read / (ls_now() - t0) / 1e9;
}

/* Best of 5 passes over bytes of memory, in GB/s; 0 when it cannot allocate. */
static double probe_bandwidth(pool *p, size_t bytes) {
    uint64_t *buf = ls_alloc(bytes);
    if (!buf) return 0;
    memset(buf, 1, bytes); /* commit every page before timing */
    bw_job j = {buf, bytes / 8, {0}};
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double gbs = read_pass(p, &j);
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

enum { MAP_PASSES = 3 };

/* MAP_PASSES passes over the model file's own memory (its mapping, or the --no-mmap copy), GB/s
 * each, with the probe's reader. Below the probe's figure when the host reads those pages
 * slowly: on one VM, page-cache pages that had sat unused read at 2-30 GB/s from pass to pass
 * against 30 for fresh memory (docs/PERFORMANCE.md, "Zen 5 again"). */
static void probe_mapping(pool *p, const model *m, double gbs[MAP_PASSES]) {
    const mapfile *mf = m->gguf ? &m->gguf->map : &m->map;
    bw_job j = {(const uint64_t *)mf->data, mf->size / 8, {0}};
    for (int i = 0; i < MAP_PASSES; i++) gbs[i] = read_pass(p, &j);
}

/* ---- pp and tg ------------------------------------------------------------------------- */

static bool use_cpu_clock; /* --cpu-clock: set once before the runs */

/* Seconds on the clock the runs are timed by: monotonic wall time, or the process's CPU time. */
static double bench_now(void) {
    if (!use_cpu_clock) return ls_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

/* One prompt of n tokens as a single batch after the cache's first depth positions (filled by
 * the caller); seconds, or -1. tok and pos start at position depth. */
static double run_pp(fwd_ctx *f, kv_cache *kv, int depth, const int32_t *tok, const int32_t *pos,
                     const int32_t *seq, int n, float *logits, char *err, size_t errlen) {
    kv_truncate(kv, depth);
    fwd_batch b = {.n_tokens = n, .token = tok, .pos = pos, .seq = seq};
    double t0 = bench_now();
    if (fwd_decode(f, &kv, 1, &b, logits, err, errlen) != 0) return -1;
    return bench_now() - t0;
}

/* n single-token steps after the cache's first depth positions; seconds, or -1. */
static double run_tg(fwd_ctx *f, kv_cache *kv, int depth, const int32_t *tok, const int32_t *pos,
                     const int32_t *seq, int n, float *logits, char *err, size_t errlen) {
    kv_truncate(kv, depth);
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        fwd_batch b = {.n_tokens = 1, .token = &tok[i], .pos = &pos[i], .seq = seq};
        if (fwd_decode(f, &kv, 1, &b, logits, err, errlen) != 0) return -1;
    }
    return bench_now() - t0;
}

/* ---- grammar ----------------------------------------------------------------------------- */

/* A byte-level BPE vocabulary (GPT-2's scheme, Llama 3's): each byte is spelled by one code
 * point, printable bytes by themselves and the 68 others by U+0100 upward in byte order. */
static gram_vocab *vocab_bpe(const gguf_file *g, char *err, size_t errlen) {
    const gguf_value *toks = NULL, *types = NULL;
    int64_t eos = -1;
    if (gguf_get_array(g, "tokenizer.ggml.tokens", GGUF_STRING, &toks, err, errlen) != 0) {
        if (!err[0]) ls_fail(err, errlen, "no tokenizer.ggml.tokens");
        return NULL;
    }
    gguf_get_array(g, "tokenizer.ggml.token_type", GGUF_INT32, &types, err, errlen);
    gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos, err, errlen);
    int byte_of[324]; /* code point -> byte */
    for (int i = 0; i < 324; i++) byte_of[i] = -1;
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        byte_of[self ? b : next++] = b;
    }
    int n = (int)toks->arr.n;
    char *store = malloc(toks->arr.n ? (size_t)toks->arr.n * 64 : 1);
    const char **bytes = malloc((size_t)n * sizeof *bytes);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    gram_vocab *v = NULL;
    if (!store || !bytes || !lens) goto out;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        gguf_value tv, yv;
        if (gguf_arr_get(toks, (uint64_t)i, &tv) != 0) tv.str = (gguf_str){"", 0};
        gguf_str s = tv.str;
        bytes[i] = store + at;
        /* only normal tokens print */
        bool special = types && (gguf_arr_get(types, (uint64_t)i, &yv) != 0 || yv.i != 1);
        for (uint64_t k = 0; k < s.len && !special && lens[i] < 64;) {
            unsigned char c = (unsigned char)s.s[k];
            uint32_t cp = c;
            int w = c < 0x80 ? 1 : c < 0xE0 ? 2 : 3;
            if (w == 2) cp = (uint32_t)(c & 0x1F) << 6 | (s.s[k + 1] & 0x3F);
            if (w == 3) cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s.s[k + 1] & 0x3F) << 6 |
                             (s.s[k + 2] & 0x3F);
            k += (uint64_t)w;
            if (cp >= 324 || byte_of[cp] < 0) { special = true; break; }
            store[at + lens[i]++] = (char)byte_of[cp];
        }
        if (special) lens[i] = 0;
        at += lens[i];
    }
    v = gram_vocab_create(n, bytes, lens, (int)eos);
    if (!v) ls_fail(err, errlen, "out of memory for the vocabulary trie");
out:
    free(store);
    free(bytes);
    free(lens);
    return v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    int n_vocab, n_steps, n_done;
    double build_ms, mask_ms, p50_ms, p95_ms, max_ms, decode_ms;
    bool random_logits;
} grammar_result;

/* n constrained steps: decode (or random logits), mask, sample at temperature 1, advance; a
 * finished or stuck grammar starts again. */
/* The grammar file at path, parsed; NULL with a message. */
static gram_rules *load_grammar(const char *path, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        ls_fail(err, errlen, "cannot open %s", path);
        return NULL;
    }
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    gram_rules *g = NULL;
    if (!text || fread(text, 1, (size_t)len, fp) != (size_t)len)
        ls_fail(err, errlen, "cannot read %s", path);
    else
        g = gram_parse(text, (size_t)len, err, errlen);
    fclose(fp);
    free(text);
    return g;
}

/* The vocabulary trie the grammar runs against: --vocab's (a byte-level BPE GGUF's, or any
 * other tokenizer's), else the model's; *build_ms the trie's build time. What it loads for
 * --vocab goes to *tok or *gf, for the caller to free. NULL on failure (err may be empty: out
 * of memory). */
static gram_vocab *grammar_vocab(const bench_opts *o, const model *m, tokenizer **tok,
                                 gguf_file **gf, double *build_ms, char *err, size_t errlen) {
    gram_vocab *v;
    double t0 = ls_now();
    if (o->vocab) {
        if (!(*gf = gguf_open(o->vocab, err, errlen))) return NULL;
        gguf_str kind = {0};
        gguf_get_str(*gf, "tokenizer.ggml.model", &kind, err, errlen);
        if (gguf_str_eq(kind, "gpt2")) {
            t0 = ls_now();
            v = vocab_bpe(*gf, err, errlen);
        } else {
            if (!(*tok = model_load_tokenizer(o->vocab, err, errlen))) return NULL;
            t0 = ls_now();
            v = gram_vocab_from_tokenizer(*tok);
        }
    } else {
        v = gram_vocab_from_tokenizer(m->tok);
    }
    *build_ms = (ls_now() - t0) * 1e3;
    return v;
}

/* The median, 95th percentile and maximum of the n steps' times (sorted here). */
static void step_stats(grammar_result *res, double *step_ms, int n) {
    qsort(step_ms, (size_t)n, sizeof *step_ms, cmp_double);
    res->p50_ms = step_ms[n / 2];
    res->p95_ms = step_ms[(n * 95) / 100 < n ? (n * 95) / 100 : n - 1];
    res->max_ms = step_ms[n - 1];
}

static int run_grammar(const bench_opts *o, const model *m, fwd_ctx *f, kv_cache *kv,
                       float *logits, grammar_result *res, char *err, size_t errlen) {
    int rc = -1;
    gram_rules *g = NULL;
    gram_vocab *v = NULL;
    gram_state *st = NULL;
    sampler *smp = NULL;
    uint32_t *mask = NULL;
    float *rnd = NULL;
    double *step_ms = NULL;
    tokenizer *tok = NULL;
    gguf_file *gf = NULL;
    if (!(g = load_grammar(o->grammar, err, errlen))) return -1;
    if (!(v = grammar_vocab(o, m, &tok, &gf, &res->build_ms, err, errlen))) {
        if (!err[0]) ls_fail(err, errlen, "out of memory for the vocabulary trie");
        goto out;
    }
    int nv = gram_vocab_n(v);
    res->n_vocab = nv;
    res->random_logits = nv != m->cfg.vocab_size;
    sampler_params sp;
    sampler_params_default(&sp);
    sp.seed = 1;
    smp = sampler_create(&sp, nv);
    mask = malloc(((size_t)nv + 31) / 32 * sizeof *mask);
    rnd = malloc((size_t)nv * sizeof *rnd);
    st = gram_state_create(g, v);
    step_ms = malloc((size_t)o->n_gen * sizeof *step_ms);
    if (!smp || !mask || !rnd || !st || !step_ms) {
        ls_fail(err, errlen, "out of memory");
        goto out;
    }
    rng r;
    rng_seed(&r, 7);
    kv_clear(kv);
    int32_t id = 1, seq = 0;
    for (int i = 0; i < o->n_gen; i++) {
        const float *lg = rnd;
        if (!res->random_logits) {
            int32_t pos = i;
            fwd_batch b = {.n_tokens = 1, .token = &id, .pos = &pos, .seq = &seq};
            if (fwd_decode(f, &kv, 1, &b, logits, err, errlen) != 0) goto out;
            lg = logits;
        } else {
            for (int k = 0; k < nv; k++) rnd[k] = 4.0f * rng_uniform(&r);
        }
        double t1 = ls_now();
        int allowed = gram_state_mask(st, mask);
        double t2 = ls_now();
        id = allowed > 0 ? sampler_sample_masked(smp, lg, mask, NULL, 0, 0, NULL) : 0;
        double t3 = ls_now();
        if (allowed > 0) gram_state_accept_token(st, id);
        double t4 = ls_now();
        double ms = ((t2 - t1) + (t4 - t3)) * 1e3;
        res->mask_ms += ms;
        step_ms[i] = ms;
        if (allowed <= 0 || id == gram_vocab_eos(v) || gram_state_done(st)) {
            /* finished (or stuck): start again */
            gram_state_free(st);
            if (!(st = gram_state_create(g, v))) {
                ls_fail(err, errlen, "out of memory");
                goto out;
            }
            res->n_done++;
        }
        if (id < 0 || id >= m->cfg.vocab_size) id = 1; /* a random-logit id fed back */
    }
    res->n_steps = o->n_gen;
    res->mask_ms /= o->n_gen;
    step_stats(res, step_ms, o->n_gen);
    rc = 0;
out:
    gram_state_free(st);
    sampler_free(smp);
    free(mask);
    free(rnd);
    free(step_ms);
    gram_vocab_free(v);
    gram_rules_free(g);
    tok_free(tok);
    gguf_close(gf);
    return rc;
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

/* What a run measured, for the report. */
typedef struct {
    const char *wtype, *kernels; /* the weights' type, the kernels used */
    size_t wbytes;               /* weights read per token */
    double pp, pp_sd, tg, tg_sd; /* tokens per second, mean and standard deviation */
    double bw, roof;             /* read bandwidth (GB/s), the decode roofline (tok/s) */
    size_t kv_per_token;         /* KV cache bytes per position */
    bool bf16_dot;               /* BF16 weights on BF16-rounded activations (--bf16-dot) */
    double mapped[MAP_PASSES];   /* probe_mapping's passes (GB/s; 0 when not probed) */
} bench_result;

static void print_json(const bench_opts *o, const bench_result *r, const grammar_result *gr) {
    printf("{\"model\": ");
    json_str(o->model);
    printf(", \"type\": \"%s\", \"kernels\": \"%s\", \"threads\": %d, \"n_prompt\": %d, "
           "\"n_gen\": %d, \"n_depth\": %d, \"reps\": %d, \"clock\": \"%s\", \"kv\": \"%s\", "
           "\"kv_bytes_per_token\": %zu, \"weights_bytes\": %zu, "
           "\"pp_tok_s\": %.3f, \"pp_tok_s_sd\": %.3f, \"tg_tok_s\": %.3f, "
           "\"tg_tok_s_sd\": %.3f, \"bandwidth_gb_s\": %.3f, \"roofline_tg_tok_s\": %.3f, "
           "\"tg_roofline_frac\": %.4f, \"bf16_dot\": %s, \"mmap\": %s",
           r->wtype, r->kernels, o->threads, o->n_prompt, o->n_gen, o->n_depth, o->reps,
           o->cpu_clock ? "cpu" : "wall", kv_type_name(o->kv), r->kv_per_token, r->wbytes, r->pp,
           r->pp_sd, r->tg, r->tg_sd, r->bw, r->roof,
           r->roof > 0 ? r->tg / r->roof : 0.0, r->bf16_dot ? "true" : "false",
           o->no_mmap ? "false" : "true");
    printf(", \"weights_memory_gb_s\": [");
    for (int i = 0; i < MAP_PASSES; i++) printf("%s%.3f", i ? ", " : "", r->mapped[i]);
    putchar(']');
    if (o->grammar) {
        printf(", \"grammar\": {\"file\": ");
        json_str(o->grammar);
        printf(", \"n_vocab\": %d, \"random_logits\": %s, \"trie_build_ms\": %.3f, "
               "\"grammar_ms_per_token\": %.4f, \"grammar_p50_ms\": %.4f, "
               "\"grammar_p95_ms\": %.4f, \"grammar_max_ms\": %.4f, "
               "\"decode_ms_per_token\": %.3f, \"overhead_frac\": %.4f, "
               "\"completions\": %d}",
               gr->n_vocab, gr->random_logits ? "true" : "false", gr->build_ms, gr->mask_ms,
               gr->p50_ms, gr->p95_ms, gr->max_ms, gr->decode_ms,
               gr->decode_ms > 0 ? gr->mask_ms / gr->decode_ms : 0.0, gr->n_done);
    }
    printf("}\n");
}

static void print_text(const bench_opts *o, const bench_result *r, const grammar_result *gr) {
    printf("model: %s (%s, %.3f GB of weights per token%s), %d threads, %s kernels%s\n",
           o->model, r->wtype, (double)r->wbytes / 1e9, o->no_mmap ? ", private copy" : "",
           o->threads, r->kernels, r->bf16_dot ? " (BF16 on BF16-rounded activations)" : "");
    printf("kv cache: %s, %zu bytes per token; timed by the %s clock\n", kv_type_name(o->kv),
           r->kv_per_token, o->cpu_clock ? "process's CPU" : "wall");
    char at[32] = "";
    if (o->n_depth > 0) snprintf(at, sizeof at, " @ d%d", o->n_depth);
    if (o->n_prompt > 0)
        printf("pp%-5d%s %10.2f ± %.2f tok/s\n", o->n_prompt, at, r->pp, r->pp_sd);
    if (o->n_gen > 0) {
        printf("tg%-5d%s %10.2f ± %.2f tok/s", o->n_gen, at, r->tg, r->tg_sd);
        if (r->roof > 0) printf("   (%.0f%% of the roofline)", 100 * r->tg / r->roof);
        putchar('\n');
    }
    if (r->bw > 0) {
        printf("read bandwidth %.2f GB/s with %d threads: roofline %.2f tok/s\n", r->bw,
               o->threads, r->roof);
        printf("the model file's memory read at");
        for (int i = 0; i < MAP_PASSES; i++) printf("%s %.2f", i ? "," : "", r->mapped[i]);
        printf(" GB/s (%d passes)\n", MAP_PASSES);
    }
    if (o->grammar)
        printf("grammar %s, %d-token vocabulary%s: mask + advance %.3f ms/token (median "
               "%.3f, p95 %.3f, max %.3f), "
               "decode %.2f ms/token: %.2f%% overhead; trie built in %.1f ms; %d "
               "completions in %d steps\n",
               o->grammar, gr->n_vocab, gr->random_logits ? " (random logits)" : "",
               gr->mask_ms, gr->p50_ms, gr->p95_ms, gr->max_ms, gr->decode_ms,
               gr->decode_ms > 0 ? 100 * gr->mask_ms / gr->decode_ms : 0.0, gr->build_ms,
               gr->n_done, gr->n_steps);
}

/* Random token ids below vocab (a fixed sequence) at positions 0 .. n-1. */
static void fill_tokens(int32_t *tok, int32_t *pos, int n, int vocab) {
    uint32_t r = 12345;
    for (int i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        tok[i] = (int32_t)((r >> 8) % (uint32_t)vocab);
        pos[i] = i;
    }
}

/* A warm-up (pages the weights in, settles the clocks), then o->reps runs of pp and tg from
 * depth cached tokens; pp_s and tg_s (o->reps) receive tokens per second. -1 on an error. */
static int timed_runs(const bench_opts *o, fwd_ctx *f, kv_cache *kv, int depth,
                      const int32_t *tok_d, const int32_t *pos_d, const int32_t *seq,
                      float *logits, double *pp_s, double *tg_s, char *err, size_t errlen) {
    if (o->n_prompt > 0 &&
        run_pp(f, kv, depth, tok_d, pos_d, seq, o->n_prompt, logits, err, errlen) < 0)
        return -1;
    if (run_tg(f, kv, depth, tok_d, pos_d, seq, o->n_gen < 4 ? o->n_gen : 4, logits, err,
               errlen) < 0)
        return -1;
    for (int i = 0; i < o->reps; i++) {
        if (o->n_prompt > 0 && (pp_s[i] = run_pp(f, kv, depth, tok_d, pos_d, seq, o->n_prompt,
                                                 logits, err, errlen)) < 0)
            return -1;
        if (o->n_gen > 0 && (tg_s[i] = run_tg(f, kv, depth, tok_d, pos_d, seq, o->n_gen,
                                              logits, err, errlen)) < 0)
            return -1;
        pp_s[i] = o->n_prompt > 0 ? o->n_prompt / pp_s[i] : 0; /* now tokens per second */
        tg_s[i] = o->n_gen > 0 ? o->n_gen / tg_s[i] : 0;
    }
    return 0;
}

int cmd_bench(int argc, char **argv) {
    char err[LS_ERR_LEN] = "";
    bench_opts o;
    int prc = parse(&o, argc, argv, err, sizeof err);
    int parsed = cli_parsed(prc, "bench", usage, err);
    if (parsed >= 0) return parsed;
    int status = 1;
    model *m = NULL;
    pool *p = NULL;
    fwd_ctx *f = NULL;
    kv_cache *kv = NULL;
    int32_t *tok = NULL, *pos = NULL, *seq = NULL;
    float *logits = NULL;
    double *pp_s = NULL, *tg_s = NULL;

    map_set_private_copy(o.no_mmap);
    if (!(m = model_load(o.model, NULL, err, sizeof err))) goto fail;
    mm_force_avx2(o.no_avx512); /* before the repack, whose types depend on the kernels */
    size_t repacked = 0;
    if (o.repack && model_repack(m, &repacked) != 0) {
        snprintf(err, sizeof err, "out of memory repacking the weights");
        goto fail;
    }
    if (o.repack && !o.json)
        printf("repacked for the decode tiles: %.1f MiB of private memory\n",
               (double)repacked / (1 << 20));
    const int depth = o.n_depth;
    int n_max = depth + (o.n_prompt > o.n_gen ? o.n_prompt : o.n_gen);
    if (n_max > m->cfg.ctx_len) {
        snprintf(err, sizeof err,
                 "--n-depth %d plus %d tokens exceeds the model's context length %d", depth,
                 n_max - depth, m->cfg.ctx_len);
        goto fail;
    }
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
    fill_tokens(tok, pos, n_max, m->cfg.vocab_size);
    if (!(p = cli_pool(o.threads, err, sizeof err))) goto fail;
    mm_force_scalar(o.scalar);
    use_cpu_clock = o.cpu_clock;
    int max_tokens = o.n_prompt > 1 ? o.n_prompt : 1;
    if (!(f = fwd_create(m, max_tokens, p, err, sizeof err))) goto fail;
    if (!(kv = kv_create(&m->cfg, n_max + 1, o.kv, err, sizeof err))) goto fail;
    /* the context every run starts from: filled once, untimed; each run truncates back to it */
    if (depth > 0) {
        fwd_batch b = {.n_tokens = depth, .token = tok, .pos = pos, .seq = seq};
        if (fwd_decode(f, &kv, 1, &b, logits, err, sizeof err) != 0) goto fail;
    }
    const int32_t *tok_d = tok + depth, *pos_d = pos + depth;

    /* the probe runs before and after the timed runs; the better figure is kept (on a shared
     * machine the load changes during a run) */
    double bw = o.bw_mib > 0 ? probe_bandwidth(p, (size_t)o.bw_mib << 20) : 0;
    if (timed_runs(&o, f, kv, depth, tok_d, pos_d, seq, logits, pp_s, tg_s, err, sizeof err))
        goto fail;
    double pp, pp_sd, tg, tg_sd;
    mean_sd(pp_s, o.reps, &pp, &pp_sd);
    mean_sd(tg_s, o.reps, &tg, &tg_sd);
    grammar_result gr = {0};
    if (o.grammar && run_grammar(&o, m, f, kv, logits, &gr, err, sizeof err) < 0) goto fail;
    gr.decode_ms = tg > 0 ? 1e3 / tg : 0;
    double bw_after = o.bw_mib > 0 ? probe_bandwidth(p, (size_t)o.bw_mib << 20) : 0;
    if (bw_after > bw) bw = bw_after;
    size_t wbytes = model_weight_bytes(m);
    double roof = bw > 0 ? bw * 1e9 / (double)wbytes : 0; /* tokens per second */
    /* on x86, AVX-512 runs blocks of rows (pp) and Q4_0 decode where the CPU has it */
    const char *kernels = mm_kernels();
    const char *wtype = dtype_name(m->layers[0].wq.type);

    bench_result res = {wtype, kernels, wbytes, pp, pp_sd, tg, tg_sd,
                        bw,    roof,    kv_bytes_per_token(&m->cfg, o.kv),
                        mm_bf16_dot() && m->layers[0].wq.type == DT_BF16, {0}};
    if (o.bw_mib > 0) probe_mapping(p, m, res.mapped);
    if (o.json)
        print_json(&o, &res, &gr);
    else
        print_text(&o, &res, &gr);
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
