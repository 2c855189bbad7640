/* scheduler: the scheduler thread, its slots and its queue (see sched.h for the contract).
 * Owns: the forward context and pool, every slot's KV cache, the queue. The scheduler thread is
 * the only one that touches slots; HTTP threads read a job's output log through a job_view
 * (the lock rules: scheduler.h), and touch the queue only under s->mu. Requests never share a
 * slot, so a request's output depends only on its own tokens, parameters and seed: never on
 * what runs beside it (forward.h's promise). */
#include "scheduler.h"

#include "common.h"
#include "forward.h"
#include "matmul.h"
#include "metrics.h"
#include "sched_beam.h"
#include "spec.h"
#include "step_cost.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    job *job;          /* NULL when the slot is free */
    int choice;        /* which of the job's choices this slot produces */
    kv_cache *kv;      /* (n_layers, ctx_size, kv_dim), allocated once */
    sampler *smp;      /* created at admission with the request's parameters */
    tok_stream ts;     /* complete UTF-8 characters only */
    int32_t *hist;     /* (ctx_size) prompt then generated ids: penalties and positions */
    int n_hist;
    int n_prompt;      /* the choice's prompt: hist[0 .. n_prompt) */
    double *embd_acc;  /* (dim) an embedding choice's pooled hidden states so far */
    int n_fed;         /* ids of hist already in the KV cache (or scheduled this step) */
    bool fed_this_step; /* prefill rows of this slot are in the step being built */
    int n_gen;
    char *held;        /* (held_cap) decoded text held back: it may begin a stop string */
    size_t n_held, held_cap;
    char *piece;       /* (piece_cap) the text one token completes: tok_stream_cap bytes */
    size_t piece_cap;
    double t_last;     /* when this slot's previous token came out */
    int stop_word;     /* 1 + the index of the stop string that ended the choice; 0 none */
    gram_state *gs;    /* the request's grammar state, or NULL */
    uint32_t *mask;    /* ((vocab + 31) / 32) tokens the grammar allows next */
    /* speculative decoding: the draft fed after the last token this step, the request's
     * bounds, the adaptive length, and the counts reported in the choice's output */
    int32_t draft[SCHED_MAX_DRAFT]; /* (n_draft) */
    int n_draft;
    int spec_n_max, spec_n_min;
    int spec_len;      /* draft tokens tried next step: grows on success, shrinks on misses */
    int spec_misses;   /* verifications in a row that accepted less than half their draft */
    int spec_wait;     /* steps to decode without a draft before trying again */
    int n_drafted, n_accepted;
    kv_cache *dkv;     /* (n_layers, ctx_size, kv_dim) of the draft model, or NULL: a prefix of
                          hist (positions past hist's are dropped as the main cache's are) */
    /* a beam job's slot (job->beam): beam_i is its beam, fixed while the job runs; kv, hist
     * and n_hist move between the job's slots after each step (beam_job_step) */
    int beam_i;
    bool beam_idle;    /* no live beam here (before the first fork, or a beam died): no rows */
    unsigned long long freed_at; /* sched.n_frees when its last request ended; 0: never used */
} slot;

struct sched {
    const model *m;
    sched_params p;
    gram_vocab *gvocab; /* the vocabulary's token trie for grammars, read-only */
    pool *pool;
    fwd_ctx *fwd;
    fwd_ctx *dfwd;      /* the draft model's forward context, or NULL */
    int32_t *d_token, *d_pos, *d_seq; /* (ctx_size) one draft-model call's rows */
    float *d_logits;    /* (vocab) its last row's logits */
    slot *slots;        /* (parallel) */
    kv_cache **caches;  /* (parallel) slots[i].kv, the fwd_decode view */
    int32_t *b_token, *b_pos, *b_seq, *b_slot; /* (max_rows) one forward step's rows */
    bool *b_logits;     /* (max_rows) */
    sched_slot_info *pub; /* (parallel) what GET /slots shows; under mu */
    bool *b_hidden;     /* (max_rows) rows of embedding choices */
    float *logits;      /* (max_rows, vocab) */
    float *hidden;      /* (max_rows, dim) their final hidden states */
    int max_rows;
    step_cost cost;     /* the fit of a step's time against its rows, from the steps run */
    unsigned long long n_frees; /* slots freed so far: the clock of slot.freed_at */
    int draft_first;    /* the slot that proposes its draft first next step */
    pthread_t thread;

    pthread_mutex_t mu; /* guards the fields below */
    pthread_cond_t cv;  /* the scheduler waits here for work */
    job *q_head, *q_tail;
    int n_queued;
    int n_busy;         /* slots holding a job */
    bool stopping, draining;
    bool cancel_all;    /* end every running and queued job at the next step */
    unsigned long long n_steps;
    unsigned long long next_task; /* the last id_task given */
    long long kv_tokens; /* sum of the slots' kv->n after the last step (for /metrics) */
};

void gen_request_free(gen_request *r) {
    free(r->prompt);
    free(r->prompt_end);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->bias);
    free(r->input_off);
    gram_rules_free(r->grammar);
    memset(r, 0, sizeof *r);
}

const int32_t *gen_request_prompt(const gen_request *r, int c, int *len, int *k) {
    if (r->embed) { /* each input its own choice */
        *len = r->input_off[c + 1] - r->input_off[c];
        if (k) *k = 0;
        return r->prompt + r->input_off[c];
    }
    int np = r->n_prompts > 1 ? r->n_prompts : 1, per = r->n / np, p = c / per;
    assert(np == 1 || r->prompt_end);
    int start = p > 0 ? r->prompt_end[p - 1] : 0, end = np > 1 ? r->prompt_end[p] : r->n_prompt;
    *len = end - start;
    if (k) *k = c % per;
    return r->prompt + start;
}

static void job_free(job *j) {
    for (int c = 0; c < j->req.n && j->choices; c++) {
        outlog_free(&j->choices[c].text);
        outlog_free(&j->choices[c].toks);
        free(j->choices[c].embd);
    }
    free(j->choices);
    sched_beam_free(j->beam);
    gen_request_free(&j->req);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void job_release(job *j) {
    if (j && atomic_fetch_sub(&j->refs, 1) == 1) job_free(j);
}

void job_wait(job *j) {
    pthread_mutex_lock(&j->mu);
    while (j->n_finished < j->req.n) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

/* The parts of a job that sched_submit and job_create_detached share, once j->req is set. */
static void job_init(job *j, int refs) {
    for (int c = 0; c < j->req.n; c++) {
        outlog_init(&j->choices[c].text, 1);
        outlog_init(&j->choices[c].toks, sizeof(gen_token));
    }
    pthread_mutex_init(&j->mu, NULL);
    ls_cond_init_monotonic(&j->cv); /* http.c times its waits on it */
    j->t_submit = ls_now();
    atomic_init(&j->cancelled, false);
    atomic_init(&j->refs, refs);
    atomic_init(&j->progress, 0);
    atomic_init(&j->done, false);
}

job *job_create_detached(gen_request *req) {
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->choices = calloc((size_t)(req->n > 0 ? req->n : 1), sizeof *j->choices))) {
        free(j);
        gen_request_free(req);
        return NULL;
    }
    j->req = *req;
    memset(req, 0, sizeof *req);
    job_init(j, 1);
    j->t_admit = j->t_submit;
    return j;
}

/* --- the output log (choice_log in scheduler.h): append without a lock, publish under mu --- */

#define OUT_OF_MEMORY_TEXT "out of memory for the generated text"

/* Each appends past the published end (the writer alone touches it) and returns false when
 * memory ran out; the caller then ends the choice with an error (text or logprobs that stop
 * growing would pass for a complete answer). */
static bool out_append(choice_log *o, const char *text, size_t n) {
    return outlog_write(&o->text, text, n);
}

static bool out_token(choice_log *o, const gen_token *t) {
    return outlog_write(&o->toks, t, 1);
}

/* What out_commit publishes besides the appended text and tokens. */
typedef struct {
    int n_gen, n_drafted, n_accepted, stop_word;
    finish_reason finish; /* FINISH_NONE: the choice goes on */
    const char *error;    /* with FINISH_ERROR: the job's message (NULL: keep it) */
    double t_token;       /* when a token was sampled (sets t_first once); 0: none */
} out_state;

/* Counts k more finished choices and wakes whoever waits. Called with j->mu held. */
static void finished_locked(job *j, int k) {
    j->n_finished += k;
    j->t_end = ls_now();
    if (j->n_finished == j->req.n) atomic_store_explicit(&j->done, true, memory_order_release);
    atomic_fetch_add_explicit(&j->progress, 1, memory_order_release);
    pthread_cond_broadcast(&j->cv);
}

/* Publishes what the writer appended to choice c and st, under j->mu: the one lock a token
 * costs the writer, held for a few stores (no copying, no allocation, no formatting). */
static void out_commit(job *j, int c, const out_state *st) {
    choice_log *o = &j->choices[c];
    pthread_mutex_lock(&j->mu);
    if (st->t_token > 0 && j->t_first == 0) j->t_first = st->t_token;
    bool grew = o->len != o->text.n || o->n_toks != (int)o->toks.n;
    o->len = o->text.n;
    o->n_toks = (int)o->toks.n;
    o->n_gen = st->n_gen;
    o->n_drafted = st->n_drafted;
    o->n_accepted = st->n_accepted;
    o->stop_word = st->stop_word;
    if (st->finish == FINISH_ERROR && st->error)
        snprintf(j->error, sizeof j->error, "%s", st->error);
    if (st->finish != FINISH_NONE) {
        o->finish = st->finish;
        finished_locked(j, 1);
    } else if (grew) {
        atomic_fetch_add_explicit(&j->progress, 1, memory_order_release);
        pthread_cond_broadcast(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
}

void job_finish_choice(job *j, int c, const char *text, size_t len, int n_gen, finish_reason why) {
    out_state st = {.n_gen = n_gen, .finish = why, .t_token = ls_now()};
    if (!out_append(&j->choices[c], text, len)) { /* an error, never a shorter text */
        st.finish = FINISH_ERROR;
        st.error = OUT_OF_MEMORY_TEXT;
    }
    out_commit(j, c, &st);
}

/* --- what readers see: job_view --- */

int job_view_init(job_view *v, job *j) {
    memset(v, 0, sizeof *v);
    size_t n = j->req.n > 0 ? (size_t)j->req.n : 1;
    v->choices = calloc(n, sizeof *v->choices);
    v->next = calloc(n, sizeof *v->next);
    v->cur = calloc(2 * n, sizeof *v->cur);
    if (!v->choices || !v->next || !v->cur) {
        job_view_free(v);
        return -1;
    }
    v->req = j->req; /* immutable: the pointers stay the job's */
    v->job = j;
    v->t_submit = j->t_submit;
    v->id_task = j->id_task;
    for (int c = 0; c < j->req.n; c++) v->choices[c].embd = j->choices[c].embd;
    return 0;
}

void job_view_free(job_view *v) {
    for (int c = 0; v->choices && c < v->req.n; c++) {
        free(v->choices[c].text);
        free(v->choices[c].toks);
    }
    free(v->choices);
    free(v->next);
    free(v->cur);
    memset(v, 0, sizeof *v);
}

/* Room in o for len bytes of text (and a NUL) and n_toks tokens. text stays NULL while it has
 * no byte (formatters tell "no text yet" by it). */
static bool view_reserve(choice_out *o, size_t len, int n_toks) {
    if (len > 0 && len + 1 > o->cap) {
        size_t cap = len + 1 > 2 * o->cap ? len + 1 : 2 * o->cap;
        char *t = realloc(o->text, cap);
        if (!t) return false;
        o->text = t;
        o->cap = cap;
    }
    if (n_toks > o->cap_toks) {
        int cap = n_toks > 2 * o->cap_toks ? n_toks : 2 * o->cap_toks;
        gen_token *t = realloc(o->toks, (size_t)cap * sizeof *t);
        if (!t) return false;
        o->toks = t;
        o->cap_toks = cap;
    }
    return true;
}

int job_view_sync(job_view *v, unsigned long long *progress) {
    job *j = v->job;
    const int n = v->req.n;
    int n_finished;
    char error[sizeof j->error];
    double t_admit, t_first, t_end;
    pthread_mutex_lock(&j->mu);
    for (int c = 0; c < n; c++) {
        const choice_log *o = &j->choices[c];
        v->next[c] = (choice_out){.len = o->len, .n_toks = o->n_toks, .n_gen = o->n_gen,
                                  .n_cached = o->n_cached, .n_drafted = o->n_drafted,
                                  .n_accepted = o->n_accepted, .slot = o->slot,
                                  .stop_word = o->stop_word, .finish = o->finish};
    }
    n_finished = j->n_finished;
    memcpy(error, j->error, sizeof error);
    t_admit = j->t_admit, t_first = j->t_first, t_end = j->t_end;
    if (progress) *progress = atomic_load_explicit(&j->progress, memory_order_relaxed);
    pthread_mutex_unlock(&j->mu);
    for (int c = 0; c < n; c++) /* all room first: a failure leaves v as it was */
        if (!view_reserve(&v->choices[c], v->next[c].len, v->next[c].n_toks)) return -1;
    for (int c = 0; c < n; c++) {
        choice_out *o = &v->choices[c];
        const choice_out *nx = &v->next[c];
        if (nx->len > 0) {
            outlog_read(&j->choices[c].text, &v->cur[2 * c], nx->len, o->text + o->len);
            o->text[nx->len] = '\0';
        }
        if (nx->n_toks > 0) /* o->toks stays NULL until a token is recorded */
            outlog_read(&j->choices[c].toks, &v->cur[2 * c + 1], (size_t)nx->n_toks,
                        o->toks + o->n_toks);
        char *text = o->text;
        gen_token *toks = o->toks;
        size_t cap = o->cap;
        int cap_toks = o->cap_toks;
        const float *embd = o->embd;
        *o = *nx;
        o->text = text, o->toks = toks, o->cap = cap, o->cap_toks = cap_toks, o->embd = embd;
    }
    v->n_finished = n_finished;
    memcpy(v->error, error, sizeof error);
    v->t_admit = t_admit, v->t_first = t_first, v->t_end = t_end;
    return 0;
}

/* --- slots --- */

static long find_stop(const gen_request *r, const char *t, size_t n, size_t *keep);
static int stop_at(const gen_request *r, const char *t, size_t n, size_t cut);
static void beam_job_end(sched *s, job *j, finish_reason why);

/* Frees sl's per-request state and marks it free for /slots and for admission (s->mu). */
static void slot_release(sched *s, slot *sl) {
    sampler_free(sl->smp);
    sl->smp = NULL;
    gram_state_free(sl->gs);
    sl->gs = NULL;
    sl->job = NULL;
    sl->freed_at = ++s->n_frees;
    pthread_mutex_lock(&s->mu);
    s->n_busy--;
    sched_slot_info *pub = &s->pub[sl - s->slots];
    pub->busy = false;
    pub->id_task = 0;
    pub->n_past = sl->kv->n;
    pthread_mutex_unlock(&s->mu);
}

/* Ends sl's choice: its held text (with what the stream still pends) is output, unless the
 * choice failed (error: the message) or was cancelled. t_token: when the token that ended it
 * was sampled, 0 when none was. The slot is marked free before the choice is published as
 * finished, so a client that sends its next request as soon as it has its answer finds the
 * slot free (with every slot busy and no queue, it would be refused with 503). */
static void slot_finish(sched *s, slot *sl, finish_reason why, const char *error,
                        double t_token) {
    job *j = sl->job;
    if (j->beam) { /* a beam job's slots end together */
        beam_job_end(s, j, why);
        return;
    }
    const int c = sl->choice;
    /* counted before the client is woken, so a /metrics scrape sent after the response
     * already includes this request's tokens */
    unsigned long long prompt = (unsigned long long)sl->n_prompt;
    if (!j->req.embed) { /* a prompt's tokens count once, with its first choice */
        int first_of_prompt;
        gen_request_prompt(&j->req, c, &(int){0}, &first_of_prompt);
        if (first_of_prompt != 0) prompt = 0;
    }
    metrics_tokens(prompt, (unsigned long long)sl->n_gen);
    out_state st = {.n_gen = sl->n_gen, .n_drafted = sl->n_drafted,
                    .n_accepted = sl->n_accepted, .finish = why, .error = error,
                    .t_token = t_token};
    if (!j->req.embed && (why == FINISH_LENGTH || why == FINISH_STOP)) {
        /* held text could have begun a stop string; it did not, so it is output, with the
         * flushed bytes (U+FFFD for an incomplete character), which may complete one */
        size_t n = tok_stream_flush(&sl->ts, sl->piece, sl->piece_cap), keep;
        assert(n < sl->piece_cap && sl->n_held + n <= sl->held_cap);
        memcpy(sl->held + sl->n_held, sl->piece, n);
        sl->n_held += n;
        long cut = find_stop(&j->req, sl->held, sl->n_held, &keep);
        if (cut >= 0) {
            sl->stop_word = 1 + stop_at(&j->req, sl->held, sl->n_held, (size_t)cut);
            sl->n_held = (size_t)cut;
            st.finish = FINISH_STOP;
        }
        if (!out_append(&j->choices[c], sl->held, sl->n_held)) {
            st.finish = FINISH_ERROR;
            st.error = OUT_OF_MEMORY_TEXT;
        }
    }
    st.stop_word = sl->stop_word;
    slot_release(s, sl); /* before the client can learn that its answer is complete */
    out_commit(j, c, &st);
    job_release(j); /* the scheduler's reference is held once per choice */
}

/* Finds where held text must be cut: the first complete stop string, if any. Otherwise
 * *keep receives the length of the longest suffix that begins some stop string. */
static long find_stop(const gen_request *r, const char *t, size_t n, size_t *keep) {
    long cut = -1;
    *keep = 0;
    for (int i = 0; i < r->n_stop; i++) {
        const char *st = r->stop[i];
        size_t sl = strlen(st);
        const char *hit = sl <= n ? memmem(t, n, st, sl) : NULL;
        if (hit && (cut < 0 || hit - t < cut)) cut = hit - t;
        for (size_t k = sl - 1 < n ? sl - 1 : n; k > *keep; k--)
            if (!memcmp(t + n - k, st, k)) {
                *keep = k;
                break;
            }
    }
    return cut;
}

/* The index of the stop string found at t + cut (find_stop's cut); the first that fits. */
static int stop_at(const gen_request *r, const char *t, size_t n, size_t cut) {
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        if (cut + sl <= n && !memcmp(t + cut, r->stop[i], sl)) return i;
    }
    return 0; /* not reached: cut is where one of them begins */
}

static void fail_slot(sched *s, slot *sl, const char *msg);

/* Samples one token for a slot from logits and handles it; returns true when the choice has
 * finished. draft: the token fed after this row (its logits are next), or -1; *matched is set
 * when the sampled token equals it, so that the next row's logits are this sequence's. The
 * token's output is published with one lock of j->mu (out_commit, or slot_finish's). */
static bool slot_accept(sched *s, slot *sl, const float *logits, double now, int32_t draft,
                        bool *matched) {
    job *j = sl->job;
    const gen_request *r = &j->req;
    sample_info info;
    int n_top = r->n_top_logprobs;
    *matched = false;
    if (sl->gs) { /* the grammar allows these tokens; none: it cannot go on in this vocabulary */
        int allowed = gram_state_mask(sl->gs, sl->mask);
        if (allowed < 0) {
            fail_slot(s, sl, "out of memory for the grammar");
            return true;
        }
        if (allowed == 0) {
            slot_finish(s, sl, FINISH_STOP, NULL, 0);
            return true;
        }
    }
    int id = sampler_sample_masked(sl->smp, logits, sl->gs ? sl->mask : NULL, sl->hist,
                                   sl->n_hist, n_top > 0 ? n_top : 0, n_top >= 0 ? &info : NULL);
    *matched = draft >= 0 && id == draft;
    sl->n_accepted += *matched;
    if (j->t_first == 0) { /* this thread alone writes t_first (out_commit sets it) */
        metrics_ttft(now - j->t_submit);
    } else if (sl->t_last > 0) {
        metrics_itl(now - sl->t_last);
    }
    sl->t_last = now;
    bool end = tok_is_eog(s->m->tok, id) && (!r->ignore_eos || sl->gs); /* EOS, <|eot_id|>... */
    for (int i = 0; i < r->n_stop_ids; i++) end = end || id == r->stop_ids[i];
    if (sl->gs && !end && gram_state_accept_token(sl->gs, id) < 0) { /* allowed: only memory */
        slot_finish(s, sl, FINISH_ERROR, "out of memory for the grammar", now);
        return true;
    }
    if (end) {
        slot_finish(s, sl, FINISH_STOP, NULL, now);
        return true;
    }
    sl->hist[sl->n_hist++] = id;
    sl->n_gen++;
    size_t n = tok_stream_feed(&sl->ts, id, sl->piece, sl->piece_cap);
    /* append to the held text, then release what can no longer begin a stop string: what
     * stays held is shorter than the longest stop string (see sched_create) */
    assert(n < sl->piece_cap && sl->n_held + n <= sl->held_cap);
    memcpy(sl->held + sl->n_held, sl->piece, n);
    sl->n_held += n;
    size_t keep;
    long cut = find_stop(r, sl->held, sl->n_held, &keep);
    size_t release = cut >= 0 ? (size_t)cut : sl->n_held - keep;
    choice_log *o = &j->choices[sl->choice];
    bool kept = true;
    if (n_top >= 0) {
        gen_token t = {.id = id, .logprob = info.logprob, .n_top = info.n_top,
                       .text_end = o->text.n + sl->n_held}; /* released plus held text */
        memcpy(t.top_id, info.top_id, sizeof t.top_id);
        memcpy(t.top_logprob, info.top_logprob, sizeof t.top_logprob);
        kept = out_token(o, &t);
    }
    kept = kept && out_append(o, sl->held, release);
    if (!kept) {
        slot_finish(s, sl, FINISH_ERROR, OUT_OF_MEMORY_TEXT, now);
        return true;
    }
    finish_reason why = FINISH_NONE;
    if (cut >= 0) {
        sl->stop_word = 1 + stop_at(r, sl->held, sl->n_held, (size_t)cut);
        sl->n_held = 0;
        sl->ts.n_pending = 0; /* what follows the stop string is not output */
        why = FINISH_STOP;
    } else {
        memmove(sl->held, sl->held + release, sl->n_held - release);
        sl->n_held -= release;
        if (sl->gs && gram_state_done(sl->gs)) /* complete, and nothing else may follow */
            why = FINISH_STOP;
        else if (sl->n_gen >= r->max_tokens || sl->n_hist >= s->p.ctx_size)
            why = FINISH_LENGTH;
    }
    if (why != FINISH_NONE) {
        slot_finish(s, sl, why, NULL, now); /* publishes this token's output too */
        return true;
    }
    out_commit(j, sl->choice,
               &(out_state){.n_gen = sl->n_gen, .n_drafted = sl->n_drafted,
                            .n_accepted = sl->n_accepted, .t_token = now});
    return false;
}

/* Tokens at the start of prompt (n) that sl's KV cache already holds. */
static int cached_prefix(const slot *sl, const int32_t *prompt, int n) {
    int lim = sl->kv->n < n ? sl->kv->n : n, k = 0;
    while (k < lim && sl->hist[k] == prompt[k]) k++;
    return k;
}

/* Speculative decoding's adaptive draft length (slot_verify): a slot's first draft has at most
 * SCHED_SPEC_START tokens; after k verifications in a row that accepted less than half their
 * draft (a draft token must be accepted about half the time to pay for its row), the slot
 * decodes 2^k steps (at most SCHED_SPEC_MAX_WAIT) without drafting. A rejected draft row costs
 * a fraction of a step (about half of one on the small demo model, whose rows are compute
 * bound), so text that does not repeat itself pays for a draft once per SCHED_SPEC_MAX_WAIT
 * steps at most. */
#define SCHED_SPEC_START 1
#define SCHED_SPEC_MAX_WAIT 32

/* reuse: positions of the slot's KV cache kept (a prefix of the prompt, shorter than it). */
static int slot_admit(sched *s, slot *sl, job *j, int choice, int reuse, char *err,
                      size_t errlen) {
    int n_prompt, k;
    const int32_t *prompt = gen_request_prompt(&j->req, choice, &n_prompt, &k);
    if (j->req.embed) { /* its own input; every row's hidden state is pooled: none reused */
        reuse = 0;
        embd_reset(sl->embd_acc, s->m->cfg.dim);
    } else {
        sampler_params sp = j->req.sp;
        sp.seed += (uint64_t)k; /* each choice of a prompt its own stream, reproducible */
        sl->smp = sampler_create(&sp, s->m->cfg.vocab_size);
        if (!sl->smp) return ls_fail(err, errlen, "out of memory for a sampler");
    }
    if (j->req.grammar && !(sl->gs = gram_state_create(j->req.grammar, s->gvocab))) {
        sampler_free(sl->smp);
        sl->smp = NULL;
        return ls_fail(err, errlen, "out of memory for a grammar state");
    }
    sl->job = j;
    sl->choice = choice;
    kv_truncate(sl->kv, reuse);
    if (sl->dkv && sl->dkv->n > reuse) kv_truncate(sl->dkv, reuse);
    memcpy(sl->hist, prompt, (size_t)n_prompt * sizeof *sl->hist);
    sl->n_hist = sl->n_prompt = n_prompt;
    sl->n_fed = reuse;
    pthread_mutex_lock(&j->mu);
    j->choices[choice].n_cached = reuse;
    j->choices[choice].slot = 1 + (int)(sl - s->slots);
    pthread_mutex_unlock(&j->mu);
    metrics_prompt_cached((unsigned long long)reuse);
    sl->n_gen = 0;
    sl->n_held = 0;
    sl->t_last = 0;
    sl->stop_word = 0;
    sl->spec_n_max = j->req.spec_n_max < 0 ? s->p.spec_ngram : j->req.spec_n_max;
    if (sl->spec_n_max > SCHED_MAX_DRAFT) sl->spec_n_max = SCHED_MAX_DRAFT;
    sl->spec_n_min = j->req.spec_n_min;
    sl->spec_len = sl->spec_n_max < SCHED_SPEC_START ? sl->spec_n_max : SCHED_SPEC_START;
    if (sl->spec_len < sl->spec_n_min && sl->spec_n_min <= sl->spec_n_max)
        sl->spec_len = sl->spec_n_min; /* else (n_min above the server's n_max) no draft fits */
    sl->spec_misses = sl->spec_wait = 0;
    sl->n_draft = sl->n_drafted = sl->n_accepted = 0;
    /* the prompt's last token is BOS alone: the first piece's space is the dummy prefix */
    tok_stream_init(&sl->ts, s->m->tok, n_prompt == 1);
    return 0;
}

/* --- the loop --- */

static void finish_unadmitted(job *j, finish_reason why);
static void dequeue_cancelled(sched *s, job *j);

/* Free slots queued job q needs before it can start: every choice of a generation job at once,
 * one for an embedding job, which then takes what is free (start_take) and the rest later. */
static int start_need(const job *q) {
    if (q->beam) return q->beam->width; /* a slot per beam, all at once */
    return q->req.embed ? 1 : q->req.n - q->n_admitted;
}

static int start_take(const job *q, int free_slots) {
    if (q->beam) return q->beam->width;
    int left = q->req.n - q->n_admitted;
    return q->req.embed && left > free_slots ? free_slots : left;
}

/* Takes the queue's head out of the queue. Called with s->mu held. */
static void unlink_head_locked(sched *s) {
    job *j = s->q_head;
    s->q_head = j->next;
    if (!s->q_head) s->q_tail = NULL;
    s->n_queued--;
}

/* A cached prefix shorter than this is no cache hit, and is not reused: every prompt begins
 * with BOS, so one token in common says nothing, and taking a slot for it would drop that
 * slot's cache for a saving of one row. */
#define SCHED_MIN_CACHE_HIT 2

/* Whether free slot a is a better place than free slot b for a prompt that shares ka and kb
 * tokens (each 0 or at least SCHED_MIN_CACHE_HIT) with their caches: the longer hit; among
 * equal hits the cache that holds least (the cheapest to lose); with no hit at all an empty
 * slot, then the least recently used (a cache just used is the likeliest to be asked for
 * again: the next turn of a conversation). */
static bool slot_better(const slot *a, int ka, const slot *b, int kb) {
    if (ka != kb) return ka > kb;
    if (ka > 0) return a->kv->n < b->kv->n;
    if ((a->kv->n == 0) != (b->kv->n == 0)) return a->kv->n == 0;
    return a->freed_at < b->freed_at;
}

/* The free slot for a prompt (n ids): the one with the longest cached prefix (in *reuse; 0
 * when cache is false or no slot holds SCHED_MIN_CACHE_HIT tokens of it), by slot_better. The
 * last prompt token is always computed: its logits start the generation. -1 when no slot is
 * free. */
static int pick_free_slot(const sched *s, const int32_t *prompt, int n, bool cache, int *reuse) {
    int best = -1, best_k = 0;
    for (int i = 0; i < s->p.parallel; i++) {
        const slot *sl = &s->slots[i];
        if (sl->job) continue;
        int k = cache ? cached_prefix(sl, prompt, n - 1) : 0;
        if (k < SCHED_MIN_CACHE_HIT) k = 0;
        if (best < 0 || slot_better(sl, k, &s->slots[best], best_k)) best = i, best_k = k;
    }
    *reuse = best_k;
    return best;
}

static void beam_admit_locked(sched *s, job *j);

/* Moves queued jobs into free slots, first come first served. Called with s->mu held. */
static void admit_locked(sched *s, double now) {
    while (s->q_head) {
        job *j = s->q_head;
        int free_slots = s->p.parallel - s->n_busy;
        bool cancelled = atomic_load(&j->cancelled);
        if (!cancelled && start_need(j) > free_slots) break;
        int first = j->n_admitted, end = first + start_take(j, free_slots);
        pthread_mutex_lock(&j->mu); /* read by the request's thread for its log line */
        if (first == 0) j->t_admit = now;
        pthread_mutex_unlock(&j->mu);
        if (cancelled || (!j->req.embed && j->req.max_tokens == 0)) {
            unlink_head_locked(s);
            finish_unadmitted(j, cancelled ? FINISH_CANCEL : FINISH_LENGTH);
            continue;
        }
        if (j->beam) {
            beam_admit_locked(s, j);
            continue;
        }
        j->n_admitted = end;
        if (end == j->req.n) unlink_head_locked(s); /* subtracts no more choices */
        int c = first;
        const bool cache = s->p.prompt_cache && j->req.cache_prompt && !j->req.embed;
        for (; c < end; c++) {
            int n_prompt;
            const int32_t *prompt = gen_request_prompt(&j->req, c, &n_prompt, NULL);
            int best_k, best = pick_free_slot(s, prompt, n_prompt, cache, &best_k);
            char err[LS_ERR_LEN];
            if (best < 0 || slot_admit(s, &s->slots[best], j, c, best_k, err, sizeof err) != 0)
                break;
            s->n_busy++;
            s->pub[best].busy = true;
            s->pub[best].id_task = j->id_task;
            s->pub[best].n_past = best_k;
            s->pub[best].n_decoded = 0;
        }
        for (; c < end; c++) { /* could not get a sampler: fail the rest */
            pthread_mutex_lock(&j->mu);
            j->choices[c].finish = FINISH_ERROR;
            snprintf(j->error, sizeof j->error, "out of memory");
            finished_locked(j, 1);
            pthread_mutex_unlock(&j->mu);
            job_release(j);
        }
    }
}

static void fail_slot(sched *s, slot *sl, const char *msg) {
    slot_finish(s, sl, FINISH_ERROR, msg, 0);
}

/* An embedding choice whose last row has run: its embedding, then the end of the choice. The
 * request's thread reads embd only after slot_finish has counted the choice (under j->mu). */
static void embed_finish(sched *s, slot *sl, double now) {
    job *j = sl->job;
    embd_finish(j->choices[sl->choice].embd, sl->embd_acc, sl->n_prompt, s->m->cfg.dim,
                s->p.pooling);
    slot_finish(s, sl, FINISH_STOP, NULL, now); /* sets t_first */
}

/* Prefill rows one step may add beside n_decode decoding rows: what the batch leaves, but at
 * least SCHED_MIN_PREFILL, so that prompts progress while every other slot decodes. */
#define SCHED_MIN_PREFILL 8
static int prefill_budget(int batch_size, int n_decode) {
    int budget = batch_size - n_decode;
    return budget < SCHED_MIN_PREFILL ? SCHED_MIN_PREFILL : budget;
}

/* The most rows step can build: n_decode <= parallel decoding rows plus their prefill budget.
 * n_decode + prefill_budget(b, n_decode) = max(b, n_decode + SCHED_MIN_PREFILL) grows with
 * n_decode, so it is largest at n_decode = parallel (not batch_size + parallel: with a batch
 * smaller than SCHED_MIN_PREFILL that overflowed the row buffers). */
static int step_max_rows(int batch_size, int parallel) {
    return parallel + prefill_budget(batch_size, parallel);
}

/* Rows a step with n_decode decoding rows may add beside them, prompt and draft rows together,
 * with sched_params.prefill_step_pct set: as many as keep the step within that share of a
 * decode-only step's time, by the cost measured over the past steps (step_cost.h), but at least
 * SCHED_MIN_CHUNK so that prompts progress (one row: with the 4 of before, 2 decoding rows and 4
 * prompt rows made a step of 8 on the 4-row tiles, 2.7x the decode-only one); raised to fill the
 * row group the kernels compute anyway; never more than prefill_budget allows. */
#define SCHED_MIN_CHUNK 1
static int step_extra_rows(const sched *s, int n_decode) {
    int cap = prefill_budget(s->p.batch_size, n_decode);
    return step_cost_prefill_rows(&s->cost, n_decode, s->p.prefill_step_pct, SCHED_MIN_CHUNK,
                                  cap);
}

/* The time now on the clock that times steps: sched_params.clock (a test's) or ls_now. */
static double step_clock(const sched *s) {
    return s->p.clock ? s->p.clock(s->p.forward_arg) : ls_now();
}

/* --- speculative decoding --- */

/* The n-gram length below which prompt lookup proposes nothing. 1 (any repeated token) drafts
 * far more often in text that does not copy, where the rows are mostly wasted. */
#define SCHED_SPEC_NGRAM_MIN 2

/* Proposes up to n tokens with the draft model: feeds it the tokens of hist its cache lacks
 * (a whole prompt at a slot's first draft), then its own greedy tokens one at a time. Returns
 * how many (0 when its forward pass fails: the step goes on without a draft). */
static int draft_model_propose(sched *s, slot *sl, int n) {
    kv_cache *dkv = sl->dkv;
    char err[LS_ERR_LEN];
    int k = 0;
    if (dkv->n >= sl->n_hist) kv_truncate(dkv, sl->n_hist - 1); /* the last token's logits */
    while (k < n) {
        int rows = 0, from = k == 0 ? dkv->n : sl->n_hist + k - 1;
        int to = k == 0 ? sl->n_hist : from + 1; /* positions [from, to) */
        for (int p = from; p < to; p++, rows++) {
            s->d_token[rows] = p < sl->n_hist ? sl->hist[p] : sl->draft[p - sl->n_hist];
            s->d_pos[rows] = p;
            s->d_seq[rows] = 0;
        }
        fwd_batch b = {.n_tokens = rows, .token = s->d_token, .pos = s->d_pos, .seq = s->d_seq};
        /* .logits NULL: the last row's only */
        if (rows < 1 || fwd_decode(s->dfwd, &sl->dkv, 1, &b, s->d_logits, err, sizeof err)) {
            kv_clear(dkv);
            return 0;
        }
        sl->draft[k++] = sample_greedy(s->d_logits, s->p.draft->cfg.vocab_size);
    }
    return k;
}

/* The draft a decoding slot verifies this step: prompt lookup over its tokens, at most limit
 * tokens, none when the request turned speculation off or when the draft would be shorter than
 * the request's n_min. Never more than the request may still generate after its bonus token,
 * nor past the end of the slot's context. */
static int slot_draft(sched *s, slot *sl, int limit) {
    const gen_request *r = &sl->job->req;
    int n = sl->spec_len < limit ? sl->spec_len : limit;
    if (n > r->max_tokens - sl->n_gen - 1) n = r->max_tokens - sl->n_gen - 1;
    if (n > s->p.ctx_size - sl->n_hist) n = s->p.ctx_size - sl->n_hist;
    if (sl->spec_wait > 0) {
        sl->spec_wait--;
        return 0;
    }
    if (n <= 0 || n < sl->spec_n_min) return 0;
    int k = sl->dkv ? draft_model_propose(s, sl, n)
                    : spec_ngram_draft(sl->hist, sl->n_hist, SCHED_SPEC_NGRAM_MIN,
                                       SPEC_NGRAM_MAX, sl->draft, n);
    return k < sl->spec_n_min ? 0 : k;
}

/* Adds decoding slot i's rows to the step at rows: its last sampled token, then its draft
 * tokens (sl->n_draft), every row with logits. Returns the new row count. */
static int add_decode_rows(sched *s, int i, int rows) {
    slot *sl = &s->slots[i];
    for (int k = 0; k <= sl->n_draft; k++) {
        s->b_token[rows] = k == 0 ? sl->hist[sl->n_hist - 1] : sl->draft[k - 1];
        s->b_pos[rows] = sl->n_hist - 1 + k;
        s->b_seq[rows] = i;
        s->b_slot[rows] = i;
        s->b_logits[rows] = true;
        s->b_hidden[rows] = false;
        rows++;
    }
    return rows;
}

static bool slot_decoding(const slot *sl) {
    return sl->job && !sl->beam_idle && sl->n_fed >= sl->n_prompt;
}

/* Adds the rows of every decoding slot: its last sampled token, and drafts of draft_budget
 * rows at most in all. The slots draft in turn from s->draft_first, which moves on by one each
 * step, so that a budget too small for every draft goes to each slot in its turn, not always
 * to the lowest ones; the rows then go in slot order. Returns the step's rows so far. */
static int add_decoding_slots(sched *s, int draft_budget) {
    const int n = s->p.parallel;
    for (int k = 0; k < n; k++) {
        slot *sl = &s->slots[(s->draft_first + k) % n];
        if (!slot_decoding(sl)) continue;
        sl->n_draft = draft_budget > 0 ? slot_draft(s, sl, draft_budget) : 0;
        draft_budget -= sl->n_draft;
    }
    s->draft_first = (s->draft_first + 1) % n;
    int rows = 0;
    for (int i = 0; i < n; i++)
        if (slot_decoding(&s->slots[i])) rows = add_decode_rows(s, i, rows);
    return rows;
}

/* Samples a slot's logits rows in order: the row of its last fed token, then one more per
 * draft token as long as the sampled token equals that draft token (a later row was computed
 * from a token the sequence does not have). Each token is sampled exactly as plain decoding
 * samples it, one draw from the request's RNG: for a draft that is one fixed token, this is
 * the standard rejection scheme (accepted with probability p(draft), else a token from p with
 * the draft removed), with the same output as without the draft. Then the KV entries of the
 * rejected draft tokens are dropped, so that the cache holds only hist's tokens (the prompt
 * cache compares them), and the next draft's length adapts: doubled after a full acceptance,
 * else as many as were accepted (at least 1, and n_min). logits: (1 + n_draft, vocab). */
static void slot_verify(sched *s, slot *sl, const float *logits, double now) {
    const int vocab = s->m->cfg.vocab_size, n_old = sl->n_hist, k = sl->n_draft;
    int accepted = 0;
    sl->n_draft = 0;
    sl->n_drafted += k;
    for (int r = 0; r <= k && sl->job; r++) {
        bool matched;
        bool done = slot_accept(s, sl, logits + (size_t)r * vocab, now,
                                r < k ? sl->draft[r] : -1, &matched);
        accepted += matched;
        if (done || !matched) break;
    }
    if (k == 0) return;
    int valid = n_old; /* positions whose KV entry is hist's token */
    while (valid - n_old < k && valid < sl->n_hist && sl->hist[valid] == sl->draft[valid - n_old])
        valid++;
    if (sl->kv->n > valid) kv_truncate(sl->kv, valid);
    if (sl->dkv && sl->dkv->n > valid) kv_truncate(sl->dkv, valid);
    metrics_spec((unsigned long long)k, (unsigned long long)accepted);
    int lo = sl->spec_n_min > 1 ? sl->spec_n_min : 1;
    if (accepted == k) sl->spec_len = 2 * sl->spec_len < sl->spec_n_max ? 2 * sl->spec_len
                                                                         : sl->spec_n_max;
    else sl->spec_len = accepted > lo ? accepted : lo;
    sl->spec_misses = 2 * accepted >= k ? 0 : sl->spec_misses + 1;
    sl->spec_wait = 0;
    if (sl->spec_misses > 0)
        sl->spec_wait = sl->spec_misses >= 5 ? SCHED_SPEC_MAX_WAIT : 1 << sl->spec_misses;
}

/* --- beam-search jobs (their search and text: sched_beam.c) --- */

bool sched_job_append_all(job *j, const char *text, size_t n) {
    for (int c = 0; c < j->req.n; c++) {
        if (!out_append(&j->choices[c], text, n)) return false;
        /* n_gen: the writer's own last published value (it alone writes it) */
        out_state st = {.n_gen = j->choices[c].n_gen};
        out_commit(j, c, &st);
    }
    return true;
}

long sched_find_stop(const gen_request *r, const char *t, size_t n, size_t *keep) {
    return find_stop(r, t, n, keep);
}

/* Makes sl beam `beam` of job j. Beam 0 computes the prompt (its first reuse positions already
 * cached); the others idle until the first step forks beam 0 into them, keeping meanwhile what
 * they hold. No sampler, grammar or draft: beam_step ranks, and the draft model's cache is
 * dropped because hist moves between the job's slots. Called with s->mu held. */
static void beam_slot_admit(sched *s, slot *sl, job *j, int beam, int reuse) {
    sl->job = j;
    sl->choice = 0;
    sl->beam_i = beam;
    sl->beam_idle = beam > 0;
    sl->n_gen = 0;
    sl->n_held = 0;
    sl->t_last = 0;
    sl->n_draft = sl->n_drafted = sl->n_accepted = 0;
    sl->spec_n_max = sl->spec_n_min = sl->spec_len = sl->spec_misses = sl->spec_wait = 0;
    if (sl->dkv) kv_clear(sl->dkv);
    int idx = (int)(sl - s->slots);
    j->beam->slot[beam] = idx;
    s->pub[idx] = (sched_slot_info){.id = idx, .busy = true, .id_task = j->id_task,
                                    .n_ctx = s->p.ctx_size, .n_past = sl->kv->n};
    if (beam > 0) return;
    int n_prompt;
    const int32_t *prompt = gen_request_prompt(&j->req, 0, &n_prompt, NULL);
    kv_truncate(sl->kv, reuse);
    memcpy(sl->hist, prompt, (size_t)n_prompt * sizeof *sl->hist);
    sl->n_hist = sl->n_prompt = n_prompt;
    sl->n_fed = reuse;
    s->pub[idx].n_past = reuse;
    pthread_mutex_lock(&j->mu);
    j->choices[0].n_cached = reuse;
    for (int c = 0; c < j->req.n; c++)
        j->choices[c].slot = 1 + idx;
    pthread_mutex_unlock(&j->mu);
    metrics_prompt_cached((unsigned long long)reuse);
}

/* Admits beam job j, the queue's head, into beam_width free slots: beam 0 into the one whose
 * cache shares the longest prefix with the prompt, the others (whose caches the first fork
 * overwrites) into those whose caches hold least, so that the prompt cache loses least. Called
 * with s->mu held. */
static void beam_admit_locked(sched *s, job *j) {
    j->n_admitted = j->req.n;
    unlink_head_locked(s);
    int n_prompt, reuse;
    const int32_t *prompt = gen_request_prompt(&j->req, 0, &n_prompt, NULL);
    int best = pick_free_slot(s, prompt, n_prompt, s->p.prompt_cache && j->req.cache_prompt,
                              &reuse);
    beam_slot_admit(s, &s->slots[best], j, 0, reuse);
    for (int beam = 1; beam < j->beam->width; beam++) {
        int pick = -1;
        for (int i = 0; i < s->p.parallel; i++)
            if (!s->slots[i].job && (pick < 0 || s->slots[i].kv->n < s->slots[pick].kv->n))
                pick = i;
        beam_slot_admit(s, &s->slots[pick], j, beam, 0);
    }
    s->n_busy += j->beam->width;
    metrics_beam_running(1);
}

/* Ends beam job j: its choices with why unless FINISH_NONE (sched_beam_advance finished them),
 * then frees its slots, each keeping its KV cache and hist for the prompt cache. */
static void beam_job_end(sched *s, job *j, finish_reason why) {
    sched_beam *b = j->beam;
    if (why != FINISH_NONE) sched_beam_abort(b, j, why);
    unsigned long long gen = 0;
    pthread_mutex_lock(&j->mu);
    for (int c = 0; c < j->req.n; c++)
        gen += (unsigned long long)j->choices[c].n_gen;
    pthread_mutex_unlock(&j->mu);
    metrics_tokens((unsigned long long)b->n_prompt, gen);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < b->width; i++) {
        slot *sl = &s->slots[b->slot[i]];
        sl->job = NULL;
        sl->beam_idle = false;
        sl->freed_at = ++s->n_frees;
        s->pub[b->slot[i]].busy = false;
        s->pub[b->slot[i]].id_task = 0;
        s->pub[b->slot[i]].n_past = sl->kv->n;
    }
    s->n_busy -= b->width;
    pthread_mutex_unlock(&s->mu);
    metrics_beam_running(-1);
    for (int c = 0, n = j->req.n; c < n; c++) /* j may be freed by the last */
        job_release(j);
}

/* After a step that gave beam job j its rows: the ranking, then the caches moved so that new
 * beam i lives in the job's slot i, holding its parent's positions, with its newest token in
 * hist to feed next step. */
static void beam_job_step(sched *s, job *j, double now) {
    sched_beam *b = j->beam;
    pthread_mutex_lock(&j->mu);
    bool first = j->t_first == 0;
    if (first) j->t_first = now;
    pthread_mutex_unlock(&j->mu);
    if (first) metrics_ttft(now - j->t_submit);
    beam_next next;
    int rc = sched_beam_advance(b, j, &next);
    if (rc <= 0) {
        beam_job_end(s, j, rc < 0 ? FINISH_ERROR : FINISH_NONE);
        return;
    }
    sched_beam_seq seq[BEAM_MAX_WIDTH];
    for (int i = 0; i < b->width; i++) {
        const slot *sl = &s->slots[b->slot[i]];
        seq[i] = (sched_beam_seq){.kv = sl->kv, .hist = sl->hist, .n_hist = sl->n_hist};
    }
    bool copied = sched_beam_reorder(&next, b->width, seq) >= 0;
    for (int i = 0; i < b->width; i++) {
        slot *sl = &s->slots[b->slot[i]];
        sl->kv = s->caches[b->slot[i]] = seq[i].kv;
        sl->hist = seq[i].hist;
        sl->n_hist = seq[i].n_hist;
        sl->beam_idle = i >= next.n_live;
        if (sl->beam_idle) continue;
        sl->hist[sl->n_hist++] = next.token[i];
        sl->n_prompt = sl->n_fed = b->n_prompt;
        sl->n_gen = b->n_tok;
    }
    if (!copied) fail_slot(s, &s->slots[b->slot[0]], "beam search: a KV cache copy failed");
}

/* Hands beam slot sl's logits row (vocab) to its job, which ranks once all its rows are in. */
static void beam_take_row(slot *sl, const float *row) {
    sched_beam *b = sl->job->beam;
    b->rows[sl->beam_i] = row;
    b->n_rows++;
}

/* Ranks every beam job whose rows this step produced (each once: at its beam 0's slot). */
static void beam_jobs_step(sched *s, double now) {
    for (int i = 0; i < s->p.parallel; i++) {
        slot *sl = &s->slots[i];
        if (sl->job && sl->job->beam && sl->beam_i == 0 && sl->job->beam->n_rows > 0)
            beam_job_step(s, sl->job, now);
    }
}

/* Prompt rows the prefilling slots still need. */
static int prompt_rows_left(const sched *s) {
    int n = 0;
    for (int i = 0; i < s->p.parallel; i++) {
        const slot *sl = &s->slots[i];
        if (sl->job && !sl->beam_idle && sl->n_fed < sl->n_prompt) n += sl->n_prompt - sl->n_fed;
    }
    return n;
}

/* Adds at most budget prompt rows after the step's first rows (decoding and draft ones), oldest
 * admission first. Sets *any_hidden when an embedding's rows are among them. Returns the step's
 * rows. */
static int add_prefill_rows(sched *s, int rows, int budget, bool *any_hidden) {
    assert(rows + budget <= s->max_rows);
    for (int pass = 0; pass < s->p.parallel && budget > 0; pass++) {
        slot *best = NULL;
        int best_i = -1;
        for (int i = 0; i < s->p.parallel; i++) {
            slot *sl = &s->slots[i];
            if (!sl->job || sl->beam_idle || sl->n_fed >= sl->n_prompt || sl->fed_this_step)
                continue;
            if (!best || sl->job->t_admit < best->job->t_admit) best = sl, best_i = i;
        }
        if (!best) break;
        int left = best->n_prompt - best->n_fed;
        int take = left < budget ? left : budget;
        const bool embed = best->job->req.embed;
        for (int k = 0; k < take; k++) {
            int pos = best->n_fed + k;
            s->b_token[rows] = best->hist[pos];
            s->b_pos[rows] = pos;
            s->b_seq[rows] = best_i;
            s->b_slot[rows] = best_i;
            s->b_logits[rows] = !embed && pos == best->n_prompt - 1;
            s->b_hidden[rows] = embed;
            rows++;
        }
        *any_hidden |= embed;
        best->n_fed += take;
        best->fed_this_step = true;
        budget -= take;
    }
    return rows;
}

/* One batched forward step over every busy slot. */
static void step(sched *s) {
    int rows = 0, n_decode = 0;
    bool any_hidden = false;
    pthread_mutex_lock(&s->mu);
    bool cancel_all = s->cancel_all;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->p.parallel; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job) continue;
        if (cancel_all || atomic_load(&sl->job->cancelled)) {
            slot_finish(s, sl, FINISH_CANCEL, NULL, 0);
            continue;
        }
        n_decode += slot_decoding(sl);
    }
    /* Beside the decoding rows, one budget of rows (step_extra_rows: the batch, and the time a
     * step may take) for prompts and drafts together, prompts first: a prompt row is work that
     * must be done, and delaying it delays that request's first token, where a draft row is a
     * bet that pays only if accepted (about half the time pays for it) and its slot decodes
     * anyway. Drafts get what the prompts leave, and never push the step past batch_size.
     * A lone decoding stream with no prompt waiting holds up nobody but itself, and a longer
     * draft is its own gain: its drafts take the whole batch. */
    int extra = step_extra_rows(s, n_decode), for_prompts = prompt_rows_left(s);
    if (for_prompts > extra) for_prompts = extra;
    int for_drafts = n_decode == 1 && for_prompts == 0 ? s->p.batch_size : extra - for_prompts;
    if (for_drafts > s->p.batch_size - n_decode - for_prompts)
        for_drafts = s->p.batch_size - n_decode - for_prompts;
    rows = add_decoding_slots(s, for_drafts);
    const int decode_rows = rows; /* the decoding slots' tokens and drafts */
    rows = add_prefill_rows(s, rows, extra - (rows - n_decode), &any_hidden);
    for (int i = 0; i < s->p.parallel; i++) s->slots[i].fed_this_step = false;
    assert(rows <= s->max_rows);
    if (rows == 0) return;

    char err[LS_ERR_LEN];
    fwd_batch b = {.n_tokens = rows,
                   .token = s->b_token,
                   .pos = s->b_pos,
                   .seq = s->b_seq,
                   .logits = s->b_logits,
                   .hidden = any_hidden ? s->b_hidden : NULL,
                   .hidden_out = s->hidden};
    double t0 = step_clock(s);
    int rc = s->p.forward ? s->p.forward(s->p.forward_arg, s->caches, s->p.parallel, &b,
                                         s->logits, err, sizeof err)
                          : fwd_decode(s->fwd, s->caches, s->p.parallel, &b, s->logits, err,
                                       sizeof err);
    if (rc == 0) {
        const double dt = step_clock(s) - t0;
        step_cost_add(&s->cost, rows, dt);
        metrics_step(dt, decode_rows, rows - decode_rows);
    }
    if (rc != 0) {
        for (int r = 0; r < rows; r++) {
            slot *sl = &s->slots[s->b_slot[r]];
            kv_clear(sl->kv); /* nothing in it is trusted for a later prompt */
            sl->n_draft = 0;
            if (sl->job) fail_slot(s, sl, err);
        }
        return;
    }
    double now = ls_now();
    int out = 0, n_hidden = 0;
    /* a slot's logits rows are consecutive: its last token's (decoding) or its prompt's last
     * (prefill), then one per draft token */
    for (int r = 0; r < rows; r++) {
        if (any_hidden && s->b_hidden[r]) { /* an embedding's rows come in position order */
            slot *sl = &s->slots[s->b_slot[r]];
            const int dim = s->m->cfg.dim;
            embd_add(sl->embd_acc, s->hidden + (size_t)n_hidden++ * dim, dim, s->p.pooling);
            if (s->b_pos[r] == sl->n_prompt - 1 && sl->job) embed_finish(s, sl, now);
            continue;
        }
        if (!s->b_logits[r]) continue;
        slot *sl = &s->slots[s->b_slot[r]];
        if (sl->job && sl->job->beam) {
            beam_take_row(sl, s->logits + (size_t)out++ * s->m->cfg.vocab_size);
            continue;
        }
        int n = 1 + sl->n_draft;
        slot_verify(s, sl, s->logits + (size_t)out * s->m->cfg.vocab_size, now);
        out += n;
        r += n - 1;
    }
    beam_jobs_step(s, now);
    long long kv_tokens = 0;
    for (int i = 0; i < s->p.parallel; i++) kv_tokens += s->slots[i].kv->n;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->p.parallel; i++) {
        s->pub[i].n_past = s->slots[i].kv->n;
        s->pub[i].n_decoded = s->slots[i].job ? s->slots[i].n_gen : 0;
    }
    s->n_steps++;
    s->kv_tokens = kv_tokens;
    pthread_mutex_unlock(&s->mu);
}

static void progress(sched *s) {
    if (s->p.on_progress) s->p.on_progress(s->p.progress_arg);
}

static void *sched_main(void *arg) {
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        admit_locked(s, ls_now());
        if (!s->stopping && s->n_busy == 0 && !s->q_head) {
            pthread_mutex_unlock(&s->mu);
            progress(s); /* admission may have ended jobs (max_tokens 0, cancelled) */
            pthread_mutex_lock(&s->mu);
        }
        while (!s->stopping && s->n_busy == 0 && !s->q_head) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        admit_locked(s, ls_now());
        pthread_mutex_unlock(&s->mu);
        step(s);
        progress(s);
    }
    /* shutting down: end what runs and what waits */
    for (int i = 0; i < s->p.parallel; i++)
        if (s->slots[i].job) slot_finish(s, &s->slots[i], FINISH_CANCEL, NULL, 0);
    pthread_mutex_lock(&s->mu);
    dequeue_cancelled(s, NULL);
    pthread_mutex_unlock(&s->mu);
    progress(s);
    return NULL;
}

/* Frees what sched_create allocated (any part may be missing); the thread is not running. */
static void sched_free(sched *s) {
    if (!s) return;
    for (int i = 0; s->slots && i < s->p.parallel; i++) {
        kv_free(s->slots[i].kv);
        kv_free(s->slots[i].dkv);
        free(s->slots[i].hist);
        free(s->slots[i].held);
        free(s->slots[i].piece);
        free(s->slots[i].mask);
        free(s->slots[i].embd_acc);
    }
    gram_vocab_free(s->gvocab);
    fwd_free(s->fwd);
    fwd_free(s->dfwd);
    free(s->d_token);
    free(s->d_pos);
    free(s->d_seq);
    free(s->d_logits);
    pool_destroy(s->pool);
    free(s->slots);
    free(s->caches);
    free(s->b_token);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_slot);
    free(s->b_logits);
    free(s->pub);
    free(s->b_hidden);
    free(s->logits);
    free(s->hidden);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* One step of one token through f into kv, which is then cleared, before the first request. It maps
 * every weight page and wakes the thread pool: the first request's first step was otherwise the
 * slowest by far (TinyLlama Q4_0, 32 prompt rows: 323 ms, against 131 after a warm-up), and the
 * step cost fit, which weighs that step most for its many rows, then gave prompts 1 row a step
 * beside decoding streams until it was forgotten. */
static int warm_up(fwd_ctx *f, kv_cache *kv, float *logits, char *err, size_t errlen) {
    const int32_t zero = 0;
    fwd_batch b = {.n_tokens = 1, .token = &zero, .pos = &zero, .seq = &zero};
    int rc = fwd_decode(f, &kv, 1, &b, logits, err, errlen);
    kv_clear(kv);
    return rc;
}

sched *sched_create(const model *m, const sched_params *p, char *err, size_t errlen) {
    if (!m->tok) {
        ls_fail(err, errlen, "the model has no tokenizer");
        return NULL;
    }
    sched *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->m = m;
    s->p = *p;
    if (m->cfg.n_layers > 0) /* the bulk of a step's matmuls: the feed-forward weights */
        mm_row_tiling(m->layers[0].w_up.type, &s->cost.exact, &s->cost.group);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->max_rows = step_max_rows(p->batch_size, p->parallel);
    s->slots = calloc((size_t)p->parallel, sizeof *s->slots);
    s->caches = calloc((size_t)p->parallel, sizeof *s->caches);
    s->b_token = calloc((size_t)s->max_rows, sizeof(int32_t));
    s->b_pos = calloc((size_t)s->max_rows, sizeof(int32_t));
    s->b_seq = calloc((size_t)s->max_rows, sizeof(int32_t));
    s->b_slot = calloc((size_t)s->max_rows, sizeof(int32_t));
    s->b_logits = calloc((size_t)s->max_rows, sizeof(bool));
    s->pub = calloc((size_t)p->parallel, sizeof *s->pub);
    s->b_hidden = calloc((size_t)s->max_rows, sizeof(bool));
    s->logits = ls_alloc((size_t)s->max_rows * m->cfg.vocab_size * sizeof(float));
    s->hidden = ls_alloc((size_t)s->max_rows * m->cfg.dim * sizeof(float));
    if (!s->slots || !s->caches || !s->b_token || !s->b_pos || !s->b_seq || !s->b_slot ||
        !s->b_logits || !s->b_hidden || !s->pub || !s->logits || !s->hidden)
        goto oom;
    for (int i = 0; i < p->parallel; i++) {
        slot *sl = &s->slots[i];
        s->pub[i].id = i;
        s->pub[i].n_ctx = p->ctx_size;
        sl->kv = kv_create(&m->cfg, p->ctx_size, p->kv, err, errlen);
        if (!sl->kv) goto fail;
        s->caches[i] = sl->kv;
        sl->hist = calloc((size_t)p->ctx_size, sizeof *sl->hist);
        /* after each token, held keeps less than the longest stop string; then one token's
         * text (at most piece_cap - 1 bytes) is appended */
        sl->piece_cap = tok_stream_cap(m->tok);
        sl->held_cap = SCHED_MAX_STOP_BYTES + sl->piece_cap;
        sl->held = malloc(sl->held_cap);
        sl->piece = malloc(sl->piece_cap);
        int n_mask = m->cfg.vocab_size > tok_n_vocab(m->tok) ? m->cfg.vocab_size
                                                             : tok_n_vocab(m->tok);
        sl->mask = calloc(((size_t)n_mask + 31) / 32, sizeof *sl->mask); /* ids past the
            tokenizer's stay 0: never allowed */
        sl->embd_acc = calloc((size_t)m->cfg.dim, sizeof *sl->embd_acc);
        if (!sl->hist || !sl->held || !sl->piece || !sl->mask || !sl->embd_acc) goto oom;
        if (p->draft && !(sl->dkv = kv_create(&p->draft->cfg, p->ctx_size, p->kv, err, errlen)))
            goto fail;
    }
    if (!(s->gvocab = gram_vocab_from_tokenizer(m->tok))) goto oom;
    if (!(s->pool = pool_create(p->threads))) goto oom;
    if (!(s->fwd = fwd_create(m, p->batch_size, s->pool, err, errlen))) goto fail;
    if (p->draft) {
        if (spec_check_draft_vocab(m, p->draft, err, errlen)) goto fail;
        if (!(s->dfwd = fwd_create(p->draft, p->batch_size, s->pool, err, errlen))) goto fail;
        s->d_token = calloc((size_t)p->ctx_size, sizeof(int32_t));
        s->d_pos = calloc((size_t)p->ctx_size, sizeof(int32_t));
        s->d_seq = calloc((size_t)p->ctx_size, sizeof(int32_t));
        s->d_logits = ls_alloc((size_t)p->draft->cfg.vocab_size * sizeof(float));
        if (!s->d_token || !s->d_pos || !s->d_seq || !s->d_logits) goto oom;
    }
    if (!p->forward && (warm_up(s->fwd, s->slots[0].kv, s->logits, err, errlen) ||
                        (p->draft && warm_up(s->dfwd, s->slots[0].dkv, s->d_logits, err, errlen))))
        goto fail;
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        ls_fail(err, errlen, "cannot start the scheduler thread");
        goto fail;
    }
    return s;
oom:
    ls_fail(err, errlen, "out of memory for %d slots of %d tokens", p->parallel, p->ctx_size);
fail:
    sched_free(s);
    return NULL;
}

void sched_destroy(sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    sched_free(s);
}

/* True when a job needing n slots would have to wait and max_queue jobs already wait.
 * "Waiting" means beyond the slots: queued jobs that the scheduler thread has not yet moved
 * into free slots are not waiting. Counting every queued job instead made a burst of
 * requests that arrives before the scheduler thread runs see 503s while slots were free.
 * Admission is first come first served and stops at the first job that does not fit, so
 * the walk below mirrors admit_locked. Called with s->mu held; the queue is short (bounded
 * by parallel + max_queue). */
static bool queue_full_locked(const sched *s, const job *j) {
    int free_slots = s->p.parallel - s->n_busy, waiting = 0;
    for (const job *q = s->q_head; q; q = q->next) {
        if (waiting == 0 && start_need(q) <= free_slots)
            free_slots -= start_take(q, free_slots);
        else waiting++;
    }
    bool would_wait = waiting > 0 || start_need(j) > free_slots;
    return would_wait && waiting >= s->p.max_queue;
}

/* An embedding request's inputs: 1..SCHED_MAX_INPUTS of them, each 1..ctx_size ids. */
static int check_inputs(const sched *s, const gen_request *req, char *err, size_t errlen) {
    if (req->n < 1 || req->n > SCHED_MAX_INPUTS || !req->input_off)
        return ls_fail(err, errlen, "%d inputs; 1 to %d are accepted", req->n, SCHED_MAX_INPUTS);
    for (int c = 0; c < req->n; c++) {
        int n = req->input_off[c + 1] - req->input_off[c];
        if (n < 1 || n > s->p.ctx_size)
            return ls_fail(err, errlen, "input %d has %d tokens; a slot's context holds %d", c, n,
                           s->p.ctx_size);
    }
    return 0;
}

/* A beam search's request: one prompt, beam_width (1..BEAM_MAX_WIDTH) slots at most as many as
 * the server has, n (1..beam_width) results. */
static int check_beam(const sched *s, const gen_request *req, char *err, size_t errlen) {
    if (req->beam_width > s->p.parallel || req->beam_width > BEAM_MAX_WIDTH)
        return ls_fail(err, errlen,
                       "a beam search of %d beams needs %d slots; this server has %d",
                       req->beam_width, req->beam_width, s->p.parallel);
    if (req->n < 1 || req->n > req->beam_width)
        return ls_fail(err, errlen, "n = %d results of %d beams", req->n, req->beam_width);
    if (req->n_prompts > 1)
        return ls_fail(err, errlen, "a beam search takes one prompt");
    return 0;
}

job *sched_submit(sched *s, gen_request *req, int *status, char *err, size_t errlen) {
    job *j = NULL;
    *status = 400;
    if (req->embed) {
        if (check_inputs(s, req, err, errlen) != 0) goto fail;
    } else if (req->beam_width > 0) {
        if (check_beam(s, req, err, errlen) != 0) goto fail;
    } else if (req->n < 1 || req->n > s->p.parallel) {
        ls_fail(err, errlen, "n = %d needs %d slots; this server has %d", req->n, req->n,
                s->p.parallel);
        goto fail;
    }
    int np = req->n_prompts > 1 ? req->n_prompts : 1;
    if (!req->embed && (req->n % np != 0 ||
        (np > 1 && (!req->prompt_end || req->prompt_end[np - 1] != req->n_prompt)))) {
        ls_fail(err, errlen, "%d choices do not divide among %d prompts", req->n, np);
        goto fail;
    }
    for (int c = 0; !req->embed && c < req->n; c++) {
        int len;
        gen_request_prompt(req, c, &len, NULL);
        if (len < 1 || len >= s->p.ctx_size) {
            ls_fail(err, errlen,
                    "the prompt has %d tokens; a slot's context holds %d (prompt plus at least "
                    "one generated token)",
                    len, s->p.ctx_size);
            goto fail;
        }
    }
    j = calloc(1, sizeof *j);
    if (!j || !(j->choices = calloc((size_t)req->n, sizeof *j->choices))) {
        *status = 503;
        ls_fail(err, errlen, "out of memory");
        goto fail;
    }
    for (int c = 0; req->embed && c < req->n; c++)
        if (!(j->choices[c].embd = malloc((size_t)s->m->cfg.dim * sizeof(float)))) {
            for (int k = 0; k < c; k++)
                free(j->choices[k].embd);
            *status = 503;
            ls_fail(err, errlen, "out of memory");
            goto fail;
        }
    if (req->beam_width > 0 && !(j->beam = sched_beam_create(s->m, req, s->p.ctx_size, err,
                                                             errlen))) {
        *status = 503;
        goto fail;
    }
    j->req = *req;
    memset(req, 0, sizeof *req);
    job_init(j, 1 + j->req.n); /* the caller's reference and one per choice */

    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->draining) {
        pthread_mutex_unlock(&s->mu);
        *status = 503;
        ls_fail(err, errlen, "the server is shutting down");
        goto fail_job;
    }
    if (queue_full_locked(s, j)) {
        pthread_mutex_unlock(&s->mu);
        *status = 503;
        ls_fail(err, errlen, "the queue is full (%d waiting); try again later", s->p.max_queue);
        goto fail_job;
    }
    j->id_task = ++s->next_task; /* j->mu not needed: nobody else has j yet */
    if (s->q_tail) s->q_tail->next = j;
    else s->q_head = j;
    s->q_tail = j;
    s->n_queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return j;
fail_job:
    atomic_store(&j->refs, 1);
    job_release(j);
    return NULL;
fail:
    if (j) free(j->choices);
    free(j);
    gen_request_free(req);
    return NULL;
}

/* Ends the choices of a job that never got a slot (those of an embedding job's inputs beyond
 * n_admitted; the admitted ones end in their slots). Called with s->mu held, the job already
 * unlinked. */
static void finish_unadmitted(job *j, finish_reason why) {
    const int first = j->n_admitted, n = j->req.n; /* j may be freed by the last release */
    j->n_admitted = n;
    pthread_mutex_lock(&j->mu);
    for (int c = first; c < n; c++)
        j->choices[c].finish = why;
    finished_locked(j, n - first);
    pthread_mutex_unlock(&j->mu);
    for (int c = first; c < n; c++)
        job_release(j);
}

/* Unlinks queued job j (or every queued job when j is NULL). Called with s->mu held. */
static void dequeue_cancelled(sched *s, job *j) {
    job **link = &s->q_head, *prev = NULL;
    while (*link) {
        job *q = *link;
        if (j && q != j) {
            prev = q;
            link = &q->next;
            continue;
        }
        *link = q->next;
        if (s->q_tail == q) s->q_tail = prev;
        s->n_queued--;
        finish_unadmitted(q, FINISH_CANCEL);
        if (j) break;
    }
}

void sched_cancel(sched *s, job *j) {
    atomic_store(&j->cancelled, true);
    pthread_mutex_lock(&s->mu);
    dequeue_cancelled(s, j); /* a queued job leaves the queue now, not when a slot frees */
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_cancel_all(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    s->cancel_all = true;
    dequeue_cancelled(s, NULL);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_get_stats(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    out->busy_slots = s->n_busy;
    out->queued = s->n_queued;
    out->slots = s->p.parallel;
    out->steps = s->n_steps;
    out->kv_tokens = s->kv_tokens;
    out->kv_capacity = (long long)s->p.parallel * s->p.ctx_size;
    pthread_mutex_unlock(&s->mu);
}

void sched_drain(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
}

int sched_active(sched *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_busy + s->n_queued;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int sched_get_slots(sched *s, sched_slot_info *out, int cap) {
    pthread_mutex_lock(&s->mu);
    int n = s->p.parallel;
    memcpy(out, s->pub, (size_t)(cap < n ? cap : n) * sizeof *out);
    pthread_mutex_unlock(&s->mu);
    return n;
}
