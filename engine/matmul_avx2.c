/* matmul_avx2: AVX2+FMA+F16C register-tiled kernels for out (T, n_out) = x (T, n_in) @ W^T,

 * F32/F16/BF16: a tile is RW (<= 4) consecutive weight rows times RT (<= 2) activation rows;
 * each weight vector is loaded (and converted) once per k-step and used for RT activation rows,
 * and with many activation rows K is cut into L1-sized chunks, so a prefill or a batched decode
 * step reads each weight row from memory once for the whole block. A pair's accumulation never
 * depends on RW, RT or the chunking (see matmul_avx2.h).
 * Q8_0/Q4_0: 8 pairs per tile (8x1 for one activation row, 4x2 for several), exact integer
 * block sums, and per block the scalar kernel's float steps, so bit-identical to matmul.c.
 * On CPUs with AVX-512 F/BW/VL + VNNI, blocks of T >= 2 rows take the kernels of the second half
 * of this file instead (VNNI for Q8_0/Q4_0; for the float types zmm tiles of 8 weight rows x 6
 * activation rows holding two AVX2 pairs per register, weights converted once per K chunk into
 * an L1 buffer), and so does Q4_0 decode (T = 1: VNNI tiles of 16 weight rows); they give the same bits as the AVX2
 * ones.
 * The scalar kernels in matmul.c are the reference these are tested against (tests/test_matmul.c).
 * Never allocates on the heap; no global state besides the CPU-feature answer. */
#include "matmul_avx2.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET
#define RW_MAX 4 /* weight rows per tile */
#define RT_MAX 2 /* activation rows per tile: 4x2 accumulators + 4 weight vectors fit 16 ymm */

bool mm_avx2_supported(void) {
    static int cached = -1; /* benign race: every thread computes the same answer */
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        /* CPUID leaf 1: ECX bit 12 FMA, 27 OSXSAVE, 29 F16C; leaf 7: EBX bit 5 AVX2; and the OS
         * saves the ymm state (XCR0 bits 1, 2). Read directly: __builtin_cpu_supports has no
         * "f16c" on clang. */
        unsigned a, b, cx, d;
        c = 0;
        if (__get_cpuid(1, &a, &b, &cx, &d) && (cx & (1u << 12)) && (cx & (1u << 27)) &&
            (cx & (1u << 29))) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            c = (lo & 0x6) == 0x6 && __get_cpuid_count(7, 0, &a, &b, &cx, &d) && (b & (1u << 5));
        }
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c;
}

/* The one horizontal reduction every pair ends with: (lanes 0-3 + lanes 4-7), then pairwise. */
INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- F32 / F16 / BF16 weights: F32 activations, FMA into one 8-lane accumulator per pair --- */

/* 8 weights of row `row` from element k, as F32. */
INLINE __m256 load8(dtype type, const void *row, int k) {
    if (type == DT_F32) return _mm256_loadu_ps((const float *)row + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
    if (type == DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); /* BF16 */
}

/* The last n - k (< 8) weights, zero-padded to 8: the padded lanes add 0 * 0 to their sum. */
INLINE __m256 load8_tail(dtype type, const void *row, int k, int n) {
    float buf[8] = {0};
    for (int i = k; i < n; i++)
        buf[i - k] = type == DT_F32   ? ((const float *)row)[i]
                     : type == DT_F16 ? f16_to_f32(((const uint16_t *)row)[i])
                                      : bf16_to_f32(((const uint16_t *)row)[i]);
    return _mm256_loadu_ps(buf);
}

/* One RW x RT tile over k in [k0, k1): out[t * ldo + r] = dot(w row r, x row t) for r < RW,
 * t < RT. w: RW rows of n elements, wstride bytes apart; x: RT rows of n floats, ldx apart.
 * The K loop may be cut into chunks (first/last): between chunks the accumulators are parked
 * in save (RT x RW_MAX vectors), which changes no operation, so a pair's result is the same
 * whatever the chunking. The tail (n % 8 elements) belongs to the last chunk. */
INLINE void tile_float(dtype type, float *out, int ldo, const uint8_t *w, size_t wstride,
                       const float *x, int ldx, int k0, int k1, int n, __m256 *save, bool first,
                       bool last, int RW, int RT) {
    const int esz = type == DT_F32 ? 4 : 2;
    __m256 acc[RW_MAX][RT_MAX];
#pragma GCC unroll 4
    for (int r = 0; r < RW; r++)
#pragma GCC unroll 6
        for (int t = 0; t < RT; t++)
            acc[r][t] = first ? _mm256_setzero_ps() : save[t * RW_MAX + r];
    int k = k0;
    for (; k + 8 <= k1; k += 8) {
        __m256 wv[RW_MAX];
#pragma GCC unroll 4
        for (int r = 0; r < RW; r++) {
            wv[r] = load8(type, w + r * wstride, k);
            /* the next tile's rows, one cache line per 64 bytes of weights, into L2 (see
             * tile_vnni_dec) */
            if ((k * esz) % 64 == 0)
                _mm_prefetch((const char *)(w + (r + RW) * wstride) + k * esz, _MM_HINT_T1);
        }
#pragma GCC unroll 6
        for (int t = 0; t < RT; t++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)t * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < RW; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    if (!last) {
        for (int r = 0; r < RW; r++)
            for (int t = 0; t < RT; t++) save[t * RW_MAX + r] = acc[r][t];
        return;
    }
    if (k < n) {
        __m256 wv[RW_MAX];
        for (int r = 0; r < RW; r++) wv[r] = load8_tail(type, w + r * wstride, k, n);
        for (int t = 0; t < RT; t++) {
            float buf[8] = {0};
            memcpy(buf, x + (size_t)t * ldx + k, (size_t)(n - k) * sizeof(float));
            __m256 xv = _mm256_loadu_ps(buf);
            for (int r = 0; r < RW; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < RW; r++)
#pragma GCC unroll 6
        for (int t = 0; t < RT; t++) out[(size_t)t * ldo + r] = hsum8(acc[r][t]);
}

#define KC 512 /* K chunk: the tile's weight rows of it stay in L1 across a row group */
#define TG 64  /* activation rows per group: their parked accumulators take 8 KB */

/* Columns [r, r + RW) x rows [t0, t1) of out, K cut into chunks of KC when several activation
 * rows share the weights (so the weight chunk is reused from L1 while x streams from L2). Tiles
 * of RT_MAX activation rows, then of 1 for the rest. */
INLINE void rows_float_block(dtype type, float *out, const float *x, const uint8_t *wr, size_t rb,
                             int n, int n_out, int t0, int t1, int RW) {
    __m256 save[TG * RW_MAX];
    const int kstep = t1 - t0 > RT_MAX ? KC : n;
    for (int k0 = 0; k0 < n; k0 += kstep) {
        int k1 = k0 + kstep < n ? k0 + kstep : n;
        bool first = k0 == 0, last = k1 == n;
        int t = t0;
        for (; t + RT_MAX <= t1; t += RT_MAX)
            tile_float(type, out + (size_t)t * n_out, n_out, wr, rb, x + (size_t)t * n, n, k0,
                       k1, n, save + (t - t0) * RW_MAX, first, last, RW, RT_MAX);
        for (; t < t1; t++)
            tile_float(type, out + (size_t)t * n_out, n_out, wr, rb, x + (size_t)t * n, n, k0,
                       k1, n, save + (t - t0) * RW_MAX, first, last, RW, 1);
    }
}

/* Every tile of columns [r0, r1) and rows [0, T). */
INLINE void rows_float(dtype type, float *out, const float *x, const tensor *w, int T, int r0,
                       int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1];
    const size_t rb = dtype_row_bytes(type, n);
    const uint8_t *base = w->data;
    for (int t0 = 0; t0 < T; t0 += TG) {
        int t1 = t0 + TG < T ? t0 + TG : T, r = r0;
        for (; r + RW_MAX <= r1; r += RW_MAX)
            rows_float_block(type, out + r, x, base + r * rb, rb, n, n_out, t0, t1, RW_MAX);
        for (; r < r1; r++)
            rows_float_block(type, out + r, x, base + r * rb, rb, n, n_out, t0, t1, 1);
    }
}

TARGET static void rows_f32(float *out, const float *x, const tensor *w, int T, int r0, int r1) {
    rows_float(DT_F32, out, x, w, T, r0, r1);
}
TARGET static void rows_f16(float *out, const float *x, const tensor *w, int T, int r0, int r1) {
    rows_float(DT_F16, out, x, w, T, r0, r1);
}
TARGET static void rows_bf16(float *out, const float *x, const tensor *w, int T, int r0, int r1) {
    rows_float(DT_BF16, out, x, w, T, r0, r1);
}

/* ---- Q8_0 / Q4_0 weights: 8-bit activations, exact integer sums per block ------------------
 * A block's 32 products are summed exactly in integers (maddubs into 16 int16, which cannot
 * saturate here, then madd with ones into 8 int32, then a horizontal add). The float part then
 * does, per pair and per block, exactly what dot_q8_0/dot_q4_0 do:
 *     sum = sum + (float)isum * (d_w * d_x)     (mul, mul, add: three roundings, no FMA)
 * with up to 8 pairs side by side in the lanes of one vector. So these kernels are bit-identical
 * to the scalar ones, not merely close. A tile is RW x RT pairs with RW * RT <= 8: 8x1 for one
 * activation row (decode), 4x2 for a block of rows (prefill, batched decode). */
#define QP_MAX 8 /* pairs per quantized tile */

/* Q8_0: a block's 32 signed weights. sign(w, x) negates w where x < 0, so a weight of -128
 * (never written by quantize_row_q8_0, whose range is [-127, 127]) would wrap. */
INLINE __m256i load_q8_0(const block_q8_0 *b) {
    return _mm256_loadu_si256((const __m256i *)b->qs);
}

/* Q4_0: the 32 nibbles 0..15 (unsigned; element i < 16 in byte i, i + 16 in byte 16 + i). */
INLINE __m256i load_q4_0(const block_q4_0 *b) {
    /* both halves get the 16 bytes; the high half is shifted right by 4 (no lane-crossing
     * shuffle: those compete with the reduction below for the one shuffle port) */
    __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b->qs));
    q = _mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(q, _mm256_set1_epi8(0x0f));
}

/* a's even 32-bit lanes + b's odd ones, each summed with its neighbour: [a0+a1, b0+b1, a2+a3,
 * b2+b3, ...]. Shifts, adds and a blend: no shuffle-port work. */
INLINE __m256i pairsum_epi32(__m256i a, __m256i b) {
    __m256i ea = _mm256_add_epi32(a, _mm256_srli_epi64(a, 32));
    __m256i ob = _mm256_add_epi32(b, _mm256_slli_epi64(b, 32));
    return _mm256_blend_epi32(ea, ob, 0xaa);
}

/* pairsum(v0, v1) = [v0 01, v1 01, v0 23, v1 23 | 45, 67] and pairsum(v2, v3) alike: the low
 * 64-bit halves of both plus the high halves give [v0 0-3, v1 0-3, v2 0-3, v3 0-3 | 4-7]. */
INLINE __m256i quadsum_epi32(__m256i a, __m256i b) {
    return _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
}

/* Lane i of the result = the sum of the 8 int32 lanes of v[i] (exact). */
INLINE __m256i hsum8x8_epi32(const __m256i v[QP_MAX]) {
    __m256i a = quadsum_epi32(pairsum_epi32(v[0], v[1]), pairsum_epi32(v[2], v[3]));
    __m256i b = quadsum_epi32(pairsum_epi32(v[4], v[5]), pairsum_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

/* One RW x RT tile over nb blocks: out[t * ldo + r] = dot(w row r, x row t). Pair (r, t) lives
 * in lane r * RT + t. Q8_0: sum w*x = maddubs(|x|, sign(w, x)), widened by madd. Q4_0 with
 * nibbles q = w + 8: the int16 pair sums maddubs(q, x) - maddubs(8, x) (q <= 15: no saturation),
 * summed in int16 (hsum8x8_epi16). */
/* Lane i of the result = the sum of the 16 int16 lanes of v[i] (exact while every partial sum
 * fits in int16: true for Q4_0, whose pair sums are at most 2 * 8 * 127 = 2032 in magnitude, so
 * a 128-bit half sums to at most 16256 and both halves to 32512). Three levels of hadd leave
 * [v0 .. v7] summed over each 128-bit half; the halves are added and widened once. Cheaper than
 * widening every vector with madd first. */
INLINE __m256i hsum8x8_epi16(const __m256i v[QP_MAX]) {
    __m256i a = _mm256_hadd_epi16(_mm256_hadd_epi16(v[0], v[1]), _mm256_hadd_epi16(v[2], v[3]));
    __m256i b = _mm256_hadd_epi16(_mm256_hadd_epi16(v[4], v[5]), _mm256_hadd_epi16(v[6], v[7]));
    __m256i h = _mm256_hadd_epi16(a, b);
    return _mm256_cvtepi16_epi32(
        _mm_add_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
}

/* F16 scales in the low 16 bits of each 32-bit lane, as F32: exact for every finite F16 (the
 * exponent and mantissa move into F32 position, then a multiply by 2^112 rebiases the exponent,
 * which also makes F16 subnormals exact normals). Infinity and NaN scales (never written by a
 * quantizer) come out as large finite numbers, unlike f16_to_f32. Integer and multiply ports
 * only: the shuffle port is kept for the sums. */
INLINE __m256 f16_lo_to_f32(__m256i h) {
    __m256i mag = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), 13);
    __m256 f = _mm256_mul_ps(_mm256_castsi256_ps(mag), _mm256_set1_ps(0x1p112f));
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16);
    return _mm256_or_ps(f, _mm256_castsi256_ps(sign));
}

/* b's 32-bit lanes of pair group k, a's elsewhere. Groups: the lanes i = r * RT + t of weight
 * row k (by_row) or of activation row k (!by_row). vpblendd needs an immediate mask, hence the
 * switch; it folds away once the tile shape is a constant. */
INLINE __m256i blend_group(__m256i a, __m256i b, int RT, bool by_row, int k) {
    if (!by_row) return RT == 2 && k == 1 ? _mm256_blend_epi32(a, b, 0xaa) : b;
    if (RT == 2) {
        switch (k) {
        case 1: return _mm256_blend_epi32(a, b, 0x0c);
        case 2: return _mm256_blend_epi32(a, b, 0x30);
        case 3: return _mm256_blend_epi32(a, b, 0xc0);
        }
        return b;
    }
    switch (k) {
    case 1: return _mm256_blend_epi32(a, b, 0x02);
    case 2: return _mm256_blend_epi32(a, b, 0x04);
    case 3: return _mm256_blend_epi32(a, b, 0x08);
    case 4: return _mm256_blend_epi32(a, b, 0x10);
    case 5: return _mm256_blend_epi32(a, b, 0x20);
    case 6: return _mm256_blend_epi32(a, b, 0x40);
    case 7: return _mm256_blend_epi32(a, b, 0x80);
    }
    return b;
}

INLINE void tile_quant(dtype type, float *out, int ldo, const uint8_t *w, size_t wstride,
                       const block_q8_act *x, int ldx, int nb, int RW, int RT) {
    const __m256i ones = _mm256_set1_epi16(1), eights = _mm256_set1_epi8(8);
    const size_t bb = type == DT_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    __m256 sum = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i xv[RT_MAX], xs[RT_MAX]; /* Q8_0: |x|; Q4_0: 8 * (x[2i] + x[2i+1]) in int16 */
        __m256 dx = _mm256_setzero_ps(); /* per lane: the activation row's scale */
#pragma GCC unroll 2
        for (int t = 0; t < RT; t++) {
            const block_q8_act *xb = x + (size_t)t * ldx + b;
            xv[t] = _mm256_loadu_si256((const __m256i *)xb->qs);
            xs[t] = type == DT_Q8_0 ? _mm256_sign_epi8(xv[t], xv[t])
                                    : _mm256_maddubs_epi16(eights, xv[t]);
            __m256 d = _mm256_broadcast_ss(&xb->d);
            dx = t == 0 ? d
                        : _mm256_castsi256_ps(blend_group(_mm256_castps_si256(dx),
                                                          _mm256_castps_si256(d), RT, false, t));
        }
        __m256i p[QP_MAX];
        __m256i dwh = _mm256_setzero_si256(); /* per lane: the weight row's scale (F16 bits) */
#pragma GCC unroll 8
        for (int i = RW * RT; i < QP_MAX; i++) p[i] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int r = 0; r < RW; r++) {
            const uint8_t *blk = w + r * wstride + (size_t)b * bb; /* d, then the quants */
            /* the same block of the next tile's row: rows are short (a few cache lines), too
             * short for the hardware prefetcher to ramp up on each */
            _mm_prefetch((const char *)blk + RW * wstride, _MM_HINT_T1);
            __m256i wq = type == DT_Q8_0 ? load_q8_0((const block_q8_0 *)blk)
                                         : load_q4_0((const block_q4_0 *)blk);
            int32_t d32;
            memcpy(&d32, blk, 4); /* d and the first quant bytes; the high half is masked off */
            __m256i d = _mm256_set1_epi32(d32);
            dwh = r == 0 ? d : blend_group(dwh, d, RT, true, r);
#pragma GCC unroll 2
            for (int t = 0; t < RT; t++) {
                if (type == DT_Q8_0)
                    p[r * RT + t] = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(xs[t], _mm256_sign_epi8(wq, xv[t])), ones);
                else /* int16 (q - 8) * x pair sums, |.| <= 2032 */
                    p[r * RT + t] = _mm256_sub_epi16(_mm256_maddubs_epi16(wq, xv[t]), xs[t]);
            }
        }
        /* scale = d_w * d_x lane by lane: the same float product as the scalar kernel's */
        __m256 scale = _mm256_mul_ps(f16_lo_to_f32(dwh), dx);
        __m256i is = type == DT_Q8_0 ? hsum8x8_epi32(p) : hsum8x8_epi16(p);
        __m256 isum = _mm256_cvtepi32_ps(is); /* exact: |isum| < 2^24 */
        sum = _mm256_add_ps(sum, _mm256_mul_ps(isum, scale));
    }
    float res[QP_MAX];
    _mm256_storeu_ps(res, sum);
#pragma GCC unroll 8
    for (int r = 0; r < RW; r++)
#pragma GCC unroll 2
        for (int t = 0; t < RT; t++) out[(size_t)t * ldo + r] = res[r * RT + t];
}

INLINE void rows_quant(dtype type, float *out, const block_q8_act *xq, const tensor *w, int T,
                       int r0, int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1], nb = n / QK;
    const size_t rb = dtype_row_bytes(type, n);
    const uint8_t *base = w->data;
    int r = r0;
    if (T == 1)
        for (; r + 8 <= r1; r += 8)
            tile_quant(type, out + r, n_out, base + r * rb, rb, xq, nb, nb, 8, 1);
    for (; r + 4 <= r1; r += 4) {
        int t = 0;
        for (; t + 2 <= T; t += 2)
            tile_quant(type, out + (size_t)t * n_out + r, n_out, base + r * rb, rb,
                       xq + (size_t)t * nb, nb, nb, 4, 2);
        for (; t < T; t++)
            tile_quant(type, out + (size_t)t * n_out + r, n_out, base + r * rb, rb,
                       xq + (size_t)t * nb, nb, nb, 4, 1);
    }
    for (; r < r1; r++)
        for (int t = 0; t < T; t++)
            tile_quant(type, out + (size_t)t * n_out + r, n_out, base + r * rb, rb,
                       xq + (size_t)t * nb, nb, nb, 1, 1);
}

TARGET static void rows_q8_0(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                             int r1) {
    rows_quant(DT_Q8_0, out, xq, w, T, r0, r1);
}
TARGET static void rows_q4_0(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                             int r1) {
    rows_quant(DT_Q4_0, out, xq, w, T, r0, r1);
}

/* ---- Q8_0 / Q4_0 with AVX-512 VNNI (T >= 2) ------------------------------------------------
 * A tile is 4 weight rows x NG groups of 4 activation rows; group g's 16 pairs sit in the 16
 * int32/float lanes of one zmm, pair (weight row i, activation row 4g + t) in lane 4i + t. For
 * each 4-byte column c of a block, vpshufd puts dword c of weight row i in all of 128-bit lane
 * i and a 16-byte broadcast of the repacked activations puts dword c of row t in lane t of
 * every 128-bit lane; one vpdpbusd adds the four products of every pair. Eight of them give the
 * exact block sum of every pair with no horizontal reduction, and one weight unpack serves all
 * 4 * NG activation rows. vpdpbusd multiplies unsigned by signed bytes, so the weights go in
 * offset to unsigned (Q4_0: the nibble q = w + 8; Q8_0: w ^ 0x80 = w + 128) and the offset
 * times the activation block's sum (q8_act_x4.s) is taken off: exact integers. The float steps
 * per pair and block are then the scalar kernel's (mul, mul, add), so the results are the bits
 * of dot_q8_0/dot_q4_0, as on the AVX2 path. */
#define TARGET512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE512 static inline __attribute__((always_inline)) TARGET512
#define NG_MAX 4 /* activation groups (of 4 rows) per tile */

static atomic_int avx512_allowed = 1;

void mm_avx512_allow(bool on) { atomic_store_explicit(&avx512_allowed, on, memory_order_relaxed); }

bool mm_avx512_supported(void) {
    static int cached = -1; /* benign race: every thread computes the same answer */
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        /* CPUID leaf 7: EBX bit 16 AVX512F, 30 AVX512BW, 31 AVX512VL; ECX bit 11 VNNI; and the
         * OS must save the opmask and zmm state (XCR0 bits 1, 2, 5, 6, 7). Read directly rather
         * than through __builtin_cpu_supports, whose feature names differ between compilers. */
        unsigned a, b, cx, d;
        c = 0;
        if (mm_avx2_supported() && __get_cpuid_count(7, 0, &a, &b, &cx, &d)) {
            bool has = (b & (1u << 16)) && (b & (1u << 30)) && (b & (1u << 31)) &&
                       (cx & (1u << 11));
            if (has) {
                unsigned lo, hi;
                __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
                c = (lo & 0xe6) == 0xe6;
            }
        }
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c && atomic_load_explicit(&avx512_allowed, memory_order_relaxed);
}

void mm_repack_x4(q8_act_x4 *xr, const block_q8_act *xq, int T, int t0, int nb) {
    for (int b = 0; b < nb; b++) {
        q8_act_x4 *o = &xr[b];
        for (int t = 0; t < 4; t++) {
            const block_q8_act *src = t0 + t < T ? &xq[(size_t)(t0 + t) * nb + b] : NULL;
            int32_t sum = 0;
            for (int c = 0; c < 8; c++) {
                int32_t v = 0;
                if (src) {
                    memcpy(&v, src->qs + 4 * c, 4);
                    for (int j = 0; j < 4; j++) sum += src->qs[4 * c + j];
                }
                o->q[c][t] = v;
            }
            o->d[t] = src ? src->d : 0.0f;
            o->s[t] = sum;
        }
    }
}

/* Weight rows w[0..3], rb bytes long (a tail repeats the last row; its outputs are dropped) x groups
 * xr[0 .. NG) (gstride blocks apart) over nb blocks; out[t * ldo + i] for i < nw, t < nt. */
INLINE512 void tile_vnni(dtype type, float *out, int ldo, const uint8_t *const w[4], size_t rb,
                         int nw, const q8_act_x4 *xr, size_t gstride, int nt, int nb, int NG) {
    const size_t bb = type == DT_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i low4 = _mm512_set1_epi8(0x0f), bias = _mm512_set1_epi8((char)0x80);
    const int sh = type == DT_Q8_0 ? 7 : 3; /* the weight offset, 128 or 8, as a shift */
    __m512 sum[NG_MAX];
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) sum[g] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk[4];
        uint16_t dh[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            blk[i] = w[i] + (size_t)b * bb; /* d (F16), then the quants */
            _mm_prefetch((const char *)blk[i] + 4 * rb, _MM_HINT_T0); /* the next tile's */
            memcpy(&dh[i], blk[i], 2);
        }
        uint64_t d4 = (uint64_t)dh[0] | (uint64_t)dh[1] << 16 | (uint64_t)dh[2] << 32 |
                      (uint64_t)dh[3] << 48;
        /* exact F16 -> F32 (finite scales), the weight row's scale in lanes 4i .. 4i + 3 */
        __m512 dw = _mm512_permutexvar_ps(
            idx, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)d4))));
        __m512i lo, hi; /* 128-bit lane i: weight row i's unsigned quants 0-15 / 16-31 */
        __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(blk[0] + 2)));
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(blk[1] + 2)), 1);
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(blk[2] + 2)), 2);
        z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(blk[3] + 2)), 3);
        if (type == DT_Q4_0) {
            lo = _mm512_and_si512(z, low4);
            hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), low4);
        } else {
            __m512i h = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(blk[0] + 18)));
            h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)(blk[1] + 18)), 1);
            h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)(blk[2] + 18)), 2);
            h = _mm512_inserti32x4(h, _mm_loadu_si128((const __m128i *)(blk[3] + 18)), 3);
            lo = _mm512_xor_si512(z, bias);
            hi = _mm512_xor_si512(h, bias);
        }
        __m512i acc[NG_MAX];
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++) acc[g] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m512i a;
            switch (c & 3) { /* vpshufd needs an immediate */
            case 0: a = _mm512_shuffle_epi32(c < 4 ? lo : hi, (_MM_PERM_ENUM)0x00); break;
            case 1: a = _mm512_shuffle_epi32(c < 4 ? lo : hi, (_MM_PERM_ENUM)0x55); break;
            case 2: a = _mm512_shuffle_epi32(c < 4 ? lo : hi, (_MM_PERM_ENUM)0xaa); break;
            default: a = _mm512_shuffle_epi32(c < 4 ? lo : hi, (_MM_PERM_ENUM)0xff); break;
            }
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++)
                acc[g] = _mm512_dpbusd_epi32(
                    acc[g], a,
                    _mm512_broadcast_i32x4(
                        _mm_loadu_si128((const __m128i *)xr[g * gstride + b].q[c])));
        }
#pragma GCC unroll 4
        for (int g = 0; g < NG; g++) {
            const q8_act_x4 *xb = &xr[g * gstride + b];
            __m512i off = _mm512_slli_epi32(
                _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb->s)), sh);
            __m512 isum = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[g], off)); /* exact */
            __m512 scale = _mm512_mul_ps(dw, _mm512_broadcast_f32x4(_mm_loadu_ps(xb->d)));
            sum[g] = _mm512_add_ps(sum[g], _mm512_mul_ps(isum, scale));
        }
    }
    for (int g = 0; g < NG; g++) {
        float res[16];
        _mm512_storeu_ps(res, sum[g]);
        for (int t = 0; t < 4 && 4 * g + t < nt; t++)
            for (int i = 0; i < nw; i++) out[(size_t)(4 * g + t) * ldo + i] = res[4 * i + t];
    }
}

INLINE512 void rows_vnni(dtype type, float *out, const q8_act_x4 *xr, const tensor *w, int T,
                         int r0, int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1], nb = n / QK, G = (T + 3) / 4;
    const size_t rb = dtype_row_bytes(type, n);
    const uint8_t *base = w->data;
    for (int r = r0; r < r1; r += 4) {
        int nw = r1 - r < 4 ? r1 - r : 4;
        const uint8_t *wr[4];
        for (int i = 0; i < 4; i++) wr[i] = base + (size_t)(r + (i < nw ? i : nw - 1)) * rb;
        for (int g = 0; g < G; g += NG_MAX) {
            float *o = out + (size_t)4 * g * n_out + r;
            const q8_act_x4 *x = xr + (size_t)g * nb;
            int nt = T - 4 * g;
            switch (G - g < NG_MAX ? G - g : NG_MAX) {
            case 1: tile_vnni(type, o, n_out, wr, rb, nw, x, nb, nt, nb, 1); break;
            case 2: tile_vnni(type, o, n_out, wr, rb, nw, x, nb, nt, nb, 2); break;
            case 3: tile_vnni(type, o, n_out, wr, rb, nw, x, nb, nt, nb, 3); break;
            default: tile_vnni(type, o, n_out, wr, rb, nw, x, nb, nt, nb, 4); break;
            }
        }
    }
}

/* ---- Q4_0 decode (T <= MM_DEC_T_MAX) with AVX-512 VNNI ---------------------------------------
 * A tile is 16 weight rows x NT (1 to 3) activation rows: one weight unpack serves them all
 * (the VNNI GEMM tiles below, built for 16 activation rows, would waste most lanes). For each
 * activation row: group g (rows 4g .. 4g + 3) has one zmm:
 * 128-bit lane i holds a block of weight row 4g + i (its 16 quant bytes: the low nibbles are
 * elements 0-15, the high ones 16-31), the activation block's two halves are broadcast
 * to every 128-bit lane, and two vpdpbusd leave in dword c of lane i the sum of the 8 products
 * of weight row 4g + i at bytes 4c .. 4c + 3 of both halves. The weight offset (8) times
 * the activation's sums is taken off first (the accumulators start at -offset * x dwords: exact
 * integers). One 4 x 4 transpose-and-add of the 4 groups then gives, in lane 4i + j, the exact
 * block sum of weight row 4j + i, so the float steps per block (mul, mul, add: the scalar
 * kernel's) run for 16 pairs in one zmm; the 16 scales come in one gather. Bit-identical to
 * dot_q4_0 and to the AVX2 8x1 tiles, which still take the rows past the last full tile of 16.
 * (The same layout for Q8_0, two 16-byte halves per row offset by 128, ran slower than the AVX2
 * tiles on the memory-bound Q8_0 decode: tg 2 threads 23.8 -> 21-22 tok/s; not kept.)
 * out[t * ldo + i]: activation row t (x + t * nb), weight row i. */
INLINE512 void tile_vnni_dec(float *out, size_t ldo, const uint8_t *w, size_t rb,
                             const block_q8_act *x, int nb, int NT) {
    const size_t bb = sizeof(block_q4_0);
    const __m512i gidx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
        _mm512_set1_epi32((int)rb));
    const __m512i low4 = _mm512_set1_epi8(0x0f), woff = _mm512_set1_epi8(8);
    __m512 sum[MM_DEC_T_MAX];
#pragma GCC unroll 3
    for (int t = 0; t < NT; t++) sum[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = w + (size_t)b * bb; /* row 0's block b: d (F16), then the quants */
        /* the next tile's rows, every other block (36 bytes: every line is touched; every
         * block was slower, and so was every fourth), into L2 only: with T0 (into L1) tg ran
         * at 38.5 tok/s on 2 threads, with T1 at 43-44 (the L1 fill buffers are too few for
         * 16 streams) */
        if ((b & 1) == 0)
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                _mm_prefetch((const char *)wb + (size_t)(16 + i) * rb, _MM_HINT_T1);
        __m512i xlo[MM_DEC_T_MAX], xhi[MM_DEC_T_MAX], noff[MM_DEC_T_MAX], acc[MM_DEC_T_MAX][4];
        const __m512i zero = _mm512_setzero_si512();
#pragma GCC unroll 3
        for (int t = 0; t < NT; t++) {
            const block_q8_act *xb = &x[(size_t)t * nb + b];
            xlo[t] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb->qs));
            xhi[t] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xb->qs + 16)));
            noff[t] = _mm512_sub_epi32(
                zero, _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, woff, xlo[t]), woff, xhi[t]));
        }
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            const uint8_t *r = wb + (size_t)4 * g * rb + 2;
            __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)r));
            z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(r + rb)), 1);
            z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(r + 2 * rb)), 2);
            z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(r + 3 * rb)), 3);
            __m512i lo = _mm512_and_si512(z, low4);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), low4);
#pragma GCC unroll 3
            for (int t = 0; t < NT; t++)
                acc[t][g] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(noff[t], lo, xlo[t]), hi, xhi[t]);
        }
        /* the 16 weight scales (F16 in the low half of the gathered dwords), exact to F32 */
        __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(gidx, wb, 1)));
#pragma GCC unroll 3
        for (int t = 0; t < NT; t++) {
            /* per 128-bit lane i: [A0+A2, B0+B2, A1+A3, B1+B3], then the 64-bit halves:
             * [A, B, C, D] */
            __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[t][0], acc[t][1]),
                                          _mm512_unpackhi_epi32(acc[t][0], acc[t][1]));
            __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[t][2], acc[t][3]),
                                          _mm512_unpackhi_epi32(acc[t][2], acc[t][3]));
            __m512i is = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1),
                                          _mm512_unpackhi_epi64(t0, t1));
            __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(x[(size_t)t * nb + b].d));
            sum[t] = _mm512_add_ps(sum[t], _mm512_mul_ps(_mm512_cvtepi32_ps(is), scale)); /* exact cvt */
        }
    }
    for (int t = 0; t < NT; t++) {
        float res[16];
        _mm512_storeu_ps(res, sum[t]);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) out[(size_t)t * ldo + 4 * j + i] = res[4 * i + j];
    }
}

TARGET512 static void rows_q4_0_vnni_dec(float *out, const block_q8_act *xq, const tensor *w,
                                         int T, int r0, int r1) {
    const int n = (int)w->ne[0], nb = n / QK;
    const size_t rb = dtype_row_bytes(DT_Q4_0, n), ldo = (size_t)w->ne[1];
    const uint8_t *base = w->data;
    int r = r0;
    for (; r + 16 <= r1; r += 16) {
        const uint8_t *wr = base + (size_t)r * rb;
        if (T == 1) tile_vnni_dec(out + r, ldo, wr, rb, xq, nb, 1);
        else if (T == 2) tile_vnni_dec(out + r, ldo, wr, rb, xq, nb, 2);
        else tile_vnni_dec(out + r, ldo, wr, rb, xq, nb, 3);
    }
    if (r < r1) rows_quant(DT_Q4_0, out, xq, w, T, r, r1);
}

/* ---- F32 / F16 / BF16 with AVX-512 (T >= 2) -------------------------------------------------
 * Two AVX2 pairs per zmm: the low 8 lanes hold pair (row r, row t) and the high 8 lanes pair
 * (row r + 1, row t), so one 512-bit FMA does two of the AVX2 kernel's 256-bit FMAs, on the same
 * lanes in the same k order; the tail is zero-padded the same way and each half ends with the
 * same hsum8. So every output is the AVX2 kernel's bits, while this CPU class issues two 512-bit
 * FMAs per cycle (twice the ymm rate). A tile is 2 * RP weight rows (RP zmm of two rows each)
 * times RT activation rows; the 8-lane activation vector is broadcast to both halves by a
 * plain load. */
#define RP_MAX 4 /* zmm weight vectors (row pairs) per tile */
#define RT_ZMM 6 /* activation rows per tile: 4 x 6 accumulators + 4 weight vectors + 1 */

/* 8 weights from element k of row a (low half) and row b (high half), as F32. */
INLINE512 __m512 load8x2(dtype type, const uint8_t *a, const uint8_t *b, int k) {
    if (type == DT_F32)
        return _mm512_castpd_ps(_mm512_insertf64x4(
            _mm512_castpd256_pd512(_mm256_loadu_pd((const double *)((const float *)a + k))),
            _mm256_loadu_pd((const double *)((const float *)b + k)), 1));
    __m256i h = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)((const uint16_t *)a + k))),
        _mm_loadu_si128((const __m128i *)((const uint16_t *)b + k)), 1);
    if (type == DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); /* BF16 */
}

/* x[k .. k + 8) in both halves. */
INLINE512 __m512 bcast8(const float *x) {
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd((const double *)x)));
}

/* tile_float's contract for 2 * RP weight rows: the same operations per pair, two pairs per
 * register. The full 8-element steps read the weights from wp when it is given (the chunk
 * [k0, k1) packed by rows_float512_block: pair p's step j at wp[p * (KC / 8) + j]), else from
 * w; the tail always from w. save holds RT x RP_MAX zmm. */
INLINE512 void tile_float512(dtype type, float *out, int ldo, const uint8_t *w, size_t wstride,
                             const __m512 *wp, const float *x, int ldx, int k0, int k1, int n,
                             __m512 *save, bool first, bool last, int RP, int RT) {
    const int esz = type == DT_F32 ? 4 : 2;
    __m512 acc[RP_MAX][RT_ZMM];
#pragma GCC unroll 4
    for (int p = 0; p < RP; p++)
#pragma GCC unroll 12
        for (int t = 0; t < RT; t++)
            acc[p][t] = first ? _mm512_setzero_ps() : save[t * RP_MAX + p];
    int k = k0;
    if (wp) { /* the weights from the packed L1 buffer */
        for (; k + 8 <= k1; k += 8, wp++) {
#pragma GCC unroll 12
            for (int t = 0; t < RT; t++) {
                __m512 xv = bcast8(x + (size_t)t * ldx + k);
#pragma GCC unroll 4
                for (int p = 0; p < RP; p++)
                    acc[p][t] = _mm512_fmadd_ps(wp[p * (KC / 8)], xv, acc[p][t]);
            }
        }
    }
    for (; k + 8 <= k1; k += 8) {
        __m512 wv[RP_MAX];
#pragma GCC unroll 4
        for (int p = 0; p < RP; p++) {
            const uint8_t *a = w + 2 * p * wstride;
            wv[p] = load8x2(type, a, a + wstride, k);
            if ((k * esz) % 64 == 0) { /* the next tile's rows */
                _mm_prefetch((const char *)(a + 2 * RP * wstride) + k * esz, _MM_HINT_T0);
                _mm_prefetch((const char *)(a + (2 * RP + 1) * wstride) + k * esz, _MM_HINT_T0);
            }
        }
#pragma GCC unroll 12
        for (int t = 0; t < RT; t++) {
            __m512 xv = bcast8(x + (size_t)t * ldx + k);
#pragma GCC unroll 4
            for (int p = 0; p < RP; p++) acc[p][t] = _mm512_fmadd_ps(wv[p], xv, acc[p][t]);
        }
    }
    if (!last) {
        for (int p = 0; p < RP; p++)
            for (int t = 0; t < RT; t++) save[t * RP_MAX + p] = acc[p][t];
        return;
    }
    if (k < n) {
        __m512 wv[RP_MAX];
        for (int p = 0; p < RP; p++) {
            const uint8_t *a = w + 2 * p * wstride;
            wv[p] = _mm512_castpd_ps(_mm512_insertf64x4(
                _mm512_castpd256_pd512(_mm256_castps_pd(load8_tail(type, a, k, n))),
                _mm256_castps_pd(load8_tail(type, a + wstride, k, n)), 1));
        }
        for (int t = 0; t < RT; t++) {
            float buf[8] = {0};
            memcpy(buf, x + (size_t)t * ldx + k, (size_t)(n - k) * sizeof(float));
            __m512 xv = bcast8(buf);
            for (int p = 0; p < RP; p++) acc[p][t] = _mm512_fmadd_ps(wv[p], xv, acc[p][t]);
        }
    }
#pragma GCC unroll 4
    for (int p = 0; p < RP; p++)
#pragma GCC unroll 12
        for (int t = 0; t < RT; t++) {
            __m512d v = _mm512_castps_pd(acc[p][t]);
            out[(size_t)t * ldo + 2 * p] = hsum8(_mm256_castpd_ps(_mm512_castpd512_pd256(v)));
            out[(size_t)t * ldo + 2 * p + 1] = hsum8(_mm256_castpd_ps(_mm512_extractf64x4_pd(v, 1)));
        }
}

/* rows_float_block with zmm tiles: columns [r, r + 2 * RP) x rows [t0, t1). With many
 * activation rows, each K chunk of the weight rows is first converted to F32 pairs in an L1
 * buffer (exact: F16 and BF16 are subsets of F32), which every tile of the group then reads. */
INLINE512 void rows_float512_block(dtype type, float *out, const float *x, const uint8_t *wr,
                                   size_t rb, int n, int n_out, int t0, int t1, int RP) {
    __m512 save[TG * RP_MAX];
    __m512 wbuf[RP_MAX * (KC / 8)]; /* 16 KiB, 64-byte aligned as every __m512 */
    const bool many = t1 - t0 > RT_MAX;
    const int kstep = many ? KC : n;
    for (int k0 = 0; k0 < n; k0 += kstep) {
        int k1 = k0 + kstep < n ? k0 + kstep : n;
        bool first = k0 == 0, last = k1 == n;
        const __m512 *wp = NULL;
        if (many) {
            for (int p = 0; p < RP; p++) {
                const uint8_t *a = wr + 2 * p * rb;
                for (int k = k0; k + 8 <= k1; k += 8)
                    wbuf[p * (KC / 8) + (k - k0) / 8] = load8x2(type, a, a + rb, k);
            }
            wp = wbuf;
        }
        int t = t0;
        for (; t + RT_ZMM <= t1; t += RT_ZMM)
            tile_float512(type, out + (size_t)t * n_out, n_out, wr, rb, wp, x + (size_t)t * n, n,
                          k0, k1, n, save + (t - t0) * RP_MAX, first, last, RP, RT_ZMM);
        for (; t + 2 <= t1; t += 2)
            tile_float512(type, out + (size_t)t * n_out, n_out, wr, rb, wp, x + (size_t)t * n, n,
                          k0, k1, n, save + (t - t0) * RP_MAX, first, last, RP, 2);
        for (; t < t1; t++)
            tile_float512(type, out + (size_t)t * n_out, n_out, wr, rb, wp, x + (size_t)t * n, n,
                          k0, k1, n, save + (t - t0) * RP_MAX, first, last, RP, 1);
    }
}

/* rows_float with zmm tiles of 2 * RP_MAX weight rows; the last rows in pairs, then alone
 * (an AVX2 tile: the same bits). */
INLINE512 void rows_float512(dtype type, float *out, const float *x, const tensor *w, int T,
                             int r0, int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1];
    const size_t rb = dtype_row_bytes(type, n);
    const uint8_t *base = w->data;
    for (int t0 = 0; t0 < T; t0 += TG) {
        int t1 = t0 + TG < T ? t0 + TG : T, r = r0;
        for (; r + 2 * RP_MAX <= r1; r += 2 * RP_MAX)
            rows_float512_block(type, out + r, x, base + r * rb, rb, n, n_out, t0, t1, RP_MAX);
        for (; r + 2 <= r1; r += 2)
            rows_float512_block(type, out + r, x, base + r * rb, rb, n, n_out, t0, t1, 1);
        for (; r < r1; r++)
            rows_float_block(type, out + r, x, base + r * rb, rb, n, n_out, t0, t1, 1);
    }
}

TARGET512 static void rows_f32_vl(float *out, const float *x, const tensor *w, int T, int r0,
                                  int r1) {
    rows_float512(DT_F32, out, x, w, T, r0, r1);
}
TARGET512 static void rows_f16_vl(float *out, const float *x, const tensor *w, int T, int r0,
                                  int r1) {
    rows_float512(DT_F16, out, x, w, T, r0, r1);
}
TARGET512 static void rows_bf16_vl(float *out, const float *x, const tensor *w, int T, int r0,
                                   int r1) {
    rows_float512(DT_BF16, out, x, w, T, r0, r1);
}

TARGET512 static void rows_q8_0_vnni(float *out, const q8_act_x4 *xr, const tensor *w, int T,
                                     int r0, int r1) {
    rows_vnni(DT_Q8_0, out, xr, w, T, r0, r1);
}
TARGET512 static void rows_q4_0_vnni(float *out, const q8_act_x4 *xr, const tensor *w, int T,
                                     int r0, int r1) {
    rows_vnni(DT_Q4_0, out, xr, w, T, r0, r1);
}

void mm_rows_avx2(float *out, const float *x, const block_q8_act *xq, const q8_act_x4 *xr,
                  const tensor *w, int T, int r0, int r1) {
    /* the zmm float tiles where the quantized ones would use VNNI: same bits */
    const bool vl = T >= 2 && mm_avx512_supported();
    /* up to MM_DEC_T_MAX activation rows of Q4_0: the VNNI decode tiles (16 weight rows), same
     * bits; Q8_0 decode stays on the AVX2 8x1 tiles (memory-bound; see tile_vnni_dec) */
    const bool dec = T <= MM_DEC_T_MAX && mm_avx512_supported();
    switch (w->type) {
    case DT_F32:
        if (vl) rows_f32_vl(out, x, w, T, r0, r1);
        else rows_f32(out, x, w, T, r0, r1);
        break;
    case DT_F16:
        if (vl) rows_f16_vl(out, x, w, T, r0, r1);
        else rows_f16(out, x, w, T, r0, r1);
        break;
    case DT_BF16:
        if (vl) rows_bf16_vl(out, x, w, T, r0, r1);
        else rows_bf16(out, x, w, T, r0, r1);
        break;
    case DT_Q8_0:
        if (xr) rows_q8_0_vnni(out, xr, w, T, r0, r1);
        else rows_q8_0(out, xq, w, T, r0, r1);
        break;
    case DT_Q4_0:
        if (dec) rows_q4_0_vnni_dec(out, xq, w, T, r0, r1);
        else if (xr) rows_q4_0_vnni(out, xr, w, T, r0, r1);
        else rows_q4_0(out, xq, w, T, r0, r1);
        break;    default: break; /* matmul sends only the types above here (simd_type in matmul.c) */
    }
}

/* Per block: d = max|x| / 127 and q = round-to-nearest-even(x * (1/d)), exactly the scalar
 * quantizer's operations (cvtps rounds like lrintf in the default rounding mode). */
TARGET void quantize_row_q8_act_avx2(block_q8_act *out, const float *x, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / QK; i++) {
        const float *xb = x + i * QK;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(xb + 8 * j);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[j]));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float d = _mm_cvtss_f32(h) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[i].d = d;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++) q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], vid));
        /* packs works within 128-bit lanes; the permute puts the 32-bit groups back in order */
        __m256i q16a = _mm256_packs_epi32(q[0], q[1]), q16b = _mm256_packs_epi32(q[2], q[3]);
        __m256i q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b), order);
        _mm256_storeu_si256((__m256i *)out[i].qs, q8);
    }
}

/* ---- attention (forward.c's attention_head) ------------------------------------------------
 * These vectorise across positions (scores) or elements (values) without changing a single
 * float operation of the scalar loops: each score is still q[0]*k[0] + q[1]*k[1] + ... in that
 * order (a multiply, then an add; no FMA), and the value updates are elementwise. So the SIMD
 * attention is bit-identical to the scalar one. */

#else /* not x86: the scalar kernels are the only ones */

bool mm_avx2_supported(void) { return false; }
bool mm_avx512_supported(void) { return false; }
void mm_avx512_allow(bool on) { (void)on; }
void mm_repack_x4(q8_act_x4 *xr, const block_q8_act *xq, int T, int t0, int nb) {
    (void)xr, (void)xq, (void)T, (void)t0, (void)nb;
}
void mm_rows_avx2(float *out, const float *x, const block_q8_act *xq, const q8_act_x4 *xr,
                  const tensor *w, int T, int r0, int r1) {
    (void)out, (void)x, (void)xq, (void)xr, (void)w, (void)T, (void)r0, (void)r1;
}
void quantize_row_q8_act_avx2(block_q8_act *out, const float *x, int64_t n) {
    quantize_row_q8_act(out, x, n);
}

#endif
