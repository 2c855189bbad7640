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
    float temperature;       /* 0: greedy */
    int top_k;               /* 0: off */
    float top_p;             /* 1: off */
    float min_p;             /* 0: off */
    float repeat_penalty;    /* 1: off; llama.cpp style: positive logits divided, negative multiplied */
    float presence_penalty;  /* 0: off; OpenAI style: subtracted once if the token appeared */
    float frequency_penalty; /* 0: off; subtracted per occurrence */
    int penalty_last_n;      /* how many recent tokens the penalties consider; -1: all, 0: none */
    uint64_t seed;
    const logit_bias *bias;  /* (n_bias); copied at creation */
    int n_bias;
} sampler_params;

void sampler_params_default(sampler_params *p); /* temperature 1, everything else off, seed 0 */

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
void sampler_apply_penalties(float *logits, int n, const int32_t *history, int n_hist,
                             int last_n, float repeat, float presence, float frequency);
void sampler_apply_temperature(float *logits, int n, float temperature);
/* Candidate-list steps. cands is sorted by logit (descending) by these functions when needed;
 * each returns the new number of candidates (at least 1). */
int sampler_top_k(tok_cand *cands, int n, int k);
int sampler_top_p(tok_cand *cands, int n, float p);
int sampler_min_p(tok_cand *cands, int n, float min_p);
/* Softmax over candidates (fills .p); then draws one with a uniform u in [0,1). */
void sampler_softmax(tok_cand *cands, int n);
int sampler_draw(const tok_cand *cands, int n, float u);
/* log_softmax of logits at id, and the k best alternatives. */
void sampler_logprobs(const float *logits, int n, int id, int k, sample_info *out);

/* --- the chain --- */
typedef struct sampler sampler;
sampler *sampler_create(const sampler_params *p, int n_vocab);
void sampler_free(sampler *s);
/* Picks the next token from logits (n_vocab, not modified). history as above. When info is not
 * NULL, fills it with n_top alternatives (0 <= n_top <= SAMPLER_MAX_TOP). */
int sampler_sample(sampler *s, const float *logits, const int32_t *history, int n_hist,
                   int n_top, sample_info *info);

#endif
