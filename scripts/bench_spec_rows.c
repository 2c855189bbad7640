/* bench_spec_rows: what a speculative step costs. Times one fwd_decode of T rows of one
 * sequence (its last token and T - 1 draft tokens) at position 100 of an F16 KV cache, for
 * T = 1, 2, 3, 5, 9, and prints each as a multiple of the T = 1 step: a draft of T - 1 tokens
 * pays off when the expected accepted tokens + 1 exceed that ratio. The minimum over the
 * repetitions is kept, since a loaded host only ever adds time. Not built by meson:
 *   gcc -O2 -std=gnu17 -Iengine scripts/bench_spec_rows.c build/libengine.a -lm -lpthread \
 *       -lpcre2-8 -o /tmp/bench_spec_rows && /tmp/bench_spec_rows MODEL [THREADS] [REPS] */
#include "forward.h"
#include "kv_cache.h"
#include "model.h"
#include "threadpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [THREADS] [REPS]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 1, reps = argc > 3 ? atoi(argv[3]) : 200;
    char err[256];
    model *m = model_load(argv[1], NULL, err, sizeof err);
    pool *p = m ? pool_create(threads) : NULL;
    fwd_ctx *f = p ? fwd_create(m, 64, p, err, sizeof err) : NULL;
    kv_cache *kv = f ? kv_create(&m->cfg, 256, KV_F16, err, sizeof err) : NULL;
    float *logits = m ? malloc(9 * sizeof(float) * (size_t)m->cfg.vocab_size) : NULL;
    if (!kv || !logits) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int32_t tok[100], pos[100], seq[100];
    bool want[100];
    for (int i = 0; i < 100; i++) tok[i] = 300 + i % 500, pos[i] = i, seq[i] = 0, want[i] = i == 99;
    /* the context the steps attend to */
    fwd_batch fill = {.n_tokens = 100, .token = tok, .pos = pos, .seq = seq, .logits = want};
    if (fwd_decode(f, &kv, 1, &fill, logits, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const int Ts[] = {1, 2, 3, 5, 9};
    double best[5] = {1e9, 1e9, 1e9, 1e9, 1e9};
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < 5; i++) {
            int32_t p_step[9], s_step[9] = {0};
            bool w_step[9];
            for (int t = 0; t < Ts[i]; t++) p_step[t] = 100 + t, w_step[t] = true;
            kv->n = 100;
            fwd_batch b = {.n_tokens = Ts[i], .token = tok, .pos = p_step, .seq = s_step,
                           .logits = w_step};
            double t0 = now();
            fwd_decode(f, &kv, 1, &b, logits, err, sizeof err);
            double dt = now() - t0;
            if (dt < best[i]) best[i] = dt;
        }
    for (int i = 0; i < 5; i++)
        printf("T=%d  %.3f ms  %.2fx the T=1 step\n", Ts[i], best[i] * 1e3, best[i] / best[0]);
    free(logits);
    kv_free(kv);
    fwd_free(f);
    pool_destroy(p);
    model_free(m);
    return 0;
}
