/* beam: beam search (the rules are in beam.h). Owns, for one search, `width` KV caches, the
 * logits of every live beam, the token histories of live beams and finished hypotheses, and the
 * proposal list, all allocated before the first step; the step loop allocates nothing. Never
 * touches the sampler's RNG: beam search is deterministic by construction. */
#include "beam.h"

#include "common.h"
#include "sampler.h"

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
    int cache;      /* index into search.kv */
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
typedef struct {
    int B, V, max_new;
    kv_cache *kv[BEAM_MAX_WIDTH];
    float *logits;    /* (B, V) logits of live beam b, row b */
    tok_cand *cands;  /* (V) for the top-2B selection of one beam */
    beam_prop *props; /* (B * 2B) */
    beam_live live[BEAM_MAX_WIDTH], next[BEAM_MAX_WIDTH];
    int32_t *tok_live; /* (B, max_new) tokens of live beam b, row b */
    int32_t *tok_next; /* (B, max_new) */
    beam_hyp *hyps;    /* (n_best) finished hypotheses, unordered */
    int n_hyps, n_best;
    float alpha;
    int n_streamed; /* tokens already given to on_token */
} search;

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
static int hyp_worst(const search *s) {
    if (s->n_hyps < s->n_best) return -1;
    int w = 0;
    for (int i = 1; i < s->n_hyps; i++)
        if (hyp_cmp(&s->hyps[i], &s->hyps[w]) > 0) w = i;
    return w;
}

/* Offers a finished hypothesis: tokens (n) of the live beam plus nothing (the EOS, if any, is
 * counted by ended_eos). Kept when there is room or it beats the worst kept one. */
static void hyp_offer(search *s, const int32_t *tokens, int n, double logprob, bool ended_eos) {
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
static double live_bound(const search *s, double lp, int n_tok) {
    double a = beam_score(lp, n_tok + 1, s->alpha), b = beam_score(lp, s->max_new, s->alpha);
    return a > b ? a : b;
}

static void search_free(search *s) {
    for (int i = 0; i < BEAM_MAX_WIDTH; i++)
        kv_free(s->kv[i]);
    free(s->logits);
    free(s->cands);
    free(s->props);
    free(s->tok_live);
    free(s->tok_next);
    if (s->hyps)
        for (int i = 0; i < s->n_best; i++)
            free(s->hyps[i].tokens);
    free(s->hyps);
}

static int search_init(search *s, const model *m, int n_prompt, const beam_params *p, char *err,
                       size_t errlen) {
    memset(s, 0, sizeof *s);
    s->B = p->width;
    s->V = m->cfg.vocab_size;
    s->max_new = p->max_new_tokens;
    s->n_best = p->n_best;
    s->alpha = p->length_penalty;
    size_t B = (size_t)s->B, V = (size_t)s->V, T = (size_t)s->max_new;
    s->logits = malloc(B * V * sizeof *s->logits);
    s->cands = malloc(V * sizeof *s->cands);
    s->props = malloc(B * 2 * B * sizeof *s->props);
    s->tok_live = malloc(B * T * sizeof *s->tok_live);
    s->tok_next = malloc(B * T * sizeof *s->tok_next);
    s->hyps = calloc((size_t)s->n_best, sizeof *s->hyps);
    if (!s->logits || !s->cands || !s->props || !s->tok_live || !s->tok_next || !s->hyps)
        return ls_fail(err, errlen, "beam: out of memory");
    for (int i = 0; i < s->n_best; i++)
        if (!(s->hyps[i].tokens = malloc(T * sizeof *s->hyps[i].tokens)))
            return ls_fail(err, errlen, "beam: out of memory");
    for (int i = 0; i < s->B; i++)
        if (!(s->kv[i] = kv_create(&m->cfg, n_prompt + s->max_new, p->kv_type, err, errlen)))
            return -1;
    return 0;
}

/* Proposals of live beam b: its 2B best next tokens. Returns how many were appended. */
static int propose(search *s, int b, beam_prop *out) {
    const float *row = s->logits + (size_t)b * s->V;
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

/* Gives next beam j a cache holding its parent's positions: the first child of a parent takes
 * the parent's cache as it is, later children copy it into a cache no child has taken (that of a
 * beam without children, or one not yet used). Copies only read caches that stay taken. */
static int assign_caches(search *s, int n_next, char *err, size_t errlen) {
    bool child[BEAM_MAX_WIDTH] = {0}; /* live beam b already gave its cache to a child */
    bool taken[BEAM_MAX_WIDTH] = {0}; /* cache index taken by a next beam */
    for (int j = 0; j < n_next; j++) {
        int b = s->next[j].parent;
        if (child[b]) {
            s->next[j].cache = -1;
            continue;
        }
        child[b] = true;
        s->next[j].cache = s->live[b].cache;
        taken[s->live[b].cache] = true;
    }
    int free_c = 0;
    for (int j = 0; j < n_next; j++) {
        if (s->next[j].cache >= 0) continue;
        while (free_c < s->B && taken[free_c])
            free_c++;
        if (free_c == s->B) return ls_fail(err, errlen, "beam: internal error, no free cache");
        const kv_cache *src = s->kv[s->live[s->next[j].parent].cache];
        if (kv_copy(s->kv[free_c], src) != 0) return ls_fail(err, errlen, "beam: kv_copy failed");
        taken[free_c] = true;
        s->next[j].cache = free_c;
    }
    return 0;
}

/* Streams the tokens that every live beam (n_next of them, t + 1 tokens each) and every kept
 * hypothesis now agree on. The set only ever narrows to descendants, so the common prefix only
 * grows. Returns non-zero when the callback cancels. */
static int stream_common(search *s, const beam_params *p, int n_next, int t) {
    if (!p->on_token || n_next == 0) return 0;
    const int32_t *best = s->tok_next; /* row 0 */
    int limit = t + 1;
    for (int h = 0; h < s->n_hyps; h++)
        if (s->hyps[h].n_tokens < limit) limit = s->hyps[h].n_tokens;
    for (; s->n_streamed < limit; s->n_streamed++) {
        int k = s->n_streamed;
        for (int j = 1; j < n_next; j++)
            if (s->tok_next[(size_t)j * s->max_new + k] != best[k]) return 0;
        for (int h = 0; h < s->n_hyps; h++)
            if (s->hyps[h].tokens[k] != best[k]) return 0;
        if (p->on_token(p->ctx, best[k]) != 0) return 1;
    }
    return 0;
}

static int check_params(const model *m, const int32_t *prompt, int n_prompt, const beam_params *p,
                        char *err, size_t errlen) {
    if (!m || !prompt || !p) return ls_fail(err, errlen, "beam: missing model, prompt or params");
    if (n_prompt < 1) return ls_fail(err, errlen, "beam: empty prompt");
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
    if (n_prompt > INT32_MAX - p->max_new_tokens)
        return ls_fail(err, errlen, "beam: prompt plus max_new_tokens too long");
    return 0;
}

int beam_search(const model *m, fwd_ctx *f, const int32_t *prompt, int n_prompt,
                const beam_params *p, beam_result *out, int *n_out, char *err, size_t errlen) {
    *n_out = 0;
    if (check_params(m, prompt, n_prompt, p, err, errlen) != 0) return -1;
    search s;
    int rc = -1;
    int32_t *pos_buf = NULL, *seq_buf = NULL;
    if (search_init(&s, m, n_prompt, p, err, errlen) != 0) goto done;
    const int B = s.B, T = s.max_new;
    pos_buf = malloc((size_t)(n_prompt > B ? n_prompt : B) * sizeof *pos_buf);
    seq_buf = calloc((size_t)(n_prompt > B ? n_prompt : B), sizeof *seq_buf);
    int32_t step_tok[BEAM_MAX_WIDTH];
    bool want[BEAM_MAX_WIDTH];
    kv_cache *step_kv[BEAM_MAX_WIDTH];
    if (!pos_buf || !seq_buf) {
        ls_fail(err, errlen, "beam: out of memory");
        goto done;
    }

    /* Prefill the prompt once, into cache 0; other beams copy it when they fork. */
    for (int i = 0; i < n_prompt; i++)
        pos_buf[i] = i;
    fwd_batch pb = {
        .n_tokens = n_prompt, .token = prompt, .pos = pos_buf, .seq = seq_buf, .logits = NULL};
    if (fwd_decode(f, &s.kv[0], 1, &pb, s.logits, err, errlen) != 0) goto done;
    int n_live = 1;
    s.live[0] = (beam_live){.logprob = 0.0, .cache = 0};

    for (int t = 0; t < T; t++) { /* live beams hold t tokens; this step gives them t + 1 */
        int n_props = 0;
        for (int b = 0; b < n_live; b++)
            n_props += propose(&s, b, s.props + n_props);
        qsort(s.props, (size_t)n_props, sizeof *s.props, prop_cmp);

        int n_next = 0;
        for (int r = 0; r < n_props && n_next < B; r++) {
            const beam_prop *c = &s.props[r];
            const int32_t *ptoks = s.tok_live + (size_t)c->parent * T;
            if (c->token == p->eos_id ||
                (p->eos_id >= 0 && m->tok && tok_is_eog(m->tok, c->token))) {
                if (r < B) hyp_offer(&s, ptoks, t, c->logprob, true);
                continue;
            }
            int32_t *ntoks = s.tok_next + (size_t)n_next * T;
            memcpy(ntoks, ptoks, (size_t)t * sizeof *ntoks);
            ntoks[t] = c->token;
            s.next[n_next++] = (beam_live){
                .logprob = c->logprob, .cache = -1, .parent = c->parent, .token = c->token};
        }

        if (stream_common(&s, p, n_next, t) != 0 || (p->should_stop && p->should_stop(p->ctx))) {
            ls_fail(err, errlen, "beam: cancelled");
            goto done;
        }
        if (t + 1 == T || n_next == 0) { /* out of room: the live beams finish as they are */
            for (int j = 0; j < n_next; j++)
                hyp_offer(&s, s.tok_next + (size_t)j * T, t + 1, s.next[j].logprob, false);
            break;
        }
        int worst = hyp_worst(&s); /* next[0] is the best live beam: can it still win? */
        if (worst >= 0 && live_bound(&s, s.next[0].logprob, t + 1) <= s.hyps[worst].score) break;

        if (assign_caches(&s, n_next, err, errlen) != 0) goto done;
        for (int j = 0; j < n_next; j++) {
            step_tok[j] = s.next[j].token;
            pos_buf[j] = n_prompt + t;
            seq_buf[j] = j;
            want[j] = true;
            step_kv[j] = s.kv[s.next[j].cache];
        }
        fwd_batch sb = {
            .n_tokens = n_next, .token = step_tok, .pos = pos_buf, .seq = seq_buf, .logits = want};
        if (fwd_decode(f, step_kv, n_next, &sb, s.logits, err, errlen) != 0) goto done;

        memcpy(s.live, s.next, (size_t)n_next * sizeof *s.live);
        int32_t *swap = s.tok_live;
        s.tok_live = s.tok_next;
        s.tok_next = swap;
        n_live = n_next;
    }

    qsort(s.hyps, (size_t)s.n_hyps, sizeof *s.hyps, hyp_cmp);
    for (; p->on_token && s.n_hyps > 0 && s.n_streamed < s.hyps[0].n_tokens; s.n_streamed++) {
        if (p->on_token(p->ctx, s.hyps[0].tokens[s.n_streamed]) != 0) {
            ls_fail(err, errlen, "beam: cancelled");
            goto done;
        }
    }
    for (int i = 0; i < s.n_hyps; i++) {
        beam_hyp *h = &s.hyps[i];
        out[i] = (beam_result){
            .tokens = malloc((size_t)(h->n_tokens > 0 ? h->n_tokens : 1) * sizeof *out[i].tokens),
            .n_tokens = h->n_tokens,
            .logprob = h->logprob,
            .score = h->score,
            .ended_eos = h->ended_eos};
        if (!out[i].tokens) {
            beam_results_free(out, i);
            ls_fail(err, errlen, "beam: out of memory");
            goto done;
        }
        memcpy(out[i].tokens, h->tokens, (size_t)h->n_tokens * sizeof *h->tokens);
    }
    *n_out = s.n_hyps;
    rc = 0;
done:
    free(pos_buf);
    free(seq_buf);
    search_free(&s);
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
