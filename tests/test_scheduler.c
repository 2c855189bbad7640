/* test_scheduler: server/scheduler.c driven by a fake forward step (sched_params.forward) on the
 * tiny gguf_builder model, which only lends its tokenizer and shapes. The fake records every
 * step's rows, advances the caches as fwd_decode does and makes token t + 1 the argmax after
 * token t (EOS after FAKE_EOS_AFTER, 'z'). Gated, it holds each step until the test releases
 * it, so what is queued, admitted or cancelled between two steps is deterministic without a
 * sleep. Covers admission order, cancellation in every state, prompt-cache reuse and slot
 * choice, queue limits, embedding jobs wider than the slots, several prompts per job, the
 * per-step row budget, and the per-step token budget: step_cost.c's fit and chunk size from
 * given step times, and the scheduler's chunks (prompt and draft rows) on a fake whose steps
 * take a virtual time that grows with their rows. */
#include "check.h"
#include "common.h"
#include "gguf_builder.h"
#include "model.h"
#include "scheduler.h"
#include "step_cost.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define MAX_STEPS 1024
#define MAX_ROWS 64
#define EOS_ID 2
#define TOK(ch) (3 + (ch)) /* the byte piece of an ASCII character */
#define FAKE_EOS_AFTER TOK('z')
#define MIN_PREFILL 8 /* scheduler.c's SCHED_MIN_PREFILL: prefill rows a step may always add */

typedef struct {
    int token, pos, seq;
    bool logits, hidden;
} row;

typedef struct {
    int n;
    row r[MAX_ROWS];
} step_rec;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gated;      /* each step waits until the test has released it */
    int entered;     /* steps begun */
    int released;    /* steps the test has let go */
    int bad;         /* rows that broke fwd_decode's contract (a gap, a seq out of range) */
    step_rec *steps; /* (MAX_STEPS) */
    int vocab, dim;
    double fixed, per_row; /* a step of n rows advances vclock by fixed + per_row * n */
    double vclock;         /* virtual seconds: the scheduler's step clock (fake_clock) */
} fake;

static int next_token(int t) {
    return t == FAKE_EOS_AFTER ? EOS_ID : t + 1;
}

static int fake_forward(void *arg, kv_cache *const *caches, int n_caches, const fwd_batch *b,
                        float *logits, char *err, size_t errlen) {
    (void)err, (void)errlen;
    fake *f = arg;
    int bad = 0;
    for (int i = 0; i < b->n_tokens; i++) { /* the caches are the scheduler thread's */
        if (b->seq[i] < 0 || b->seq[i] >= n_caches || b->pos[i] > caches[b->seq[i]]->n) {
            bad++;
            continue;
        }
        caches[b->seq[i]]->n = b->pos[i] + 1;
    }
    pthread_mutex_lock(&f->mu);
    int k = f->entered++;
    f->bad += bad + (b->n_tokens > MAX_ROWS);
    f->vclock += f->fixed + f->per_row * b->n_tokens;
    if (k < MAX_STEPS) {
        step_rec *s = &f->steps[k];
        s->n = b->n_tokens < MAX_ROWS ? b->n_tokens : MAX_ROWS;
        for (int i = 0; i < s->n; i++)
            s->r[i] =
                (row){b->token[i], b->pos[i], b->seq[i],
                      b->logits ? b->logits[i] : i == b->n_tokens - 1, b->hidden && b->hidden[i]};
    }
    pthread_cond_broadcast(&f->cv);
    while (f->gated && f->released <= k)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    int out = 0, nh = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->logits ? b->logits[i] : i == b->n_tokens - 1) {
            float *lg = logits + (size_t)out++ * f->vocab;
            memset(lg, 0, (size_t)f->vocab * sizeof *lg);
            lg[next_token(b->token[i])] = 10;
        }
        if (b->hidden && b->hidden[i]) { /* (token, 1, 0, ...): mean pooling keeps the mean id */
            float *h = b->hidden_out + (size_t)nh++ * f->dim;
            memset(h, 0, (size_t)f->dim * sizeof *h);
            h[0] = (float)b->token[i];
            h[1] = 1;
        }
    }
    return 0;
}

static double fake_clock(void *arg) {
    fake *f = arg;
    pthread_mutex_lock(&f->mu);
    double t = f->vclock;
    pthread_mutex_unlock(&f->mu);
    return t;
}

static void fake_init(fake *f, const model *m, bool gated) {
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->gated = gated;
    f->steps = calloc(MAX_STEPS, sizeof *f->steps);
    f->vocab = m->cfg.vocab_size;
    f->dim = m->cfg.dim;
}

static void fake_free(fake *f) {
    CHECK(f->bad == 0, "%d rows broke the forward contract or overflowed the record", f->bad);
    CHECK(f->entered <= MAX_STEPS, "%d steps, more than recorded", f->entered);
    free(f->steps);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
}

/* Waits until step k (from 1) has begun: the scheduler is then inside it. */
static void wait_entered(fake *f, int k) {
    pthread_mutex_lock(&f->mu);
    while (f->entered < k)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

/* Lets the oldest held step finish. */
static void release_step(fake *f) {
    pthread_mutex_lock(&f->mu);
    f->released++;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void ungate(fake *f) {
    pthread_mutex_lock(&f->mu);
    f->gated = false;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static int n_entered(fake *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->entered;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* A copy of step k's rows (k from 1); none past MAX_STEPS (fake_free fails the test then). */
static step_rec get_step(fake *f, int k) {
    if (k > MAX_STEPS) return (step_rec){0};
    pthread_mutex_lock(&f->mu);
    step_rec s = f->steps[k - 1];
    pthread_mutex_unlock(&f->mu);
    return s;
}

/* A scheduler on the fake, its steps timed by the fake's virtual clock, prefill_step_pct pct. */
static sched *make_sched_pct(const model *m, fake *f, int parallel, int batch, int max_queue,
                             bool cache, int pct) {
    sched_params p = {.parallel = parallel,
                      .ctx_size = 64,
                      .batch_size = batch,
                      .threads = 1,
                      .max_queue = max_queue,
                      .kv = KV_F32,
                      .prompt_cache = cache,
                      .pooling = EMBD_POOL_MEAN,
                      .forward = fake_forward,
                      .forward_arg = f,
                      .prefill_step_pct = pct,
                      .clock = fake_clock};
    char err[LS_ERR_LEN] = "";
    sched *s = sched_create(m, &p, err, sizeof err);
    CHECK(s != NULL, "sched_create: %s", err);
    return s;
}

static sched *make_sched(const model *m, fake *f, int parallel, int batch, int max_queue,
                         bool cache) {
    return make_sched_pct(m, f, parallel, batch, max_queue, cache, 0);
}

/* Greedy generation of max_tokens from prompt (n_prompt ids), as n choices. */
static gen_request gen_req(const int32_t *prompt, int n_prompt, int n, int max_tokens) {
    gen_request r = {0};
    r.prompt = malloc((size_t)n_prompt * sizeof *r.prompt);
    memcpy(r.prompt, prompt, (size_t)n_prompt * sizeof *r.prompt);
    r.n_prompt = n_prompt;
    r.n = n;
    r.max_tokens = max_tokens;
    sampler_params_default(&r.sp);
    r.sp.temperature = 0;
    r.n_top_logprobs = -1;
    r.cache_prompt = true;
    return r;
}

static job *submit(sched *s, gen_request r) {
    int status = 0;
    char err[LS_ERR_LEN] = "";
    job *j = sched_submit(s, &r, &status, err, sizeof err);
    CHECK(j != NULL, "sched_submit: %d %s", status, err);
    return j;
}

/* sched_submit's status for a request it must refuse (0 when it accepted it), err its message. */
static int refused(sched *s, gen_request r, char *err, size_t errlen) {
    int status = 0;
    job *j = sched_submit(s, &r, &status, err, errlen);
    if (!j) return status;
    sched_cancel(s, j);
    job_release(j);
    return 0;
}

typedef struct {
    int slot, n_cached, n_gen;
    finish_reason finish;
    char text[64];
} choice_view;

static choice_view view(job *j, int c) {
    choice_view v = {0};
    job_view jv;
    CHECK(job_view_init(&jv, j) == 0 && job_view_sync(&jv, NULL) == 0, "job_view");
    const choice_out *o = &jv.choices[c];
    v.slot = o->slot;
    v.n_cached = o->n_cached;
    v.n_gen = o->n_gen;
    v.finish = o->finish;
    snprintf(v.text, sizeof v.text, "%.*s", (int)o->len, o->text ? o->text : "");
    job_view_free(&jv);
    return v;
}

static int finished(job *j) {
    pthread_mutex_lock(&j->mu);
    int n = j->n_finished;
    pthread_mutex_unlock(&j->mu);
    return n;
}

/* Rows of step st whose token is t. */
static int rows_with(const step_rec *st, int t) {
    int n = 0;
    for (int i = 0; i < st->n; i++)
        n += st->r[i].token == t;
    return n;
}

/* --- admission --- */

/* First come first served: a job that needs more slots than are free waits, and so does every
 * job behind it, even one that would fit. */
static void test_admission_order(const model *m) {
    fake f;
    fake_init(&f, m, true);
    sched *s = make_sched(m, &f, 3, 16, 4, false);
    if (!s) return fake_free(&f);
    const int32_t pa[] = {1, 10, TOK('a')}, pb[] = {1, 20, TOK('a')}, pc[] = {1, 30, TOK('a')};
    job *a = submit(s, gen_req(pa, 3, 1, 2));
    wait_entered(&f, 1); /* A's prompt; the scheduler now waits inside step 1 */
    job *b = submit(s, gen_req(pb, 3, 3, 1)); /* needs all three slots; two are free */
    job *c = submit(s, gen_req(pc, 3, 1, 1)); /* would fit, but comes after B */
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.busy_slots == 1 && st.queued == 2, "busy %d, queued %d", st.busy_slots, st.queued);
    step_rec r = get_step(&f, 1);
    CHECK(r.n == 3 && rows_with(&r, 10) == 1, "step 1: %d rows", r.n);
    release_step(&f);
    wait_entered(&f, 2);
    r = get_step(&f, 2);
    CHECK(r.n == 1 && r.r[0].token == TOK('b') && r.r[0].pos == 3 && r.r[0].logits,
          "step 2: A's decoding row alone (%d rows)", r.n);
    CHECK(view(b, 0).slot == 0 && view(c, 0).slot == 0, "B or C admitted with two slots free");
    release_step(&f); /* A ends: max_tokens 2 */
    wait_entered(&f, 3);
    r = get_step(&f, 3);
    CHECK(r.n == 9 && rows_with(&r, 20) == 3 && rows_with(&r, 30) == 0,
          "step 3: B's three prompts and not C (%d rows)", r.n);
    int sb[3] = {view(b, 0).slot, view(b, 1).slot, view(b, 2).slot};
    CHECK(sb[0] && sb[1] && sb[2] && sb[0] != sb[1] && sb[1] != sb[2] && sb[0] != sb[2],
          "B's slots %d %d %d", sb[0], sb[1], sb[2]);
    CHECK(view(c, 0).slot == 0, "C admitted beside B");
    release_step(&f);
    wait_entered(&f, 4);
    r = get_step(&f, 4);
    CHECK(r.n == 3 && rows_with(&r, 30) == 1, "step 4: C (%d rows)", r.n);
    release_step(&f);
    job_wait(a);
    job_wait(b);
    job_wait(c);
    choice_view va = view(a, 0), vc = view(c, 0);
    CHECK(va.finish == FINISH_LENGTH && va.n_gen == 2 && !strcmp(va.text, "bc"), "A: %d %d '%s'",
          (int)va.finish, va.n_gen, va.text);
    CHECK(vc.finish == FINISH_LENGTH && !strcmp(vc.text, "b"), "C: '%s'", vc.text);
    for (int k = 0; k < 3; k++)
        CHECK(view(b, k).finish == FINISH_LENGTH && !strcmp(view(b, k).text, "b"), "B %d", k);
    CHECK(n_entered(&f) == 4, "%d steps; 4 expected", n_entered(&f));
    job_release(a);
    job_release(b);
    job_release(c);
    ungate(&f);
    sched_destroy(s);
    fake_free(&f);
}

/* --- cancellation --- */

/* A queued job ends at once; a prefilling and a decoding one at the next step, keeping what
 * they generated; a finished one is untouched. No slot leaks: a job that needs every slot runs
 * afterwards. */
static void test_cancel(const model *m) {
    fake f;
    fake_init(&f, m, true);
    sched *s = make_sched(m, &f, 2, 8, 4, false);
    if (!s) return fake_free(&f);
    int32_t pa[] = {1, 10, TOK('a')}, pb[20], pq[] = {1, 30, TOK('a')};
    pb[0] = 1;
    for (int i = 1; i < 20; i++)
        pb[i] = 20;
    job *a = submit(s, gen_req(pa, 3, 1, 50));
    wait_entered(&f, 1);
    job *b = submit(s, gen_req(pb, 20, 1, 50)); /* 20 prompt rows: three steps of prefill */
    job *q = submit(s, gen_req(pq, 3, 2, 50));  /* needs both slots: queued */
    sched_cancel(s, q);                         /* queued: ends now, with no step */
    CHECK(finished(q) == 2 && view(q, 0).finish == FINISH_CANCEL &&
              view(q, 1).finish == FINISH_CANCEL && view(q, 0).slot == 0,
          "queued job: %d finished", finished(q));
    release_step(&f);
    wait_entered(&f, 2);
    step_rec r = get_step(&f, 2);
    CHECK(r.n == 1 + MIN_PREFILL && rows_with(&r, 20) == MIN_PREFILL - 1,
          "step 2: A's row and 8 of B's prompt (%d rows)", r.n);
    sched_cancel(s, b); /* prefilling */
    CHECK(finished(b) == 0, "a running job ended before the next step");
    release_step(&f);
    wait_entered(&f, 3);
    r = get_step(&f, 3);
    CHECK(r.n == 1 && r.r[0].token == TOK('c'), "step 3: A's row alone (%d rows)", r.n);
    choice_view vb = view(b, 0);
    CHECK(finished(b) == 1 && vb.finish == FINISH_CANCEL && vb.n_gen == 0 && !vb.text[0],
          "prefilling job: finish %d, %d tokens", (int)vb.finish, vb.n_gen);
    sched_cancel(s, a); /* decoding: step 3's token still counts */
    release_step(&f);
    job_wait(a);
    choice_view va = view(a, 0);
    CHECK(va.finish == FINISH_CANCEL && va.n_gen == 3 && !strcmp(va.text, "bcd"),
          "decoding job: finish %d, %d tokens, '%s'", (int)va.finish, va.n_gen, va.text);
    CHECK(n_entered(&f) == 3, "%d steps after the cancellations", n_entered(&f));
    ungate(&f);
    job *all = submit(s, gen_req(pa, 3, 2, 2)); /* both slots: none leaked */
    job_wait(all);
    choice_view v0 = view(all, 0);
    CHECK(v0.finish == FINISH_LENGTH && !strcmp(v0.text, "bc"), "after: '%s'", v0.text);
    sched_cancel(s, all); /* finished: nothing changes */
    CHECK(finished(all) == 2 && view(all, 1).finish == FINISH_LENGTH &&
              !strcmp(view(all, 1).text, "bc"),
          "a finished job changed when cancelled");
    job_release(a);
    job_release(b);
    job_release(q);
    job_release(all);
    sched_destroy(s);
    fake_free(&f);
}

/* --- prompt cache --- */

/* Submits prompt, waits, and checks its n_cached and that the forward pass saw exactly the
 * rows past the cached prefix. Returns the choice. */
static choice_view run_cached(sched *s, fake *f, const int32_t *p, int n, bool cache_prompt,
                              int want_cached) {
    int mark = n_entered(f);
    gen_request r = gen_req(p, n, 1, 1);
    r.cache_prompt = cache_prompt;
    job *j = submit(s, r);
    if (!j) return (choice_view){0};
    job_wait(j);
    choice_view v = view(j, 0);
    job_release(j);
    CHECK(v.n_cached == want_cached, "n_cached %d, want %d", v.n_cached, want_cached);
    int fed = 0, next = want_cached;
    for (int k = mark + 1; k <= n_entered(f); k++) {
        step_rec st = get_step(f, k);
        for (int i = 0; i < st.n; i++, fed++) {
            CHECK(st.r[i].pos == next && st.r[i].token == p[next],
                  "row at %d: token %d, want position %d token %d", st.r[i].pos, st.r[i].token,
                  next, next < n ? p[next] : -1);
            next++;
        }
    }
    CHECK(fed == n - want_cached, "%d rows computed for %d new tokens", fed, n - want_cached);
    return v;
}

/* A prompt that extends a finished one (generated token included) reuses all of it; one that
 * shares a shorter prefix reuses that prefix; cache_prompt false reuses nothing; the same
 * prompt again computes only its last token, and the text is the same as the first time. */
static void test_prompt_cache(const model *m) {
    fake f;
    fake_init(&f, m, false);
    sched *s = make_sched(m, &f, 2, 16, 4, true);
    if (!s) return fake_free(&f);
    const int32_t p1[] = {1, 50, 51, 52, 53, TOK('a')};
    int mark = n_entered(&f);
    job *j1 = submit(s, gen_req(p1, 6, 1, 2)); /* cache: p1 and 'b' (the second token is not fed) */
    if (j1) {
        job_wait(j1);
        choice_view v = view(j1, 0);
        CHECK(v.n_cached == 0 && !strcmp(v.text, "bc"), "first: %d cached, '%s'", v.n_cached,
              v.text);
        CHECK(n_entered(&f) - mark == 2, "first: %d steps", n_entered(&f) - mark);
        job_release(j1);
    }
    const int32_t p2[] = {1, 50, 51, 52, 53, TOK('a'), TOK('b'), 99};
    choice_view v2 = run_cached(s, &f, p2, 8, true, 7);    /* the prompt and the generated token */
    CHECK(!strcmp(v2.text, "a"), "second: '%s'", v2.text); /* after 99: 100, 'a' */
    const int32_t p3[] = {1, 50, 51, 70, TOK('m')};
    choice_view v3 = run_cached(s, &f, p3, 5, true, 3);
    CHECK(!strcmp(v3.text, "n"), "third: '%s'", v3.text);
    run_cached(s, &f, p3, 5, false, 0); /* the request's cache_prompt false: all of it again */
    choice_view v5 = run_cached(s, &f, p3, 5, true, 4); /* the same prompt: its last token only */
    CHECK(!strcmp(v5.text, v3.text), "repeat: '%s', first time '%s'", v5.text, v3.text);
    sched_destroy(s);
    fake_free(&f);
}

/* Slot of the choice run_cached returns (1 + index), for prompt p run once more. */
static int run_slot(sched *s, fake *f, const int32_t *p, int n, int want_cached) {
    return run_cached(s, f, p, n, true, want_cached).slot;
}

/* Every prompt begins with BOS, so every cached slot shares one token with a new prompt: that
 * is no cache hit. Different prompts in turn take the empty slot first, then the least recently
 * used one (not the one holding least), so each prompt sent again finds its cache. */
static void test_prompt_cache_bos(const model *m) {
    fake f;
    fake_init(&f, m, false);
    sched *s = make_sched(m, &f, 2, 16, 4, true);
    if (!s) return fake_free(&f);
    const int32_t pa[] = {1, 60, 61, 62, 63, 64, TOK('a')}, pb[] = {1, 70, 71, TOK('a')};
    const int32_t pc[] = {1, 80, 81, TOK('a')};
    int sa = run_slot(s, &f, pa, 7, 0);
    int sb = run_slot(s, &f, pb, 4, 0); /* BOS alone in common: the empty slot */
    CHECK(sa > 0 && sb > 0 && sa != sb, "B took slot %d, A's cache is in %d", sb, sa);
    CHECK(run_slot(s, &f, pa, 7, 6) == sa, "A again: not its own slot"); /* all but its last */
    CHECK(run_slot(s, &f, pb, 4, 3) == sb, "B again: not its own slot");
    /* no free slot shares more than BOS with C: A's is the least recently used (B's holds
     * less, and used to be dropped for that) */
    CHECK(run_slot(s, &f, pc, 4, 0) == sa, "C did not take the least recently used slot");
    CHECK(run_slot(s, &f, pb, 4, 3) == sb, "B after C: its cache is gone");
    sched_destroy(s);
    fake_free(&f);
}

/* --- queue limits --- */

/* max_queue counts jobs that wait beyond the free slots: jobs the scheduler has not yet moved
 * into free slots do not count; past the limit sched_submit answers 503. */
static void test_queue_limits(const model *m) {
    fake f;
    fake_init(&f, m, true);
    sched *s = make_sched(m, &f, 3, 16, 1, false);
    if (!s) return fake_free(&f);
    const int32_t p[] = {1, 10, TOK('a')};
    job *j[4] = {submit(s, gen_req(p, 3, 1, 50))};
    wait_entered(&f, 1); /* held inside step 1: nothing is admitted until it ends */
    j[1] = submit(s, gen_req(p, 3, 1, 50)); /* two free slots: neither of these waits */
    j[2] = submit(s, gen_req(p, 3, 1, 50));
    j[3] = submit(s, gen_req(p, 3, 1, 50)); /* waits: the one place in the queue */
    char err[LS_ERR_LEN] = "";
    int status = refused(s, gen_req(p, 3, 1, 50), err, sizeof err);
    CHECK(status == 503 && strstr(err, "queue is full"), "a fifth job: %d %s", status, err);
    status = refused(s, gen_req(p, 3, 4, 50), err, sizeof err);
    CHECK(status == 400, "n = 4 on 3 slots: %d %s", status, err);
    int32_t longp[64] = {1};
    status = refused(s, gen_req(longp, 64, 1, 1), err, sizeof err);
    CHECK(status == 400, "a prompt of 64 in a context of 64: %d %s", status, err);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.queued == 3 && st.busy_slots == 1, "queued %d, busy %d", st.queued, st.busy_slots);
    sched_drain(s);
    status = refused(s, gen_req(p, 3, 1, 1), err, sizeof err);
    CHECK(status == 503 && strstr(err, "shutting down"), "draining: %d %s", status, err);
    for (int k = 0; k < 4; k++)
        if (j[k]) sched_cancel(s, j[k]);
    ungate(&f);
    for (int k = 0; k < 4; k++)
        if (j[k]) {
            job_wait(j[k]);
            CHECK(view(j[k], 0).finish == FINISH_CANCEL, "job %d: %d", k,
                  (int)view(j[k], 0).finish);
            job_release(j[k]);
        }
    sched_destroy(s);
    fake_free(&f);
}

/* --- embeddings --- */

#define N_INPUTS 5
#define INPUT_TAG 150 /* input c is {1, INPUT_TAG + c, ..., INPUT_TAG + c}, c + 2 ids */

/* Five inputs on two slots: each runs whole in one slot, at most two at a time, in input order;
 * each pooled embedding is the mean of its fake hidden states; a job behind waits until the
 * last input has a slot. */
static gen_request embed_req(void) {
    gen_request r = {0};
    int n_ids = 0;
    r.input_off = calloc(N_INPUTS + 1, sizeof *r.input_off);
    r.prompt = calloc(64, sizeof *r.prompt);
    for (int c = 0; c < N_INPUTS; c++) {
        r.prompt[n_ids++] = 1;
        for (int k = 0; k <= c; k++)
            r.prompt[n_ids++] = INPUT_TAG + c;
        r.input_off[c + 1] = n_ids;
    }
    r.n_prompt = n_ids;
    r.n = N_INPUTS;
    r.embed = true;
    r.n_top_logprobs = -1;
    return r;
}

static void test_embeddings(const model *m) {
    fake f;
    fake_init(&f, m, false);
    sched *s = make_sched(m, &f, 2, 16, 4, true);
    if (!s) return fake_free(&f);
    gen_request r = embed_req();
    job *e = submit(s, r);
    const int32_t pg[] = {1, 10, TOK('a')};
    job *g = submit(s, gen_req(pg, 3, 1, 1));
    if (!e || !g) goto done;
    job_wait(e);
    job_wait(g);
    const int dim = m->cfg.dim;
    for (int c = 0; c < N_INPUTS; c++) {
        pthread_mutex_lock(&e->mu);
        const float *v = e->choices[c].embd;
        double mean = (1.0 + (c + 1) * (INPUT_TAG + c)) / (c + 2), norm = sqrt(mean * mean + 1);
        bool ok = e->choices[c].finish == FINISH_STOP && fabs(v[0] - mean / norm) < 1e-5 &&
                  fabs(v[1] - 1 / norm) < 1e-5;
        for (int d = 2; d < dim; d++)
            ok = ok && v[d] == 0;
        CHECK(ok, "input %d: finish %d, embedding (%g, %g), want (%g, %g)", c,
              (int)e->choices[c].finish, v[0], v[1], mean / norm, 1 / norm);
        pthread_mutex_unlock(&e->mu);
    }
    /* the step where each input (and the generation) first ran, and where its rows went: a
     * row past BOS carries its input's tag */
    int first[N_INPUTS + 1], seq_of[N_INPUTS], next_pos[N_INPUTS];
    for (int c = 0; c <= N_INPUTS; c++)
        first[c] = -1;
    for (int c = 0; c < N_INPUTS; c++)
        next_pos[c] = 1;
    for (int k = 1; k <= n_entered(&f); k++) {
        step_rec st = get_step(&f, k);
        bool in_step[N_INPUTS] = {false};
        int inputs = 0;
        for (int i = 0; i < st.n; i++) {
            const row *w = &st.r[i];
            if (w->token == 10 && first[N_INPUTS] < 0) first[N_INPUTS] = k;
            bool tagged = w->token >= INPUT_TAG && w->token < INPUT_TAG + N_INPUTS;
            CHECK(!(w->hidden && w->logits) && (!tagged || w->hidden) &&
                      (w->token != 10 || !w->hidden),
                  "row %d of step %d: token %d, hidden %d, logits %d", i, k, w->token, w->hidden,
                  w->logits);
            if (!tagged) continue;
            int c = w->token - INPUT_TAG;
            if (first[c] < 0) first[c] = k, seq_of[c] = w->seq;
            CHECK(w->seq == seq_of[c] && w->pos == next_pos[c], "input %d: row at %d in seq %d", c,
                  w->pos, w->seq);
            next_pos[c] = w->pos + 1;
            inputs += !in_step[c];
            in_step[c] = true;
        }
        CHECK(inputs <= 2, "step %d: %d inputs on two slots", k, inputs);
    }
    for (int c = 0; c < N_INPUTS; c++) {
        CHECK(next_pos[c] == c + 2, "input %d: %d rows", c, next_pos[c]);
        CHECK(c == 0 || first[c] >= first[c - 1], "input %d began before input %d", c, c - 1);
    }
    CHECK(first[N_INPUTS] >= first[N_INPUTS - 1], "the job behind began before the last input");
done:
    job_release(e);
    job_release(g);
    sched_destroy(s);
    fake_free(&f);
}

/* Cancelled while two inputs run and three wait: the waiting ones end at once, the running
 * ones in their slots, and nothing more runs. */
static void test_embeddings_cancel(const model *m) {
    fake f;
    fake_init(&f, m, true);
    sched *s = make_sched(m, &f, 2, 16, 4, true);
    if (!s) return fake_free(&f);
    job *e = submit(s, embed_req());
    if (e) {
        wait_entered(&f, 1);
        step_rec st = get_step(&f, 1);
        CHECK(st.n == 5 && rows_with(&st, INPUT_TAG) == 1 && rows_with(&st, INPUT_TAG + 1) == 2,
              "step 1: inputs 0 and 1 (%d rows)", st.n);
        sched_cancel(s, e);
        CHECK(finished(e) == 3, "%d inputs ended at the cancel; the 3 unadmitted expected",
              finished(e));
        release_step(&f);
        job_wait(e);
        for (int c = 0; c < N_INPUTS; c++) {
            choice_view v = view(e, c);
            CHECK(v.finish == (c < 2 ? FINISH_STOP : FINISH_CANCEL) && (c < 2) == (v.slot != 0),
                  "input %d: finish %d, slot %d", c, (int)v.finish, v.slot);
        }
        CHECK(n_entered(&f) == 1, "%d steps", n_entered(&f));
        job_release(e);
    }
    ungate(&f);
    sched_destroy(s);
    fake_free(&f);
}

/* --- several prompts --- */

/* Two prompts, two choices each: each choice prefills its own prompt and continues it. */
static void test_prompts(const model *m) {
    fake f;
    fake_init(&f, m, false);
    sched *s = make_sched(m, &f, 4, 16, 4, false);
    if (!s) return fake_free(&f);
    const int32_t p[] = {1, 40, TOK('a'), 1, 41, TOK('w')};
    gen_request r = gen_req(p, 6, 4, 5);
    r.n_prompts = 2;
    r.prompt_end = malloc(2 * sizeof *r.prompt_end);
    r.prompt_end[0] = 3;
    r.prompt_end[1] = 6;
    job *j = submit(s, r);
    if (j) {
        job_wait(j);
        for (int c = 0; c < 4; c++) {
            choice_view v = view(j, c);
            bool second = c >= 2; /* after 'w': x y z, then EOS */
            CHECK(v.finish == (second ? FINISH_STOP : FINISH_LENGTH) &&
                      !strcmp(v.text, second ? "xyz" : "bcdef") && v.n_gen == (second ? 3 : 5),
                  "choice %d: finish %d, '%s'", c, (int)v.finish, v.text);
        }
        int tag_rows[2] = {0};
        for (int k = 1; k <= n_entered(&f); k++) {
            step_rec st = get_step(&f, k);
            for (int i = 0; i < st.n; i++)
                if (st.r[i].pos == 1) tag_rows[st.r[i].token - 40]++;
        }
        CHECK(tag_rows[0] == 2 && tag_rows[1] == 2, "prompt rows: %d and %d", tag_rows[0],
              tag_rows[1]);
        job_release(j);
    }
    gen_request odd = gen_req(p, 6, 3, 5); /* three choices do not divide among two prompts */
    odd.n_prompts = 2;
    odd.prompt_end = malloc(2 * sizeof *odd.prompt_end);
    odd.prompt_end[0] = 3;
    odd.prompt_end[1] = 6;
    char err[LS_ERR_LEN];
    CHECK(refused(s, odd, err, sizeof err) == 400, "n 3 on two prompts: %s", err);
    sched_destroy(s);
    fake_free(&f);
}

/* --- the row budget --- */

/* Five jobs with prompts of several lengths on three slots. In every step each decoding slot has
 * its one row (the token it sampled, at the next position), and the prefill rows beside n
 * decoding rows are at most max(batch - n, MIN_PREFILL): at most batch rows in all while
 * batch >= n + MIN_PREFILL. */
static void test_row_budget(const model *m, int batch) {
    fake f;
    fake_init(&f, m, true);
    sched *s = make_sched(m, &f, 3, batch, 8, false);
    if (!s) return fake_free(&f);
    enum { N_JOBS = 5, MAX_TOK = 6 };
    const int lens[N_JOBS] = {30, 25, 3, 17, 9};
    job *j[N_JOBS];
    for (int k = 0; k < N_JOBS; k++) {
        int32_t p[32];
        p[0] = 1;
        for (int i = 1; i < lens[k]; i++)
            p[i] = TOK('a');
        j[k] = submit(s, gen_req(p, lens[k], 1, MAX_TOK));
        /* the others queue while the first step is held, so they meet the first job's decoding
         * however the threads are scheduled (without it, a slow submitter under TSan once saw
         * each job run alone) */
        if (k == 0) wait_entered(&f, 1);
    }
    ungate(&f);
    for (int k = 0; k < N_JOBS; k++)
        if (j[k]) job_wait(j[k]);
    struct {
        bool decoding;
        int next_pos, next_tok, gen;
    } seq[3] = {{0}};
    int mixed = 0, most = 0;
    for (int k = 1; k <= n_entered(&f); k++) {
        step_rec st = get_step(&f, k);
        int n_decode = 0, has[3] = {0};
        for (int i = 0; i < st.n; i++)
            has[st.r[i].seq]++;
        for (int q = 0; q < 3; q++) {
            if (!seq[q].decoding) continue;
            n_decode++;
            bool found = false;
            for (int i = 0; i < st.n; i++)
                found |= st.r[i].seq == q && st.r[i].pos == seq[q].next_pos &&
                         st.r[i].token == seq[q].next_tok && st.r[i].logits;
            CHECK(found && has[q] == 1, "step %d: slot %d's decoding row missing (%d rows)", k, q,
                  has[q]);
        }
        int prefill = st.n - n_decode, allowed = batch - n_decode;
        if (allowed < MIN_PREFILL) allowed = MIN_PREFILL;
        CHECK(prefill <= allowed, "step %d: %d prefill rows beside %d decoding, batch %d", k,
              prefill, n_decode, batch);
        if (batch >= n_decode + MIN_PREFILL)
            CHECK(st.n <= batch, "step %d: %d rows, batch %d", k, st.n, batch);
        mixed += n_decode > 0 && prefill > 0;
        most = st.n > most ? st.n : most;
        for (int i = 0; i < st.n; i++) {
            const row *w = &st.r[i];
            if (w->pos == 0) seq[w->seq].gen = 0, seq[w->seq].decoding = false;
            if (!w->logits) continue;
            int gen = ++seq[w->seq].gen;
            seq[w->seq].decoding = gen < MAX_TOK;
            seq[w->seq].next_pos = w->pos + 1;
            seq[w->seq].next_tok = next_token(w->token);
        }
    }
    CHECK(mixed > 0, "batch %d: no step mixed decoding and prefill rows", batch);
    for (int k = 0; k < N_JOBS; k++) {
        if (!j[k]) continue;
        choice_view v = view(j[k], 0);
        CHECK(v.finish == FINISH_LENGTH && !strcmp(v.text, "bcdefg"), "job %d: '%s'", k, v.text);
        job_release(j[k]);
    }
    printf("batch %d: %d steps, at most %d rows, %d mixing decode and prefill\n", batch,
           n_entered(&f), most, mixed);
    sched_destroy(s);
    fake_free(&f);
}

/* --- the token budget: step_cost.c --- */

#define FLOOR 4 /* a floor above scheduler.c's SCHED_MIN_CHUNK (1), to see it work */

/* Seconds a step of n rows takes on a machine with this fixed and per-row cost. */
static double line(double fixed, double per_row, int n) {
    return fixed + per_row * n;
}

/* The reference chunk, counted row by row on the true cost line: the most prefill rows beside
 * d decoding rows whose step takes at most pct % of the step without them, within [floor, cap]. */
static int want_rows(double fixed, double per_row, int d, int pct, int floor, int cap) {
    double limit = pct / 100.0 * line(fixed, per_row, d);
    int p = 0;
    while (p < cap && line(fixed, per_row, d + p + 1) <= limit)
        p++;
    return p < floor ? (floor < cap ? floor : cap) : p;
}

/* Rows of the steps fed to the fit: several sizes, as decode-only and mixed steps give. */
static int sample_rows(int k) {
    static const int rows[] = {1, 2, 3, 5, 8, 9, 13, 21};
    return rows[k % 8];
}

static void train(step_cost *c, double fixed, double per_row, int steps) {
    for (int k = 0; k < steps; k++)
        step_cost_add(c, sample_rows(k), line(fixed, per_row, sample_rows(k)));
}

/* Checks c's chunk against the reference for decoding rows 1..16 and several limits. */
static void check_chunks(const step_cost *c, double fixed, double per_row, const char *what) {
    static const int pcts[] = {101, 110, 150, 200, 300, 1000};
    int bad = 0;
    for (int d = 1; d <= 16; d++)
        for (int i = 0; i < 6; i++) {
            int got = step_cost_prefill_rows(c, d, pcts[i], FLOOR, 64);
            int want = want_rows(fixed, per_row, d, pcts[i], FLOOR, 64);
            if (got != want && bad++ < 5)
                CHECK(got == want, "%s: %d rows beside %d at %d%%, want %d", what, got, d,
                      pcts[i], want);
        }
    CHECK(bad == 0, "%s: %d chunks differ from the reference", what, bad);
}

/* Before any fit the chunk is the floor; with no decoding rows or no limit, the cap; a cap
 * below the floor wins. Exact step times on a line give back the line, and chunks that match
 * the row-by-row reference. */
static void test_budget_fit(void) {
    step_cost c = {0};
    CHECK(step_cost_prefill_rows(&c, 8, 150, FLOOR, 64) == FLOOR, "untrained: not the floor");
    CHECK(step_cost_prefill_rows(&c, 0, 150, FLOOR, 64) == 64, "no decoding rows: not the cap");
    CHECK(step_cost_prefill_rows(&c, 8, 0, FLOOR, 56) == 56, "no limit: not the cap");
    CHECK(step_cost_prefill_rows(&c, 8, 150, FLOOR, 3) == 3, "a cap below the floor");
    CHECK(step_cost_prefill_rows(&c, 8, 150, FLOOR, 0) == 0, "cap 0");
    /* TinyLlama Q4_0 on 2 Zen 4 cores, roughly: 20 ms to read the weights, 5.5 ms a row */
    train(&c, 0.020, 0.0055, 40);
    CHECK(fabs(c.fixed - 0.020) < 1e-9 && fabs(c.per_row - 0.0055) < 1e-12,
          "fit %.9f + %.9f n, want 0.020 + 0.0055 n", c.fixed, c.per_row);
    check_chunks(&c, 0.020, 0.0055, "cpu");
    /* GPU-like: the weights' read dominates, rows are nearly free: the batch is the limit */
    step_cost g = {0};
    train(&g, 0.010, 1e-7, 40);
    CHECK(step_cost_prefill_rows(&g, 8, 150, FLOOR, 64) == 64, "gpu-like: not the cap");
    check_chunks(&g, 0.010, 1e-7, "gpu-like");
    /* no fixed cost: a chunk as large as the decoding rows doubles the step */
    step_cost z = {0};
    train(&z, 0, 0.004, 40);
    check_chunks(&z, 0, 0.004, "no fixed cost");
    CHECK(step_cost_prefill_rows(&z, 8, 200, FLOOR, 64) == 8, "no fixed cost: 200%% of 8 rows");
}

/* What the fit cannot use leaves it as it was: steps of one size only (no slope to see), times
 * that fall with more rows, and samples that are not steps. */
static void test_budget_degenerate(void) {
    step_cost c = {0};
    for (int k = 0; k < 100; k++)
        step_cost_add(&c, 8, 0.060);
    CHECK(c.per_row == 0 && step_cost_prefill_rows(&c, 8, 150, FLOOR, 64) == FLOOR,
          "one step size: a fit %g + %g n", c.fixed, c.per_row);
    step_cost d = {0};
    for (int k = 0; k < 20; k++)
        step_cost_add(&d, sample_rows(k), 0.1 - 0.001 * sample_rows(k));
    CHECK(d.per_row == 0, "time falling with rows: fit %g per row", d.per_row);
    train(&c, 0.020, 0.0055, 40);
    step_cost before = c;
    step_cost_add(&c, 0, 0.05);
    step_cost_add(&c, -3, 0.05);
    step_cost_add(&c, 4, 0);
    step_cost_add(&c, 4, -1);
    step_cost_add(&c, 4, NAN);
    step_cost_add(&c, 4, INFINITY);
    CHECK(!memcmp(&before, &c, sizeof c), "a sample that is no step changed the fit");
}

/* The fit follows a machine that slows down (another job starts), and step times with noise
 * give chunks within a row of the reference. */
static void test_budget_drift_and_noise(void) {
    step_cost c = {0};
    train(&c, 0.020, 0.0055, 100);
    train(&c, 0.030, 0.011, 400); /* 0.98^400: the old machine weighs 3e-4 */
    CHECK(fabs(c.per_row - 0.011) < 0.011 * 0.01 && fabs(c.fixed - 0.030) < 0.030 * 0.01,
          "after the slowdown: %.6f + %.6f n, want 0.030 + 0.011 n", c.fixed, c.per_row);
    check_chunks(&c, 0.030, 0.011, "slowed down");
    step_cost n = {0};
    unsigned long long rnd = 12345;
    int worst = 0;
    for (int k = 0; k < 500; k++) {
        rnd = rnd * 6364136223846793005ULL + 1442695040888963407ULL;
        double noise = 1 + 0.05 * ((double)(rnd >> 11) / 9007199254740992.0 * 2 - 1); /* ±5% */
        step_cost_add(&n, sample_rows(k), line(0.020, 0.0055, sample_rows(k)) * noise);
        if (k < 100) continue;
        for (int d = 1; d <= 16; d++) {
            int off = step_cost_prefill_rows(&n, d, 150, FLOOR, 64) -
                      want_rows(0.020, 0.0055, d, 150, FLOOR, 64);
            off = off < 0 ? -off : off;
            worst = off > worst ? off : worst;
        }
    }
    CHECK(worst <= 1, "with 5%% noise a chunk was %d rows off the reference", worst);
}

/* The kernels' rows on AVX-512 VNNI for Q4_0 (mm_row_tiling): each of the first 3 its own,
 * then whole groups of 4. Written here from that rule, not from step_cost.c. */
static int tiled_work(int n) {
    return n <= 3 ? n : (n + 3) / 4 * 4;
}

/* Seconds a step of n rows takes on such a machine: 5 rows cost what 8 do. */
static double tiled_line(double fixed, double per_row, int n) {
    return fixed + per_row * tiled_work(n);
}

/* The reference on the tiled machine, row by row: the most extra rows beside d whose step
 * takes at most pct % of the d-row step, at least floor, then every row that costs nothing
 * more (the rest of the group the step pays for), at most cap. */
static int want_tiled(double fixed, double per_row, int d, int pct, int floor, int cap) {
    double limit = pct / 100.0 * tiled_line(fixed, per_row, d);
    int p = 0;
    while (p < cap && tiled_line(fixed, per_row, d + p + 1) <= limit + 1e-12)
        p++;
    if (p < floor) p = floor < cap ? floor : cap;
    while (p < cap && tiled_work(d + p + 1) == tiled_work(d + p))
        p++;
    return p;
}

/* On a machine whose step cost is a staircase (Zen 4's Q4_0 tiles: 20 ms, 5.5 ms a computed
 * row), the fit in computed rows gives back the line, the chunks match the row-by-row reference
 * for 1..16 decoding rows and several limits, and so no step the budget allows (floor aside)
 * is over its limit. With the rows counted one by one (group 1, as before), steps of 2 decoding
 * rows got 3 more at 200%: 5 rows computed as 8, 2.2x the 2-row step. */
static void test_budget_tiled(void) {
    const double fixed = 0.020, per_row = 0.0055;
    step_cost c = {.exact = 3, .group = 4};
    for (int k = 0; k < 40; k++)
        step_cost_add(&c, sample_rows(k), tiled_line(fixed, per_row, sample_rows(k)));
    CHECK(fabs(c.fixed - fixed) < 1e-9 && fabs(c.per_row - per_row) < 1e-12,
          "tiled fit %.9f + %.9f n, want 0.020 + 0.0055 n", c.fixed, c.per_row);
    static const int pcts[] = {101, 110, 150, 200, 300, 1000};
    int bad = 0, over = 0;
    for (int d = 1; d <= 16; d++)
        for (int i = 0; i < 6; i++) {
            int got = step_cost_prefill_rows(&c, d, pcts[i], 1, 64);
            int want = want_tiled(fixed, per_row, d, pcts[i], 1, 64);
            if (got != want && bad++ < 5)
                CHECK(got == want, "tiled: %d rows beside %d at %d%%, want %d", got, d, pcts[i],
                      want);
            /* over the limit, and more work than the floor's one row brings */
            over += tiled_work(d + got) > tiled_work(d + 1) &&
                    tiled_line(fixed, per_row, d + got) >
                        pcts[i] / 100.0 * tiled_line(fixed, per_row, d) + 1e-12;
        }
    CHECK(bad == 0 && over == 0, "tiled: %d chunks differ from the reference, %d over the limit",
          bad, over);
    CHECK(step_cost_prefill_rows(&c, 2, 200, 1, 64) == 2, "2 beside 2 at 200%%: a step of 4");
    CHECK(step_cost_prefill_rows(&c, 5, 101, 1, 64) == 3, "the floor fills 5 decoding rows' group");
    CHECK(step_cost_work(&c, 3) == 3 && step_cost_work(&c, 5) == 8 && step_cost_work(&c, 8) == 8,
          "work rows");
}

/* The scheduler sizes prefill chunks from the time its steps took: on a fake whose steps take
 * fixed + per_row * rows virtual seconds, a prompt admitted beside a decoding stream goes in
 * chunks of the reference size (16 rows at 200%), where without the limit it goes whole. */
static void test_prefill_time_budget(const model *m, int pct, const int *want, int n_want) {
    fake f;
    fake_init(&f, m, true);
    f.fixed = 0.031, f.per_row = 0.002; /* 200% beside 1 row: 16 rows (16.5 by the formula) */
    sched *s = make_sched_pct(m, &f, 2, 64, 4, false, pct);
    if (!s) return fake_free(&f);
    int32_t pa[10], pb[50];
    for (int i = 0; i < 50; i++) {
        if (i < 10) pa[i] = i ? TOK('a') : 1;
        pb[i] = i ? TOK('a') : 1;
    }
    job *a = submit(s, gen_req(pa, 10, 1, 20));
    wait_entered(&f, 1); /* A's prompt, alone: a whole batch */
    release_step(&f);
    wait_entered(&f, 2); /* A decodes; two step sizes timed */
    job *b = submit(s, gen_req(pb, 50, 1, 4));
    release_step(&f);
    ungate(&f);
    job_wait(b);
    job_wait(a);
    int a_seq = get_step(&f, 1).r[0].seq, chunks[8], n_chunks = 0;
    for (int k = 3; k <= n_entered(&f) && n_chunks < 8; k++) {
        step_rec st = get_step(&f, k);
        int rows_b = 0, rows_a = 0;
        for (int i = 0; i < st.n; i++) {
            rows_a += st.r[i].seq == a_seq;
            rows_b += st.r[i].seq != a_seq && st.r[i].pos < 50;
        }
        if (rows_b) chunks[n_chunks++] = rows_b;
        CHECK(rows_a == 1, "step %d: A's %d rows", k, rows_a);
    }
    bool same = n_chunks == n_want;
    for (int i = 0; same && i < n_chunks; i++)
        same = chunks[i] == want[i];
    CHECK(same, "pct %d: %d chunks, first %d, want %d chunks, first %d", pct, n_chunks,
          n_chunks ? chunks[0] : 0, n_want, want[0]);
    choice_view va = view(a, 0), vb = view(b, 0);
    CHECK(!strcmp(va.text, "bcdefghijklmnopqrstu") && !strcmp(vb.text, "bcde"), "'%s' '%s'",
          va.text, vb.text);
    job_release(a);
    job_release(b);
    sched_destroy(s);
    fake_free(&f);
}

/* Draft rows share the prompts' time budget: on a fake whose steps take fixed + per_row * rows
 * virtual seconds, two drafting choices decode while a third request's prompt arrives. Every
 * step with d decoding slots carries at most the reference number of extra rows beside them
 * (the most that keep it within pct % of the d-row step), drafts and prompt rows together; the
 * prompt takes its share first (min(budget, what it has left)), drafts what remains; drafts do
 * run (the text repeats, so they are accepted), and the text is plain greedy decoding's. */
static void test_draft_time_budget(const model *m) {
    enum { PCT = 200, LA = 22, LC = 40, BATCH = 64 };
    const double fixed = 0.009, per_row = 0.002; /* budget 4.5 + d rows: 6 beside 2 */
    fake f;
    fake_init(&f, m, true);
    f.fixed = fixed, f.per_row = per_row;
    sched *s = make_sched_pct(m, &f, 3, BATCH, 4, false, PCT);
    if (!s) return fake_free(&f);
    int32_t pa[LA], pc[LC];
    pa[0] = pc[0] = 1;
    for (int i = 1; i < LA - 1; i++) /* a..t, then a: "a b" recurs once 'b' is generated */
        pa[i] = TOK('a' + i - 1);
    pa[LA - 1] = TOK('a');
    for (int i = 1; i < LC; i++)
        pc[i] = TOK('a');
    gen_request ra = gen_req(pa, LA, 2, 20);
    ra.spec_n_max = 8;
    job *a = submit(s, ra);
    wait_entered(&f, 1); /* both choices' prompts, alone: a whole batch */
    release_step(&f);
    wait_entered(&f, 2); /* they decode; C is admitted before step 3 */
    job *c = submit(s, gen_req(pc, LC, 1, 4));
    release_step(&f);
    ungate(&f);
    job_wait(a);
    job_wait(c);
    int plen[3] = {0}, c_seq = view(c, 0).slot - 1, c_left = LC, drafts = 0, shared = 0;
    for (int k = 0; k < 2; k++)
        if (view(a, k).slot > 0) plen[view(a, k).slot - 1] = LA;
    if (c_seq >= 0) plen[c_seq] = LC;
    for (int k = 1; k <= n_entered(&f); k++) {
        step_rec st = get_step(&f, k);
        bool decoding[3] = {false};
        int n_dec = 0, prompt_rows = 0, c_prompt = 0;
        for (int i = 0; i < st.n; i++) {
            const row *w = &st.r[i];
            if (w->pos < plen[w->seq]) {
                prompt_rows++;
                c_prompt += w->seq == c_seq;
            } else if (!decoding[w->seq]) {
                decoding[w->seq] = true;
                n_dec++;
            }
        }
        int extra = st.n - n_dec, draft_rows = extra - prompt_rows;
        if (n_dec == 0) continue; /* no stream to hold up: a whole batch */
        int cap = BATCH - n_dec > MIN_PREFILL ? BATCH - n_dec : MIN_PREFILL;
        int want = want_rows(fixed, per_row, n_dec, PCT, FLOOR, cap);
        CHECK(extra <= want, "step %d: %d extra rows (%d drafts) beside %d decoding; budget %d",
              k, extra, draft_rows, n_dec, want);
        if (c_prompt > 0) {
            int first = c_left < want ? c_left : want;
            CHECK(c_prompt == first, "step %d: C's prompt got %d rows, want min(%d, %d left)", k,
                  c_prompt, want, c_left);
            c_left -= c_prompt;
            shared += draft_rows > 0;
        }
        drafts += draft_rows;
    }
    CHECK(c_left == 0, "C's prompt: %d rows never fed", c_left);
    CHECK(drafts > 0 && shared > 0, "%d draft rows, %d beside C's prompt", drafts, shared);
    for (int k = 0; k < 2; k++)
        CHECK(!strcmp(view(a, k).text, "bcdefghijklmnopqrstu"), "A %d: '%s'", k,
              view(a, k).text);
    CHECK(!strcmp(view(c, 0).text, "bcde"), "C: '%s'", view(c, 0).text);
    printf("drafts under the time budget: %d steps, %d draft rows\n", n_entered(&f), drafts);
    job_release(a);
    job_release(c);
    sched_destroy(s);
    fake_free(&f);
}

/* The copying request of the draft-budget tests, run to its end: a prompt of L tokens whose
 * greedy output copies it, n choices of GEN tokens with drafts of up to 8, on 2 slots at 200%
 * with a step cost (1 ms + 2 ms a row) whose budget is the 4-row floor. NULL when the
 * scheduler cannot be made (f is then freed). */
enum { COPY_L = 32, COPY_GEN = 30 };
static job *copying_job(const model *m, fake *f, sched **s, int n) {
    fake_init(f, m, false);
    f->fixed = 0.001, f->per_row = 0.002;
    *s = make_sched_pct(m, f, 2, 64, 4, false, 200);
    if (!*s) {
        fake_free(f);
        return NULL;
    }
    int32_t p[COPY_L];
    p[0] = 1;
    for (int i = 1; i < COPY_L - 1; i++) /* 10..39, then 10: the output 11..40 copies it */
        p[i] = 9 + i;
    p[COPY_L - 1] = 10;
    gen_request r = gen_req(p, COPY_L, n, COPY_GEN);
    r.spec_n_max = 8;
    job *j = submit(*s, r);
    job_wait(j);
    return j;
}

/* A draft budget too small for every slot's draft is shared: which slot drafts first turns
 * from step to step, so two choices copying the same text get about as many draft rows while
 * both decode, where the lower slot used to take the whole budget every step. */
static void test_draft_budget_shared(const model *m) {
    enum { L = COPY_L, GEN = COPY_GEN };
    fake f;
    sched *s;
    job *j = copying_job(m, &f, &s, 2);
    if (!j) return;
    int per_seq[2] = {0}, both = 0;
    for (int k = 1; k <= n_entered(&f); k++) {
        step_rec st = get_step(&f, k);
        int rows[2] = {0};
        for (int i = 0; i < st.n; i++)
            if (st.r[i].pos >= L) rows[st.r[i].seq]++;
        if (!rows[0] || !rows[1]) continue; /* only steps where both decode */
        both++;
        per_seq[0] += rows[0] - 1;
        per_seq[1] += rows[1] - 1;
    }
    int lo = per_seq[0] < per_seq[1] ? per_seq[0] : per_seq[1];
    int hi = per_seq[0] < per_seq[1] ? per_seq[1] : per_seq[0];
    CHECK(both > 2 && hi > 0 && 3 * lo >= 2 * hi,
          "%d steps with both decoding: %d and %d draft rows", both, per_seq[0], per_seq[1]);
    choice_view v0 = view(j, 0), v1 = view(j, 1);
    CHECK(v0.n_gen == GEN && v1.n_gen == GEN && !strcmp(v0.text, v1.text), "%d, %d tokens",
          v0.n_gen, v1.n_gen);
    printf("shared draft budget: %d steps with both decoding, %d and %d draft rows\n", both,
           per_seq[0], per_seq[1]);
    job_release(j);
    sched_destroy(s);
    fake_free(&f);
}

/* A lone decoding stream with no prompt waiting holds up nobody: its drafts are not cut to the
 * step budget (here the floor, 4 rows), so a copying stream's draft grows to its n_max of 8. */
static void test_lone_stream_drafts(const model *m) {
    enum { L = COPY_L, GEN = COPY_GEN };
    fake f;
    sched *s;
    job *j = copying_job(m, &f, &s, 1);
    if (!j) return;
    int most = 0;
    for (int k = 1; k <= n_entered(&f); k++) {
        step_rec st = get_step(&f, k);
        int drafts = -1; /* the rows past the prompt, less the token being decoded */
        for (int i = 0; i < st.n; i++) drafts += st.r[i].pos >= L;
        if (drafts > most) most = drafts;
    }
    choice_view v = view(j, 0);
    CHECK(most == 8, "a lone stream's longest draft: %d rows, want its n_max 8", most);
    CHECK(v.n_gen == GEN, "%d tokens", v.n_gen);
    printf("lone stream: drafts of up to %d rows in %d steps\n", most, n_entered(&f));
    job_release(j);
    sched_destroy(s);
    fake_free(&f);
}

int main(void) {
    test_budget_fit();
    test_budget_degenerate();
    test_budget_drift_and_noise();
    test_budget_tiled();
    char dir[] = "/tmp/ls-test-sched-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[64];
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    gspec g;
    tiny_model(&g, 0, false);
    gbuf out = {0};
    gspec_write(&g, &out);
    CHECK(write_bytes(path, out.p, out.n) == 0, "writing %s", path);
    gb_free(&out);
    gspec_free(&g);
    char err[LS_ERR_LEN] = "";
    model *m = model_load(path, NULL, err, sizeof err);
    CHECK(m != NULL, "model_load: %s", err);
    if (m) {
        test_admission_order(m);
        test_cancel(m);
        test_prompt_cache(m);
        test_prompt_cache_bos(m);
        test_queue_limits(m);
        test_embeddings(m);
        test_embeddings_cancel(m);
        test_prompts(m);
        test_row_budget(m, 12);
        test_row_budget(m, 4);
        test_prefill_time_budget(m, 200, (const int[]){16, 16, 16, 2}, 4);
        test_prefill_time_budget(m, 0, (const int[]){50}, 1);
        test_draft_time_budget(m);
        test_draft_budget_shared(m);
        test_lone_stream_drafts(m);
        model_free(m);
    }
    unlink(path);
    rmdir(dir);
    return check_summary();
}
