/* sched_beam: a beam-search job inside the scheduler (internal to scheduler.c and sched_beam.c).
 * Holds the job's engine search (engine/beam.h's beam_state), the slots its beams live in and
 * its text: what becomes final streams to every choice through scheduler.c's helpers, with stop
 * strings applied, and the n best hypotheses end the choices. scheduler.c runs the rows and
 * calls in here; this file never touches a slot, only the KV caches and histories it is handed.
 * Ownership: sched_submit creates one per beam job (job.beam), job_free frees it. Threads:
 * sched_beam_create runs on the submitting thread before the job is published; everything else
 * on the scheduler thread. Errors: create returns NULL with a message; advance returns -1 with
 * the job's choices left for the caller to fail. */
#ifndef LS_SCHED_BEAM_H
#define LS_SCHED_BEAM_H

#include "beam.h"
#include "scheduler.h"

/* A sequence as a beam slot holds it: the KV cache and the ids it holds (hist[0 .. kv->n) are
 * the cached positions' ids, the prompt cache's promise), moved together between slots. */
typedef struct {
    kv_cache *kv;
    int32_t *hist; /* (ctx_size) */
    int n_hist;
} sched_beam_seq;

typedef struct sched_beam {
    beam_state *bs;
    int width; /* B: beams, and slots the job holds; immutable (queue_full_locked reads it from
                  the submitting threads under s->mu) */
    int n_prompt;
    int slot[BEAM_MAX_WIDTH];             /* (B) beam i's slot index, fixed at admission */
    const float *rows[BEAM_MAX_WIDTH];    /* (n_live) this step's logits of beam i */
    int n_rows;                           /* beams whose row this step has produced */
    int n_live;                           /* live beams: the first n_live slots decode */
    int n_tok;                            /* tokens every live beam holds */
    /* text: the certain prefix, decoded and released to every choice */
    int n_streamed;                       /* tokens of the certain prefix already decoded */
    tok_stream ts;
    char *held;  /* (held_cap) decoded text that may still begin a stop string */
    size_t n_held, held_cap;
    char *piece; /* (piece_cap) one token's text */
    size_t piece_cap;
} sched_beam;

/* For r (beam_width > 0, one prompt) on m with ctx_size positions per slot: at most
 * min(max_tokens, ctx_size - prompt) tokens per beam. NULL with a message (memory, parameters
 * engine/beam.c refuses). */
sched_beam *sched_beam_create(const model *m, const gen_request *r, int ctx_size, char *err,
                              size_t errlen);
void sched_beam_free(sched_beam *b);

/* After a step that produced rows[0 .. n_live): ranks (beam_step), releases the text that
 * became final to every choice of j, and, when the search ends (0), finishes every choice: the
 * n best hypotheses' texts, cut at the first stop string. A stop string inside the certain
 * prefix ends the search there (every result would be cut at it). Returns 1 when the search
 * goes on (next: what each beam extends), 0 when it ended, -1 when memory ran out (j->error
 * is set; the caller fails the job). */
int sched_beam_advance(sched_beam *b, job *j, beam_next *next);

/* Moves sequences so that new beam j (next->n_live of them) holds a copy of its parent's:
 * seq[0 .. n_live_before) are the live beams before the step, the rest the job's other slots.
 * A parent's first child takes the parent's sequence itself (no copy); a later child gets a
 * sequence nobody took (a beam that died, or an idle slot's) and kv_copy of the parent's cache,
 * so one step copies (children beyond the first of each parent) x positions x the KV bytes of a
 * position, never more. seq[n_live ..] get what is left. Returns the bytes copied, -1 on a
 * failed kv_copy. */
long long sched_beam_reorder(const beam_next *next, int width, sched_beam_seq *seq);

/* Ends every choice of j with why (a cancel or an error) and the text released so far. */
void sched_beam_abort(sched_beam *b, job *j, finish_reason why);

/* scheduler.c's helpers (defined there) through which a beam job's text reaches the job. */
/* Appends text to every choice of j (under j->mu, waking its readers); false: out of memory. */
bool sched_job_append_all(job *j, const char *text, size_t n);
/* scheduler.c's find_stop: where held text t (n) must be cut (-1 none), and in *keep the
 * longest suffix that may begin a stop string. */
long sched_find_stop(const gen_request *r, const char *t, size_t n, size_t *keep);

#endif
