/* test_sched_beam: beam searches as scheduler jobs (server/sched_beam.c) on the real kjv-demo
 * model. The scheduler's forward step is fwd_decode behind a recorder (sched_params.forward)
 * that notes which sequences (slots) each step feeds and, gated, holds each step until the test
 * releases it, so that what is queued or cancelled between two steps is deterministic without a
 * sleep. Shows: two beam searches and two ordinary requests fed in the same forward steps, the
 * searches' n best equal (text, token count, finish) to engine/beam.c's beam_search, which
 * `generate --beams` runs; a search waits in the queue for width free slots; a cancelled search
 * is gone, its slots free, by the next step; more beams than slots is a 400; a search's beams
 * leave other prompts' cached slots alone where they can. */
#include "beam.h"
#include "check.h"
#include "common.h"
#include "forward.h"
#include "model.h"
#include "scheduler.h"
#include "threadpool.h"
#include "tokenizer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STEPS 512

typedef struct {
    fwd_ctx *f;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gated;               /* each step waits until the test has released it */
    int entered, released;    /* steps begun, steps let go */
    unsigned fed[MAX_STEPS];  /* bit i: the step had a row of sequence (slot) i */
} recorder;

static int rec_forward(void *arg, kv_cache *const *caches, int n_caches, const fwd_batch *b,
                       float *logits, char *err, size_t errlen) {
    recorder *r = arg;
    unsigned fed = 0;
    for (int i = 0; i < b->n_tokens; i++)
        fed |= 1u << b->seq[i];
    pthread_mutex_lock(&r->mu);
    int k = r->entered++;
    if (k < MAX_STEPS) r->fed[k] = fed;
    pthread_cond_broadcast(&r->cv);
    while (r->gated && r->released <= k)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    return fwd_decode(r->f, caches, n_caches, b, logits, err, errlen);
}

static void wait_entered(recorder *r, int k) {
    pthread_mutex_lock(&r->mu);
    while (r->entered < k)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void release(recorder *r, int through, bool ungate) {
    pthread_mutex_lock(&r->mu);
    r->released = through;
    if (ungate) r->gated = false;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static sched *make_sched(const model *m, recorder *r, pool *p, int parallel) {
    char err[LS_ERR_LEN] = "";
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->gated = true;
    r->f = fwd_create(m, 64, p, err, sizeof err);
    CHECK(r->f != NULL, "fwd_create: %s", err);
    sched_params sp = {.parallel = parallel, .ctx_size = 128, .batch_size = 64, .threads = 1,
                       .max_queue = 4, .kv = KV_F32, .prompt_cache = true,
                       .pooling = EMBD_POOL_MEAN, .forward = rec_forward, .forward_arg = r};
    sched *s = sched_create(m, &sp, err, sizeof err);
    CHECK(s != NULL, "sched_create: %s", err);
    return s;
}

static void end_sched(sched *s, recorder *r) {
    release(r, MAX_STEPS, true);
    sched_destroy(s);
    fwd_free(r->f);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

static gen_request req_for(const model *m, const char *text, int n, int max_tokens, int beams) {
    gen_request q = {0};
    q.prompt = malloc(64 * sizeof *q.prompt);
    q.n_prompt = tok_encode(m->tok, text, strlen(text), true, q.prompt, 64);
    q.n = n;
    q.max_tokens = max_tokens;
    sampler_params_default(&q.sp);
    q.sp.temperature = 0;
    q.n_top_logprobs = -1;
    q.cache_prompt = true;
    q.beam_width = beams;
    q.length_penalty = 1.0f;
    return q;
}

static job *submit(sched *s, gen_request q) {
    int status = 0;
    char err[LS_ERR_LEN] = "";
    job *j = sched_submit(s, &q, &status, err, sizeof err);
    CHECK(j != NULL, "sched_submit: %d %s", status, err);
    return j;
}

/* The job's choices against beam_search on the same prompt: text decoded as a stream would,
 * token counts, finish reasons. */
static void check_same_as_engine(const model *m, fwd_ctx *f, job *j, const char *what) {
    const gen_request *q = &j->req;
    beam_params bp;
    beam_params_default(&bp);
    bp.width = q->beam_width;
    bp.n_best = q->n;
    bp.max_new_tokens = q->max_tokens;
    bp.length_penalty = q->length_penalty;
    bp.eos_id = tok_eos(m->tok);
    beam_result res[BEAM_MAX_WIDTH];
    int n_out = 0;
    char err[LS_ERR_LEN] = "";
    int rc = beam_search(m, f, q->prompt, q->n_prompt, &bp, res, &n_out, err, sizeof err);
    CHECK(rc == 0 && n_out == q->n, "%s: beam_search: %s", what, err);
    job_view v;
    CHECK(job_view_init(&v, j) == 0 && job_view_sync(&v, NULL) == 0, "%s: job_view", what);
    for (int c = 0; rc == 0 && c < n_out; c++) {
        char text[4096];
        size_t len = 0;
        tok_stream ts;
        tok_stream_init(&ts, m->tok, q->n_prompt == 1);
        for (int i = 0; i < res[c].n_tokens; i++)
            len += tok_stream_feed(&ts, res[c].tokens[i], text + len, sizeof text - len);
        len += tok_stream_flush(&ts, text + len, sizeof text - len);
        const choice_out *o = &v.choices[c];
        CHECK(o->len == len && memcmp(o->text, text, len) == 0, "%s choice %d: '%.*s' vs '%.*s'",
              what, c, (int)o->len, o->text ? o->text : "", (int)len, text);
        CHECK(o->n_gen == res[c].n_tokens, "%s choice %d: %d tokens vs %d", what, c, o->n_gen,
              res[c].n_tokens);
        finish_reason want = res[c].ended_eos ? FINISH_STOP : FINISH_LENGTH;
        CHECK(o->finish == want, "%s choice %d: finish %d vs %d", what, c, o->finish, want);
    }
    beam_results_free(res, n_out);
    job_view_free(&v);
}

/* Slots (by their bits in a step's fed mask) that job j holds now. */
static unsigned busy_mask(sched *s, unsigned long long id_task) {
    sched_slot_info info[32];
    int n = sched_get_slots(s, info, 32);
    unsigned mask = 0;
    for (int i = 0; i < n && i < 32; i++)
        if (info[i].busy && (id_task == 0 || info[i].id_task == id_task)) mask |= 1u << i;
    return mask;
}

/* Two searches (3 and 2 beams) and two greedy requests, 7 slots: after the prompts, every step
 * feeds all seven, and the searches answer as beam_search does. */
static void test_together(const model *m, pool *p, fwd_ctx *ref) {
    static const struct {
        const char *prompt, *what;
        int n, max_tokens, beams; /* beams 0: a greedy request */
    } reqs[] = {{"And the LORD said unto Moses", "3 beams", 2, 16, 3},
                {"In the beginning God", "2 beams", 1, 14, 2},
                {"Blessed are", "greedy 1", 1, 20, 0},
                {"And Jesus", "greedy 2", 1, 20, 0}};
    enum { N = sizeof reqs / sizeof reqs[0] };
    recorder r;
    sched *s = make_sched(m, &r, p, 7);
    job *j[N];
    for (int i = 0; i < N; i++) {
        j[i] = submit(s, req_for(m, reqs[i].prompt, reqs[i].n, reqs[i].max_tokens, reqs[i].beams));
        if (i == 0) wait_entered(&r, 1); /* step 1 holds the first prompt; the rest queue */
    }
    wait_entered(&r, 1);
    unsigned busy_before = busy_mask(s, 0);
    release(&r, 2, false);
    wait_entered(&r, 2); /* step 2: everything admitted */
    unsigned busy_all = busy_mask(s, 0);
    unsigned slots[N];
    for (int i = 0; i < N; i++)
        slots[i] = busy_mask(s, j[i]->id_task);
    release(&r, MAX_STEPS, true);
    for (int i = 0; i < N; i++)
        job_wait(j[i]);
    CHECK(busy_before == 7u, "before step 2 only the first search's 3 slots: %#x", busy_before);
    CHECK(busy_all == 0x7fu, "step 2 holds every job: slots %#x", busy_all);
    int together = 0;
    for (int k = 0; k < r.entered && k < MAX_STEPS; k++)
        together += r.fed[k] == 0x7fu;
    CHECK(together >= 8, "%d steps fed both searches' beams and both requests", together);
    for (int i = 0; i < N; i++) {
        int beams = reqs[i].beams ? reqs[i].beams : 1;
        CHECK(__builtin_popcount(slots[i]) == beams, "%s holds a slot per beam: %#x", reqs[i].what,
              slots[i]);
        if (reqs[i].beams)
            check_same_as_engine(m, ref, j[i], reqs[i].what);
        else
            CHECK(j[i]->choices[0].finish != FINISH_NONE && j[i]->choices[0].n_gen > 0, "%s ran",
                  reqs[i].what);
        job_release(j[i]);
    }
    end_sched(s, &r);
}

/* A 5-beam search on 5 slots waits behind a running request (FIFO, all its slots at once),
 * then runs; cancelled mid-search, it is gone by the next step, which feeds only the request
 * beside it; more beams than slots is refused. */
static void test_queue_and_cancel(const model *m, pool *p) {
    recorder r;
    sched *s = make_sched(m, &r, p, 5);
    job *g = submit(s, req_for(m, "Blessed are", 1, 60, 0));
    wait_entered(&r, 1);
    job *a = submit(s, req_for(m, "And the LORD said unto Moses", 1, 60, 5));
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.queued == 1 && st.busy_slots == 1, "5 beams wait for 5 free slots: %d queued, %d "
          "busy", st.queued, st.busy_slots);
    gen_request wide = req_for(m, "x", 1, 4, 6);
    int status = 0;
    char err[LS_ERR_LEN] = "";
    job *no = sched_submit(s, &wide, &status, err, sizeof err);
    CHECK(!no && status == 400 && strstr(err, "6 slots"), "6 beams on 5 slots: %d %s", status,
          err);
    job_release(no);
    sched_cancel(s, g); /* frees its slot at the next step: the search can start */
    job_release(g);
    release(&r, 2, false); /* forward 1: g's prompt; 2: the search's prompt, then its fork */
    wait_entered(&r, 3);   /* forward 3: the five beams */
    CHECK(busy_mask(s, a->id_task) == 0x1fu, "the search holds all 5 slots: %#x",
          busy_mask(s, a->id_task));
    CHECK(r.fed[2] == 0x1fu, "forward 3 feeds the 5 beams: %#x", r.fed[2]);
    job *g2 = submit(s, req_for(m, "And Jesus", 1, 60, 0)); /* queued behind the search */
    sched_cancel(s, a);
    release(&r, 3, false);
    wait_entered(&r, 4); /* the cancelled search ended before forward 4 ... */
    CHECK(busy_mask(s, a->id_task) == 0, "its slots are free: %#x", busy_mask(s, a->id_task));
    pthread_mutex_lock(&a->mu);
    bool cancelled = a->n_finished == 1 && a->choices[0].finish == FINISH_CANCEL;
    pthread_mutex_unlock(&a->mu);
    CHECK(cancelled, "the search's choice ended as cancelled");
    unsigned g2_slot = busy_mask(s, g2->id_task);
    CHECK(g2_slot != 0 && r.fed[3] == g2_slot, "... and forward 4 feeds only the next request: "
          "%#x vs %#x", r.fed[3], g2_slot);
    release(&r, MAX_STEPS, true);
    job_wait(g2);
    job_release(a);
    job_release(g2);
    end_sched(s, &r);
}

/* A search's beams take the free slots whose caches hold least: a finished request's cached
 * prompt survives a search beside it and is reused by the same prompt afterwards. */
static void test_cache_kept(const model *m, pool *p) {
    recorder r;
    sched *s = make_sched(m, &r, p, 3);
    release(&r, MAX_STEPS, true);
    job *g = submit(s, req_for(m, "Blessed are the poor", 1, 4, 0));
    job_wait(g);
    int g_slot = g->choices[0].slot - 1;
    gen_request q = req_for(m, "In the beginning God", 1, 8, 2);
    q.cache_prompt = false; /* else beam 0 would take the slot sharing BOS with it */
    job *a = submit(s, q);
    job_wait(a);
    CHECK(a->choices[0].slot - 1 != g_slot, "beam 0 avoided the cached slot");
    job_release(a);
    job *again = submit(s, req_for(m, "Blessed are the poor", 1, 4, 0));
    job_wait(again);
    CHECK(again->choices[0].slot - 1 == g_slot &&
              again->choices[0].n_cached == again->req.n_prompt - 1,
          "the prompt is still cached after a 2-beam search on 3 slots: slot %d, %d cached",
          again->choices[0].slot - 1, again->choices[0].n_cached);
    job_view va, vg;
    CHECK(job_view_init(&va, again) == 0 && job_view_sync(&va, NULL) == 0 &&
              job_view_init(&vg, g) == 0 && job_view_sync(&vg, NULL) == 0, "job_view");
    CHECK(va.choices[0].len == vg.choices[0].len &&
              memcmp(va.choices[0].text, vg.choices[0].text, vg.choices[0].len) == 0,
          "the same text from the cache");
    job_view_free(&va);
    job_view_free(&vg);
    job_release(g);
    job_release(again);
    end_sched(s, &r);
}

int main(void) {
    char err[LS_ERR_LEN] = "";
    model *m = model_load(check_model_path("kjv-demo.gguf"), NULL, err, sizeof err);
    CHECK(m != NULL && m->tok, "model_load: %s", err);
    if (!m) return check_summary();
    pool *p = pool_create(1);
    fwd_ctx *ref = fwd_create(m, 64, p, err, sizeof err);
    CHECK(ref != NULL, "fwd_create: %s", err);
    if (p && ref) {
        test_together(m, p, ref);
        test_queue_and_cancel(m, p);
        test_cache_kept(m, p);
    }
    fwd_free(ref);
    pool_destroy(p);
    model_free(m);
    return check_summary();
}
