/* sampler: the sampling chain, from a logits vector (n_vocab) to one token id. Owns the per-request
 * RNG and, per sampler, a candidate list, a logits copy and a count table allocated once at
 * creation. Never allocates in sampler_sample, never logs, never touches the model. Ordering is
 * total (logit descending, then id ascending; NaN last) so every result is deterministic. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- RNG */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void rng_seed(rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

float rng_uniform(rng *r) {
    return (float)(rng_next(r) >> 40) * 0x1.0p-24f;
}

/* ---------------------------------------------------------------- ordering */

/* NaN compares as the lowest logit of all, so it can never be chosen over a number. */
static inline float cand_key(float x) {
    return isnan(x) ? -INFINITY : x;
}

/* true when a ranks before b: higher logit, then lower id (then NaN after -inf by id). */
static inline bool cand_before(const tok_cand *a, const tok_cand *b) {
    float ka = cand_key(a->logit), kb = cand_key(b->logit);
    if (ka != kb) return ka > kb;
    bool na = isnan(a->logit), nb = isnan(b->logit);
    if (na != nb) return nb;
    return a->id < b->id;
}

static int cand_cmp(const void *pa, const void *pb) {
    const tok_cand *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

static bool cands_sorted(const tok_cand *c, int n) {
    for (int i = 1; i < n; i++)
        if (cand_before(&c[i], &c[i - 1])) return false;
    return true;
}

static inline void cand_swap(tok_cand *a, tok_cand *b) {
    tok_cand t = *a;
    *a = *b;
    *b = t;
}

/* Rearranges c so that c[0..k) are the k best candidates, sorted; the rest in any order.
 * Quickselect with a median-of-three pivot; if it degenerates, a full sort finishes the job. */
static void cands_partial_sort(tok_cand *c, int n, int k) {
    if (k <= 0) return;
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
        return;
    }
    int lo = 0, hi = n - 1, budget = 64;
    while (hi > lo) {
        if (--budget == 0) {
            qsort(c, (size_t)n, sizeof *c, cand_cmp);
            return;
        }
        int mid = lo + (hi - lo) / 2;
        if (cand_before(&c[mid], &c[lo])) cand_swap(&c[mid], &c[lo]);
        if (cand_before(&c[hi], &c[lo])) cand_swap(&c[hi], &c[lo]);
        if (cand_before(&c[hi], &c[mid])) cand_swap(&c[hi], &c[mid]);
        tok_cand pivot = c[mid];
        int i = lo, j = hi;
        /* Hoare partition: c[lo..j] rank at or before the pivot, c[i..hi] at or after. */
        while (i <= j) {
            while (cand_before(&c[i], &pivot))
                i++;
            while (cand_before(&pivot, &c[j]))
                j--;
            if (i <= j) {
                cand_swap(&c[i], &c[j]);
                i++;
                j--;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break; /* the k-th lies between j and i: equal to the pivot, already in place */
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

/* ---------------------------------------------------------------- logits steps */

int sample_greedy(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (cand_key(logits[i]) > cand_key(logits[best])) best = i;
    return best;
}

void sampler_apply_bias(float *logits, int n, const logit_bias *bias, int n_bias) {
    for (int i = 0; i < n_bias; i++) {
        int32_t id = bias[i].id;
        if (id < 0 || id >= n) continue;
        if (bias[i].bias <= -100.0f)
            logits[id] = -INFINITY;
        else
            logits[id] += bias[i].bias;
    }
}

static inline float penalize(float logit, int32_t count, float repeat, float presence,
                             float frequency) {
    if (repeat != 1.0f && repeat > 0.0f) logit = logit > 0.0f ? logit / repeat : logit * repeat;
    return logit - presence - frequency * (float)count;
}

static int window_start(int n_hist, int last_n) {
    if (last_n < 0 || last_n > n_hist) return 0;
    return n_hist - last_n;
}

static bool penalties_off(float repeat, float presence, float frequency) {
    return (repeat == 1.0f || !(repeat > 0.0f)) && presence == 0.0f && frequency == 0.0f;
}

void sampler_apply_penalties(float *logits, int n, const int32_t *history, int n_hist, int last_n,
                             float repeat, float presence, float frequency) {
    if (!history || last_n == 0 || penalties_off(repeat, presence, frequency)) return;
    int start = window_start(n_hist, last_n);
    for (int i = start; i < n_hist; i++) {
        int32_t id = history[i];
        if (id < 0 || id >= n) continue;
        bool seen_before = false; /* penalize each distinct token once, at its first occurrence */
        for (int j = start; j < i && !seen_before; j++)
            seen_before = history[j] == id;
        if (seen_before) continue;
        int32_t count = 0;
        for (int j = i; j < n_hist; j++)
            count += history[j] == id;
        logits[id] = penalize(logits[id], count, repeat, presence, frequency);
    }
}

void sampler_apply_penalties_counted(float *logits, int n, const int32_t *history, int n_hist,
                                     int last_n, float repeat, float presence, float frequency,
                                     int32_t *counts) {
    if (!history || last_n == 0 || penalties_off(repeat, presence, frequency)) return;
    int start = window_start(n_hist, last_n);
    for (int i = start; i < n_hist; i++)
        if (history[i] >= 0 && history[i] < n) counts[history[i]]++;
    /* Second pass: apply at the first visit of each id, then zero its count. */
    for (int i = start; i < n_hist; i++) {
        int32_t id = history[i];
        if (id < 0 || id >= n || counts[id] == 0) continue;
        logits[id] = penalize(logits[id], counts[id], repeat, presence, frequency);
        counts[id] = 0;
    }
}

void sampler_apply_temperature(float *logits, int n, float temperature) {
    if (!(temperature > 0.0f) || temperature == 1.0f) return;
    for (int i = 0; i < n; i++)
        logits[i] /= temperature;
}

/* ---------------------------------------------------------------- candidate steps */

static float cands_max(const tok_cand *c, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        m = fmaxf(m, cand_key(c[i].logit));
    return m;
}

int sampler_top_k(tok_cand *cands, int n, int k) {
    if (k <= 0 || k >= n) return n;
    cands_partial_sort(cands, n, k);
    return k;
}

int sampler_top_p(tok_cand *cands, int n, float p) {
    if (n <= 1 || !(p < 1.0f)) return n;
    float max = cands_max(cands, n);
    if (max == -INFINITY) { /* nothing has any probability: keep the best by the order */
        cands_partial_sort(cands, n, 1);
        cands[0].p = 1.0f;
        return 1;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)cand_key(cands[i].logit) - max);
    double target = (double)p * sum;
    bool sorted = cands_sorted(cands, n);
    /* Lazy sort: a prefix of 64, then 512, 4096...; usually the first one holds the answer. */
    for (int m = 64;; m *= 8) {
        if (m > n) m = n;
        if (!sorted) cands_partial_sort(cands, n, m);
        double cum = 0.0;
        for (int i = 0; i < m; i++) {
            double e = exp((double)cand_key(cands[i].logit) - max);
            cum += e;
            cands[i].p = (float)(e / sum);
            if (cum >= target) return i + 1;
        }
        if (m == n) return n; /* rounding: the whole sum fell a hair short of p * sum */
    }
}

int sampler_min_p(tok_cand *cands, int n, float min_p) {
    if (n <= 1 || !(min_p > 0.0f)) return n;
    float max = cands_max(cands, n);
    if (max == -INFINITY) {
        cands_partial_sort(cands, n, 1);
        cands[0].p = 1.0f;
        return 1;
    }
    /* p_i >= min_p * p_max  <=>  exp(l_i - max) >= min_p: the softmax sum cancels. */
    int kept = 0;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        double e = exp((double)cand_key(cands[i].logit) - max);
        sum += e;
        if (e >= (double)min_p) cand_swap(&cands[kept++], &cands[i]);
    }
    if (kept == 0) { /* min_p > 1: keep only the best */
        cands_partial_sort(cands, n, 1);
        kept = 1;
    }
    if (!cands_sorted(cands, kept)) cands_partial_sort(cands, kept, kept);
    for (int i = 0; i < kept; i++)
        cands[i].p = (float)(exp((double)cand_key(cands[i].logit) - max) / sum);
    return kept;
}

void sampler_softmax(tok_cand *cands, int n) {
    if (n <= 0) return;
    float max = cands_max(cands, n);
    if (max == -INFINITY) { /* all banned: uniform, so that a draw still returns something */
        for (int i = 0; i < n; i++)
            cands[i].p = 1.0f / (float)n;
        return;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)cand_key(cands[i].logit) - max);
    for (int i = 0; i < n; i++)
        cands[i].p = (float)(exp((double)cand_key(cands[i].logit) - max) / sum);
}

int sampler_draw(const tok_cand *cands, int n, float u) {
    if (n < 1) return -1;
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += cands[i].p > 0.0f ? (double)cands[i].p : 0.0;
    double target = (double)u * total, cum = 0.0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (!(cands[i].p > 0.0f)) continue;
        cum += (double)cands[i].p;
        last = i;
        if (target < cum) return cands[i].id;
    }
    return cands[last < 0 ? 0 : last].id; /* u rounded up to 1, or every p was 0 */
}

void sampler_logprobs(const float *logits, int n, int id, int k, sample_info *out) {
    memset(out, 0, sizeof *out);
    out->id = id;
    if (n <= 0) return;
    double max = -INFINITY;
    for (int i = 0; i < n; i++)
        max = fmax(max, (double)cand_key(logits[i]));
    double sum = 0.0;
    if (max == -INFINITY) max = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)cand_key(logits[i]) - max);
    double lse = max + log(sum);
    out->logprob = (id >= 0 && id < n) ? (float)((double)cand_key(logits[id]) - lse) : -INFINITY;
    if (k > SAMPLER_MAX_TOP) k = SAMPLER_MAX_TOP;
    if (k > n) k = n;
    if (k <= 0) return;
    /* Insertion into a short sorted list: top[0..m) best first. */
    tok_cand top[SAMPLER_MAX_TOP];
    int m = 0;
    for (int i = 0; i < n; i++) {
        tok_cand c = {.id = i, .logit = logits[i], .p = 0.0f};
        if (m == k && !cand_before(&c, &top[m - 1])) continue;
        int j = m < k ? m++ : m - 1;
        while (j > 0 && cand_before(&c, &top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = c;
    }
    out->n_top = m;
    for (int i = 0; i < m; i++) {
        out->top_id[i] = top[i].id;
        out->top_logprob[i] = (float)((double)cand_key(top[i].logit) - lse);
    }
}

/* ---------------------------------------------------------------- the chain */

struct sampler {
    sampler_params params; /* params.bias points at bias below */
    logit_bias *bias;      /* (n_bias) owned copy */
    int n_vocab;
    rng rng;
    tok_cand *cands; /* (n_vocab) */
    float *logits;   /* (n_vocab) working copy */
    int32_t *counts; /* (n_vocab) all zero between calls */
};

void sampler_params_default(sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = 64;
    p->seed = 0;
}

sampler *sampler_create(const sampler_params *p, int n_vocab) {
    if (!p || n_vocab < 1) return NULL;
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->params = *p;
    s->n_vocab = n_vocab;
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->logits = malloc((size_t)n_vocab * sizeof *s->logits);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    if (!s->cands || !s->logits || !s->counts) goto fail;
    if (p->n_bias > 0 && p->bias) {
        s->bias = malloc((size_t)p->n_bias * sizeof *s->bias);
        if (!s->bias) goto fail;
        memcpy(s->bias, p->bias, (size_t)p->n_bias * sizeof *s->bias);
    } else {
        s->params.n_bias = 0;
    }
    s->params.bias = s->bias;
    rng_seed(&s->rng, p->seed);
    return s;
fail:
    sampler_free(s);
    return NULL;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->cands);
    free(s->logits);
    free(s->counts);
    free(s);
}

int sampler_sample(sampler *s, const float *logits, const int32_t *history, int n_hist, int n_top,
                   sample_info *info) {
    return sampler_sample_masked(s, logits, NULL, history, n_hist, n_top, info);
}

static bool allowed(const uint32_t *allow, int id) {
    return !allow || (allow[id >> 5] >> (id & 31)) & 1u;
}

int sampler_sample_masked(sampler *s, const float *logits, const uint32_t *allow,
                          const int32_t *history, int n_hist, int n_top, sample_info *info) {
    const sampler_params *p = &s->params;
    int n = s->n_vocab, id;
    float *work = s->logits;
    memcpy(work, logits, (size_t)n * sizeof *work);
    int first_allowed = -1;
    if (allow) {
        for (int i = 0; i < n; i++) {
            if (!allowed(allow, i)) work[i] = -INFINITY;
            else if (first_allowed < 0) first_allowed = i;
        }
    }
    sampler_apply_bias(work, n, p->bias, p->n_bias);
    sampler_apply_penalties_counted(work, n, history, n_hist, p->penalty_last_n, p->repeat_penalty,
                                    p->presence_penalty, p->frequency_penalty, s->counts);
    if (!(p->temperature > 0.0f)) {
        id = sample_greedy(work, n);
    } else {
        sampler_apply_temperature(work, n, p->temperature);
        int nc = 0;
        for (int i = 0; i < n; i++) {
            if (isnan(work[i]) || work[i] == -INFINITY) continue; /* banned: never a candidate */
            s->cands[nc++] = (tok_cand){.id = i, .logit = work[i], .p = 0.0f};
        }
        float u = rng_uniform(&s->rng); /* drawn even when nothing is left: one per call */
        if (nc == 0) {
            id = sample_greedy(work, n);
        } else {
            nc = sampler_top_k(s->cands, nc, p->top_k);
            nc = sampler_top_p(s->cands, nc, p->top_p);
            nc = sampler_min_p(s->cands, nc, p->min_p);
            sampler_softmax(s->cands, nc);
            id = sampler_draw(s->cands, nc, u);
        }
    }
    if (first_allowed >= 0 && !allowed(allow, id)) id = first_allowed; /* all banned by bias */
    if (info) sampler_logprobs(logits, n, id, n_top, info);
    return id;
}
