/* bench_attention: what decode attention at depth costs, without the rest of a token. Times
 * attention_rows for one decode item of the TinyLlama shape (8 query heads of one kv head, head
 * dim 64) over N cached positions of a random F16 (or F32, Q8_0) cache, one thread, every kv
 * head of L layers in turn (L = 22, as TinyLlama: the cache then streams from DRAM), and prints
 * us per item, ns per 8-position block and GMAC/s (QK and PV). The minimum over the repetitions
 * is kept, since a loaded host only ever adds time. Not built by meson:
 *   gcc -O2 -std=gnu17 -Iengine scripts/bench_attention.c build/libengine.a -lm -lpthread \
 *       -lpcre2-8 -o /tmp/bench_attention && /tmp/bench_attention [N] [REPS] [f32|f16|q8_0] [L]
 * Environment: LS_AVX512=0 runs the AVX2 helpers, LS_SCALAR=1 the scalar loops. */
#include "common.h"
#include "forward.h"
#include "kv_cache.h"
#include "matmul.h"
#include "quantize.h"
#include "tensor.h"
#include "x86/x86.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* one cache row of n elements, as forward.c's K/V write does it */
static void put_row(void *row, kv_type type, const float *src, int n) {
    if (type == KV_Q8_0)
        quantize_row_q8_0(row, src, n);
    else if (type == KV_F16)
        for (int i = 0; i < n; i++) ((uint16_t *)row)[i] = f32_to_f16(src[i]);
    else
        memcpy(row, src, (size_t)n * sizeof(float));
}

static uint32_t rng = 1;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / (float)(1u << 23) - 1.0f;
}

int main(int argc, char **argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 4096, reps = argc > 2 ? atoi(argv[2]) : 50;
    const char *ty = argc > 3 ? argv[3] : "f16";
    const int n_layers = argc > 4 ? atoi(argv[4]) : 22;
    const kv_type type = !strcmp(ty, "f32") ? KV_F32 : !strcmp(ty, "q8_0") ? KV_Q8_0 : KV_F16;
    const char *e = getenv("LS_AVX512");
    if (e && !strcmp(e, "0")) mm_avx512_allow(false);
    e = getenv("LS_SCALAR");
    if (e && !strcmp(e, "1")) mm_force_scalar(true);
    enum { HD = 64, NH = 8, NKV = 4 };
    model_config c = {.dim = NH * NKV * HD, .n_layers = n_layers, .n_heads = NH * NKV,
                      .n_kv_heads = NKV, .head_dim = HD, .rope_dim = HD};
    char err[256];
    kv_cache *kv = kv_create(&c, n, type, err, sizeof err);
    if (!kv) {
        fprintf(stderr, "kv_create: %s\n", err);
        return 1;
    }
    float row[HD], q[NH * HD], out[NH * HD];
    for (int l = 0; l < n_layers; l++)
        for (int g = 0; g < NKV; g++)
            for (int t = 0; t < n; t++) {
                for (int i = 0; i < HD; i++) row[i] = 2 * frand();
                put_row(kv_k_head(kv, l, g, t), type, row, HD);
                for (int i = 0; i < HD; i++) row[i] = frand();
                put_row(kv_v_head(kv, l, g, t), type, row, HD);
            }
    for (int i = 0; i < NH * HD; i++) q[i] = frand();
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int l = 0; l < n_layers; l++)
            for (int g = 0; g < NKV; g++)
                attention_rows(out, q, HD, NH, NH, kv, l, g, n - 1, HD);
        double dt = (now() - t0) / (NKV * n_layers);
        if (dt < best) best = dt;
    }
    const double macs = 2.0 * NH * n * HD;
    printf("%s n=%d L=%d: %.1f us per item, %.1f ns per 8-position block, %.2f GMAC/s (out[0] "
           "%.6g)\n",
           ty, n, n_layers, best * 1e6, best * 1e9 / (n / 8.0), macs / best * 1e-9,
           (double)out[0]);
    kv_free(kv);
    return 0;
}
