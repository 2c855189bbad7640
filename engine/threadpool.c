/* threadpool: persistent workers that run one job at a time on behalf of the owning thread.
 * A job is published by bumping an atomic generation counter (release) after writing fn/ctx;
 * workers spin on it for a short while (a decode step issues a few hundred jobs a few
 * microseconds apart, and a futex wake per job would cost more than many of the jobs), then
 * sleep on a condition variable. The owner waits for the atomic pending count to reach zero
 * the same way (spin, then a condition variable). Nobody spins when the pool has more threads
 * than the machine has CPUs: a spinner would only steal time from the thread it waits for.
 * Owner: the thread that calls pool_run (one at a time).
 * Memory order: fn/ctx are plain fields, published by the release increment of generation and
 * read after the workers' acquire load; the workers' results are published by their release
 * decrement of pending and the owner's acquire load. */
#include "threadpool.h"

#include <pthread.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Spin budgets adapt, between SPIN_MIN and SPIN_MAX pause iterations (SPIN_MAX is some tens
 * of microseconds, more than the gap between two jobs of a decode step). A spin that succeeds,
 * or a sleep that ends within WAIT_SHORT_NS (a longer spin would have caught it), doubles the
 * next budget; a sleep that lasts longer halves it. On a quiet machine the spins succeed and no
 * job costs a syscall; on a busy one (other processes want the CPUs) the waits are long, the
 * budgets shrink, and the pool behaves like a plain condition-variable pool. */
#define SPIN_MIN 16
#define SPIN_MAX 8192
#define WAIT_SHORT_NS 200000

struct pool {
    int n_threads;
    pthread_t *threads;         /* (n_threads - 1) workers; the caller is thread 0 */
    atomic_uint generation;     /* bumped once per job (and once to quit) */
    atomic_int pending;         /* workers still running the current job */
    atomic_int sleepers;        /* workers blocked (or about to block) on wake */
    atomic_bool owner_waiting;  /* the owner is blocked (or about to block) on done */
    atomic_bool quit;
    bool spin;                  /* n_threads <= CPUs online */
    int owner_spin;             /* the owner's current spin budget (owner thread only) */
    pthread_mutex_t mu;         /* guards only the sleep/wake hand-offs */
    pthread_cond_t wake;        /* sleeping workers wait here for a new generation */
    pthread_cond_t done;        /* the sleeping owner waits here for pending == 0 */
    pool_fn fn;                 /* written by the owner before the generation bump */
    void *ctx;
};

typedef struct {
    pool *p;
    int ith;
} worker_arg;

/* A wait that a spin covered (or could have) earns a longer spin next time; else a shorter. */
static int adapt(int budget, bool ok) {
    if (ok) return budget * 2 < SPIN_MAX ? budget * 2 : SPIN_MAX;
    return budget / 2 > SPIN_MIN ? budget / 2 : SPIN_MIN;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits until generation differs from seen and returns the new value. *spin: the worker's
 * spin budget. */
static unsigned wait_generation(pool *p, unsigned seen, int *spin) {
    unsigned g;
    for (int i = 0; p->spin && i < *spin; i++) {
        g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen) {
            *spin = adapt(*spin, true);
            return g;
        }
        cpu_relax();
    }
    int64_t t0 = now_ns();
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1); /* seq_cst: ordered against the owner's bump */
    while ((g = atomic_load(&p->generation)) == seen) pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    *spin = adapt(*spin, now_ns() - t0 < WAIT_SHORT_NS);
    return g;
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0;
    int spin = SPIN_MAX;
    for (;;) {
        seen = wait_generation(p, seen, &spin);
        if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
        p->fn(p->ctx, ith, p->n_threads);
        /* seq_cst: ordered against the owner's owner_waiting store, as in wait_generation */
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->owner_waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* Publishes a new generation and wakes any worker that went to sleep. */
static void bump(pool *p) {
    atomic_fetch_add(&p->generation, 1); /* seq_cst (and release) */
    if (atomic_load(&p->sleepers) > 0) {
        /* a worker counted as a sleeper checks generation under the mutex before waiting, so
         * taking the mutex here cannot miss it */
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

pool *pool_create(int n_threads) {
    if (n_threads < 1) return NULL;
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->owner_waiting, false);
    atomic_init(&p->quit, false);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    p->spin = cpus < 1 || n_threads <= cpus;
    p->owner_spin = SPIN_MAX;
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
    atomic_store_explicit(&p->quit, true, memory_order_release);
    bump(p);
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
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    bump(p);
    fn(ctx, 0, p->n_threads);
    for (int i = 0; p->spin && i < p->owner_spin; i++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) {
            p->owner_spin = adapt(p->owner_spin, true);
            return;
        }
        cpu_relax();
    }
    int64_t t0 = now_ns();
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->owner_waiting, true);
    while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
    atomic_store(&p->owner_waiting, false);
    pthread_mutex_unlock(&p->mu);
    p->owner_spin = adapt(p->owner_spin, now_ns() - t0 < WAIT_SHORT_NS);
}
