/* sampler: turning a logits vector into the next token. Each step of the chain is a separate
 * function over a logits vector or a candidate list, testable alone; sampler_sample runs the
 * chain in a fixed order: logit bias, penalties, (greedy when temperature is 0), temperature,
 * top-k, top-p, min-p, then a draw from the per-request seeded RNG. A sampler belongs to one
 * sequence; its buffers are allocated once, at creation. */
#ifndef LS_SAMPLER_H
#define LS_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* xoshiro256** seeded through splitmix64: the same seed gives the same stream everywhere. */
typedef struct {
    uint64_t s[4];
} rng;
void rng_seed(rng *r, uint64_t seed);
uint64_t rng_next(rng *r);
/* Uniform in [0, 1) with 24 bits of resolution, exactly representable in float. */
float rng_uniform(rng *r);

typedef struct {
    int id;
    float logit;
    float p; /* probability, filled by the functions that need it */
} tok_cand;

typedef struct {
    int32_t id;
    float bias; /* added to the logit; -100 or less bans the token */
} logit_bias;

typedef struct {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    float min_p;       /* 0: off */
    float
        repeat_penalty; /* 1: off; llama.cpp style: positive logits divided, negative multiplied */
    float presence_penalty;  /* 0: off; OpenAI style: subtracted once if the token appeared */
    float frequency_penalty; /* 0: off; subtracted per occurrence */
    int penalty_last_n;      /* how many recent tokens the penalties consider; -1: all, 0: none */
    uint64_t seed;
    const logit_bias *bias; /* (n_bias); copied at creation */
    int n_bias;
} sampler_params;

/* temperature 1, everything else off, seed 0; penalty_last_n 64 (used once a penalty is set). */
void sampler_params_default(sampler_params *p);

/* The log-probability of the chosen token and of the most likely alternatives, computed from the
 * model's own distribution: log_softmax of the raw logits, before any sampling transform. */
#define SAMPLER_MAX_TOP 20
typedef struct {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_id[SAMPLER_MAX_TOP];
    float top_logprob[SAMPLER_MAX_TOP]; /* non-increasing */
} sample_info;

/* --- the steps, each usable alone --- */
int sample_greedy(const float *logits, int n); /* argmax; the lowest id wins a tie */
void sampler_apply_bias(float *logits, int n, const logit_bias *bias, int n_bias);
/* history: the tokens seen so far (prompt and generated), the last last_n of them considered. */
/* For each token that occurs c > 0 times among the last last_n (-1: all, 0: none) history
 * entries: logit = logit > 0 ? logit / repeat : logit * repeat, then
 * logit -= presence + frequency * c. Ids outside [0, n) are ignored. Allocates nothing: this is
 * the readable reference, O(last_n^2); sampler_sample uses the counted form below. */
void sampler_apply_penalties(float *logits, int n, const int32_t *history, int n_hist, int last_n,
                             float repeat, float presence, float frequency);
/* The same in O(last_n) with a caller-owned count table counts (n), all zero on entry and left
 * all zero on return. */
void sampler_apply_penalties_counted(float *logits, int n, const int32_t *history, int n_hist,
                                     int last_n, float repeat, float presence, float frequency,
                                     int32_t *counts);
/* Divides every logit by temperature; temperature <= 0 leaves them alone (the chain then takes
 * the argmax instead of drawing). */
void sampler_apply_temperature(float *logits, int n, float temperature);
/* Candidate-list steps. cands is sorted by logit (descending; equal logits by ascending id; NaN
 * ranks last) by these functions when needed; each returns the new number of candidates (at
 * least 1 when n >= 1), the kept ones first, sorted. A step that is off (k <= 0 or k >= n,
 * p >= 1, min_p <= 0) returns n and leaves the order alone.
 * top_k selects the k best without sorting the rest (O(n + k log k)). top_p keeps the smallest
 * sorted prefix whose probability (softmax over all n) sums to >= p, sorting lazily: only as
 * long a prefix as the answer needs. min_p keeps the candidates whose probability is at least
 * min_p times the largest (logit >= max + log(min_p)). top_p and min_p fill .p of the kept
 * candidates with their probability among the n given. */
int sampler_top_k(tok_cand *cands, int n, int k);
int sampler_top_p(tok_cand *cands, int n, float p);
int sampler_min_p(tok_cand *cands, int n, float min_p);
/* Softmax over candidates (fills .p, computed stably in double). */
void sampler_softmax(tok_cand *cands, int n);
/* Returns the id of candidate i such that P(< i) <= u * P(all) < P(<= i), with P the running
 * sum of .p in list order (so .p need not be normalised); a candidate with p = 0 is never
 * chosen. -1 when n < 1. */
int sampler_draw(const tok_cand *cands, int n, float u);
/* log_softmax of logits at id, and the k best alternatives (k clamped to [0, SAMPLER_MAX_TOP]
 * and to n; ties to the lower id), computed in double with max subtraction. */
void sampler_logprobs(const float *logits, int n, int id, int k, sample_info *out);

/* --- the chain --- */
typedef struct sampler sampler;
/* Allocates the candidate list, the logits copy and the count table (n_vocab each) once.
 * NULL when n_vocab < 1 or memory is short. The sampler belongs to one sequence; not
 * thread-safe. */
sampler *sampler_create(const sampler_params *p, int n_vocab);
void sampler_free(sampler *s);
/* Picks the next token from logits (n_vocab, not modified). history as above. When info is not
 * NULL, fills it with n_top alternatives (0 <= n_top <= SAMPLER_MAX_TOP). Allocates nothing.
 * Temperature 0 takes the argmax after bias and penalties and draws nothing from the RNG;
 * otherwise exactly one rng_uniform per call. Banned (-inf) and NaN logits are never drawn; if
 * every token is banned the result is the lowest id. */
int sampler_sample(sampler *s, const float *logits, const int32_t *history, int n_hist, int n_top,
                   sample_info *info);
/* The same, allowing only the tokens whose bit is set in allow (bit i of word i / 32; NULL:
 * every token): the others are banned first, before bias, penalties and temperature, as a
 * grammar needs. When every allowed token is banned by bias, the lowest allowed id is chosen;
 * when allow has no bit set at all, the lowest id. */
int sampler_sample_masked(sampler *s, const float *logits, const uint32_t *allow,
                          const int32_t *history, int n_hist, int n_top, sample_info *info);

#endif
