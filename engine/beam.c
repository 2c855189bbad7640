/* beam: beam search (the rules are in beam.h). A beam_state owns one search's ranking: the
 * proposal list, the token histories of live beams and finished hypotheses, all allocated
 * before the first step, so that beam_step allocates nothing. It never sees a KV cache: its
 * driver (beam_search below, or the server's scheduler) runs the forward pass and moves caches.
 * Never touches the sampler's RNG: beam search is deterministic by construction. */
#include "beam.h"

#include "common.h"
#include "sampler.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double logprob; /* cumulative, of the tokens after the prompt */
    int parent;     /* index of the live beam it extends */
    int32_t token;
} beam_prop;

typedef struct {
    double logprob; /* cumulative, of the tokens after the prompt */
    int parent;     /* while being formed: the live beam it extends */
    int32_t token;  /* while being formed: its newest token */
} beam_live;

typedef struct {
    int32_t *tokens; /* (max_new_tokens) */
    int n_tokens;
    double logprob, score;
    bool ended_eos;
} beam_hyp;

/* Everything one search needs, sized once. */
struct beam_state {
    int B, V, max_new;
    int eos_id;
    const tokenizer *tok; /* its other end-of-generation ids end a hypothesis too; may be NULL */
    tok_cand *cands;  /* (V) for the top-2B selection of one beam */
    beam_prop *props; /* (B * 2B) */
    beam_live live[BEAM_MAX_WIDTH], next[BEAM_MAX_WIDTH];
    int n_live;        /* live beams; 0 once the search has ended */
    int t;             /* tokens every live beam holds */
    int32_t *tok_live; /* (B, max_new) tokens of live beam b, row b */
    int32_t *tok_next; /* (B, max_new) */
    beam_hyp *hyps;    /* (n_best) finished hypotheses, unordered until done */
    int n_hyps, n_best;
    float alpha;
    int n_final; /* tokens of the best result already certain */
    bool done;
};

void beam_params_default(beam_params *p) {
    memset(p, 0, sizeof *p);
    p->width = 4;
    p->n_best = 1;
    p->max_new_tokens = 64;
    p->length_penalty = 1.0f;
    p->eos_id = -1;
    p->kv_type = KV_F32;
}

double beam_score(double logprob, int len, float length_penalty) {
    if (len < 1) len = 1;
    if (length_penalty == 0.0f) return logprob;
    return logprob / pow((double)len, (double)length_penalty);
}

/* Ranking of proposals: higher cumulative logprob, then the older (lower-index) beam, then the
 * lower token id. */
static int prop_cmp(const void *pa, const void *pb) {
    const beam_prop *a = pa, *b = pb;
    if (a->logprob != b->logprob) return a->logprob > b->logprob ? -1 : 1;
    if (a->parent != b->parent) return a->parent < b->parent ? -1 : 1;
    return (a->token > b->token) - (a->token < b->token);
}

/* Order of the results: score, then logprob (both descending), then shorter, then tokens. */
static int hyp_cmp(const void *pa, const void *pb) {
    const beam_hyp *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->logprob != b->logprob) return a->logprob > b->logprob ? -1 : 1;
    if (a->n_tokens != b->n_tokens) return a->n_tokens < b->n_tokens ? -1 : 1;
    for (int i = 0; i < a->n_tokens; i++)
        if (a->tokens[i] != b->tokens[i]) return a->tokens[i] < b->tokens[i] ? -1 : 1;
    return 0;
}

/* The finished hypothesis that the next better one would replace; -1 while there is room. */
static int hyp_worst(const beam_state *s) {
    if (s->n_hyps < s->n_best) return -1;
    int w = 0;
    for (int i = 1; i < s->n_hyps; i++)
        if (hyp_cmp(&s->hyps[i], &s->hyps[w]) > 0) w = i;
    return w;
}

/* Offers a finished hypothesis: tokens (n) of the live beam plus nothing (the EOS, if any, is
 * counted by ended_eos). Kept when there is room or it beats the worst kept one. */
static void hyp_offer(beam_state *s, const int32_t *tokens, int n, double logprob, bool ended_eos) {
    beam_hyp h = {
        .tokens = (int32_t *)tokens, .n_tokens = n, .logprob = logprob, .ended_eos = ended_eos};
    h.score = beam_score(logprob, n + (ended_eos ? 1 : 0), s->alpha);
    int slot = hyp_worst(s);
    if (slot < 0)
        slot = s->n_hyps++;
    else if (hyp_cmp(&h, &s->hyps[slot]) >= 0)
        return;
    beam_hyp *d = &s->hyps[slot];
    memcpy(d->tokens, tokens, (size_t)n * sizeof *tokens);
    d->n_tokens = n;
    d->logprob = logprob;
    d->score = h.score;
    d->ended_eos = ended_eos;
}

/* The best score a live beam of n_tok tokens and log-probability lp could still finish with:
 * its logprob can only fall, and it finishes with a length in [n_tok + 1, max_new]. */
static double live_bound(const beam_state *s, double lp, int n_tok) {
    double a = beam_score(lp, n_tok + 1, s->alpha), b = beam_score(lp, s->max_new, s->alpha);
    return a > b ? a : b;
}

void beam_state_free(beam_state *s) {
    if (!s) return;
    free(s->cands);
    free(s->props);
    free(s->tok_live);
    free(s->tok_next);
    if (s->hyps)
        for (int i = 0; i < s->n_best; i++)
            free(s->hyps[i].tokens);
    free(s->hyps);
    free(s);
}

static int check_params(const model *m, const beam_params *p, char *err, size_t errlen) {
    if (!m || !p) return ls_fail(err, errlen, "beam: missing model or params");
    if (p->width < 1 || p->width > BEAM_MAX_WIDTH)
        return ls_fail(err, errlen, "beam: width %d outside 1..%d", p->width, BEAM_MAX_WIDTH);
    if (p->n_best < 1 || p->n_best > p->width)
        return ls_fail(err, errlen, "beam: n_best %d outside 1..width (%d)", p->n_best, p->width);
    if (p->max_new_tokens < 1)
        return ls_fail(err, errlen, "beam: max_new_tokens %d must be at least 1",
                       p->max_new_tokens);
    if (p->eos_id < -1 || p->eos_id >= m->cfg.vocab_size)
        return ls_fail(err, errlen, "beam: eos_id %d outside the vocabulary", p->eos_id);
    if (!isfinite(p->length_penalty))
        return ls_fail(err, errlen, "beam: length_penalty is not finite");
    return 0;
}

beam_state *beam_state_create(const model *m, const beam_params *p, char *err, size_t errlen) {
    if (check_params(m, p, err, errlen) != 0) return NULL;
    beam_state *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->B = p->width;
    s->V = m->cfg.vocab_size;
    s->max_new = p->max_new_tokens;
    s->eos_id = p->eos_id;
    s->tok = m->tok;
    s->n_best = p->n_best;
    s->alpha = p->length_penalty;
    size_t B = (size_t)s->B, V = (size_t)s->V, T = (size_t)s->max_new;
    s->cands = malloc(V * sizeof *s->cands);
    s->props = malloc(B * 2 * B * sizeof *s->props);
    s->tok_live = malloc(B * T * sizeof *s->tok_live);
    s->tok_next = malloc(B * T * sizeof *s->tok_next);
    s->hyps = calloc((size_t)s->n_best, sizeof *s->hyps);
    if (!s->cands || !s->props || !s->tok_live || !s->tok_next || !s->hyps) goto oom;
    for (int i = 0; i < s->n_best; i++)
        if (!(s->hyps[i].tokens = malloc(T * sizeof *s->hyps[i].tokens))) goto oom;
    s->n_live = 1; /* the prompt: no token yet, log-probability 0 */
    s->live[0] = (beam_live){.logprob = 0.0};
    return s;
oom:
    beam_state_free(s);
    ls_fail(err, errlen, "beam: out of memory");
    return NULL;
}

/* Proposals of live beam b from its logits row (V): its 2B best next tokens. Returns how many
 * were appended. */
static int propose(beam_state *s, int b, const float *row, beam_prop *out) {
    double max = -INFINITY, sum = 0.0;
    for (int i = 0; i < s->V; i++)
        if (row[i] > max) max = row[i];
    for (int i = 0; i < s->V; i++)
        sum += exp((double)row[i] - max);
    double lse = max + log(sum);
    for (int i = 0; i < s->V; i++)
        s->cands[i] = (tok_cand){.id = i, .logit = row[i]};
    int k = sampler_top_k(s->cands, s->V, 2 * s->B);
    for (int i = 0; i < k; i++)
        out[i] = (beam_prop){.logprob = s->live[b].logprob + ((double)s->cands[i].logit - lse),
                             .parent = b,
                             .token = s->cands[i].id};
    return k;
}

static bool is_eos(const beam_state *s, int32_t token) {
    return token == s->eos_id || (s->eos_id >= 0 && s->tok && tok_is_eog(s->tok, token));
}

/* Walks the ranked proposals (n_props): EOS among the first B finishes a hypothesis, every
 * other proposal becomes a next beam (tokens in tok_next) until B are live. Returns how many. */
static int rank_next(beam_state *s, int n_props) {
    const int B = s->B, T = s->max_new, t = s->t;
    int n_next = 0;
    for (int r = 0; r < n_props && n_next < B; r++) {
        const beam_prop *c = &s->props[r];
        const int32_t *ptoks = s->tok_live + (size_t)c->parent * T;
        if (is_eos(s, c->token)) {
            if (r < B) hyp_offer(s, ptoks, t, c->logprob, true);
            continue;
        }
        int32_t *ntoks = s->tok_next + (size_t)n_next * T;
        memcpy(ntoks, ptoks, (size_t)t * sizeof *ntoks);
        ntoks[t] = c->token;
        s->next[n_next++] =
            (beam_live){.logprob = c->logprob, .parent = c->parent, .token = c->token};
    }
    return n_next;
}

/* Advances n_final over the tokens that every next beam (n_next of them, t + 1 tokens each)
 * and every kept hypothesis now agree on. The set only ever narrows to descendants, so the
 * common prefix only grows. */
static void grow_common(beam_state *s, int n_next) {
    if (n_next == 0) return;
    const int32_t *best = s->tok_next; /* row 0 */
    int limit = s->t + 1;
    for (int h = 0; h < s->n_hyps; h++)
        if (s->hyps[h].n_tokens < limit) limit = s->hyps[h].n_tokens;
    for (; s->n_final < limit; s->n_final++) {
        int k = s->n_final;
        for (int j = 1; j < n_next; j++)
            if (s->tok_next[(size_t)j * s->max_new + k] != best[k]) return;
        for (int h = 0; h < s->n_hyps; h++)
            if (s->hyps[h].tokens[k] != best[k]) return;
    }
}

/* Ends the search: the hypotheses in result order, the best one final. */
static void finish(beam_state *s) {
    qsort(s->hyps, (size_t)s->n_hyps, sizeof *s->hyps, hyp_cmp);
    if (s->n_hyps > 0) s->n_final = s->hyps[0].n_tokens;
    s->n_live = 0;
    s->done = true;
}

int beam_step(beam_state *s, const float *const *logits, beam_next *next) {
    assert(!s->done && s->n_live > 0);
    const int T = s->max_new;
    int n_props = 0;
    for (int b = 0; b < s->n_live; b++)
        n_props += propose(s, b, logits[b], s->props + n_props);
    qsort(s->props, (size_t)n_props, sizeof *s->props, prop_cmp);
    int n_next = rank_next(s, n_props);
    grow_common(s, n_next);
    next->n_live = 0;
    if (s->t + 1 == T || n_next == 0) { /* out of room: the live beams finish as they are */
        for (int j = 0; j < n_next; j++)
            hyp_offer(s, s->tok_next + (size_t)j * T, s->t + 1, s->next[j].logprob, false);
        finish(s);
        return 0;
    }
    int worst = hyp_worst(s); /* next[0] is the best live beam: can it still win? */
    if (worst >= 0 && live_bound(s, s->next[0].logprob, s->t + 1) <= s->hyps[worst].score) {
        finish(s);
        return 0;
    }
    next->n_live = n_next;
    for (int j = 0; j < n_next; j++) {
        next->parent[j] = s->next[j].parent;
        next->token[j] = s->next[j].token;
    }
    memcpy(s->live, s->next, (size_t)n_next * sizeof *s->live);
    int32_t *swap = s->tok_live;
    s->tok_live = s->tok_next;
    s->tok_next = swap;
    s->n_live = n_next;
    s->t++;
    return 1;
}

int beam_final(const beam_state *s, const int32_t **tokens) {
    *tokens = s->done ? (s->n_hyps > 0 ? s->hyps[0].tokens : s->tok_live) : s->tok_live;
    return s->n_final;
}

int beam_results(const beam_state *s, beam_result *out, int *n_out, char *err, size_t errlen) {
    assert(s->done);
    *n_out = 0;
    for (int i = 0; i < s->n_hyps; i++) {
        const beam_hyp *h = &s->hyps[i];
        out[i] = (beam_result){
            .tokens = malloc((size_t)(h->n_tokens > 0 ? h->n_tokens : 1) * sizeof *out[i].tokens),
            .n_tokens = h->n_tokens,
            .logprob = h->logprob,
            .score = h->score,
            .ended_eos = h->ended_eos};
        if (!out[i].tokens) {
            beam_results_free(out, i);
            return ls_fail(err, errlen, "beam: out of memory");
        }
        memcpy(out[i].tokens, h->tokens, (size_t)h->n_tokens * sizeof *h->tokens);
    }
    *n_out = s->n_hyps;
    return 0;
}

/* --- beam_search: the engine's own driver, one search on one forward context --- */

/* Gives next beam j (n_next of them, each extending parent[j]) a cache holding its parent's
 * positions: cache_of[b] is live beam b's before the step and next beam j's after it. The first
 * child of a parent takes the parent's cache as it is, later children copy it into a cache no
 * child has taken (that of a beam without children, or one not yet used). Copies only read
 * caches that stay taken. */
static int assign_caches(kv_cache **kv, int B, int *cache_of, const beam_next *nx, char *err,
                         size_t errlen) {
    bool child[BEAM_MAX_WIDTH] = {0}; /* live beam b already gave its cache to a child */
    bool taken[BEAM_MAX_WIDTH] = {0}; /* cache index taken by a next beam */
    int next_cache[BEAM_MAX_WIDTH];
    for (int j = 0; j < nx->n_live; j++) {
        int b = nx->parent[j];
        next_cache[j] = -1;
        if (child[b]) continue;
        child[b] = true;
        next_cache[j] = cache_of[b];
        taken[cache_of[b]] = true;
    }
    int free_c = 0;
    for (int j = 0; j < nx->n_live; j++) {
        if (next_cache[j] >= 0) continue;
        while (free_c < B && taken[free_c])
            free_c++;
        if (free_c == B) return ls_fail(err, errlen, "beam: internal error, no free cache");
        if (kv_copy(kv[free_c], kv[cache_of[nx->parent[j]]]) != 0)
            return ls_fail(err, errlen, "beam: kv_copy failed");
        taken[free_c] = true;
        next_cache[j] = free_c;
    }
    memcpy(cache_of, next_cache, (size_t)nx->n_live * sizeof *cache_of);
    return 0;
}

/* Gives on_token the tokens that became final since *n_streamed; non-zero: it cancelled. */
static int stream_final(const beam_state *s, const beam_params *p, int *n_streamed) {
    const int32_t *tok;
    int n = beam_final(s, &tok);
    for (; p->on_token && *n_streamed < n; ++*n_streamed)
        if (p->on_token(p->ctx, tok[*n_streamed]) != 0) return 1;
    return 0;
}

/* The search's buffers besides the state: width caches and the logits of every live beam. */
typedef struct {
    kv_cache *kv[BEAM_MAX_WIDTH];
    float *logits;                        /* (B, V) logits of live beam b, row b */
    const float *rows[BEAM_MAX_WIDTH];    /* row b of logits */
    int32_t *pos, *seq;                   /* (max(n_prompt, B)) one forward call's rows */
} search_bufs;

static void bufs_free(search_bufs *sb) {
    for (int i = 0; i < BEAM_MAX_WIDTH; i++)
        kv_free(sb->kv[i]);
    free(sb->logits);
    free(sb->pos);
    free(sb->seq);
}

static int bufs_init(search_bufs *sb, const model *m, int n_prompt, const beam_params *p,
                     char *err, size_t errlen) {
    memset(sb, 0, sizeof *sb);
    const int B = p->width, V = m->cfg.vocab_size, n = n_prompt > B ? n_prompt : B;
    sb->logits = malloc((size_t)B * V * sizeof *sb->logits);
    sb->pos = malloc((size_t)n * sizeof *sb->pos);
    sb->seq = calloc((size_t)n, sizeof *sb->seq);
    if (!sb->logits || !sb->pos || !sb->seq) return ls_fail(err, errlen, "beam: out of memory");
    for (int b = 0; b < B; b++) {
        sb->rows[b] = sb->logits + (size_t)b * V;
        if (!(sb->kv[b] = kv_create(&m->cfg, n_prompt + p->max_new_tokens, p->kv_type, err,
                                    errlen)))
            return -1;
    }
    return 0;
}

int beam_search(const model *m, fwd_ctx *f, const int32_t *prompt, int n_prompt,
                const beam_params *p, beam_result *out, int *n_out, char *err, size_t errlen) {
    *n_out = 0;
    if (!prompt || n_prompt < 1) return ls_fail(err, errlen, "beam: empty prompt");
    if (p && n_prompt > INT32_MAX - p->max_new_tokens)
        return ls_fail(err, errlen, "beam: prompt plus max_new_tokens too long");
    beam_state *s = beam_state_create(m, p, err, errlen);
    if (!s) return -1;
    search_bufs sb;
    int rc = -1, n_streamed = 0, cache_of[BEAM_MAX_WIDTH] = {0}; /* live beam 0: cache 0 */
    if (bufs_init(&sb, m, n_prompt, p, err, errlen) != 0) goto done;
    /* Prefill the prompt once, into cache 0; other beams copy it when they fork. */
    for (int i = 0; i < n_prompt; i++)
        sb.pos[i] = i;
    fwd_batch pb = {.n_tokens = n_prompt, .token = prompt, .pos = sb.pos, .seq = sb.seq};
    if (fwd_decode(f, &sb.kv[0], 1, &pb, sb.logits, err, errlen) != 0) goto done;
    for (int t = 0;; t++) { /* live beams hold t tokens; the step gives them t + 1 */
        beam_next nx;
        int more = beam_step(s, sb.rows, &nx);
        if (stream_final(s, p, &n_streamed) != 0 || (p->should_stop && p->should_stop(p->ctx))) {
            ls_fail(err, errlen, "beam: cancelled");
            goto done;
        }
        if (!more) break;
        if (assign_caches(sb.kv, p->width, cache_of, &nx, err, errlen) != 0) goto done;
        kv_cache *step_kv[BEAM_MAX_WIDTH];
        bool want[BEAM_MAX_WIDTH];
        for (int j = 0; j < nx.n_live; j++) {
            sb.pos[j] = n_prompt + t;
            sb.seq[j] = j;
            want[j] = true;
            step_kv[j] = sb.kv[cache_of[j]];
        }
        fwd_batch b = {
            .n_tokens = nx.n_live, .token = nx.token, .pos = sb.pos, .seq = sb.seq, .logits = want};
        if (fwd_decode(f, step_kv, nx.n_live, &b, sb.logits, err, errlen) != 0) goto done;
    }
    rc = beam_results(s, out, n_out, err, errlen);
done:
    bufs_free(&sb);
    beam_state_free(s);
    return rc;
}

void beam_results_free(beam_result *r, int n) {
    if (!r) return;
    for (int i = 0; i < n; i++) {
        free(r[i].tokens);
        r[i].tokens = NULL;
        r[i].n_tokens = 0;
    }
}
