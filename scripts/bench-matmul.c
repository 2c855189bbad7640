/* bench-matmul: the single-core speed of one kernel, away from the rest of the forward pass:
 * matmul 2048 -> 5632 then 5632 -> 2048 (TinyLlama's FFN shapes) on random codes, T activation
 * rows, one thread, best of R runs in process CPU time (less sensitive to a loaded host than
 * wall time). TILE picks the Q4_0 decode tile variant (x86.h mm_dec_tiles; -1: this CPU's);
 * COPIES > 1 cycles through that many copies of the weights (13 MB each for Q4_0), so that
 * with enough of them the weights come from DRAM, as in decode, not from L3. REPACK 1 gives
 * every copy its --repack layout (x86.h mm_dec_repack) where the type has one. Not part of the
 * build:
 *   cc -O2 -std=c17 -Iengine scripts/bench-matmul.c build/libengine.a -lm -lpthread -o /tmp/bm
 *   /tmp/bm TYPE [T [AVX512 [R [TILE [COPIES [REPACK]]]]]]
 * (TYPE q4_0, q4_1, q5_0, q5_1, iq4_nl, q8_0, q2_K .. q6_K, iq4_xs, f16, f32 or bf16;
 * AVX512 0 turns it off). For the per-CPU table in x86/avx512.c, the environment can override
 * the float tiles' K chunk (BM_KC, x86.h mm_set_float_kc), the fewest rows that take the zmm
 * float tiles (BM_ZMM_MIN, mm_set_float_zmm_min) and the fewest for which they convert the
 * weights into a buffer first (BM_BUF_MIN, mm_set_float_buf_min; for the AVX2 tiles
 * BM_AVX2_BUF, mm_set_float_avx2_buf_min). BM_BF16_DOT=1 runs BF16 on
 * BF16 activations (matmul.h mm_set_bf16_dot, where the CPU has AVX512_BF16). */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include "matmul.h"
#include "threadpool.h"
#include "x86/x86.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Random bytes with small finite F16 scales (float types: random values in [-1, 1)): speed does
 * not depend on the values. */
static tensor random_weights(dtype t, int n_in, int n_out) {
    const size_t nbytes = dtype_row_bytes(t, n_in) * (size_t)n_out, bb = dtype_block_bytes(t);
    uint8_t *data = malloc(nbytes + 64);
    unsigned s = 1;
    if (t == DT_F32 || t == DT_F16 || t == DT_BF16) {
        for (size_t i = 0; i < (size_t)n_in * n_out; i++) {
            float v = frand(&s);
            if (t == DT_F32) memcpy(data + 4 * i, &v, 4);
            else {
                uint16_t h = t == DT_F16 ? f32_to_f16(v) : f32_to_bf16(v);
                memcpy(data + 2 * i, &h, 2);
            }
        }
        return (tensor){data, t, 2, {n_in, n_out, 1, 1}, NULL};
    }
    for (size_t i = 0; i < nbytes; i++)
        data[i] = (uint8_t)(frand(&s) * 128.0f + 128.0f);
    for (size_t b = 0; b < nbytes / bb; b++)
        for (const int *f = dtype_f16_fields(t); *f >= 0; f++) {
            uint16_t h = f32_to_f16(frand(&s) * 0.05f);
            memcpy(data + b * bb + *f, &h, 2);
        }
    return (tensor){data, t, 2, {n_in, n_out, 1, 1}, NULL};
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *names[] = {"q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "q8_0", "q2_K", "q3_K",
                           "q4_K", "q5_K", "q6_K", "iq4_xs", "f16", "f32", "bf16"};
    const dtype types[] = {DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_IQ4_NL, DT_Q8_0, DT_Q2_K,
                           DT_Q3_K, DT_Q4_K, DT_Q5_K, DT_Q6_K, DT_IQ4_XS, DT_F16, DT_F32, DT_BF16};
    int ti = -1;
    for (int i = 0; argc > 1 && i < (int)(sizeof names / sizeof *names); i++)
        if (strcmp(argv[1], names[i]) == 0) ti = i;
    if (ti < 0) {
        fprintf(stderr,
                "usage: %s q4_0|q4_1|q5_0|q5_1|iq4_nl|q8_0|q2_K..q6_K|iq4_xs|f16|f32|bf16 [T "
                "[AVX512 [R [TILE "
                "[COPIES [REPACK]]]]]]\n", argv[0]);
        return 2;
    }
    const int T = argc > 2 ? atoi(argv[2]) : 128, reps = argc > 4 ? atoi(argv[4]) : 5;
    const int copies = argc > 6 && atoi(argv[6]) > 1 ? atoi(argv[6]) : 1;
    if (argc > 3) mm_avx512_allow(atoi(argv[3]) != 0);
    if (argc > 5) mm_set_dec_tile(atoi(argv[5]));
    if (getenv("BM_KC")) mm_set_float_kc(atoi(getenv("BM_KC")));
    if (getenv("BM_ZMM_MIN")) mm_set_float_zmm_min(atoi(getenv("BM_ZMM_MIN")));
    if (getenv("BM_BUF_MIN")) mm_set_float_buf_min(atoi(getenv("BM_BUF_MIN")));
    if (getenv("BM_AVX2_BUF")) mm_set_float_avx2_buf_min(atoi(getenv("BM_AVX2_BUF")));
    if (getenv("BM_BF16_DOT") && !mm_set_bf16_dot(atoi(getenv("BM_BF16_DOT")) != 0))
        fprintf(stderr, "BM_BF16_DOT: this CPU has no AVX512_BF16\n");
    const bool repack = argc > 7 && atoi(argv[7]) != 0;
    mm_set_inline_macs(INT64_MAX); /* everything on this thread */
    pool *p = pool_create(1);
    tensor *w = malloc(2 * (size_t)copies * sizeof *w);
    for (int c = 0; w && c < copies; c++) {
        w[2 * c] = random_weights(types[ti], 2048, 5632);
        w[2 * c + 1] = random_weights(types[ti], 5632, 2048);
        for (int k = 2 * c; repack && k < 2 * c + 2; k++) {
            const size_t nb = mm_dec_packed_bytes(&w[k]);
            void *packed = nb ? malloc(nb) : NULL;
            if (packed) mm_dec_repack(packed, &w[k]);
            w[k].packed = packed;
        }
    }
    float *x = malloc((size_t)T * 5632 * sizeof *x), *out = malloc((size_t)T * 5632 * sizeof *out);
    unsigned s = 9;
    for (int i = 0; i < T * 5632; i++)
        x[i] = frand(&s);
    mm_scratch ms;
    if (!p || !w || !x || !out || mm_scratch_init(&ms, T, 5632) != 0) return 1;
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        const double t0 = cpu_seconds();
        for (int k = 0; k < 2 * copies; k++)
            matmul(out, x, &w[k], T, &ms, p);
        const double dt = cpu_seconds() - t0;
        if (dt < best) best = dt;
    }
    const mm_dec_shape sh = mm_dec_tiles[mm_dec_tile()];
    printf("%s T=%d kernels=%s tile=%d (%d rows, prefetch %d ahead, hint %s) copies=%d%s: %.3f ms, "
           "%.1f GMAC/s\n",
           names[ti], T, mm_kernels(), mm_dec_tile(), sh.rows, sh.pf_tiles,
           sh.hint == 0   ? "T1"
           : sh.hint == 1 ? "T0"
                          : "NTA",
           copies, repack && w[0].packed ? " repacked" : "", best * 1e3,
           2.0 * copies * 2048 * 5632 * T / best * 1e-9);
    mm_scratch_free(&ms);
    pool_destroy(p);
    free(x);
    free(out);
    for (int k = 0; k < 2 * copies; k++) {
        free((void *)w[k].data);
        free((void *)w[k].packed);
    }
    free(w);
    return 0;
}
