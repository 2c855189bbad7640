/* scheduler: the scheduler. One thread owns the model's forward context and the slots (each a KV
 * cache, a sampler and the text state of one sequence); HTTP threads hand it jobs through a
 * bounded queue and read results back through the job's own mutex and condition variable.
 * Each step admits queued jobs into free slots, then runs one batched forward pass that
 * advances every decoding slot by one token and feeds newly admitted prompts in chunks
 * (at most batch_size rows in all), so a long prompt never freezes running streams.
 * Prompt cache: a slot's KV cache outlives its request. A new request goes to the free slot
 * whose cached tokens share the longest prefix with its prompt, and only the rest of the prompt
 * is computed (at least its last token, whose logits start the generation). The forward pass
 * gives every row the same bits however the rows are batched or chunked, so the output is the
 * same as from an empty cache.
 * Speculative decoding (prompt lookup, engine/spec.h): a decoding slot may also feed draft
 * tokens after its last one, as further rows of the same step; each row's logits are sampled in
 * turn exactly as plain decoding would, and the slot advances while the sampled token equals
 * the draft. The rows' bits do not depend on the batch, and the sampler draws once per token
 * either way, so the output is the same token for token as without drafts, greedy or seeded.
 * With a draft model (sched_params.draft), each slot also keeps that model's KV cache, and the
 * draft is the draft model's greedy continuation instead.
 * Thread-safety: sched_submit/sched_cancel/job_* are called from any thread; everything else
 * in sched.c runs on the scheduler thread. */
#ifndef LS_SCHED_H
#define LS_SCHED_H

#include "grammar.h"
#include "kv_cache.h"
#include "model.h"
#include "sampler.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define SCHED_MAX_STOP 4
#define SCHED_MAX_STOP_BYTES 256 /* the longest stop string (api.c refuses longer ones) */
#define SCHED_MAX_N 16
#define SCHED_MAX_DRAFT 32 /* draft tokens one slot verifies in a step at most */

typedef enum { FINISH_NONE = 0, FINISH_STOP, FINISH_LENGTH, FINISH_ERROR, FINISH_CANCEL } finish_reason;

/* A validated generation request (built by api.c). Owns prompt, stop strings and bias. */
typedef struct {
    int32_t *prompt; /* (n_prompt) token ids, BOS included where wanted */
    int n_prompt;
    int max_tokens;  /* tokens to generate at most (>= 0) */
    int n;           /* choices, each its own sequence and slot; 1..SCHED_MAX_N */
    char *stop[SCHED_MAX_STOP];
    int n_stop;
    sampler_params sp; /* sp.bias points at bias below */
    logit_bias *bias;   /* (n_bias) */
    int n_bias;
    int n_top_logprobs; /* alternatives recorded per token; -1: no logprobs at all */
    bool ignore_eos;
    int32_t stop_ids[4]; /* besides EOS: ids that end the choice (a chat format's end of turn) */
    int n_stop_ids;
    bool cache_prompt;   /* may reuse a slot's cached prefix (sched_params.prompt_cache too) */
    gram_rules *grammar; /* NULL, or the grammar every choice's text must follow */
    int spec_n_max;      /* draft tokens verified per step at most (0..SCHED_MAX_DRAFT); 0: no
                            speculative decoding; -1: sched_params.spec_ngram */
    int spec_n_min;      /* a shorter draft is not verified (0..spec_n_max) */
} gen_request;

void gen_request_free(gen_request *r);

/* One generated token as recorded for logprobs. */
typedef struct {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_id[SAMPLER_MAX_TOP];
    float top_logprob[SAMPLER_MAX_TOP];
} gen_token;

/* What one choice has produced so far. Written by the scheduler, read by the HTTP thread, both
 * under job->mu. text only ever grows; it holds released text (complete UTF-8 characters, with
 * anything that might begin a stop string held back until it cannot). */
typedef struct {
    char *text;
    size_t len, cap;
    gen_token *toks; /* (n_toks) generated tokens, in order */
    int n_toks, cap_toks;
    int n_gen;       /* tokens generated (the end-of-sequence token not counted) */
    int n_cached;    /* prompt tokens found in the slot's KV cache at admission (not computed) */
    int n_drafted, n_accepted; /* speculative decoding: draft tokens verified, and accepted */
    finish_reason finish;
} choice_out;

typedef struct job job;
struct job {
    gen_request req;
    pthread_mutex_t mu;       /* guards everything below it */
    pthread_cond_t cv;        /* signalled on every change */
    choice_out *choices;      /* (req.n) */
    int n_finished;           /* choices with finish != FINISH_NONE */
    char error[256];          /* set with finish FINISH_ERROR */
    double t_submit, t_admit, t_first; /* monotonic seconds; 0 until reached */
    atomic_bool cancelled;    /* set by the client's thread; honoured at the next step */
    atomic_int refs;          /* the submitter's reference and the scheduler's */
    job *next;                /* queue link, scheduler-owned */
};

typedef struct sched sched;

typedef struct {
    int parallel;   /* slots */
    int ctx_size;   /* KV positions per slot */
    int batch_size; /* rows per forward step */
    int threads;
    int max_queue;  /* jobs waiting beyond the busy slots; 0 = none may wait */
    kv_type kv;
    bool prompt_cache; /* a free slot keeps its KV cache; a new prompt reuses its longest prefix */
    int spec_ngram;    /* prompt-lookup draft tokens per step for requests that do not say;
                          0: off (0..SCHED_MAX_DRAFT) */
    const model *draft; /* NULL, or a model with the same vocabulary (spec_check_draft_vocab)
                           whose greedy tokens are the drafts instead of prompt lookup; borrowed,
                           must outlive the scheduler */
    /* Called on the scheduler thread with no lock held after every step and whenever that
     * thread has ended jobs, so that the HTTP front end can wake the connections waiting on
     * them. Must be quick and must not call sched_*. NULL: none. */
    void (*on_progress)(void *arg);
    void *progress_arg;
} sched_params;

/* Starts the scheduler thread. The model is borrowed and must outlive the scheduler. */
sched *sched_create(const model *m, const sched_params *p, char *err, size_t errlen);
/* Stops accepting work, cancels what is queued or running, joins the thread, frees. */
void sched_destroy(sched *s);

/* Takes ownership of *req (also on failure). Returns a job holding one reference for the
 * caller, or NULL with *status 503 (queue full or shutting down) or 400 (the request can never
 * run here: n > slots, prompt + 1 > ctx_size) and a message. */
job *sched_submit(sched *s, gen_request *req, int *status, char *err, size_t errlen);
/* A job that no scheduler runs (beam search fills it whole): takes ownership of *req; the
 * caller holds the one reference. NULL when out of memory. */
job *job_create_detached(gen_request *req);
/* Sets choice c's final text, token count and finish reason (any thread). */
void job_finish_choice(job *j, int c, const char *text, size_t len, int n_gen, finish_reason why);
/* Asks the scheduler to stop the job (a disconnect): its slot is freed at the next step. */
void sched_cancel(sched *s, job *j);
/* Drops the caller's reference. */
void job_release(job *j);
/* Waits until every choice has finished (or cancel). */
void job_wait(job *j);

/* Gauges and counters for /metrics. */
typedef struct {
    int busy_slots, queued, slots;
    unsigned long long steps; /* forward steps run */
    long long kv_tokens, kv_capacity; /* positions held in the slots' KV caches, and the most */
} sched_stats;
void sched_get_stats(sched *s, sched_stats *out);

/* Ends every queued and running job (FINISH_CANCEL) within one step, and admits no more. */
void sched_cancel_all(sched *s);
/* Stops admitting new jobs (sched_submit answers 503); running ones continue. */
void sched_drain(sched *s);
/* Number of jobs queued or running. */
int sched_active(sched *s);

#endif
