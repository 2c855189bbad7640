/* scheduler: the scheduler. One thread owns the model's forward context and the slots (each a KV
 * cache, a sampler and the text state of one sequence); HTTP threads hand it jobs through a
 * bounded queue and read results back through the job's own mutex and condition variable.
 * Each step admits queued jobs into free slots, then runs one batched forward pass that
 * advances every decoding slot by one token and feeds newly admitted prompts in chunks, oldest
 * admission first, so a long prompt never freezes running streams. A step has batch_size rows
 * at most, except that prompts always get at least 8 rows beside the decoding ones
 * (SCHED_MIN_PREFILL): with n decoding slots, max(batch_size, n + 8) rows. With
 * prefill_step_pct set, the rows beside decoding ones are fewer still: as many as keep the step
 * within that percentage of a decode-only step's time, by a fit of step time against rows over
 * the steps run so far (step_cost.h), but at least 1. Prompt rows and speculative draft rows
 * share that one budget, prompts first; drafts take what is left, within batch_size.
 * Prompt cache: a slot's KV cache outlives its request. A new request goes to the free slot
 * whose cached tokens share the longest prefix with its prompt, and only the rest of the prompt
 * is computed (at least its last token, whose logits start the generation). A prefix under 2
 * tokens (BOS, which every prompt shares) is no hit: then an empty slot, else the least
 * recently used. The forward pass gives every row the same bits however the rows are batched
 * or chunked, so the output is the same as from an empty cache.
 * Speculative decoding (prompt lookup, engine/spec.h): a decoding slot may also feed draft
 * tokens after its last one, as further rows of the same step; each row's logits are sampled in
 * turn exactly as plain decoding would, and the slot advances while the sampled token equals
 * the draft. The rows' bits do not depend on the batch, and the sampler draws once per token
 * either way, so the output is the same token for token as without drafts, greedy or seeded.
 * Draft rows count against the step's budget of extra rows (above), after the prompts' rows;
 * the slots take turns to draft first, so a small budget is shared.
 * With a draft model (sched_params.draft), each slot also keeps that model's KV cache, and the
 * draft is the draft model's greedy continuation instead.
 * Beam-search jobs (gen_request.beam_width, sched_beam.c): a job of width B holds B slots, one
 * per beam, admitted together in queue order; its beams are decoding rows of the same steps as
 * every other slot. After each step it ranks its beams' next tokens (engine/beam.c's beam_step)
 * and moves the slots' KV caches so that beam i lives in the job's slot i again.
 * Embedding jobs are prefill only: each input is a choice in a slot of its own, batched with
 * everything else, its rows' final hidden states pooled (embed.h) instead of sampled. A job with
 * more inputs than slots takes slots as they free up, oldest job first, in input order.
 * Thread-safety: sched_submit, sched_cancel, sched_get_*, job_* and job_view_* are called from
 * any thread; everything else in scheduler.c runs on the scheduler thread, the only one that
 * touches slots.
 * Output: each job keeps an append-only log per choice (choice_log: released text, token
 * records, counts and finish reason, in chunks that never move). The scheduler appends past the
 * published end with no lock, then publishes under j->mu once per token: a few stores, no
 * copying, no allocation. A reader (an HTTP thread) copies what is new into its own job_view
 * (job_view_sync: the counts under j->mu, the bytes after releasing it) and formats the copy
 * with no lock held. A job's progress and done atomics tell the HTTP notifier that there is
 * something new without its taking j->mu.
 * Locks, outermost first (holding one, a thread takes only locks below it):
 *   1. s->mu (the scheduler's: queue, busy count, /slots snapshot, job.n_admitted and .next)
 *      or h->mu (http_internal.h: the HTTP notifier's). The two are never held together: HTTP
 *      code calls sched_* without h->mu, and the scheduler calls on_progress (which takes
 *      h->mu) and forward with no lock held. Under s->mu the scheduler admits jobs and
 *      sched_cancel ends queued ones, both taking j->mu. Nothing takes j->mu under h->mu.
 *   2. j->mu, one job's: innermost. Nothing else is locked under it, and no thread holds two
 *      jobs' mutexes. The scheduler takes it once per token (out_commit) and per admission,
 *      under s->mu only to admit or to end queued jobs; readers take it only to read fields
 *      (job_view_sync, http.c's log line). Nothing is formatted, copied in bulk or allocated
 *      under it.
 * A finished choice's slot is marked free (s->mu) before the choice is published as finished
 * (j->mu), so a client that sends its next request as soon as it has its answer finds the slot
 * free.
 * Every field of job and choice_log below names its rule: immutable (written before
 * sched_submit publishes the job under s->mu, read by any thread without a lock), guarded by
 * a mutex, atomic, or the writer's (the scheduler thread's, or a detached job's owner's). */
#ifndef LS_SCHED_H
#define LS_SCHED_H

#include "embed.h"
#include "forward.h"
#include "grammar.h"
#include "kv_cache.h"
#include "model.h"
#include "outlog.h"
#include "sampler.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define SCHED_MAX_STOP 4
#define SCHED_MAX_STOP_BYTES 256 /* the longest stop string (api.c refuses longer ones) */
#define SCHED_MAX_N 16
#define SCHED_MAX_DRAFT 32 /* draft tokens one slot verifies in a step at most */
#define SCHED_MAX_INPUTS 2048 /* embedding inputs per job (OpenAI's limit) */
#define SCHED_MAX_STOP_IDS 4 /* token ids besides EOS that end a choice (chat_stop_ids' cap) */

typedef enum { FINISH_NONE = 0, FINISH_STOP, FINISH_LENGTH, FINISH_ERROR, FINISH_CANCEL } finish_reason;

/* A validated generation request (built by api.c). Owns prompt, stop strings and bias. */
typedef struct {
    int32_t *prompt; /* (n_prompt) token ids, BOS included where wanted: every prompt, one
                        after another */
    int n_prompt;    /* in all prompts */
    int n_prompts;   /* prompts; 0 means 1 */
    int *prompt_end; /* (n_prompts) where each prompt ends in prompt; NULL for one prompt */
    int max_tokens;  /* tokens to generate at most (>= 0) */
    int n;           /* choices in all, each its own sequence and slot; n / n_prompts for each
                        prompt, prompt p's being choices p * (n / n_prompts) onwards */
    char *stop[SCHED_MAX_STOP];
    int n_stop;
    sampler_params sp; /* sp.bias points at bias below */
    logit_bias *bias;   /* (n_bias) */
    int n_bias;
    int n_top_logprobs; /* alternatives recorded per token; -1: no logprobs at all */
    bool ignore_eos;
    int32_t stop_ids[SCHED_MAX_STOP_IDS]; /* besides EOS: ids that end the choice (a chat format's end of turn) */
    int n_stop_ids;
    bool cache_prompt;   /* may reuse a slot's cached prefix (sched_params.prompt_cache too) */
    gram_rules *grammar; /* NULL, or the grammar every choice's text must follow */
    int spec_n_max;      /* draft tokens verified per step at most (0..SCHED_MAX_DRAFT); 0: no
                            speculative decoding; -1: sched_params.spec_ngram */
    int spec_n_min;      /* a shorter draft is not verified (0..spec_n_max) */
    /* Embeddings: prefill only, no sampling. Choice c is input c, the ids
     * prompt[input_off[c] .. input_off[c + 1]); n (1..SCHED_MAX_INPUTS) may exceed the slots.
     * max_tokens, stop, sp and the rest are unused. */
    bool embed;
    int *input_off; /* (n + 1) when embed, else NULL */
    /* Beam search (engine/beam.h's rules): beam_width > 0 runs one prompt as a search of that
     * many beams, each in a slot of its own (the job needs beam_width free slots at once), and
     * returns its n (<= beam_width) best hypotheses as the choices. The text that every live
     * beam agrees on streams to every choice as it becomes final. Sampling fields, grammar and
     * logprobs are unused (api.c refuses them). */
    int beam_width;
    float length_penalty; /* beam score = logprob / length^length_penalty */
} gen_request;

void gen_request_free(gen_request *r);
/* The prompt that choice c runs: its ids, their count in *len, and in *k (may be NULL) c's
 * place among that prompt's choices (its sampler's seed offset, so that a prompt's choices are
 * the same whether it comes alone or with others). An embedding job's choice c runs input c
 * (k 0). */
const int32_t *gen_request_prompt(const gen_request *r, int c, int *len, int *k);

/* One generated token as recorded for logprobs. */
typedef struct {
    int32_t id;
    float logprob;
    size_t text_end; /* bytes of the choice's decoded text through this token, before any stop
                        string cut it: the token's text begins where the previous one's ends */
    int n_top;
    int32_t top_id[SAMPLER_MAX_TOP];
    float top_logprob[SAMPLER_MAX_TOP];
} gen_token;

/* A reader's copy of what one choice has produced (job_view_sync fills it; the reader owns text
 * and toks, and reads every field without a lock). text only ever grows; it holds released
 * text (complete UTF-8 characters, with anything that might begin a stop string held back
 * until it cannot), NUL-terminated once it has a byte. */
typedef struct {
    char *text;
    size_t len, cap;
    gen_token *toks; /* (n_toks) generated tokens, in order: with logprobs only */
    int n_toks, cap_toks;
    int n_gen;       /* tokens generated (the end-of-sequence token not counted) */
    int n_cached;    /* prompt tokens found in the slot's KV cache at admission (not computed) */
    int n_drafted, n_accepted; /* speculative decoding: draft tokens verified, and accepted */
    int slot;        /* 1 + the index of the slot that runs it; 0 until admitted */
    int stop_word;   /* 1 + the index in req.stop of the stop string that ended it; 0 none */
    const float *embd; /* (dim) embedding jobs: the pooled embedding, the job's (not copied):
                          its values are final once finish is set */
    finish_reason finish;
} choice_out;

/* One choice's output log, in its job: an append-only record of released text and token
 * records (outlog.h: chunks that never move) and the counts that say how much of it is
 * published. The writer (the scheduler thread, or a detached job's owner) appends past the
 * published end without a lock (out_append, out_token), then publishes the new lengths and the
 * fields below under j->mu, once per token (out_commit). Readers copy it with job_view_sync. */
typedef struct {
    outlog text;     /* (bytes) the writer's; readers read below len */
    outlog toks;     /* (gen_token) the writer's; readers read below n_toks */
    size_t len;      /* mu: text bytes published */
    int n_toks;      /* mu: token records published */
    int n_gen, n_cached, n_drafted, n_accepted, slot, stop_word; /* mu: as choice_out's */
    float *embd;     /* (dim) embedding jobs: the pointer is immutable; the scheduler writes the
                        values without mu before it sets finish, and readers read them only
                        after seeing finish set under mu */
    finish_reason finish; /* mu */
} choice_log;

typedef struct job job;
struct job {
    gen_request req;          /* immutable */
    pthread_mutex_t mu;       /* guards the fields marked "mu" (lock order: see the top) */
    pthread_cond_t cv;        /* with mu: broadcast when output grows or a choice finishes */
    choice_log *choices;      /* (req.n) the array is immutable; its elements: see choice_log */
    int n_finished;           /* mu: choices with finish != FINISH_NONE */
    char error[256];          /* mu: set with finish FINISH_ERROR */
    double t_submit;          /* immutable: monotonic seconds */
    double t_admit, t_first;  /* mu, monotonic seconds, 0 until reached; written by the
                                 scheduler thread (a detached job's owner), which alone may
                                 also read them without mu */
    double t_end;             /* mu: when a choice last finished (monotonic seconds); 0 before */
    unsigned long long id_task; /* immutable: the scheduler's number (from 1; 0: detached) */
    atomic_bool cancelled;    /* atomic: set by any thread; honoured at the next step */
    atomic_int refs;          /* atomic: the submitter's reference and one per unfinished choice */
    struct sched_beam *beam;  /* the pointer is immutable: a beam job's search (sched_beam.h),
                                 NULL for others; what it points at: the scheduler thread */
    atomic_ullong progress;   /* atomic, written under mu: grows whenever published text or
                                 tokens grow or a choice finishes (the HTTP notifier's test) */
    atomic_bool done;         /* atomic, written under mu: every choice has finished */
    int n_admitted;           /* s->mu: choices given a slot so far */
    job *next;                /* s->mu: queue link */
};

/* What a reader (an HTTP thread) sees of a job: the request (a shallow copy of the job's, which
 * is immutable: its pointers are the job's, so the job must outlive the view) and a private
 * copy of the output as of the last job_view_sync, with the same field names as job's so that
 * formatters read either alike. Owned by one thread; no lock needed to read it. */
typedef struct {
    gen_request req;
    choice_out *choices; /* (req.n) */
    int n_finished;
    char error[256];
    double t_submit, t_admit, t_first, t_end;
    unsigned long long id_task;
    job *job;            /* the job viewed (the caller holds a reference) */
    outlog_cursor *cur;  /* (2 * req.n) where each choice's text, then tokens, were copied to */
    choice_out *next;    /* (req.n) scratch: the published counts read under mu */
} job_view;

/* An empty view of j (nothing copied yet). -1 when out of memory. */
int job_view_init(job_view *v, job *j);
/* Copies what j has published since the last call: reads the counts and fields under j->mu
 * (O(choices), no copying, no allocation under it), then copies the new text and tokens with
 * no lock held. *progress (may be NULL) receives j->progress as of that read. -1 when out of
 * memory: v is as it was. */
int job_view_sync(job_view *v, unsigned long long *progress);
void job_view_free(job_view *v);

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
    embd_pooling pooling; /* embedding jobs' pooling */
    /* Called on the scheduler thread with no lock held after every step and whenever that
     * thread has ended jobs, so that the HTTP front end can wake the connections waiting on
     * them. Must be quick and must not call sched_*. NULL: none. */
    void (*on_progress)(void *arg);
    void *progress_arg;
    /* Runs each step's batch in place of fwd_decode, with its contract (caches: the slots',
     * by slot index; it must advance each cache's n as fwd_decode does). Called on the
     * scheduler thread with no lock held. For tests (a fake model); NULL: fwd_decode. */
    int (*forward)(void *arg, kv_cache *const *caches, int n_caches, const fwd_batch *b,
                   float *logits, char *err, size_t errlen);
    void *forward_arg;
    /* Percent of a decode-only step's time that a step may take when it also feeds prompt
     * or draft rows: those rows together are sized by the step cost measured so far
     * (step_cost.h), at least 1 and then the rest of the kernels' row group (mm_row_tiling);
     * 0: no limit but batch_size (cfg prefill_step_pct). */
    int prefill_step_pct;
    /* The clock that times forward steps for that cost, in seconds, called with forward_arg
     * on the scheduler thread. For tests (a fake forward's virtual time); NULL: ls_now. */
    double (*clock)(void *arg);
} sched_params;

/* Starts the scheduler thread. The model is borrowed and must outlive the scheduler. */
sched *sched_create(const model *m, const sched_params *p, char *err, size_t errlen);
/* Stops accepting work, cancels what is queued or running, joins the thread, frees. */
void sched_destroy(sched *s);

/* Takes ownership of *req (also on failure). Returns a job holding one reference for the
 * caller, or NULL with *status 503 (queue full or shutting down) or 400 (the request can never
 * run here: n > slots, beam_width > slots, a prompt + 1 > ctx_size; embeddings: an input empty
 * or over ctx_size) and a message. */
job *sched_submit(sched *s, gen_request *req, int *status, char *err, size_t errlen);
/* A job that no scheduler runs (its owner fills it whole): takes ownership of *req; the
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

/* One slot as GET /slots shows it: a snapshot, taken under the scheduler's lock. n_past and
 * n_decoded are as of the last finished step. */
typedef struct {
    int id;                     /* the slot's index */
    bool busy;                  /* holds a running choice */
    unsigned long long id_task; /* its job's id_task; 0 when idle */
    int n_ctx;                  /* KV positions of the slot */
    int n_past;                 /* positions its KV cache holds (kept after a request ends) */
    int n_decoded;              /* tokens generated for the running choice */
} sched_slot_info;
/* Fills out[0..min(cap, slots)) and returns the number of slots. Any thread. */
int sched_get_slots(sched *s, sched_slot_info *out, int cap);

/* Ends every queued and running job (FINISH_CANCEL) within one step, and admits no more. */
void sched_cancel_all(sched *s);
/* Stops admitting new jobs (sched_submit answers 503); running ones continue. */
void sched_drain(sched *s);
/* Number of jobs queued or running. */
int sched_active(sched *s);

#endif
