/* threadpool: persistent workers that run one job at a time on behalf of the owning thread.
 * A job is published under the mutex with a generation counter; workers wake on a condition
 * variable, run their share, and the last to finish signals the owner. Owner: the thread that
 * calls pool_run (one at a time). Faster wake-up without a syscall per job is a performance
 * issue of its own; this is the simple, obviously correct version. */
#include "threadpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct pool {
    int n_threads;
    pthread_t *threads;      /* (n_threads - 1) workers; the caller is thread 0 */
    pthread_mutex_t mu;      /* guards everything below */
    pthread_cond_t wake;     /* workers wait here for a new generation */
    pthread_cond_t done;     /* the owner waits here for pending == 0 */
    unsigned long generation;
    int pending;             /* workers still running the current job */
    bool quit;
    pool_fn fn;
    void *ctx;
};

typedef struct {
    pool *p;
    int ith;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pool_fn fn = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, ith, p->n_threads);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pool *pool_create(int n_threads) {
    if (n_threads < 1) return NULL;
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) goto fail;
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto fail_started;
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            goto fail_started;
        }
        continue;
    fail_started:
        p->n_threads = i; /* only threads 1..i-1 exist */
        pool_destroy(p);
        return NULL;
    }
    return p;
fail:
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
    return NULL;
}

void pool_destroy(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int pool_size(const pool *p) { return p->n_threads; }

void pool_run(pool *p, pool_fn fn, void *ctx) {
    if (p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->pending = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n_threads);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
