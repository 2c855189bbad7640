/* x86/bf16_avx512: BF16 weights times BF16 activations with AVX512_BF16's vdpbf16ps (matmul.h
 * mm_set_bf16_dot). One output (weight row, activation row) is 16 float lanes: at step s lane l
 * takes elements 32s + 2l and 32s + 2l + 1, as vdpbf16ps does: acc = fma(w0, x0, fma(w1, x1,
 * acc)) (the odd element first; BF16 products are exact in F32; BF16 denormal inputs read as
 * zero and denormal results flush to zero). The 16 lanes then add in one fixed tree. The scalar
 * twin, dot_bf16_pairs (matmul.c), does exactly that, so every output has its bits whatever the
 * tile, T or thread count. The instruction is used only where a probe at first use confirms
 * those semantics (bf16_probe). Never allocates; no state besides the CPU answer. */
#include "x86.h"

#include "../common.h"
#include "../matmul.h"

#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

#define TARGETBF16                                                                                 \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512bf16")))
#define INLINEBF16 static inline LS_FORCE_INLINE TARGETBF16

/* Decode prefetches its rows this many elements ahead (1 KiB): on Zen 5 from DRAM, one core,
 * 2048 x 5632 then back, 15.6-16.8 GMAC/s against 12.4-13.3 without (2026-11-30). */
#define PF_AHEAD 512
/* The twin's lane tree: 16 -> 8 (l + l + 8) -> 4 -> 2 -> 1. */
INLINEBF16 float sum16(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}

/* out[t * ldo + i * ostride] for weight rows w + i * wstride (i < RW) and activation rows
 * x + t * n (t < RT), n elements (a multiple of 32). RW x RT accumulators, the weights and
 * activations loaded once per step each. */
INLINEBF16 void tile_bf16(float *out, size_t ldo, size_t ostride, const uint16_t *w,
                          size_t wstride, const uint16_t *x, int n, int RW, int RT) {
    __m512 acc[4][6];
#pragma GCC unroll 4
    for (int i = 0; i < RW; i++)
#pragma GCC unroll 6
        for (int t = 0; t < RT; t++) acc[i][t] = _mm512_setzero_ps();
    for (int k = 0; k < n; k += 32) {
        __m512bh wv[4];
#pragma GCC unroll 4
        for (int i = 0; i < RW; i++) {
            const uint16_t *a = w + (size_t)i * wstride + k;
            if (RT == 1) _mm_prefetch((const char *)(a + PF_AHEAD), _MM_HINT_T0);
            wv[i] = (__m512bh)_mm512_loadu_si512((const void *)a);
        }
#pragma GCC unroll 6
        for (int t = 0; t < RT; t++) {
            const __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(x + (size_t)t * n + k));
#pragma GCC unroll 4
            for (int i = 0; i < RW; i++) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], wv[i], xv);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < RW; i++)
#pragma GCC unroll 6
        for (int t = 0; t < RT; t++) out[(size_t)t * ldo + i * ostride] = sum16(acc[i][t]);
}

/* Each shape compiled on its own: the accumulators stay in registers. */
#define TILE_FN(RW, RT)                                                                            \
    TARGETBF16 static void tile_##RW##x##RT(float *out, size_t ldo, size_t ostride,               \
                                            const uint16_t *w, size_t wstride, const uint16_t *x,  \
                                            int n) {                                               \
        tile_bf16(out, ldo, ostride, w, wstride, x, n, RW, RT);                                    \
    }
TILE_FN(4, 6)
TILE_FN(4, 5)
TILE_FN(4, 4)
TILE_FN(4, 3)
TILE_FN(4, 2)
TILE_FN(4, 1)
TILE_FN(1, 6)
TILE_FN(1, 5)
TILE_FN(1, 4)
TILE_FN(1, 3)
TILE_FN(1, 2)
TILE_FN(1, 1)

typedef void (*tile_fn)(float *, size_t, size_t, const uint16_t *, size_t, const uint16_t *, int);
static const tile_fn tiles4[7] = {NULL, tile_4x1, tile_4x2, tile_4x3, tile_4x4, tile_4x5, tile_4x6};
static const tile_fn tiles1[7] = {NULL, tile_1x1, tile_1x2, tile_1x3, tile_1x4, tile_1x5, tile_1x6};

/* Activation rows per block: a block's rows (up to XB_BYTES) stay in L2 while every weight row
 * of the thread's share passes over them, each group of 4 rows from L1; the weights are read
 * once per block. Zen 5, one core, 2048 x 5632 then back at T = 128 (bench-matmul, best of 3,
 * alternated): 64 KiB 74-75 GMAC/s, 256 KiB 98-103, 512 KiB 112-114, 1 MiB 121-124, 2 MiB 117-118,
 * all of T 118-119; the F32-activation tiles 72-73. */
#define XB_BYTES (1 << 20)
#define RT_MAX 6

void x86_rows_bf16_dot(float *out, const uint16_t *xb, const tensor *w, int T, int r0, int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1];
    const uint16_t *base = w->data;
    if (T == 1 && mm_float_dec_spread()) {
        /* decode as the float tiles do on such CPUs (x86.h): tile i takes rows r0 + i + j q,
         * so that each of its 4 rows walks a quarter of the share in order */
        const int q = (r1 - r0) / 4;
        for (int i = 0; i < q; i++)
            tile_4x1(out + r0 + i, (size_t)n_out, (size_t)q, base + (size_t)(r0 + i) * n,
                     (size_t)q * n, xb, n);
        for (int r = r0 + 4 * q; r < r1; r++)
            tile_1x1(out + r, (size_t)n_out, 1, base + (size_t)r * n, (size_t)n, xb, n);
        return;
    }
    int tb = (int)(XB_BYTES / ((size_t)n * 2)) / RT_MAX * RT_MAX;
    if (tb < RT_MAX) tb = RT_MAX;
    for (int t0 = 0; t0 < T; t0 += tb) {
        const int t1 = t0 + tb < T ? t0 + tb : T;
        for (int r = r0; r < r1;) {
            const int rw = r1 - r >= 4 ? 4 : 1;
            const uint16_t *wr = base + (size_t)r * n;
            for (int t = t0, rt; t < t1; t += rt) { /* 16 rows: 6 + 5 + 5, not 6 + 6 + 4 */
                rt = mm_even_tile(t1 - t, RT_MAX);
                (rw == 4 ? tiles4 : tiles1)[rt](out + (size_t)t * n_out + r, (size_t)n_out, 1,
                                                 wr, (size_t)n, xb + (size_t)t * n, n);
            }
            r += rw;
        }
    }
}

/* Activations to BF16 (f32_to_bf16's bits: round to nearest even, NaN kept quiet). */
TARGETBF16 static void round_avx512(uint16_t *out, const float *x, int64_t n) {
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1),
                  quiet = _mm512_set1_epi32(0x40);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i u = _mm512_loadu_si512((const void *)(x + i));
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, lsb)), 16);
        r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
        _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi32_epi16(r));
    }
    quantize_row(out + i, x + i, DT_BF16, n - i);
}

/* Lanes whose results tell the candidate semantics apart: products that overflow F32 (the
 * instruction fuses them: fma, not mul + add), odd-first order (it changes sums at rounding
 * ties), denormal inputs and results. */
TARGETBF16 static bool bf16_probe(void) {
    uint16_t w[32], x[32];
    float src[16], got[16];
    unsigned s = 7;
    for (int rep = 0; rep < 64; rep++) {
        for (int i = 0; i < 32; i++) {
            s = s * 1103515245u + 12345u;
            const unsigned e = rep % 4 == 0 ? (s >> 8) % 254 + 1 : 120 + (s >> 8) % 16;
            w[i] = (uint16_t)((s >> 30) << 15 | e << 7 | ((s >> 12) & 0x7f));
            s = s * 1103515245u + 12345u;
            const unsigned e2 = rep % 4 == 0   ? (s >> 8) % 254 + 1
                                : rep % 4 == 1 ? (s >> 8) % 2 /* zero or denormal */
                                               : 124;
            x[i] = (uint16_t)((s >> 30) << 15 | e2 << 7 | ((s >> 12) & 0x7f));
        }
        for (int l = 0; l < 16; l++) {
            s = s * 1103515245u + 12345u;
            src[l] = (float)((int)(s >> 12) - (1 << 19)) / 4096.0f;
        }
        __m512 a = _mm512_dpbf16_ps(_mm512_loadu_ps(src), (__m512bh)_mm512_loadu_si512(w),
                                    (__m512bh)_mm512_loadu_si512(x));
        _mm512_storeu_ps(got, a);
        for (int l = 0; l < 16; l++) {
            const float want =
                bf16_pair_step(src[l], w[2 * l], x[2 * l], w[2 * l + 1], x[2 * l + 1]);
            if (memcmp(&want, &got[l], 4) != 0) return false;
        }
    }
    return true;
}

bool mm_avx512bf16_cpuid(void) {
    /* CPUID leaf 7 sub-leaf 1: EAX bit 5 AVX512_BF16; with AVX-512 F/BW/VL, VNNI and the OS */
    unsigned a, b, cx, d;
    return mm_avx512_supported() && __get_cpuid_count(7, 1, &a, &b, &cx, &d) && (a & (1u << 5));
}

bool mm_avx512bf16_supported(void) {
    static int cached = -1; /* benign race: every thread computes the same answer */
    if (!mm_avx512_supported()) return false; /* the CPU, the OS, and mm_avx512_allow */
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        c = mm_avx512bf16_cpuid() && bf16_probe();
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c;
}

void x86_round_bf16(uint16_t *out, const float *x, int64_t n) {
    if (mm_avx512bf16_supported()) round_avx512(out, x, n);
    else quantize_row(out, x, DT_BF16, n);
}

#else

bool mm_avx512bf16_cpuid(void) { return false; }
bool mm_avx512bf16_supported(void) { return false; }

void x86_rows_bf16_dot(float *out, const uint16_t *xb, const tensor *w, int T, int r0, int r1) {
    (void)out, (void)xb, (void)w, (void)T, (void)r0, (void)r1;
}

void x86_round_bf16(uint16_t *out, const float *x, int64_t n) {
    quantize_row(out, x, DT_BF16, n);
}

#endif
