/* test_forward: engine/forward.c held to an independent float64 numpy reference
 * (tests/reference/llama_ref.py, written from the LLaMA-2 equations) through the golden files
 * tests/golden/forward-*.txt, which tests/reference/make_golden.py regenerates. Covers every
 * weight type, whole-prompt prefill and token by token, greedy generation, bit-exact determinism
 * (thread count, batching with other sequences, chunking) and the F16 KV cache. argv[1]: the BF16
 * model meson writes at test time with tests/reference/write_gguf.py (skipped when absent).
 *
 * Tolerances: max abs logit error vs the reference over every position of every prompt, whole
 * prompt and token by token. Measured on x86-64, release / debug builds:
 *   weights  measured        bound  note
 *   F32      7.2e-6 / 1.9e-5 1e-4   kjv (.gguf and .bin); issue requirement. stories260K:
 *                                   4.9e-5 / 4.5e-5 (a plain float32 numpy forward: 3.3e-5)
 *   F16      9.5e-6 / 1.7e-5 1e-4   reference on the dequantized weights: F32 rounding only
 *   BF16     8.6e-6 / 1.8e-5 1e-4   likewise
 *   Q8_0     0.109           0.25   the engine quantizes activations to 8-bit blocks for its
 *   Q4_0     0.125           0.3    integer dot products; the plain reference does not
 *   llama.cpp's mixes (Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K): 0.12-0.16, bound
 *   0.3, for the same reason (activation blocks of 32, or 256 for the K-quants and IQ4_XS).
 * Every file is also held, at each prompt's last position, to the reference that quantizes the
 * activations as the engine does (llama_ref.quantize_act: per block d = max|x| / 127 and
 * q = x * (1 / d) in float32, rounded half to even): measured 6.7e-6 to 9.5e-6 (Q8_0, Q4_0,
 * Q4_1, Q5_0, Q2_K, Q3_K_M, Q6_K), bound 1e-4. Q5_1, Q4_K_M and Q5_K_M measure 0.13, 0.049 and
 * 0.054, bound 0.2: in them an activation of the BOS token sits within 3e-6 to 1.5e-5 (in units
 * of the code, i.e. a few float32 ulps) of a rounding tie, which the engine's float32 and the
 * reference's float64 resolve differently, and every prompt starts with BOS. (The quantized
 * token embeddings make such ties common: Q5_0's BOS hits one exactly, which the float32
 * rounding rule above resolves as the engine does.)
 * BF16 with mm_set_bf16_dot (serve's default where the CPU has AVX512_BF16), against the golden's
 * q* records (llama_ref.round_bf16 on the activations of every BF16 matrix): bos and moses within
 * 1e-4; beginning 0.017 and meek 0.0068, bound 0.025: in those two an activation lies exactly on
 * a BF16 rounding tie in float32 (0 float32 ulps from it; bos and moses: 8 and 2), which float32
 * and float64 resolve differently, as the Q5_1 ties above. Against the plain reference 0.034,
 * bound 0.05, and above 1e-3 (the switch took effect; the default path: 1e-5); greedy tokens
 * equal the rounding reference's 200 of 200 (required); bit-identical across threads, batches
 * and chunks. (The plain BF16 run measures 0.0198 from the q* records, bound 0.05.)
 * KV F16 cache vs F32 cache: measured 2.3e-3, bound 5e-3.
 * Greedy 200 tokens: F32 (.gguf == .bin == reference), stories260K, F16 and BF16 equal the
 * reference exactly (required). The quantized files diverge from the plain reference and, after
 * a near-tie somewhere along 200 steps, from the activation-quantized one too (Q8_0 "moses":
 * 41 and 200 tokens agree; Q4_0 32 and 32); reported, not required (greedy margins there are
 * 0.003-0.03, the size of a tie flip).
 * Determinism: logits bit-identical with 1, 2 and 3 threads, batched with other sequences vs
 * alone, and prefill in chunks (the engine's or the caller's) vs whole. */
#include "check.h"
#include "embed.h"
#include "matmul.h"
#include "forward.h"
#include "kv_cache.h"
#include "model.h"
#include "threadpool.h"
#include "x86/x86.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CASES 8
#define MAX_PROMPT 64
#define MAX_GREEDY 256
#define MAX_VOCAB 65536
#define MAX_ROWS 64 /* fwd_create's max_tokens: every prompt fits, so do the batched tests */

/* ---- golden files ------------------------------------------------------------------------- */

typedef struct {
    char name[32];
    int n_tokens;
    int32_t tokens[MAX_PROMPT];
    float *logits; /* (n_tokens, vocab) */
    int n_greedy;
    int32_t greedy[MAX_GREEDY];
    /* Q8_0/Q4_0 only: the reference with activations quantized as the engine does */
    float *qlogits; /* (vocab) at the last prompt position */
    int n_qgreedy;
    int32_t qgreedy[MAX_GREEDY];
} gcase;

typedef struct {
    int vocab;
    int n_cases;
    gcase cases[MAX_CASES];
} golden;

static int parse_ints(char *s, int32_t *out, int max) {
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || n < 0 || n > max) return -1;
    for (long i = 0; i < n; i++) {
        s = end;
        out[i] = (int32_t)strtol(s, &end, 10);
        if (end == s) return -1;
    }
    return (int)n;
}

/* Reads a golden file; 0, or -1 with a message on stderr. */
static int golden_read(golden *g, const char *path) {
    memset(g, 0, sizeof *g);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    static float row[MAX_VOCAB];
    char *line = NULL;
    size_t cap = 0;
    gcase *c = NULL;
    int rc = 0, lineno = 0;
    while (getline(&line, &cap, fp) > 0) {
        lineno++;
        char *arg = strchr(line, ' ');
        arg = arg ? arg + 1 : line + strlen(line);
        if (!strncmp(line, "case ", 5)) {
            if (g->n_cases == MAX_CASES) goto bad;
            c = &g->cases[g->n_cases++];
            snprintf(c->name, sizeof c->name, "%.*s", (int)strcspn(arg, "\n"), arg);
        } else if (!c) {
            continue; /* comments and model lines before the first case */
        } else if (!strncmp(line, "tokens ", 7)) {
            if ((c->n_tokens = parse_ints(arg, c->tokens, MAX_PROMPT)) <= 0) goto bad;
        } else if (!strncmp(line, "greedy ", 7)) {
            if ((c->n_greedy = parse_ints(arg, c->greedy, MAX_GREEDY)) <= 0) goto bad;
        } else if (!strncmp(line, "qgreedy ", 8)) {
            if ((c->n_qgreedy = parse_ints(arg, c->qgreedy, MAX_GREEDY)) <= 0) goto bad;
        } else if (!strncmp(line, "logits ", 7) || !strncmp(line, "qlogits ", 8)) {
            bool q = line[0] == 'q';
            char *s = arg, *end;
            long pos = strtol(s, &end, 10);
            int n = 0;
            for (s = end;; s = end) {
                float v = strtof(s, &end);
                if (end == s) break;
                if (n == MAX_VOCAB) goto bad;
                row[n++] = v;
            }
            if (!g->vocab) g->vocab = n;
            if (n != g->vocab || pos < 0 || pos >= c->n_tokens) goto bad;
            if (q) {
                if (pos != c->n_tokens - 1 || c->qlogits ||
                    !(c->qlogits = malloc((size_t)n * sizeof(float))))
                    goto bad;
                memcpy(c->qlogits, row, (size_t)n * sizeof(float));
                continue;
            }
            if (!c->logits && !(c->logits = calloc((size_t)c->n_tokens * n, sizeof(float))))
                goto bad;
            memcpy(c->logits + pos * n, row, (size_t)n * sizeof(float));
        }
    }
    for (int i = 0; i < g->n_cases; i++)
        if (!g->cases[i].logits) goto bad;
    goto done;
bad:
    fprintf(stderr, "%s:%d: malformed golden file\n", path, lineno);
    rc = -1;
done:
    free(line);
    fclose(fp);
    return rc;
}

static void golden_free(golden *g) {
    for (int i = 0; i < g->n_cases; i++) {
        free(g->cases[i].logits);
        free(g->cases[i].qlogits);
    }
}

/* ---- driving the engine ------------------------------------------------------------------- */

static char err[512];

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN counts as infinitely wrong */
    }
    return m;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i; /* the lowest id on ties, as numpy.argmax */
    return best;
}

/* Runs n tokens of one sequence at positions kv->n.. as one fwd_decode call. all: out gets
 * (n, vocab) logits, one row per token; else out gets the last row only. */
static int run_seq(fwd_ctx *f, kv_cache *kv, const int32_t *tok, int n, bool all, float *out) {
    int32_t pos[MAX_ROWS * 4], seq[MAX_ROWS * 4];
    bool flag[MAX_ROWS * 4];
    if (n > MAX_ROWS * 4) return -1;
    for (int i = 0; i < n; i++) {
        pos[i] = kv->n + i;
        seq[i] = 0;
        flag[i] = all || i == n - 1;
    }
    fwd_batch b = {.n_tokens = n, .token = tok, .pos = pos, .seq = seq, .logits = flag};
    int rc = fwd_decode(f, &kv, 1, &b, out, err, sizeof err);
    if (rc) fprintf(stderr, "fwd_decode: %s\n", err);
    return rc;
}

/* Greedy continuation of prompt: n tokens into out. */
static int run_greedy(fwd_ctx *f, kv_cache *kv, const gcase *c, int vocab, int n, int32_t *out) {
    float *logits = malloc((size_t)vocab * sizeof(float));
    int rc = -1;
    if (!logits) return -1;
    kv_clear(kv);
    if (run_seq(f, kv, c->tokens, c->n_tokens, false, logits)) goto done;
    for (int i = 0; i < n; i++) {
        out[i] = argmax(logits, vocab);
        if (i + 1 < n && run_seq(f, kv, &out[i], 1, false, logits)) goto done;
    }
    rc = 0;
done:
    free(logits);
    return rc;
}

typedef struct {
    model *m;
    pool *p;
    fwd_ctx *f;
    kv_cache *kv;
    golden g;
    int vocab;
} rig;

static int rig_open(rig *r, const char *path, const char *tok, const char *golden_name,
                    int n_threads, kv_type kvt) {
    memset(r, 0, sizeof *r);
    if (golden_read(&r->g, check_test_path(golden_name))) return -1;
    r->m = model_load(path, tok, err, sizeof err);
    CHECK(r->m != NULL, "model_load %s: %s", path, err);
    if (!r->m) return -1;
    r->vocab = r->m->cfg.vocab_size;
    CHECK(r->vocab == r->g.vocab, "%s: vocab %d, golden has %d", path, r->vocab, r->g.vocab);
    r->p = pool_create(n_threads);
    CHECK(r->p != NULL, "pool_create");
    if (!r->p) return -1;
    r->f = fwd_create(r->m, MAX_ROWS, r->p, err, sizeof err);
    CHECK(r->f != NULL, "fwd_create: %s", err);
    r->kv = kv_create(&r->m->cfg, r->m->cfg.ctx_len, kvt, err, sizeof err);
    CHECK(r->kv != NULL, "kv_create: %s", err);
    return r->vocab == r->g.vocab && r->f && r->kv ? 0 : -1;
}

static void rig_close(rig *r) {
    if (r->kv) kv_free(r->kv);
    if (r->f) fwd_free(r->f);
    if (r->p) pool_destroy(r->p);
    if (r->m) model_free(r->m);
    golden_free(&r->g);
}

/* ---- 1 and 2: logits and greedy tokens vs the reference ----------------------------------- */

typedef struct {
    const char *label;
    const char *path;
    const char *tok;    /* tokenizer for a llama2.c checkpoint; NULL for GGUF */
    const char *golden; /* file under tests/ */
    double tol;         /* max abs logit error vs the float64 reference */
    bool greedy_exact;  /* greedy tokens must equal the reference's */
    double qtol;        /* Q8_0/Q4_0: vs the reference that quantizes activations too */
    int n_greedy_cases; /* how many of the golden's greedy continuations to run (time) */
    bool bf16_dot;      /* run with mm_set_bf16_dot(true): greedy tokens must equal qgreedy */
} spec;

/* Logits of every case, whole prompt at once and token by token, against the golden; then the
 * greedy continuations. Fills greedy[case] with the engine's tokens (for cross-file checks). */
static void check_spec(const spec *s, int32_t greedy[MAX_CASES][MAX_GREEDY]) {
    if (s->bf16_dot && !mm_set_bf16_dot(true)) {
        printf("%-22s skipped: this CPU has no AVX512_BF16\n", s->label);
        return;
    }
    rig r;
    if (rig_open(&r, s->path, s->tok, s->golden, 2, KV_F32)) {
        CHECK(0, "%s: cannot set up", s->label);
        rig_close(&r);
        return;
    }
    float *out = malloc((size_t)MAX_PROMPT * r.vocab * sizeof(float));
    double err_whole = 0, err_steps = 0, err_q = -1;
    for (int ci = 0; ci < r.g.n_cases; ci++) {
        const gcase *c = &r.g.cases[ci];
        size_t nv = (size_t)r.vocab;
        kv_clear(r.kv);
        CHECK(run_seq(r.f, r.kv, c->tokens, c->n_tokens, true, out) == 0, "%s", c->name);
        CHECK(r.kv->n == c->n_tokens, "%s: cache holds %d positions after a prefill of %d", c->name,
              r.kv->n, c->n_tokens);
        double e = max_abs_diff(out, c->logits, c->n_tokens * nv);
        CHECK(e < s->tol, "%s %s prefill: max abs err %g >= %g", s->label, c->name, e, s->tol);
        err_whole = fmax(err_whole, e);
        if (c->qlogits) {
            e = max_abs_diff(out + (c->n_tokens - 1) * nv, c->qlogits, nv);
            CHECK(e < s->qtol,
                  "%s %s: max abs err %g >= %g vs the activation-quantized "
                  "reference",
                  s->label, c->name, e, s->qtol);
            err_q = fmax(err_q, e);
        }

        kv_clear(r.kv);
        for (int i = 0; i < c->n_tokens; i++) {
            CHECK(run_seq(r.f, r.kv, &c->tokens[i], 1, false, out) == 0, "%s", c->name);
            e = max_abs_diff(out, c->logits + i * nv, nv);
            CHECK(e < s->tol, "%s %s token %d: max abs err %g >= %g", s->label, c->name, i, e,
                  s->tol);
            err_steps = fmax(err_steps, e);
        }
    }
    printf("%-22s logits max abs err: prefill %.3g, token by token %.3g (bound %g)\n", s->label,
           err_whole, err_steps, s->tol);
    if (s->bf16_dot) /* the switch took effect: the default path is within 1e-5 of the plain one */
        CHECK(err_whole > 1e-3, "%s: logits within %g of the unrounded reference", s->label,
              err_whole);
    if (err_q >= 0)
        printf("%-22s logits max abs err vs the activation-quantized reference: %.3g (bound %g)\n",
               s->label, err_q, s->qtol);

    for (int ci = 0, n_run = 0; ci < r.g.n_cases && n_run < s->n_greedy_cases; ci++) {
        const gcase *c = &r.g.cases[ci];
        if (!c->n_greedy) continue;
        n_run++;
        int32_t *got = greedy[ci];
        int n = c->n_greedy;
        CHECK(run_greedy(r.f, r.kv, c, r.vocab, n, got) == 0, "%s", c->name);
        int same = 0;
        while (same < n && got[same] == c->greedy[same])
            same++;
        printf("%-22s greedy '%s': %d of %d tokens equal the reference%s\n", s->label, c->name,
               same, n, same == n ? "" : " (first divergence)");
        if (s->greedy_exact)
            CHECK(same == n, "%s %s: greedy tokens differ from the reference at %d", s->label,
                  c->name, same);
        if (c->n_qgreedy) {
            int qsame = 0;
            while (qsame < n && got[qsame] == c->qgreedy[qsame])
                qsame++;
            printf("%-22s greedy '%s': %d of %d tokens equal the activation-quantized "
                   "reference\n",
                   s->label, c->name, qsame, n);
            if (s->bf16_dot)
                CHECK(qsame == n, "%s %s: greedy tokens differ from the rounding reference at %d",
                      s->label, c->name, qsame);
        }
    }
    free(out);
    rig_close(&r);
    mm_set_bf16_dot(false);
}

/* ---- 3: determinism ----------------------------------------------------------------------- */

/* The KV cache type of check_threads and check_batching. */
static kv_type test_kvt = KV_F32;

/* Every case's (n_tokens, vocab) prefill logits followed by 8 greedy decode steps' logits, with
 * n_threads threads, into out (a buffer of rows). Returns the number of floats written. */
static size_t trace(const char *path, const char *golden_name, int n_threads, float *out) {
    rig r;
    size_t n = 0;
    if (rig_open(&r, path, NULL, golden_name, n_threads, test_kvt) == 0 && r.vocab <= 1024) {
        for (int ci = 0; ci < r.g.n_cases; ci++) {
            const gcase *c = &r.g.cases[ci];
            kv_clear(r.kv);
            run_seq(r.f, r.kv, c->tokens, c->n_tokens, true, out + n);
            n += (size_t)c->n_tokens * r.vocab;
            for (int step = 0; step < 8; step++) {
                int32_t t = argmax(out + n - r.vocab, r.vocab);
                run_seq(r.f, r.kv, &t, 1, false, out + n);
                n += r.vocab;
            }
        }
    }
    rig_close(&r);
    return n;
}

static void check_threads(const char *path, const char *golden_name, const char *label) {
    size_t cap = (size_t)MAX_CASES * (MAX_PROMPT + 8) * 1024;
    float *a = malloc(cap * sizeof(float)), *b = malloc(cap * sizeof(float));
    size_t na = trace(path, golden_name, 1, a);
    for (int nt = 2; nt <= 3; nt++) {
        size_t nb = trace(path, golden_name, nt, b);
        CHECK(na > 0 && na == nb && !memcmp(a, b, na * sizeof(float)),
              "%s: logits with %d threads are not bit-identical to 1 thread (max diff %g)", label,
              nt, na == nb ? max_abs_diff(a, b, na) : -1.0);
    }
    printf("%-22s 1, 2 and 3 threads: logits bit-identical\n", label);
    free(a);
    free(b);
}

/* Three sequences (cases A, B, C, each with its own cache) in one fwd_decode call, rows
 * interleaved A0 B0 C0 A1 B1 ..., then one batched decode step; each sequence's logits must be
 * bit-identical to running it alone. Also the engine's own chunking (max_tokens 5) and prefill
 * in chunks of different sizes, whose results are reported and held within 1e-5. */
static void check_batching(const char *path, const char *golden_name, const char *label) {
    rig r;
    if (rig_open(&r, path, NULL, golden_name, 2, test_kvt) || r.g.n_cases < 4) {
        CHECK(0, "%s: cannot set up", label);
        rig_close(&r);
        return;
    }
    const int nv = r.vocab;
    const gcase *cs[3] = {&r.g.cases[1], &r.g.cases[2], &r.g.cases[3]};
    kv_cache *kv[3];
    float *alone[3], *step_alone[3];
    for (int s = 0; s < 3; s++) {
        kv[s] = kv_create(&r.m->cfg, r.m->cfg.ctx_len, test_kvt, err, sizeof err);
        alone[s] = malloc((size_t)cs[s]->n_tokens * nv * sizeof(float));
        step_alone[s] = malloc((size_t)nv * sizeof(float));
    }
    int32_t next[3];
    for (int s = 0; s < 3; s++) {
        kv_clear(r.kv);
        run_seq(r.f, r.kv, cs[s]->tokens, cs[s]->n_tokens, true, alone[s]);
        next[s] = argmax(alone[s] + (size_t)(cs[s]->n_tokens - 1) * nv, nv);
        run_seq(r.f, r.kv, &next[s], 1, false, step_alone[s]);
    }

    int32_t tok[MAX_ROWS], pos[MAX_ROWS], seq[MAX_ROWS];
    bool flag[MAX_ROWS];
    int n = 0, row_of[3][MAX_PROMPT];
    for (int i = 0; i < MAX_PROMPT; i++)
        for (int s = 0; s < 3; s++)
            if (i < cs[s]->n_tokens && n < MAX_ROWS) {
                tok[n] = cs[s]->tokens[i];
                pos[n] = i;
                seq[n] = s;
                flag[n] = true;
                row_of[s][i] = n++;
            }
    float *out = malloc((size_t)MAX_ROWS * nv * sizeof(float));
    fwd_batch b = {.n_tokens = n, .token = tok, .pos = pos, .seq = seq, .logits = flag};
    CHECK(fwd_decode(r.f, kv, 3, &b, out, err, sizeof err) == 0, "batched prefill: %s", err);
    bool same = true;
    for (int s = 0; s < 3; s++) {
        CHECK(kv[s]->n == cs[s]->n_tokens, "sequence %d: cache holds %d", s, kv[s]->n);
        for (int i = 0; i < cs[s]->n_tokens; i++)
            same &= !memcmp(out + (size_t)row_of[s][i] * nv, alone[s] + (size_t)i * nv,
                            (size_t)nv * sizeof(float));
    }
    CHECK(same, "%s: batched prefill of 3 sequences is not bit-identical to each alone", label);
    /* one decode step of all three: rows in the order C, A, B to vary it */
    for (int k = 0; k < 3; k++) {
        int s = (k + 2) % 3;
        tok[k] = next[s];
        pos[k] = cs[s]->n_tokens;
        seq[k] = s;
        flag[k] = true;
    }
    b.n_tokens = 3;
    CHECK(fwd_decode(r.f, kv, 3, &b, out, err, sizeof err) == 0, "batched step: %s", err);
    for (int k = 0; k < 3; k++) {
        int s = (k + 2) % 3;
        CHECK(!memcmp(out + (size_t)k * nv, step_alone[s], (size_t)nv * sizeof(float)),
              "%s: batched decode step of sequence %d differs from alone (max %g)", label, s,
              max_abs_diff(out + (size_t)k * nv, step_alone[s], nv));
    }
    printf("%-22s 3 interleaved sequences in one call: logits bit-identical to each alone\n",
           label);

    /* the engine's own chunking: a context of max_tokens 5 given whole prompts */
    fwd_ctx *small = fwd_create(r.m, 5, r.p, err, sizeof err);
    CHECK(small != NULL, "fwd_create(5): %s", err);
    const gcase *c = cs[2]; /* the longest prompt */
    double e_small = 0;
    if (small) {
        kv_clear(r.kv);
        CHECK(run_seq(small, r.kv, c->tokens, c->n_tokens, true, out) == 0, "max_tokens 5");
        e_small = max_abs_diff(out, alone[2], (size_t)c->n_tokens * nv);
        CHECK(e_small < 1e-5, "%s: max_tokens 5 vs whole: %g", label, e_small);
        fwd_free(small);
    }
    /* prefill in chunks of the caller's choosing */
    static const int plans[][8] = {{1, 19, 0}, {3, 7, 10, 0}, {8, 8, 4, 0}, {2, 2, 2, 2, 12, 0}};
    double e_chunks = 0;
    for (size_t pi = 0; pi < sizeof plans / sizeof plans[0]; pi++) {
        kv_clear(r.kv);
        int done = 0;
        for (int k = 0; plans[pi][k] && done < c->n_tokens; k++) {
            int len = plans[pi][k];
            if (done + len > c->n_tokens) len = c->n_tokens - done;
            CHECK(run_seq(r.f, r.kv, c->tokens + done, len, true, out + (size_t)done * nv) == 0,
                  "chunk");
            done += len;
        }
        if (done < c->n_tokens)
            run_seq(r.f, r.kv, c->tokens + done, c->n_tokens - done, true, out + (size_t)done * nv);
        double e = max_abs_diff(out, alone[2], (size_t)c->n_tokens * nv);
        CHECK(e < 1e-5, "%s: prefill in chunks (plan %zu) vs whole: %g", label, pi, e);
        e_chunks = fmax(e_chunks, e);
    }
    printf(
        "%-22s chunked prefill vs whole: max abs diff %g (engine chunks), %g (caller chunks)%s\n",
        label, e_small, e_chunks, e_small == 0 && e_chunks == 0 ? ": bit-identical" : "");

    free(out);
    for (int s = 0; s < 3; s++) {
        kv_free(kv[s]);
        free(alone[s]);
        free(step_alone[s]);
    }
    rig_close(&r);
}

/* ---- 4: the F16 and Q8_0 KV caches -------------------------------------------------------- */

/* The logits of every case of golden_name with a kvt cache: within tol of the F32 cache's, and
 * within ref_tol of ref_golden's (the reference that stores K/V the same way; NULL: none). */
static void check_kv(const char *path, const char *golden_name, kv_type kvt, double tol,
                     const char *ref_golden, double ref_tol) {
    rig a, b;
    golden ref = {0};
    int ok = rig_open(&a, path, NULL, golden_name, 2, KV_F32) == 0 &&
             rig_open(&b, path, NULL, golden_name, 2, kvt) == 0 &&
             (!ref_golden || golden_read(&ref, check_test_path(ref_golden)) == 0);
    CHECK(ok, "KV %s: cannot set up", kv_type_name(kvt));
    if (ok && ref_golden) CHECK(ref.n_cases == a.g.n_cases, "%s: cases", ref_golden);
    double e_ref = 0, e_f32 = 0, e_own = 0;
    if (ok && (!ref_golden || ref.n_cases == a.g.n_cases)) {
        float *x = malloc((size_t)MAX_PROMPT * a.vocab * sizeof(float));
        float *y = malloc((size_t)MAX_PROMPT * a.vocab * sizeof(float));
        for (int ci = 0; ci < a.g.n_cases; ci++) {
            const gcase *c = &a.g.cases[ci];
            size_t n = (size_t)c->n_tokens * a.vocab;
            kv_clear(a.kv);
            kv_clear(b.kv);
            run_seq(a.f, a.kv, c->tokens, c->n_tokens, true, x);
            run_seq(b.f, b.kv, c->tokens, c->n_tokens, true, y);
            e_f32 = fmax(e_f32, max_abs_diff(x, y, n));
            e_ref = fmax(e_ref, max_abs_diff(y, c->logits, n));
            if (ref_golden) e_own = fmax(e_own, max_abs_diff(y, ref.cases[ci].logits, n));
        }
        CHECK(e_f32 < tol, "KV %s vs F32 cache: max abs diff %g >= %g", kv_type_name(kvt), e_f32,
              tol);
        if (ref_golden)
            CHECK(e_own < ref_tol, "KV %s vs %s: max abs diff %g >= %g", kv_type_name(kvt),
                  ref_golden, e_own, ref_tol);
        printf("%-22s KV %s cache: max abs diff %.3g vs the F32 cache (bound %g), %.3g vs the "
               "F32 reference",
               "kjv-demo.gguf", kv_type_name(kvt), e_f32, tol, e_ref);
        if (ref_golden) printf(", %.3g vs its own reference (bound %g)", e_own, ref_tol);
        printf("\n");
        free(x);
        free(y);
    }
    if (ref_golden) golden_free(&ref);
    rig_close(&a);
    rig_close(&b);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void check_errors(const char *path) {
    rig r;
    if (rig_open(&r, path, NULL, "golden/forward-kjv-f32.txt", 1, KV_F32)) {
        rig_close(&r);
        return;
    }
    float *out = malloc((size_t)4 * r.vocab * sizeof(float));
    int32_t tok[2] = {1, 300}, pos[2] = {0, 1}, seq[2] = {0, 0};
    fwd_batch b = {.n_tokens = 1, .token = tok, .pos = pos, .seq = seq, .logits = NULL};
    kv_clear(r.kv);
    tok[0] = r.vocab;
    err[0] = 0;
    CHECK(fwd_decode(r.f, &r.kv, 1, &b, out, err, sizeof err) == -1 && err[0],
          "token id = vocab_size accepted");
    tok[0] = -1;
    CHECK(fwd_decode(r.f, &r.kv, 1, &b, out, err, sizeof err) == -1, "token id -1 accepted");
    tok[0] = 1;
    pos[0] = 1; /* a gap: the cache is empty */
    CHECK(fwd_decode(r.f, &r.kv, 1, &b, out, err, sizeof err) == -1, "position gap accepted");
    pos[0] = 0;
    seq[0] = 1; /* only one cache */
    CHECK(fwd_decode(r.f, &r.kv, 1, &b, out, err, sizeof err) == -1, "bad sequence accepted");
    seq[0] = 0;
    kv_cache *tiny = kv_create(&r.m->cfg, 1, KV_F32, err, sizeof err);
    b.n_tokens = 2;
    CHECK(tiny && fwd_decode(r.f, &tiny, 1, &b, out, err, sizeof err) == -1,
          "position beyond n_ctx accepted");
    if (tiny) kv_free(tiny);
    kv_clear(r.kv);
    CHECK(fwd_decode(r.f, &r.kv, 1, &b, out, err, sizeof err) == 0, "valid batch: %s", err);
    free(out);
    rig_close(&r);
}

/* ---- 5: the fast kernels against their scalar twins --------------------------------------
 * fwd_add_rmsnorm, fwd_swiglu (split over 1-3 threads) and the blockwise attention_rows (SIMD
 * and scalar) must equal add-then-rmsnorm, swiglu and attention_head bit for bit, on sizes that
 * are not multiples of the vector width, the 8-key block or the 8-row query block. */

static uint32_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

static void check_kernels(void) {
    enum { MAXN = 8192 };
    static float x[MAXN], y[MAXN], w[MAXN], ref[MAXN], ref_x[MAXN], out[MAXN], out_x[MAXN];
    int bad = 0, n_cmp = 0;
    for (int nt = 1; nt <= 3; nt++) {
        pool *p = pool_create(nt);
        static const int Ts[] = {1, 2, 3, 7}, Cs[] = {1, 13, 77, 515};
        for (size_t ti = 0; ti < 4; ti++)
            for (size_t ci = 0; ci < 4; ci++)
                for (int with_y = 0; with_y < 2; with_y++) {
                    int T = Ts[ti], C = Cs[ci];
                    for (int i = 0; i < T * C; i++) x[i] = 3 * frand(), y[i] = frand();
                    for (int i = 0; i < C; i++) w[i] = frand();
                    memcpy(ref_x, x, (size_t)T * C * sizeof(float));
                    if (with_y)
                        for (int i = 0; i < T * C; i++) ref_x[i] += y[i];
                    rmsnorm(ref, ref_x, w, T, C, 1e-5f);
                    fwd_add_rmsnorm(out_x, out, x, with_y ? y : NULL, w, T, C, 1e-5f, p);
                    bad += memcmp(out, ref, (size_t)T * C * sizeof(float)) != 0 ||
                           memcmp(out_x, ref_x, (size_t)T * C * sizeof(float)) != 0;
                    n_cmp++;
                }
        static const int ns[] = {1, 15, 17, 100, 1001, 4093};
        for (size_t ni = 0; ni < 6; ni++) {
            int n = ns[ni];
            for (int i = 0; i < n; i++) x[i] = 8 * frand(), y[i] = frand();
            swiglu(ref, x, y, n);
            memcpy(out, x, (size_t)n * sizeof(float));
            fwd_swiglu(out, out, y, (size_t)n, p); /* in place, as fwd_decode does */
            bad += memcmp(out, ref, (size_t)n * sizeof(float)) != 0;
            n_cmp++;
        }
        pool_destroy(p);
    }
    CHECK(bad == 0, "fwd_add_rmsnorm / fwd_swiglu differ from the scalar twins in %d of %d cases",
          bad, n_cmp);

    int abad = 0, a_cmp = 0;
    enum { CTX = 160 }; /* cache positions: pos0 + (nq - 1) / rep < CTX */
    /* head dims off the vector widths, and (multiples of 16 up to 128) the AVX-512 path's */
    static const int hds[] = {4, 20, 36, 72, 48, 80}, hds_q8[] = {32, 64, 96, 128, 160, 192};
    /* mode 0: scalar; 1: the AVX2 helpers; 2: the AVX-512 block (where the CPU has it) */
    for (int mode = 0; mode < 3; mode++) {
        mm_force_scalar(mode == 0);
        mm_avx512_allow(mode == 2);
        for (int type = 0; type < 3; type++) /* KV_F32, KV_F16, KV_Q8_0 */
            for (size_t hi = 0; hi < 6; hi++) {
                int hd = type == KV_Q8_0 ? hds_q8[hi] : hds[hi];
                model_config c = {.dim = 3 * hd, .n_layers = 2, .n_heads = 3, .n_kv_heads = 3,
                                  .head_dim = hd, .rope_dim = hd};
                kv_cache *kv = kv_create(&c, CTX, (kv_type)type, err, sizeof err);
                if (!kv) {
                    CHECK(0, "kv_create: %s", err);
                    continue;
                }
                int kv_dim = kv->kv_dim;
                static float kr[3 * 192], vr[3 * 192];
                for (int l = 0; l < 2 && type == KV_Q8_0; l++)
                    for (int t = 0; t < CTX; t++) {
                        for (int i = 0; i < kv_dim; i++) kr[i] = 2 * frand(), vr[i] = frand();
                        for (int h = 0; h < 3; h++) {
                            quantize_row_q8_0(kv_k_head(kv, l, h, t), kr + h * hd, hd);
                            quantize_row_q8_0(kv_v_head(kv, l, h, t), vr + h * hd, hd);
                        }
                    }
                for (int l = 0; l < 2 && type != KV_Q8_0; l++)
                    for (int t = 0; t < CTX; t++)
                        for (int i = 0; i < kv_dim; i++) {
                            float k = 2 * frand(), v = frand();
                            void *kh = kv_k_head(kv, l, i / hd, t);
                            void *vh = kv_v_head(kv, l, i / hd, t);
                            if (type) {
                                ((uint16_t *)kh)[i % hd] = f32_to_f16(k);
                                ((uint16_t *)vh)[i % hd] = f32_to_f16(v);
                            } else {
                                ((float *)kh)[i % hd] = k;
                                ((float *)vh)[i % hd] = v;
                            }
                        }
                /* rep 1: consecutive rows; 3 and 8: query heads sharing a position, as
                 * prefill groups them; 40 rows take a second call (32 + 8, 30 + 10); 8 rows of
                 * rep 8 at 117: a decode item of the TinyLlama shape past many blocks */
                static const int pos0s[] = {0, 3, 8, 21, 117}, nqs[] = {1, 5, 8, 11, 40};
                static const int reps[] = {1, 3, 8};
                for (size_t pi = 0; pi < 5; pi++)
                    for (size_t qi = 0; qi < 15; qi++) {
                        int pos0 = pos0s[pi], nq = nqs[qi % 5], rep = reps[qi / 5];
                        int stride = hd + 3;
                        for (int i = 0; i < nq * stride; i++) x[i] = frand();
                        attention_rows(out, x, (size_t)stride, nq, rep, kv, 1, 2, pos0, hd);
                        for (int r = 0; r < nq; r++) {
                            attention_head(ref, x + r * stride, kv, 1, 2, pos0 + r / rep + 1,
                                           hd);
                            abad += memcmp(ref, out + r * stride, (size_t)hd * sizeof(float)) != 0;
                            a_cmp++;
                        }
                    }
                kv_free(kv);
            }
    }
    mm_force_scalar(false);
    mm_avx512_allow(true);
    CHECK(abad == 0, "attention_rows differs from attention_head in %d of %d rows", abad, a_cmp);
    printf("%-22s fwd_add_rmsnorm, fwd_swiglu (1-3 threads) and blockwise attention (AVX-512, "
           "AVX2 and scalar, KV F32/F16/Q8_0): bit-identical to the scalar twins (%d + %d cases)\n",
           "kernels", n_cmp, a_cmp);
}

/* attn_exp, attention's own exp, against the C library's exp in double: within 2 ulp (of the
 * float result) from -87 to 88 on a dense sweep and on every float of [-1, 0] at steps of 2^-20,
 * exactly 1 at 0, 0 below -87 and for -INFINITY, NaN for NaN. */
static void check_attn_exp(void) {
    double worst = 0.0;
    float worst_x = 0.0f;
    int n = 0;
    for (int k = 0; k <= 2000000 + (1 << 20); k++) {
        float x = k <= 2000000 ? -87.0f + 175.0f * (float)k / 2000000.0f
                               : -(float)(k - 2000001) / (float)(1 << 20);
        double want = exp((double)x), got = (double)attn_exp(x);
        /* the float result's ulp (2^(e - 23) for a result in [2^e, 2^(e + 1))) */
        int e;
        frexp(want, &e);
        double ulp = ldexp(1.0, e - 24), err = fabs(got - want) / ulp;
        if (err > worst) worst = err, worst_x = x;
        n++;
    }
    CHECK(worst <= 2.0, "attn_exp is %.2f ulp from exp at x = %.9g", worst, (double)worst_x);
    CHECK(attn_exp(0.0f) == 1.0f && attn_exp(-0.0f) == 1.0f, "attn_exp(0) = %.9g",
          (double)attn_exp(0.0f));
    CHECK(attn_exp(-87.5f) == 0.0f && attn_exp(-INFINITY) == 0.0f && isnan(attn_exp(NAN)),
          "attn_exp below -87 / of -inf / of NaN: %g %g %g", (double)attn_exp(-87.5f),
          (double)attn_exp(-INFINITY), (double)attn_exp(NAN));
    printf("%-22s within %.2f ulp of exp over %d points of [-87, 88]\n", "attn_exp", worst, n);
}

/* ---- final hidden states (embeddings) ----------------------------------------------------- */

/* fwd_batch.hidden: the states come out in batch order, asking for them changes no logit bit,
 * they are the same bits whether the sequence runs alone or beside another one, and they are
 * what the output matrix turns into the logits (F32 model: the product within 1e-4). */
static void check_hidden(const char *path, const char *golden_name) {
    rig r;
    if (rig_open(&r, path, NULL, golden_name, 2, KV_F32) || r.g.n_cases < 3) {
        CHECK(0, "hidden: cannot set up");
        rig_close(&r);
        return;
    }
    const int nv = r.vocab, dim = r.m->cfg.dim;
    const gcase *a = &r.g.cases[1], *o = &r.g.cases[2];
    kv_cache *kv2 = kv_create(&r.m->cfg, r.m->cfg.ctx_len, KV_F32, err, sizeof err);
    float *plain = malloc((size_t)a->n_tokens * nv * sizeof(float));
    float *lg = malloc((size_t)MAX_ROWS * nv * sizeof(float));
    float *alone = malloc((size_t)a->n_tokens * dim * sizeof(float));
    float *mixed = malloc((size_t)MAX_ROWS * dim * sizeof(float));
    float *wrow = malloc((size_t)dim * sizeof(float));
    int32_t pos[MAX_ROWS], seq[MAX_ROWS], tok[MAX_ROWS];
    bool all[MAX_ROWS], want[MAX_ROWS];
    kv_clear(r.kv);
    run_seq(r.f, r.kv, a->tokens, a->n_tokens, true, plain);
    for (int i = 0; i < a->n_tokens; i++)
        pos[i] = i, seq[i] = 0, all[i] = true;
    fwd_batch b = {.n_tokens = a->n_tokens, .token = a->tokens, .pos = pos, .seq = seq,
                   .logits = all, .hidden = all, .hidden_out = alone};
    kv_clear(r.kv);
    CHECK(fwd_decode(r.f, &r.kv, 1, &b, lg, err, sizeof err) == 0, "hidden: %s", err);
    CHECK(!memcmp(lg, plain, (size_t)a->n_tokens * nv * sizeof(float)),
          "hidden: asking for the states changed the logits");
    double worst = 0;
    for (int t = 0; t < a->n_tokens; t++)
        for (int v = 0; v < nv; v++) {
            dequantize_row(wrow, tensor_row(&r.m->output, v), r.m->output.type, dim);
            double dot = 0;
            for (int i = 0; i < dim; i++)
                dot += (double)alone[(size_t)t * dim + i] * wrow[i];
            double d = fabs(dot - plain[(size_t)t * nv + v]);
            if (!(d <= worst)) worst = d;
        }
    CHECK(worst < 1e-4, "hidden: output matrix x states differs from the logits by %g", worst);
    /* interleaved with sequence 1 (whose rows are not asked for), in one batch */
    int n = 0;
    for (int i = 0; i < MAX_PROMPT && n < MAX_ROWS - 1; i++) {
        if (i < o->n_tokens) tok[n] = o->tokens[i], pos[n] = i, seq[n] = 1, want[n] = false, n++;
        if (i < a->n_tokens) tok[n] = a->tokens[i], pos[n] = i, seq[n] = 0, want[n] = true, n++;
    }
    kv_cache *kvs[2] = {r.kv, kv2};
    fwd_batch bm = {.n_tokens = n, .token = tok, .pos = pos, .seq = seq, .hidden = want,
                    .hidden_out = mixed};
    kv_clear(r.kv);
    CHECK(kv2 && fwd_decode(r.f, kvs, 2, &bm, lg, err, sizeof err) == 0, "hidden mix: %s", err);
    CHECK(!memcmp(mixed, alone, (size_t)a->n_tokens * dim * sizeof(float)),
          "hidden: states differ when batched with another sequence");
    free(plain), free(lg), free(alone), free(mixed), free(wrow);
    kv_free(kv2);
    rig_close(&r);
}

/* embed.c on vectors whose answers are known by hand. */
static void check_pooling(void) {
    const float rows[3][2] = {{3, 0}, {0, 4}, {6, 8}};
    double acc[2];
    float out[2];
    embd_reset(acc, 2);
    for (int i = 0; i < 3; i++)
        embd_add(acc, rows[i], 2, EMBD_POOL_MEAN);
    embd_finish(out, acc, 3, 2, EMBD_POOL_MEAN); /* mean (3, 4): norm 5 */
    CHECK(fabsf(out[0] - 0.6f) < 1e-7f && fabsf(out[1] - 0.8f) < 1e-7f, "mean %g %g", out[0],
          out[1]);
    embd_reset(acc, 2);
    for (int i = 0; i < 3; i++)
        embd_add(acc, rows[i], 2, EMBD_POOL_LAST);
    embd_finish(out, acc, 3, 2, EMBD_POOL_LAST); /* (6, 8): norm 10 */
    CHECK(fabsf(out[0] - 0.6f) < 1e-7f && fabsf(out[1] - 0.8f) < 1e-7f, "last %g %g", out[0],
          out[1]);
    const float zero[2] = {0, 0};
    embd_reset(acc, 2);
    embd_add(acc, zero, 2, EMBD_POOL_MEAN);
    embd_finish(out, acc, 1, 2, EMBD_POOL_MEAN);
    CHECK(out[0] == 0.0f && out[1] == 0.0f, "a zero vector stays zero");
}

int main(int argc, char **argv) {
    mm_set_inline_macs(0); /* every product through the pool: the thread tests mean it */
    const char *bf16 = argc > 1 ? argv[1] : NULL;
    char kjv_gguf[1024], kjv_bin[1024];
    snprintf(kjv_gguf, sizeof kjv_gguf, "%s", check_model_path("kjv-demo.gguf"));
    snprintf(kjv_bin, sizeof kjv_bin, "%s", check_model_path("kjv-demo.bin"));

    /* Bounds: see the table at the top. */
#define MIX(t, qtol)                                                                               \
    {"kjv-demo-" t ".gguf", check_model_path("kjv-demo-" t ".gguf"), NULL,                         \
     "golden/forward-kjv-" t ".txt", 0.3, false, qtol, 1, false}
    const spec specs[] = {
        {"kjv-demo.gguf F32", kjv_gguf, NULL, "golden/forward-kjv-f32.txt", 1e-4, true, 0, 2,
         false},
        {"kjv-demo.bin F32", kjv_bin, check_model_path("kjv-demo-tokenizer.bin"),
         "golden/forward-kjv-f32.txt", 1e-4, true, 0, 2, false},
        {"stories260K.bin F32", check_model_path("stories260K.bin"),
         check_model_path("stories260K-tok512-placeholder.bin"), "golden/forward-stories260K.txt",
         1e-4, true, 0, 2, false},
        {"kjv-demo-f16.gguf", check_model_path("kjv-demo-f16.gguf"), NULL,
         "golden/forward-kjv-f16.txt", 1e-4, true, 0, 1, false},
        {"kjv-demo-bf16.gguf", bf16, NULL, "golden/forward-kjv-bf16.txt", 1e-4, true, 0.05, 1,
         false},
        {"kjv-demo-bf16 bf16-dot", bf16, NULL, "golden/forward-kjv-bf16.txt", 0.05, false, 0.025,
         1, true},
        {"kjv-demo-q8_0.gguf", check_model_path("kjv-demo-q8_0.gguf"), NULL,
         "golden/forward-kjv-q8_0.txt", 0.25, false, 1e-4, 1, false},
        {"kjv-demo-q4_0.gguf", check_model_path("kjv-demo-q4_0.gguf"), NULL,
         "golden/forward-kjv-q4_0.txt", 0.3, false, 1e-4, 1, false},
        /* llama.cpp's mixes: see the table at the top */
        MIX("q4_1", 1e-4), MIX("q5_0", 1e-4), MIX("q2_k", 1e-4), MIX("q3_k_m", 1e-4),
        MIX("q6_k", 1e-4), MIX("q5_1", 0.2), MIX("q4_k_m", 0.2), MIX("q5_k_m", 0.2),
    };
    static int32_t greedy[sizeof specs / sizeof specs[0]][MAX_CASES][MAX_GREEDY];
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        if (!specs[i].path) {
            printf("%-22s skipped: no BF16 model path given (meson passes one)\n", specs[i].label);
            continue;
        }
        check_spec(&specs[i], greedy[i]);
    }
    /* the same weights as GGUF and as a llama2.c checkpoint: the same tokens */
    CHECK(!memcmp(greedy[0], greedy[1], sizeof greedy[0]),
          "kjv-demo.gguf and kjv-demo.bin give different greedy tokens");

    check_threads(kjv_gguf, "golden/forward-kjv-f32.txt", "kjv-demo.gguf F32");
    check_threads(check_model_path("kjv-demo-q4_0.gguf"), "golden/forward-kjv-q4_0.txt",
                  "kjv-demo-q4_0.gguf");
    check_batching(kjv_gguf, "golden/forward-kjv-f32.txt", "kjv-demo.gguf F32");
    check_batching(check_model_path("kjv-demo-q8_0.gguf"), "golden/forward-kjv-q8_0.txt",
                   "kjv-demo-q8_0.gguf");
    check_threads(check_model_path("kjv-demo-q4_k_m.gguf"), "golden/forward-kjv-q4_k_m.txt",
                  "kjv-demo-q4_k_m.gguf");
    check_batching(check_model_path("kjv-demo-q4_k_m.gguf"), "golden/forward-kjv-q4_k_m.txt",
                   "kjv-demo-q4_k_m.gguf");
    if (bf16 && mm_set_bf16_dot(true)) { /* --bf16-dot keeps the promise too */
        check_threads(bf16, "golden/forward-kjv-bf16.txt", "kjv-demo-bf16 bf16-dot");
        check_batching(bf16, "golden/forward-kjv-bf16.txt", "kjv-demo-bf16 bf16-dot");
        mm_set_bf16_dot(false);
    }
    check_kv(kjv_gguf, "golden/forward-kjv-f32.txt", KV_F16, 5e-3, NULL, 0);
    /* Q8_0: 0.075 from the F32 cache here; 0.031 from the reference that quantizes K/V the same
     * way. Not closer because the engine's F32 keys and the float64 reference's differ in their
     * last bits, so a few of the ~30,000 quantized values sit on the other side of a rounding
     * step (one step: max|block| / 127). The bound is 1.6x what we see. */
    check_kv(kjv_gguf, "golden/forward-kjv-f32.txt", KV_Q8_0, 0.2,
             "golden/forward-kjv-f32-kv-q8_0.txt", 0.05);
    test_kvt = KV_Q8_0; /* the same bits whatever the thread count and batch, with Q8_0 too */
    check_threads(kjv_gguf, "golden/forward-kjv-f32.txt", "kjv F32, KV Q8_0");
    check_batching(kjv_gguf, "golden/forward-kjv-f32.txt", "kjv F32, KV Q8_0");
    test_kvt = KV_F32;
    check_errors(kjv_gguf);
    check_hidden(kjv_gguf, "golden/forward-kjv-f32.txt");
    check_pooling();
    check_kernels();
    check_attn_exp();
    return check_summary();
}
