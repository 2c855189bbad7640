/* x86_simd: what the x86 kernel files share (internal to the files of engine/x86/): the target
 * attributes (x86_target.h), the tile sizes, the weight loads and the one horizontal reduction
 * every float pair ends with, the AVX2 float tile (the zmm kernels end an odd number of weight
 * rows with one), the integer reductions and scale unpacking of the K-quant kernels, and the row
 * kernels that one file calls in the other. Include it only under
 * #if defined(__x86_64__) || defined(__i386__). No state. */
#ifndef LS_X86_SIMD_H
#define LS_X86_SIMD_H

#include "x86.h"
#include "x86_target.h"

#include <immintrin.h>
#include <string.h>

#define RW_MAX 4 /* weight rows per tile */
#define RT_MAX 2 /* activation rows per tile: 4x2 accumulators + 4 weight vectors fit 16 ymm */
/* Tiles of 4 x 3 pairs, the 3 activation vectors in registers and each weight vector loaded
 * (and converted) once for its row's 3 products (12 accumulators + 3 + 1 fit 16 ymm; holding
 * the 4 weight vectors instead spills an accumulator). With AVX2 alone on Zen 5 (bench-matmul,
 * one core, 2026-12-02): T = 128 F32 30-31 -> 35-36 GMAC/s, F16 on the buffer 35-40 -> 43, F16
 * in registers 37-38 -> 43-44; T = 8-24 F16 27-38 -> 34-46; T = 3 F16 22-27 -> 32-44, T = 5 32
 * -> 40 (4 rows stay 2 + 2: 3 + 1 ran 27-29 against 30-32). F32 weights take them from
 * RT_XR_MIN rows: at T = 3-5 their reads bound both shapes (4 x 3 no faster; at 3, slower). */
#define RT_XR 3
#define RT_XR_MIN 6
/* activation rows per group: their parked accumulators take 16 KB (32 KB for the zmm tiles).
 * 128 rather than 64: pp128 then converts each weight chunk once, not twice (Zen 4, one core,
 * with whole-row chunks: F16 44-45 -> 49-50 GMAC/s, F32 42 -> 47) */
#define TG 128

/* The one horizontal reduction every pair ends with: (lanes 0-3 + lanes 4-7), then pairwise. */
INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

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

/* The AVX2 float tiles (x86/avx2.c), here because the zmm kernels end an odd number of weight
 * rows with one. */
/* The lanes tiles of x86/avx2.c (32-element types) and x86/quant_avx2.c (K-quants) with AVX2:
 * 128-bit lane i of a register holds weight row 2p + i, dword t activation row t of a group of
 * 4. These are the steps they share. */

/* Bytes [off, off + 16) of two weight rows' blocks: row a's in the low 128-bit lane. */
INLINE __m256i lanes_pair16(const uint8_t *a, const uint8_t *b, size_t off) {
    const __m128i lo = _mm_loadu_si128((const __m128i *)(a + off));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo),
                                   _mm_loadu_si128((const __m128i *)(b + off)), 1);
}

/* Dword c % 4 of each 128-bit lane of v in all 4 of that lane's dwords (a row's column c). */
INLINE __m256i lanes_dword(__m256i v, int c) {
    switch (c & 3) { /* vpshufd needs an immediate */
    case 0: return _mm256_shuffle_epi32(v, 0x00);
    case 1: return _mm256_shuffle_epi32(v, 0x55);
    case 2: return _mm256_shuffle_epi32(v, 0xaa);
    default: return _mm256_shuffle_epi32(v, 0xff);
    }
}

/* The F16 at off of two rows' blocks (a scale or min), row a's in the low lane's 4 dwords, as
 * F32 (exact). */
INLINE __m256 lanes_f16(const uint8_t *a, const uint8_t *b, size_t off) {
    uint16_t h0, h1;
    memcpy(&h0, a + off, 2);
    memcpy(&h1, b + off, 2);
    return _mm256_cvtph_ps(_mm_setr_epi16((short)h0, (short)h0, (short)h0, (short)h0, (short)h1,
                                          (short)h1, (short)h1, (short)h1));
}

/* Group g's results of a tile: s0 holds weight rows 0-1, s1 rows 2-3 (lane i, dword t: row
 * 2p + i, activation row 4g + t); out[t * ldo + i] for the nw < = 4 rows and the activation rows
 * below nt that exist. */
INLINE void lanes_store(float *out, int ldo, __m256 s0, __m256 s1, int g, int nw, int nt) {
    float res[16];
    _mm256_storeu_ps(res, s0);
    _mm256_storeu_ps(res + 8, s1);
    for (int t = 0; t < 4 && 4 * g + t < nt; t++)
        for (int i = 0; i < nw; i++) out[(size_t)(4 * g + t) * ldo + i] = res[4 * i + t];
}

/* Exact integer reductions and K-quant scale unpacking shared by quant_avx2.c, quant_avx2_k2.c
 * and quant_avx512.c (the scalar forms are in quant_dot.c). */

/* The exact sum of 8 int32 lanes. */
INLINE int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* The sums of 8 vectors of 8 int32 lanes, v[j]'s in lane j, exact: two rounds of hadd, then
 * the 128-bit halves added. */
INLINE __m256i hsum8x8(const __m256i v[8]) {
    const __m256i a =
        _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i b =
        _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    /* a: v0..v3 low-half sums | v0..v3 high-half sums; b the same for v4..v7 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

/* The exact totals of a (8 int32 lanes) and b: [a 01, a 23, b 01, b 23 | 45, 67], then
 * [a 0-3, b 0-3 | 4-7], then the halves. */
INLINE void hsum2_i32(__m256i a, __m256i b, int32_t *sa, int32_t *sb) {
    __m256i t = _mm256_hadd_epi32(a, b);
    t = _mm256_hadd_epi32(t, t);
    const __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    *sa = _mm_cvtsi128_si32(u);
    *sb = _mm_extract_epi32(u, 1);
}

/* IQ4_NL/IQ4_XS: the 32 table values (signed) of 16 bytes of nibbles, in element order (low
 * nibbles first). */
INLINE __m256i iq4_values32(const uint8_t *qs) {
    const __m128i tbl = _mm_loadu_si128((const __m128i *)iq4_levels), m4 = _mm_set1_epi8(0x0f);
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m128i lo = _mm_shuffle_epi8(tbl, _mm_and_si128(q, m4));
    const __m128i hi = _mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
    return _mm256_set_m128i(hi, lo);
}

/* 32 signed values times 32 signed activation codes as 16 int16 pair sums: |v| * sign(x, v),
 * at most 2 * 127 * 127 in magnitude (no saturation: both are within -127..127). */
INLINE __m256i dot_signed16(__m256i v, __m256i x) {
    return _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(x, v));
}

/* Q3_K's sixteen scales minus 32 as int8 (q3_K_scales, vectorised): the low 4 bits from bytes
 * 0-7 (scales 0-7 low nibbles, 8-15 high), the top 2 from byte 8 + i % 4, bits 2 * (i / 4). */
INLINE __m128i q3_K_scales8(const uint8_t *s) {
    const __m128i v = _mm_loadl_epi64((const __m128i *)s), m4 = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(v, _mm_srli_epi16(v, 4)), m4);
    uint32_t h32;
    memcpy(&h32, s + 8, 4);
    __m128i hi = _mm_srlv_epi32(_mm_set1_epi32((int)h32), _mm_setr_epi32(0, 2, 4, 6));
    hi = _mm_slli_epi16(_mm_and_si128(hi, _mm_set1_epi8(3)), 4);
    return _mm_sub_epi8(_mm_or_si128(lo, hi), _mm_set1_epi8(32));
}

/* The 8 scales and 8 mins of a Q4_K/Q5_K block (k4_scale_min's, j = 0..7) as bytes, from the 12
 * scale bytes as three little-endian words: scales 0-3 and mins 0-3 are the low 6 bits of words
 * 0 and 1; scales 4-7 take their low 4 bits from word 2's low nibbles and their top 2 from the
 * top bits of word 0's bytes, mins 4-7 word 2's high nibbles and word 1's top bits. */
INLINE void k4_scales_mins(const uint8_t *q, uint64_t *sc, uint64_t *m) {
    uint32_t w0, w1, w2;
    memcpy(&w0, q, 4);
    memcpy(&w1, q + 4, 4);
    memcpy(&w2, q + 8, 4);
    const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
    const uint32_t sc_hi = (w2 & lo4) | ((w0 >> 6) & lo2) << 4;
    const uint32_t m_hi = ((w2 >> 4) & lo4) | ((w1 >> 6) & lo2) << 4;
    *sc = (uint64_t)(w0 & lo6) | (uint64_t)sc_hi << 32;
    *m = (uint64_t)(w1 & lo6) | (uint64_t)m_hi << 32;
}

/* The bytes of a block of the 32-element types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL), as a
 * constant the kernels' address arithmetic folds (dtype_block_bytes is a table lookup: a
 * variable stride cost the Q4_0 lanes tile 3%). No target: it inlines into every kernel. */
static inline __attribute__((always_inline)) size_t q32_bytes(dtype t) {
    switch (t) {
    case DT_Q8_0: return sizeof(block_q8_0);
    case DT_Q4_0: return sizeof(block_q4_0);
    case DT_Q4_1: return sizeof(block_q4_1);
    case DT_Q5_0: return sizeof(block_q5_0);
    case DT_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_iq4_nl);
    }
}

/* The same for the 256-element types (Q2_K .. Q6_K, IQ4_XS): dtype_block_bytes, a table lookup,
 * cost the Q4_K lanes tile 3-5%, and with tensor_row per row 2.9% of Q4_K_M decode's samples. */
static inline __attribute__((always_inline)) size_t kq_bytes(dtype t) {
    switch (t) {
    case DT_Q2_K: return sizeof(block_q2_K);
    case DT_Q3_K: return sizeof(block_q3_K);
    case DT_Q4_K: return sizeof(block_q4_K);
    case DT_Q5_K: return sizeof(block_q5_K);
    case DT_IQ4_XS: return sizeof(block_iq4_xs);
    default: return sizeof(block_q6_K);
    }
}

/* IQ4_XS sub-block s's scale minus 32. */
static inline int iq4_xs_scale(const block_iq4_xs *w, int s) {
    return (((w->scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) |
            (((w->scales_h >> (2 * s)) & 3) << 4)) -
           32;
}

/* One RW x RT tile over k in [k0, k1): out[t * ldo + r] = dot(w row r, x row t) for r < RW,
 * t < RT (RT <= RT_MAX, or RT_XR). w: RW rows of n elements, wstride bytes
 * apart; x: RT rows of n floats, ldx apart.
 * The K loop may be cut into chunks (first/last): between chunks the accumulators are parked
 * in save (RT x RW_MAX vectors), which changes no operation, so a pair's result is the same
 * whatever the chunking. The tail (n % 8 elements) belongs to the last chunk. */
INLINE void tile_float(dtype type, float *out, int ldo, const uint8_t *w, size_t wstride,
                       size_t wnext, int ostride, const float *x, int ldx, int k0, int k1, int n,
                       __m256 *save, bool first, bool last, bool pf, int RW, int RT) {
    const int esz = type == DT_F32 ? 4 : 2;
    __m256 acc[RW_MAX][RT_XR];
#pragma GCC unroll 4
    for (int r = 0; r < RW; r++)
#pragma GCC unroll 6
        for (int t = 0; t < RT; t++)
            acc[r][t] = first ? _mm256_setzero_ps() : save[t * RW_MAX + r];
    int k = k0;
    if (RT == RT_XR) /* RT_XR's order of loads; the same operations */
        for (; k + 8 <= k1; k += 8) {
            __m256 xv[RT_XR];
#pragma GCC unroll 3
            for (int t = 0; t < RT; t++) xv[t] = _mm256_loadu_ps(x + (size_t)t * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < RW; r++) {
                const __m256 wv = load8(type, w + r * wstride, k);
                if (pf && (k * esz) % 64 == 0)
                    _mm_prefetch((const char *)(w + r * wstride + wnext) + k * esz, _MM_HINT_T1);
#pragma GCC unroll 3
                for (int t = 0; t < RT; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
            }
        }
    /* two k-steps per iteration: on Zen 1 the F32 tile on convert_chunk's buffer ran 12.0-12.7
     * -> 14.3-15.2 GMAC/s (bench-matmul f16 T = 128, one core); F32 itself level */
#pragma GCC unroll 2
    for (; k + 8 <= k1; k += 8) {
        __m256 wv[RW_MAX];
#pragma GCC unroll 4
        for (int r = 0; r < RW; r++) {
            wv[r] = load8(type, w + r * wstride, k);
            /* the next tile's rows, one cache line per 64 bytes of weights, into L2 (see
             * tile_vnni_dec) */
            if (pf && (k * esz) % 64 == 0)
                _mm_prefetch((const char *)(w + r * wstride + wnext) + k * esz, _MM_HINT_T1);
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
        for (int t = 0; t < RT; t++) out[(size_t)t * ldo + r * ostride] = hsum8(acc[r][t]);
}


/* Rows [0, RW) of w (rb bytes apart), elements [k0, k1), converted to F32 (exactly) into buf,
 * row r at buf + r * ldb, the tail (k1 - k0 not a multiple of 8) zero-padded to 8; the next
 * RW rows' chunk (wnext bytes on) is prefetched into L2 as the tiles would. */
INLINE void convert_chunk(dtype type, float *buf, int ldb, const uint8_t *w, size_t rb,
                          size_t wnext, int k0, int k1, int RW) {
#pragma GCC unroll 4
    for (int r = 0; r < RW; r++) {
        const uint8_t *wr = w + r * rb;
        float *b = buf + (size_t)r * ldb;
        int k = k0;
        for (; k + 8 <= k1; k += 8) {
            _mm256_storeu_ps(b + (k - k0), load8(type, wr, k));
            if ((k * 2) % 64 == 0) _mm_prefetch((const char *)(wr + wnext) + k * 2, _MM_HINT_T1);
        }
        if (k < k1) _mm256_storeu_ps(b + (k - k0), load8_tail(type, wr, k, k1));
    }
}

#define BUF_KC 1024 /* the longest K chunk that convert_chunk's buffer holds */

/* Columns [r, r + RW) x rows [t0, t1) of out, K cut into chunks when several activation rows
 * share the weights (so the weight chunk is reused from L1 while x streams from L2): the zmm
 * tiles' chunk (mm_float_kc: on Zen 4 whole rows, which spare the L2 the 128 activation rows'
 * chunks at one row's stride apart: F16 T=128 38.0-38.1 -> 41.0-42.4 GMAC/s, BF16 33.1-34.1 ->
 * 36.4-36.9, bench-matmul, one core, AVX-512 off, 2026-11-30), but at most 512 for F32, whose
 * 4 rows of 4096 would not fit in L1 (26.8-27.2 against 30.3 for 512 or 1024). Tiles of RT_MAX
 * activation rows, then of 1 for the rest. Where the CPU table says so, F16 and BF16 weights are
 * converted once per chunk into a buffer that every tile reads as F32 (mm_float_avx2_buf_min:
 * on Zen 1, vcvtph2ps costs 4-5 cycles, so converting in each tile bound the F16 tile), and
 * only the first tile of a chunk prefetches the next rows (mm_float_pf_once: on Zen 1 the
 * other tiles' prefetches, of lines already on their way, cost F32 T = 128 a quarter of its
 * speed). The same operations on the same values either way: the same bits. */
/* The tiles of rows [t0, t1) over one K chunk: w and x start at the chunk (element 0 is its
 * first), k1 its length, n its length when it is the last; pf: every tile prefetches the next
 * rows (wnext bytes on), or only the first (pf_first), or none. */
INLINE void chunk_tiles(dtype type, float *out, int n_out, const uint8_t *w, size_t wstride,
                        size_t wnext, const float *x, int ldx, int k1, int n, __m256 *save,
                        bool first, bool last, bool pf, bool pf_first, int t0, int t1, int RW) {
    int t = t0;
    if (RW == RW_MAX && t1 - t0 >= (type == DT_F32 ? RT_XR_MIN : RT_XR))
        for (; t + RT_XR <= t1 && t1 - t != 4; t += RT_XR) /* 4 rows: 2 + 2, not 3 + 1 */
            tile_float(type, out + (size_t)t * n_out, n_out, w, wstride, wnext, 1,
                       x + (size_t)t * ldx, ldx, 0, k1, n, save + (t - t0) * RW_MAX, first, last,
                       pf || (pf_first && t == t0), RW, RT_XR);
    for (; t + RT_MAX <= t1; t += RT_MAX)
        tile_float(type, out + (size_t)t * n_out, n_out, w, wstride, wnext, 1, x + (size_t)t * ldx,
                   ldx, 0, k1, n, save + (t - t0) * RW_MAX, first, last,
                   pf || (pf_first && t == t0), RW, RT_MAX);
    for (; t < t1; t++)
        tile_float(type, out + (size_t)t * n_out, n_out, w, wstride, wnext, 1, x + (size_t)t * ldx,
                   ldx, 0, k1, n, save + (t - t0) * RW_MAX, first, last,
                   pf || (pf_first && t == t0), RW, 1);
}

INLINE void rows_float_block(dtype type, float *out, const float *x, const uint8_t *wr, size_t rb,
                             int n, int n_out, int t0, int t1, int RW) {
    __m256 save[TG * RW_MAX];
    const int kc0 = mm_float_kc(), kc = type == DT_F32 && kc0 > 512 ? 512 : kc0;
    const bool many = t1 - t0 > RT_MAX, pf_once = many && mm_float_pf_once();
    const int bmin = type == DT_F32 ? 0 : mm_float_avx2_buf_min();
    const bool buffered = many && bmin > 0 && t1 - t0 >= bmin;
    const int kstep = !many ? n : buffered && kc > BUF_KC ? BUF_KC : kc;
    float buf[RW_MAX * BUF_KC] __attribute__((aligned(32)));
    const size_t esz = type == DT_F32 ? 4 : 2;
    for (int k0 = 0; k0 < n; k0 += kstep) {
        const int k1 = k0 + kstep < n ? k0 + kstep : n;
        const bool first = k0 == 0, last = k1 == n;
        if (buffered) { /* the chunk converted once; convert_chunk prefetches the next rows */
            convert_chunk(type, buf, BUF_KC, wr, rb, RW * rb, k0, k1, RW);
            chunk_tiles(DT_F32, out, n_out, (const uint8_t *)buf, BUF_KC * sizeof(float), 0,
                        x + k0, n, k1 - k0, k1 - k0, save, first, last, false, false, t0, t1, RW);
        } else {
            chunk_tiles(type, out, n_out, wr + (size_t)k0 * esz, rb, RW * rb, x + k0, n, k1 - k0,
                        n - k0, save, first, last, !pf_once, pf_once, t0, t1, RW);
        }
    }
}

/* Row kernels of avx512.c that mm_rows_x86 (avx2.c) dispatches to: out (T, n_out), columns
 * [r0, r1), as mm_rows_x86. Call only when mm_avx512_supported(). The zmm float tiles
 * (T >= 2): */
void x86_rows_f32_zmm(float *out, const float *x, const tensor *w, int T, int r0, int r1);
void x86_rows_f16_zmm(float *out, const float *x, const tensor *w, int T, int r0, int r1);
void x86_rows_bf16_zmm(float *out, const float *x, const tensor *w, int T, int r0, int r1);
/* VNNI on activations repacked by mm_repack_x4 (xr): */
void x86_rows_q8_0_vnni(float *out, const block_q8_act *xq, const q8_act_x4 *xr,
                        const tensor *w, int T, int r0, int r1);
void x86_rows_q4_0_vnni(float *out, const block_q8_act *xq, const q8_act_x4 *xr,
                        const tensor *w, int T, int r0, int r1);
/* Q4_0 decode, T <= MM_DEC_T_MAX (x86.h says when), on xq as it is: */
void x86_rows_q4_0_vnni_dec(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                            int r1);
/* The same two for Q4_1, Q5_0, Q5_1 and IQ4_NL (mm_q32_vnni says when): */
void x86_rows_q32_vnni(float *out, const block_q8_act *xq, const q8_act_x4 *xr, const tensor *w,
                       int T, int r0, int r1);
void x86_rows_q32_vnni_dec(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                           int r1);

/* avx2.c's Q4_0 tiles, which also take the columns past the VNNI decode tiles' last full 16. */
void x86_rows_q4_0_avx2(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                        int r1);

#endif
