/* threadpool: a persistent pool of worker threads for the matrix work of a forward step.
 * The caller of pool_run takes part as thread 0 and returns once every thread has finished.
 * pool_run is called from one thread at a time (the thread that owns the pool). */
#ifndef LS_THREADPOOL_H
#define LS_THREADPOOL_H

typedef struct pool pool;

/* fn(ctx, ith, nth): thread ith of nth does its share. Work must be split so that the result
 * does not depend on nth (split output rows, never a reduction). */
typedef void (*pool_fn)(void *ctx, int ith, int nth);

/* n_threads >= 1 (1: no extra threads). NULL on failure. */
pool *pool_create(int n_threads);
void pool_destroy(pool *p);
int pool_size(const pool *p);
void pool_run(pool *p, pool_fn fn, void *ctx);

#endif
