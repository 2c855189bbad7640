/* test_sched_order: the order in which the scheduler makes a finished choice visible
 * (server/scheduler.c, included whole with pthread_mutex_unlock wrapped, as fuzz_stream does
 * to reach its statics). The moment a job's last choice is published as finished (the unlock
 * of j->mu that follows it: any client may see it from then on), its slot must already be
 * free, so that a client that sends its next request at once is admitted, not refused with
 * 503 for want of a slot. The wrapper records the scheduler's busy-slot count at that unlock:
 * deterministic, where a client racing the scheduler wins only now and then. Two jobs in a row
 * on one slot with no queue: the second is submitted as soon as the first is seen finished. A
 * fake forward pass (sched_params.forward) on the tiny gguf_builder model stands in for the
 * model. */
#include <pthread.h>

static int test_unlock(pthread_mutex_t *m);
#define pthread_mutex_unlock test_unlock
#include "../server/scheduler.c"
#undef pthread_mutex_unlock

#include "check.h"
#include "gguf_builder.h"

#include <unistd.h>

/* watched: the job under test, published (release) by the test while the scheduler thread waits
 * at the gate in the fake forward pass, before which the job cannot finish; every unlock in
 * scheduler.c reads it (acquire). busy_at_publish is written on the scheduler thread before the
 * unlock that publishes the finish, and read by the test after job_wait has taken that mutex. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static _Atomic(job *) watched;
static sched *watched_s;
static int busy_at_publish = -1;

static int test_unlock(pthread_mutex_t *m) {
    job *w = atomic_load_explicit(&watched, memory_order_acquire);
    /* m held: n_finished is stable. The first unlock that finds the job finished is the
     * scheduler thread's, which alone writes n_busy: reading it here is no race */
    if (w && m == &w->mu && busy_at_publish < 0 && w->n_finished == w->req.n)
        busy_at_publish = watched_s->n_busy;
    return pthread_mutex_unlock(m);
}

/* Waits at the gate, then every row's logits 0 (token 0 wins the greedy draw); caches advanced
 * as fwd_decode does. */
static int zero_forward(void *arg, kv_cache *const *caches, int n_caches, const fwd_batch *b,
                        float *logits, char *err, size_t errlen) {
    (void)err, (void)errlen;
    const int vocab = *(const int *)arg;
    pthread_mutex_lock(&gate_mu);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    int out = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->seq[i] >= 0 && b->seq[i] < n_caches && caches[b->seq[i]]->n < b->pos[i] + 1)
            caches[b->seq[i]]->n = b->pos[i] + 1;
        if (!b->logits || b->logits[i])
            memset(logits + (size_t)out++ * vocab, 0, (size_t)vocab * sizeof *logits);
    }
    return 0;
}

/* One job of max_tokens on the one slot: busy slots at the moment its finish was published. */
static int busy_when_published(sched *s, int max_tokens) {
    gen_request r = {0};
    r.prompt = malloc(2 * sizeof *r.prompt);
    r.prompt[0] = 1, r.prompt[1] = 10;
    r.n_prompt = 2;
    r.n = 1;
    r.max_tokens = max_tokens;
    sampler_params_default(&r.sp);
    r.sp.temperature = 0;
    r.n_top_logprobs = -1;
    r.ignore_eos = true;
    int status = 0;
    char err[LS_ERR_LEN] = "";
    pthread_mutex_lock(&gate_mu);
    gate_open = false;
    pthread_mutex_unlock(&gate_mu);
    job *j = sched_submit(s, &r, &status, err, sizeof err);
    CHECK(j != NULL, "submit: %d %s", status, err);
    if (!j) return -1;
    pthread_mutex_lock(&gate_mu); /* the job cannot finish before the gate opens */
    watched_s = s;
    busy_at_publish = -1;
    atomic_store_explicit(&watched, j, memory_order_release);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    job_wait(j);
    int busy = busy_at_publish;
    atomic_store_explicit(&watched, NULL, memory_order_release);
    job_release(j);
    return busy;
}

int main(void) {
    const char *path = check_tmp_path("tiny.gguf"); /* removed at exit (check.h) */
    if (!path) return 1;
    CHECK(tiny_model_save(path) == 0, "writing %s", path);
    char err[LS_ERR_LEN] = "";
    model *m = model_load(path, NULL, err, sizeof err);
    CHECK(m != NULL, "model_load: %s", err);
    if (m) {
        int vocab = m->cfg.vocab_size;
        sched_params p = {.parallel = 1,
                          .ctx_size = 32,
                          .batch_size = 8,
                          .threads = 1,
                          .max_queue = 0,
                          .kv = KV_F32,
                          .forward = zero_forward,
                          .forward_arg = &vocab};
        sched *s = sched_create(m, &p, err, sizeof err);
        CHECK(s != NULL, "sched_create: %s", err);
        for (int max_tokens = 1; s && max_tokens <= 3; max_tokens += 2) {
            int busy = busy_when_published(s, max_tokens);
            CHECK(busy == 0, "max_tokens %d: %d slot(s) still busy when the finish was published",
                  max_tokens, busy);
        }
        sched_destroy(s);
        model_free(m);
    }
    return check_summary();
}
