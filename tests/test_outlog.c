/* test_outlog: the chunked append-only log under the scheduler's token log (server/outlog.c):
 * what readers copy is exactly what was written, across chunk boundaries, for small and large
 * items, from any cursor; and a reader copying while the writer appends (the scheduler's
 * pattern: append without a lock, publish the count under one) sees every byte (run it under
 * TSan to check that nothing races). */
#include "check.h"

#include "outlog.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* The byte at position i of the test stream. */
static unsigned char byte_at(size_t i) {
    return (unsigned char)(i * 131 + (i >> 8) * 7 + 3);
}

/* Writes n bytes in pieces of varying sizes (1 up to 3 chunks at once) and reads them back
 * with two cursors that copy in different steps. */
static void test_bytes(size_t n) {
    outlog l;
    outlog_init(&l, 1);
    unsigned char *want = malloc(n), *got1 = malloc(n), *got2 = malloc(n);
    for (size_t i = 0; i < n; i++)
        want[i] = byte_at(i);
    size_t w = 0, step = 1;
    outlog_cursor c1 = {0}, c2 = {0};
    while (w < n) {
        size_t k = step < n - w ? step : n - w;
        CHECK(outlog_write(&l, want + w, k), "write %zu at %zu", k, w);
        w += k;
        step = step * 7 % (3 * OUTLOG_CHUNK_BYTES + 1) + 1;
        outlog_read(&l, &c1, w, got1 + c1.pos);                           /* after every write */
        if (w % 3 == 0 || w == n) outlog_read(&l, &c2, w, got2 + c2.pos); /* now and then */
    }
    CHECK(l.n == n && c1.pos == n && c2.pos == n, "%zu written, %zu and %zu read", l.n, c1.pos,
          c2.pos);
    CHECK(!memcmp(got1, want, n) && !memcmp(got2, want, n), "%zu bytes differ", n);
    outlog_free(&l);
    free(want);
    free(got1);
    free(got2);
}

/* Items larger than a chunk take a chunk each, and never straddle one. */
typedef struct {
    uint32_t k;
    unsigned char pad[OUTLOG_CHUNK_BYTES + 100];
} big;

static void test_big_items(void) {
    outlog l;
    outlog_init(&l, sizeof(big));
    CHECK(l.per == 1, "%zu items per chunk", l.per);
    static big b, got[5];
    for (uint32_t k = 0; k < 5; k++) {
        b.k = k;
        memset(b.pad, (int)k, sizeof b.pad);
        CHECK(outlog_write(&l, &b, 1), "write %u", k);
    }
    outlog_cursor c = {0};
    outlog_read(&l, &c, 2, got);
    outlog_read(&l, &c, 5, got + 2);
    for (uint32_t k = 0; k < 5; k++)
        CHECK(got[k].k == k && got[k].pad[0] == k && got[k].pad[sizeof b.pad - 1] == k, "item %u",
              k);
    outlog_free(&l);
}

/* A writer thread appends and publishes; this thread copies what is published. */
typedef struct {
    outlog l;
    pthread_mutex_t mu;
    size_t published;
    size_t total;
} shared;

static void *writer(void *arg) {
    shared *sh = arg;
    unsigned char buf[700];
    for (size_t w = 0, step = 1; w < sh->total;) {
        size_t k = step < sh->total - w ? step : sh->total - w;
        for (size_t i = 0; i < k; i++)
            buf[i] = byte_at(w + i);
        if (!outlog_write(&sh->l, buf, k)) break;
        w += k;
        step = step * 5 % sizeof buf + 1;
        pthread_mutex_lock(&sh->mu);
        sh->published = w;
        pthread_mutex_unlock(&sh->mu);
    }
    return NULL;
}

static void test_concurrent(void) {
    shared sh = {.total = 200000};
    outlog_init(&sh.l, 1);
    pthread_mutex_init(&sh.mu, NULL);
    unsigned char *got = malloc(sh.total);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, writer, &sh) == 0, "thread");
    outlog_cursor c = {0};
    while (c.pos < sh.total) {
        pthread_mutex_lock(&sh.mu);
        size_t to = sh.published;
        pthread_mutex_unlock(&sh.mu);
        outlog_read(&sh.l, &c, to, got + c.pos); /* no lock: below the published count */
    }
    pthread_join(t, NULL);
    size_t bad = 0;
    for (size_t i = 0; i < sh.total; i++)
        bad += got[i] != byte_at(i);
    CHECK(bad == 0, "%zu of %zu bytes differ", bad, sh.total);
    outlog_free(&sh.l);
    pthread_mutex_destroy(&sh.mu);
    free(got);
}

int main(void) {
    const size_t sizes[] = {0,
                            1,
                            OUTLOG_CHUNK_BYTES - 1,
                            OUTLOG_CHUNK_BYTES,
                            OUTLOG_CHUNK_BYTES + 1,
                            5 * OUTLOG_CHUNK_BYTES + 17};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        test_bytes(sizes[i]);
    test_big_items();
    test_concurrent();
    return check_summary();
}
