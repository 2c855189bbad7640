/* beam: beam search over the forward pass. Keeps the `width` most likely continuations of a
 * prompt, each with its own KV cache, advances them all in one batched fwd_decode per step, and
 * returns the n_best finished hypotheses by length-normalised score. Deterministic: every tie is
 * broken by a fixed order, and the forward pass is bit-identical whatever the thread count.
 *
 * The rules, step by step (the Hugging Face / vLLM convention):
 *  - Each live beam proposes its 2 * width most likely next tokens (log_softmax of its logits,
 *    ties to the lower id). All proposals are ranked by cumulative log-probability (ties: the
 *    older beam, then the lower token id).
 *  - Walking that ranking: a proposal of EOS ranked among the first `width` becomes a finished
 *    hypothesis (lower-ranked EOS proposals are dropped); every other proposal becomes a live
 *    beam until `width` beams are live. A beam that forks copies its parent's KV cache.
 *  - A live beam that reaches max_new_tokens is finished without EOS.
 *  - The search stops early once n_best hypotheses are finished and no live beam can still beat
 *    the worst of them: a live beam's log-probability only falls as it grows, so its best
 *    possible score is logprob / len^alpha at the most favourable length still reachable.
 * Score: logprob / len ^ length_penalty, where logprob is the sum of the log_softmax of every
 * generated token, EOS included, and len counts the generated tokens, EOS included (>= 1).
 * length_penalty 0 ranks by raw log-probability; > 0 favours longer hypotheses. */
#ifndef LS_BEAM_H
#define LS_BEAM_H

#include "forward.h"
#include "kv_cache.h"
#include "model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BEAM_MAX_WIDTH 64
/* one token of every beam is one forward step of an FWD_STEP_ROWS context */
_Static_assert(BEAM_MAX_WIDTH <= FWD_STEP_ROWS, "a beam step must fit one forward step");

/* Streaming: called with each token of the best hypothesis, in order, as soon as it is certain
 * (every live beam and every kept finished hypothesis starts with it, so every result will).
 * By the time beam_search returns 0 the tokens streamed are exactly out[0].tokens. Returning
 * non-zero cancels the search: beam_search then returns -1 ("cancelled"). Called on the thread
 * that runs beam_search. */
typedef int (*beam_token_fn)(void *ctx, int32_t token);

typedef struct {
    int width;              /* live beams, 1..BEAM_MAX_WIDTH; 1 is greedy decoding */
    int n_best;             /* finished hypotheses returned, 1..width */
    int max_new_tokens;     /* >= 1; EOS counts as one */
    float length_penalty;   /* alpha in score = logprob / len^alpha */
    int eos_id;             /* -1: none (every hypothesis runs to max_new_tokens); otherwise
                               the tokenizer's other end-of-generation ids end one too */
    kv_type kv_type;        /* type of the per-beam caches */
    beam_token_fn on_token; /* NULL: no streaming */
    void *ctx;              /* passed to on_token and should_stop */
    int (*should_stop)(void *ctx); /* NULL, or polled once per step: non-zero cancels */
} beam_params;

typedef struct {
    int32_t *tokens; /* (n_tokens) generated tokens only: no prompt, no EOS; caller frees via
                        beam_results_free */
    int n_tokens;
    double logprob; /* sum of log_softmax of the generated tokens, EOS included when ended_eos */
    double score;   /* logprob / (n_tokens + ended_eos) ^ length_penalty */
    bool ended_eos; /* false: stopped at max_new_tokens */
} beam_result;

/* width 4, n_best 1, max_new_tokens 64, length_penalty 1, eos_id -1 (set it from tok_eos),
 * KV_F32, no streaming. */
void beam_params_default(beam_params *p);

/* The score of a hypothesis of len generated tokens (EOS included) and log-probability lp. */
double beam_score(double logprob, int len, float length_penalty);

/* --- one search, step by step, for a driver that runs the forward pass itself (the server's
 * scheduler batches beams with other sequences). The state ranks; the driver owns the caches. */
typedef struct beam_state beam_state;

/* What one step decided: the live beams after it, each extending a beam from before it. */
typedef struct {
    int n_live;                    /* 0 when the search has ended */
    int parent[BEAM_MAX_WIDTH];    /* (n_live) the live beam, before the step, that beam j extends */
    int32_t token[BEAM_MAX_WIDTH]; /* (n_live) beam j's newest token: the next row to feed */
} beam_next;

/* A search with p's width, n_best, max_new_tokens, length_penalty and eos_id (and m's
 * tokenizer's end-of-generation ids) over m's vocabulary; the rest of p is unused. Allocates
 * everything the steps need. NULL with a message (bad parameters, memory). Caller frees. */
beam_state *beam_state_create(const model *m, const beam_params *p, char *err, size_t errlen);
void beam_state_free(beam_state *s);
/* One step. logits: a (vocab) row for every live beam, in order (at the first step the one
 * live beam is the prompt, its row the prompt's last token's). Ranks the proposals as above.
 * Returns 1 when the search goes on: then beam j must continue from a copy of live beam
 * next->parent[j]'s cache (several beams may share a parent; beams that are no one's parent
 * die) and next feed next->token[j] at position n_prompt + step index. Returns 0 when it has
 * ended (next->n_live 0): beam_results then holds the answer. Allocates nothing. */
int beam_step(beam_state *s, const float *const *logits, beam_next *next);
/* The tokens of the best result that are already certain (every live beam and every kept
 * hypothesis starts with them): their count, and in *tokens where they are (valid until the
 * next beam_step). The count only grows; once the search has ended it is the whole best
 * result, out[0] of beam_results. */
int beam_final(const beam_state *s, const int32_t **tokens);
/* After the last step: out[0 .. *n_out) as beam_search fills it. 0, or -1 (memory). */
int beam_results(const beam_state *s, beam_result *out, int *n_out, char *err, size_t errlen);

/* Searches from prompt (n_prompt >= 1 tokens, usually starting with BOS) with the forward
 * context f (made for m; its pool decides the threads). Allocates the width KV caches
 * (n_prompt + max_new_tokens positions each) and all scratch before the first step, nothing
 * inside the loop. Fills out[0 .. *n_out) (out has room for p->n_best) in non-increasing score,
 * ties by higher logprob, then shorter, then lower token ids; *n_out is n_best (fewer only
 * when the vocabulary is too small to fill it).
 * Returns 0, or -1 with a message (bad parameters, memory, a forward error, on_token cancelled)
 * and *n_out == 0.
 * Not thread-safe with respect to f. Drives a beam_state: a prefill, then a beam_step and a
 * batched fwd_decode of the live beams per step, forked caches copied (kv_copy). */
int beam_search(const model *m, fwd_ctx *f, const int32_t *prompt, int n_prompt,
                const beam_params *p, beam_result *out, int *n_out, char *err, size_t errlen);

/* Frees the token arrays of r[0..n) (not r itself). */
void beam_results_free(beam_result *r, int n);

#endif
