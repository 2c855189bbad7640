/* forward: the LLaMA-2 forward pass over a batch of tokens that belong to one or more sequences,
 * each with its own KV cache. A prompt is one sequence's run of consecutive positions (prefill);
 * a batched decode step is one token from each of several sequences. Every layer is a plain
 * function (outputs first, sizes last); fwd_decode strings them together. All scratch is sized
 * once in fwd_create: nothing is allocated during a step. */
#ifndef LS_FORWARD_H
#define LS_FORWARD_H

#include "kv_cache.h"
#include "matmul.h"
#include "model.h"
#include "threadpool.h"

#include <stdbool.h>

typedef struct {
    int n_tokens;
    const int32_t *token; /* (n_tokens) */
    const int32_t *pos;   /* (n_tokens) position of each token in its sequence */
    const int32_t *seq;   /* (n_tokens) index of the token's sequence in caches[] */
    const bool *logits;   /* (n_tokens) rows whose logits are wanted; NULL: only the last row */
    /* Embeddings: rows whose final hidden state (after the output norm, before the output
     * matrix) is wanted; NULL (a decode step): none, and nothing below is touched. */
    const bool *hidden; /* (n_tokens) */
    float *hidden_out;  /* (n_hidden, dim) out: the flagged rows' states, in batch order */
} fwd_batch;

typedef struct fwd_ctx fwd_ctx;

/* Rows per step of the forward contexts that generate, perplexity and beam search make (the
 * server sizes its own by --batch-size): a prompt's chunk, or one token of every beam. */
#define FWD_STEP_ROWS 64

/* Scratch for batches of up to max_tokens rows (longer batches are processed in chunks).
 * The pool is borrowed, not owned. NULL with a message on failure. */
fwd_ctx *fwd_create(const model *m, int max_tokens, pool *p, char *err, size_t errlen);
void fwd_free(fwd_ctx *f);

/* Runs the batch. Tokens of one sequence must appear in increasing position order, and each
 * token's position must be at most its cache's current length (no gaps) and below its n_ctx.
 * Writes K/V for every token, then stores the logits (n_out, vocab_size) of the flagged rows,
 * in batch order, into logits (NULL when no row is flagged), and the hidden states of the rows
 * b->hidden flags into b->hidden_out. Returns 0, or -1 with a message (bad id, position,
 * cache). */
int fwd_decode(fwd_ctx *f, kv_cache *const *caches, int n_caches, const fwd_batch *b,
               float *logits, char *err, size_t errlen);

/* The layers (scalar reference implementations). */
/* out (T, C) = x / rms(x) * w, per row. */
void rmsnorm(float *out, const float *x, const float *w, int T, int C, float eps);
/* Rotates adjacent pairs (x[2i], x[2i+1]) of each head's first rope_dim dims by pos * theta^(-2i/rope_dim).
 * x is (n_heads, head_dim) for one token. */
void rope(float *x, int n_heads, int head_dim, int rope_dim, int pos, float theta);
/* In place softmax over n values. */
void softmax(float *x, int n);
/* out (hidden) = silu(gate) * up, elementwise. */
void swiglu(float *out, const float *gate, const float *up, int n);
/* exp(x) by attention's own algorithm (x86/attention_avx2.h lists its steps), so that the SIMD
 * attention's exp gives these bits: within 2 ulp of exp for x in [-87, 88] (tests/test_forward
 * measures it against libm), 0 below -87, exp(88) above 88, NaN for NaN. */
float attn_exp(float x);
/* One query row's online-softmax step over a block of 8 positions: s (8) are its raw scores
 * (-INFINITY for positions it does not see), scaled by scale; m = the larger of *max and the
 * block's largest scaled score (a fixed tree of comparisons). When m > *max: *shrink =
 * attn_exp(*max - m), every sum[j] *= *shrink, and it returns true (the row's output must be
 * multiplied by *shrink before this block's values go in). Then w[j] = attn_exp(s[j] * scale -
 * m), sum[j] += w[j] (sum: 8 partial sums, lane j takes positions j mod 8), *max = m. */
bool attn_softmax8(float w[8], float *shrink, float *max, float sum[8], const float s[8],
                   float scale);
/* out (head_dim): one query head q (head_dim) attending to positions 0 .. n_pos - 1 of kv_head
 * in layer's cache, scalar loops: blocks of 8 positions at multiples of 8 through
 * attn_softmax8 (an online softmax, so no score buffer of context length), then the values
 * weighted in position order; at the end the 8 partial sums added in lane order. */
void attention_head(float *out, const float *q, const kv_cache *kv, int layer, int kv_head,
                    int n_pos, int head_dim);

/* The fast versions fwd_decode uses, exposed for the tests: split over the pool by rows or
 * element ranges (never a reduction) and, per output element, the same float operations as
 * the scalar twins above, so results are bit-identical to them whatever the thread count. */
/* x_out (T, C) = x + y (y NULL: x; x_out NULL: not stored), out (T, C) = rmsnorm(x_out) * w.
 * x_out must not alias x or y; out may alias nothing. */
void fwd_add_rmsnorm(float *x_out, float *out, const float *x, const float *y, const float *w,
                     int T, int C, float eps, pool *p);
/* out (n) = swiglu(gate, up); out may be gate. */
void fwd_swiglu(float *out, const float *gate, const float *up, size_t n, pool *p);
/* out (nq, q_stride): attention_head for nq query rows q (nq, q_stride) of kv_head, rep rows
 * at each position (as prefill groups a kv head's query heads): row r at position pos0 + r /
 * rep, blockwise over the cache (SIMD when matmul uses it). 1 <= rep <= 32. */
void attention_rows(float *out, const float *q, size_t q_stride, int nq, int rep,
                    const kv_cache *kv, int layer, int kv_head, int pos0, int head_dim);

#endif
