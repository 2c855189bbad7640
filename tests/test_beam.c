/* test_beam: beam search (engine/beam.c) on the real kjv-demo model. Width 1 is greedy decoding;
 * wider searches return distinct hypotheses in non-increasing score whose log-probabilities a
 * fresh forward pass over prompt + sequence reproduces; results do not depend on the thread
 * count or on n_best beyond the hypotheses returned; bad parameters are refused. */
#include "beam.h"
#include "check.h"
#include "matmul.h"
#include "common.h"
#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "threadpool.h"
#include "tokenizer.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NEW 20

static double log_softmax_at(const float *row, int V, int id) {
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++)
        max = row[i] > max ? row[i] : max;
    for (int i = 0; i < V; i++)
        sum += exp((double)row[i] - max);
    return (double)row[id] - max - log(sum);
}

/* Greedy decoding with its own loop: prefill, then one fwd_decode per token. Returns the
 * number of tokens (EOS excluded), *ended whether EOS came, *lp the summed log-probabilities
 * (EOS included). */
static int greedy(const model *m, fwd_ctx *f, const int32_t *prompt, int n_prompt, int eos,
                  int max_new, int32_t *out, bool *ended, double *lp) {
    const int V = m->cfg.vocab_size;
    char err[LS_ERR_LEN];
    kv_cache *kv = kv_create(&m->cfg, n_prompt + max_new, KV_F32, err, sizeof err);
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t pos[256], seq[256] = {0};
    for (int i = 0; i < n_prompt; i++)
        pos[i] = i;
    fwd_batch b = {.n_tokens = n_prompt, .token = prompt, .pos = pos, .seq = seq};
    int n = -1;
    *ended = false;
    *lp = 0;
    if (!kv || !logits || fwd_decode(f, &kv, 1, &b, logits, err, sizeof err) != 0) goto done;
    for (n = 0; n < max_new;) {
        int32_t t = sample_greedy(logits, V);
        *lp += log_softmax_at(logits, V, t);
        if (t == eos) {
            *ended = true;
            break;
        }
        out[n++] = t;
        if (n == max_new) break;
        int32_t p = n_prompt + n - 1;
        fwd_batch s = {.n_tokens = 1, .token = &t, .pos = &p, .seq = seq};
        if (fwd_decode(f, &kv, 1, &s, logits, err, sizeof err) != 0) {
            n = -1;
            break;
        }
    }
done:
    kv_free(kv);
    free(logits);
    return n;
}

/* The log-probability of r's tokens (and EOS when it ended there) after prompt, recomputed from
 * scratch: a new cache and one fwd_decode over prompt + sequence with logits for every row. */
static double fresh_logprob(const model *m, fwd_ctx *f, const int32_t *prompt, int n_prompt,
                            const beam_result *r, int eos) {
    const int V = m->cfg.vocab_size;
    int n = n_prompt + r->n_tokens + (r->ended_eos ? 1 : 0);
    char err[LS_ERR_LEN];
    int32_t tok[256], pos[256], seq[256] = {0};
    bool want[256];
    memcpy(tok, prompt, (size_t)n_prompt * sizeof *tok);
    memcpy(tok + n_prompt, r->tokens, (size_t)r->n_tokens * sizeof *tok);
    if (r->ended_eos) tok[n - 1] = eos;
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        want[i] = true;
    }
    kv_cache *kv = kv_create(&m->cfg, n, KV_F32, err, sizeof err);
    float *logits = malloc((size_t)n * V * sizeof *logits);
    fwd_batch b = {.n_tokens = n, .token = tok, .pos = pos, .seq = seq, .logits = want};
    double lp = NAN;
    if (kv && logits && fwd_decode(f, &kv, 1, &b, logits, err, sizeof err) == 0) {
        lp = 0;
        for (int i = n_prompt; i < n; i++)
            lp += log_softmax_at(logits + (size_t)(i - 1) * V, V, tok[i]);
    }
    kv_free(kv);
    free(logits);
    return lp;
}

/* ---- a reference beam search: the rules of beam.h, written plainly, with every beam's logits
 * recomputed from scratch each step (a new cache: the prompt as one batch, then the generated
 * tokens one at a time, as beam_search feeds them). No cache is shared or copied, and there is
 * no early stop: it runs to the length and ranks every finished hypothesis. */
typedef struct {
    int32_t tok[MAX_NEW + 1];
    int n;
    double lp, score;
    bool eos;
} ref_hyp;

typedef struct {
    double lp;
    int parent;
    int32_t token;
} ref_prop;

static int ref_prop_cmp(const void *pa, const void *pb) {
    const ref_prop *a = pa, *b = pb;
    if (a->lp != b->lp) return a->lp > b->lp ? -1 : 1;
    if (a->parent != b->parent) return a->parent < b->parent ? -1 : 1;
    return (a->token > b->token) - (a->token < b->token);
}

static int ref_hyp_cmp(const void *pa, const void *pb) {
    const ref_hyp *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->lp != b->lp) return a->lp > b->lp ? -1 : 1;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    return memcmp(a->tok, b->tok, (size_t)a->n * sizeof *a->tok);
}

/* The logits after prompt + seq (n tokens), into out (V): a new cache, one batch. */
static int ref_logits(const model *m, fwd_ctx *f, const int32_t *prompt, int n_prompt,
                      const int32_t *seq_tok, int n, float *out) {
    char err[LS_ERR_LEN];
    int32_t tok[256], pos[256], seq[256] = {0};
    memcpy(tok, prompt, (size_t)n_prompt * sizeof *tok);
    memcpy(tok + n_prompt, seq_tok, (size_t)n * sizeof *tok);
    for (int i = 0; i < n_prompt + n; i++)
        pos[i] = i;
    kv_cache *kv = kv_create(&m->cfg, n_prompt + n, KV_F32, err, sizeof err);
    fwd_batch b = {.n_tokens = n_prompt + n, .token = tok, .pos = pos, .seq = seq};
    int rc = kv ? fwd_decode(f, &kv, 1, &b, out, err, sizeof err) : -1;
    kv_free(kv);
    return rc;
}

static int ref_cand_cmp(const void *pa, const void *pb) {
    const tok_cand *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Fills out (n_best) like beam_search; returns the count, or -1. */
static int ref_beam(const model *m, fwd_ctx *f, const int32_t *prompt, int n_prompt,
                    const beam_params *bp, ref_hyp *out) {
    const int V = m->cfg.vocab_size, B = bp->width, T = bp->max_new_tokens;
    static ref_hyp live[8], next[8], done[8 * 2 * MAX_NEW + 8];
    static ref_prop props[8 * 16];
    float *logits = malloc((size_t)V * sizeof *logits);
    tok_cand *c = malloc((size_t)V * sizeof *c);
    int n_live = 1, n_done = 0, rc = -1;
    memset(&live[0], 0, sizeof live[0]);
    if (!logits || !c || B > 8 || T > MAX_NEW) goto out;
    for (int t = 0; t < T && n_live > 0; t++) {
        int n_props = 0;
        for (int b = 0; b < n_live; b++) {
            if (ref_logits(m, f, prompt, n_prompt, live[b].tok, live[b].n, logits) != 0) goto out;
            for (int i = 0; i < V; i++)
                c[i] = (tok_cand){.id = i, .logit = logits[i]};
            qsort(c, (size_t)V, sizeof *c, ref_cand_cmp);
            for (int i = 0; i < 2 * B && i < V; i++)
                props[n_props++] =
                    (ref_prop){live[b].lp + log_softmax_at(logits, V, c[i].id), b, c[i].id};
        }
        qsort(props, (size_t)n_props, sizeof *props, ref_prop_cmp);
        int n_next = 0;
        for (int r = 0; r < n_props && n_next < B; r++) {
            ref_hyp h = live[props[r].parent];
            h.lp = props[r].lp;
            if (props[r].token == bp->eos_id) {
                if (r >= B) continue;
                h.eos = true;
                h.score = beam_score(h.lp, h.n + 1, bp->length_penalty);
                done[n_done++] = h;
                continue;
            }
            h.tok[h.n++] = props[r].token;
            next[n_next++] = h;
        }
        for (int j = 0; j < n_next; j++)
            live[j] = next[j];
        n_live = n_next;
    }
    for (int j = 0; j < n_live; j++) {
        live[j].score = beam_score(live[j].lp, live[j].n, bp->length_penalty);
        done[n_done++] = live[j];
    }
    qsort(done, (size_t)n_done, sizeof *done, ref_hyp_cmp);
    rc = n_done < bp->n_best ? n_done : bp->n_best;
    memcpy(out, done, (size_t)rc * sizeof *out);
out:
    free(logits);
    free(c);
    return rc;
}

static bool same_results(const beam_result *a, const beam_result *b, int n) {
    for (int i = 0; i < n; i++) {
        if (a[i].n_tokens != b[i].n_tokens || a[i].ended_eos != b[i].ended_eos ||
            a[i].logprob != b[i].logprob || a[i].score != b[i].score)
            return false;
        if (memcmp(a[i].tokens, b[i].tokens, (size_t)a[i].n_tokens * sizeof *a[i].tokens) != 0)
            return false;
    }
    return true;
}

static bool same_seq(const beam_result *a, const beam_result *b) {
    return a->n_tokens == b->n_tokens && a->ended_eos == b->ended_eos &&
           memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof *a->tokens) == 0;
}

/* Collects streamed tokens; cancels once it holds cancel_at of them (0: never). */
typedef struct {
    int32_t tok[MAX_NEW + 1];
    int n, cancel_at;
} stream_log;

static int on_token(void *ctx, int32_t token) {
    stream_log *l = ctx;
    if (l->n <= MAX_NEW) l->tok[l->n] = token;
    l->n++;
    return l->cancel_at > 0 && l->n >= l->cancel_at;
}

/* BOS + text through the model's tokenizer, or fixed ids when it has none. */
static int encode(const model *m, const char *text, int32_t *out /* (64) */) {
    int n = m->tok ? tok_encode(m->tok, text, strlen(text), true, out, 64) : 0;
    if (n < 2 || n > 64) {
        const int32_t fixed[] = {1, 300, 301, 302, 400, (int32_t)strlen(text) + 500};
        n = 6;
        memcpy(out, fixed, sizeof fixed);
    }
    return n;
}

int main(void) {
    mm_set_inline_macs(0); /* every product through the pool: the thread tests mean it */
    char err[LS_ERR_LEN] = "";
    model *m = model_load(check_model_path("kjv-demo.gguf"), NULL, err, sizeof err);
    CHECK(m != NULL, "model_load: %s", err);
    if (!m) return check_summary();
    const int V = m->cfg.vocab_size;
    int eos = m->tok ? tok_eos(m->tok) : 2;
    if (eos < 0) eos = 2;

    int32_t prompt[64], prompt2[64];
    int n_prompt = encode(m, "And the LORD said unto Moses", prompt);
    int n_prompt2 = encode(m, "In the beginning", prompt2);

    pool *p1 = pool_create(1), *p2 = pool_create(2);
    fwd_ctx *f1 = fwd_create(m, 64, p1, err, sizeof err);
    CHECK(f1 != NULL, "fwd_create: %s", err);
    fwd_ctx *f2 = fwd_create(m, 64, p2, err, sizeof err);
    CHECK(f2 != NULL, "fwd_create (2 threads): %s", err);
    if (!f1 || !f2) goto out;

    /* Width 1 is greedy: same tokens, same ending, same log-probability. */
    {
        int32_t g[MAX_NEW];
        bool g_ended;
        double g_lp;
        int n_g = greedy(m, f1, prompt, n_prompt, eos, MAX_NEW, g, &g_ended, &g_lp);
        CHECK(n_g >= 0, "greedy loop failed");
        beam_params bp;
        beam_params_default(&bp);
        bp.width = 1;
        bp.n_best = 1;
        bp.max_new_tokens = MAX_NEW;
        bp.length_penalty = 0.0f;
        bp.eos_id = eos;
        beam_result r[1];
        int n_out = 0;
        int rc = beam_search(m, f1, prompt, n_prompt, &bp, r, &n_out, err, sizeof err);
        CHECK(rc == 0 && n_out == 1, "width 1: %s", err);
        if (rc == 0 && n_out == 1) {
            CHECK(r[0].n_tokens == n_g && r[0].ended_eos == g_ended, "width 1: %d tokens vs %d",
                  r[0].n_tokens, n_g);
            CHECK(n_g >= 0 && memcmp(r[0].tokens, g, (size_t)n_g * sizeof *g) == 0,
                  "width 1 differs from greedy");
            CHECK(fabs(r[0].logprob - g_lp) < 1e-6, "width 1 logprob %.9g vs greedy %.9g",
                  r[0].logprob, g_lp);
            CHECK(r[0].score == r[0].logprob, "length_penalty 0: score is the logprob");
            beam_results_free(r, 1);
        }

        /* EOS handling, forced: call greedy's first token EOS. Width 1 then finishes at once. */
        if (n_g > 0) {
            bp.eos_id = g[0];
            rc = beam_search(m, f1, prompt, n_prompt, &bp, r, &n_out, err, sizeof err);
            CHECK(rc == 0 && n_out == 1 && r[0].n_tokens == 0 && r[0].ended_eos,
                  "forced EOS: rc %d, %d tokens", rc, rc == 0 ? r[0].n_tokens : -1);
            if (rc == 0) {
                double want = fresh_logprob(m, f1, prompt, n_prompt, &r[0], g[0]);
                CHECK(fabs(r[0].logprob - want) < 1e-4, "forced EOS logprob %g vs %g", r[0].logprob,
                      want);
                beam_results_free(r, n_out);
            }
        }
    }

    /* Width 4: ordered, distinct, log-probabilities reproduced by a fresh pass, the same as the
     * reference search, identical across thread counts. Variant 0: the model's EOS; 1: a frequent
     * token (greedy's third) as EOS, so that finished hypotheses of several lengths compete;
     * 2: another prompt, whose beams fork from every rank (a wrong parent cache shows there). */
    for (int variant = 0; variant < 3; variant++) {
        const int32_t *vp = variant == 2 ? prompt2 : prompt;
        int n_vp = variant == 2 ? n_prompt2 : n_prompt;
        beam_params bp;
        beam_params_default(&bp);
        bp.width = 4;
        bp.n_best = 4;
        bp.max_new_tokens = MAX_NEW;
        bp.length_penalty = 1.0f;
        bp.eos_id = eos;
        if (variant == 1) {
            int32_t g[MAX_NEW];
            bool ended;
            double lp;
            int n_g = greedy(m, f1, vp, n_vp, -1, 3, g, &ended, &lp);
            bp.eos_id = n_g == 3 ? g[2] : eos;
            bp.length_penalty = 0.7f;
        }
        beam_result r[4], r2[4], rb[2];
        int n_out = 0, n_out2 = 0, n_outb = 0;
        stream_log slog = {.n = 0};
        bp.on_token = on_token;
        bp.ctx = &slog;
        int rc = beam_search(m, f1, vp, n_vp, &bp, r, &n_out, err, sizeof err);
        bp.on_token = NULL;
        CHECK(rc == 0 && n_out == 4, "width 4 (variant %d): rc %d n_out %d %s", variant, rc, n_out,
              err);
        if (rc != 0) continue;
        CHECK(slog.n == r[0].n_tokens &&
                  memcmp(slog.tok, r[0].tokens, (size_t)r[0].n_tokens * sizeof *slog.tok) == 0,
              "variant %d: streamed %d tokens, not the best hypothesis (%d)", variant, slog.n,
              r[0].n_tokens);
        bool ordered = true, distinct = true, lengths = true, scores = true, lps = true;
        int n_eos = 0;
        for (int i = 0; i < n_out; i++) {
            if (i) ordered &= r[i].score <= r[i - 1].score;
            for (int j = 0; j < i; j++)
                distinct &= !same_seq(&r[i], &r[j]);
            int len = r[i].n_tokens + (r[i].ended_eos ? 1 : 0);
            lengths &= len >= 1 && len <= MAX_NEW && (r[i].ended_eos || len == MAX_NEW);
            scores &= fabs(r[i].score - r[i].logprob / pow(len, bp.length_penalty)) < 1e-12;
            n_eos += r[i].ended_eos;
            bool no_eos_inside = true;
            for (int k = 0; k < r[i].n_tokens; k++)
                no_eos_inside &= r[i].tokens[k] != bp.eos_id;
            lengths &= no_eos_inside;
            double want = fresh_logprob(m, f1, vp, n_vp, &r[i], bp.eos_id);
            lps &= fabs(r[i].logprob - want) < 1e-4;
            CHECK(fabs(r[i].logprob - want) < 1e-4,
                  "variant %d result %d: logprob %.8g, fresh %.8g", variant, i, r[i].logprob, want);
        }
        CHECK(ordered, "variant %d: scores not non-increasing", variant);
        CHECK(distinct, "variant %d: duplicate hypotheses", variant);
        CHECK(lengths, "variant %d: a hypothesis neither ended at EOS nor at the length", variant);
        CHECK(scores, "variant %d: score is not logprob / len^alpha", variant);
        if (variant == 1) CHECK(n_eos > 0, "forced-EOS variant finished nothing at EOS");
        (void)lps;

        rc = beam_search(m, f2, vp, n_vp, &bp, r2, &n_out2, err, sizeof err);
        CHECK(rc == 0 && n_out2 == n_out && same_results(r, r2, n_out),
              "variant %d: 2 threads differ from 1", variant);
        if (rc == 0) beam_results_free(r2, n_out2);

        /* The reference search: same hypotheses in the same order; the log-probabilities agree
         * to rounding (its logits come from the same kernels on the same rows). */
        ref_hyp want[4];
        int n_ref = ref_beam(m, f1, vp, n_vp, &bp, want);
        CHECK(n_ref == n_out, "variant %d: reference found %d, beam_search %d", variant, n_ref,
              n_out);
        for (int i = 0; i < n_ref && i < n_out; i++) {
            bool same = want[i].n == r[i].n_tokens && want[i].eos == r[i].ended_eos &&
                        memcmp(want[i].tok, r[i].tokens, (size_t)want[i].n * sizeof(int32_t)) == 0;
            CHECK(same && fabs(want[i].lp - r[i].logprob) < 1e-6,
                  "variant %d result %d differs from the reference (lp %.8g vs %.8g)", variant, i,
                  r[i].logprob, want[i].lp);
        }

        /* n_best 2 of width 4: exactly the two best of the n_best 4 search. */
        bp.n_best = 2;
        rc = beam_search(m, f1, vp, n_vp, &bp, rb, &n_outb, err, sizeof err);
        CHECK(rc == 0 && n_outb == 2 && same_results(r, rb, 2),
              "variant %d: n_best 2 is not the top two of n_best 4", variant);
        if (rc == 0) beam_results_free(rb, n_outb);
        beam_results_free(r, n_out);
    }

    /* No EOS: every hypothesis runs to the length. */
    {
        beam_params bp;
        beam_params_default(&bp);
        bp.width = 3;
        bp.n_best = 3;
        bp.max_new_tokens = 6;
        beam_result r[3];
        int n_out = 0;
        int rc = beam_search(m, f2, prompt, n_prompt, &bp, r, &n_out, err, sizeof err);
        CHECK(rc == 0 && n_out == 3, "no EOS: %s", err);
        bool full = true;
        for (int i = 0; rc == 0 && i < n_out; i++)
            full &= r[i].n_tokens == 6 && !r[i].ended_eos;
        CHECK(full, "no EOS: a hypothesis stopped early");
        if (rc == 0) beam_results_free(r, n_out);
    }

    /* The callback cancels: -1, a message, nothing returned (and nothing leaked under ASan). */
    {
        beam_params bp;
        beam_params_default(&bp);
        bp.max_new_tokens = MAX_NEW;
        bp.eos_id = -1;
        stream_log slog = {.n = 0, .cancel_at = 2};
        bp.on_token = on_token;
        bp.ctx = &slog;
        beam_result r[1];
        int n_out = 7;
        err[0] = 0;
        int rc = beam_search(m, f1, prompt2, n_prompt2, &bp, r, &n_out, err, sizeof err);
        CHECK(rc == -1 && n_out == 0 && strstr(err, "cancel") && slog.n == 2,
              "cancel: rc %d n_out %d '%s' after %d tokens", rc, n_out, err, slog.n);
    }

    /* Bad parameters are refused with a message, nothing returned. */
    {
        beam_params ok, bp;
        beam_params_default(&ok);
        ok.max_new_tokens = 4;
        ok.eos_id = eos;
        beam_result r[BEAM_MAX_WIDTH + 1];
        struct {
            const char *what;
            int width, n_best, max_new, eos_id, n_prompt;
        } bad[] = {{"width 0", 0, 1, 4, eos, n_prompt},
                   {"width too big", BEAM_MAX_WIDTH + 1, 1, 4, eos, n_prompt},
                   {"n_best > width", 2, 3, 4, eos, n_prompt},
                   {"n_best 0", 2, 0, 4, eos, n_prompt},
                   {"max_new 0", 2, 1, 0, eos, n_prompt},
                   {"eos out of range", 2, 1, 4, V, n_prompt},
                   {"empty prompt", 2, 1, 4, eos, 0}};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            bp = ok;
            bp.width = bad[i].width;
            bp.n_best = bad[i].n_best;
            bp.max_new_tokens = bad[i].max_new;
            bp.eos_id = bad[i].eos_id;
            int n_out = 7;
            err[0] = 0;
            int rc = beam_search(m, f1, prompt, bad[i].n_prompt, &bp, r, &n_out, err, sizeof err);
            CHECK(rc == -1 && n_out == 0 && err[0] != 0, "%s accepted", bad[i].what);
        }
        /* A bad token id in the prompt surfaces the forward pass's error. */
        int32_t badp[2] = {1, V + 5};
        int n_out = 7;
        err[0] = 0;
        int rc = beam_search(m, f1, badp, 2, &ok, r, &n_out, err, sizeof err);
        CHECK(rc == -1 && n_out == 0 && err[0] != 0, "bad prompt token accepted");
    }

out:
    fwd_free(f1);
    fwd_free(f2);
    pool_destroy(p1);
    pool_destroy(p2);
    model_free(m);
    return check_summary();
}
