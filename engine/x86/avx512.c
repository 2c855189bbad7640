/* x86/avx512: the kernels for CPUs with AVX-512 F/BW/VL + VNNI: VNNI tiles on repacked activations
 * (T >= 2) for Q8_0 and the 32-element 4- and 5-bit types (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL; all on
 * 16 weight rows from some T), VNNI decode tiles for the latter (T <= MM_DEC_T_MAX) and zmm float
 * tiles of 8 weight rows x 6 activation rows holding two AVX2 pairs per register, weights converted
 * once per K chunk into an L1 buffer. All give the bits of the AVX2 kernels (x86/avx2.c), which
 * give those of the scalar ones (tests/test_matmul.c checks both). mm_rows_x86 (x86/avx2.c) chooses
 * between them. Never allocates on the heap; no global state besides the CPU-feature answers and
 * the test switches mm_avx512_allow and mm_set_dec_tile. */
#include "x86.h"

#include "quant_avx2.h"
#include "quant_avx512.h"

#include <stdatomic.h>
#include <string.h>

/* The Q4_0 decode tile variants: rows per tile, how many tiles ahead the rows are prefetched
 * (0: none) and with which hint. Which one a CPU runs comes from dec_tile_table (measured;
 * docs/PERFORMANCE.md). */
const mm_dec_shape mm_dec_tiles[MM_DEC_TILES] = {
    {16, 1, 0}, {16, 2, 0}, {8, 1, 0}, {8, 2, 0}, {8, 4, 0}, {32, 1, 0}, {16, 0, 0},
    {16, 1, 1}, {16, 2, 1}, {16, 1, 2}, {16, 2, 2},
};

/* The overrides in this file (bench-matmul's BM_* settings) each hold a forced value, or -1
 * for the table's. */
static int forced_or(atomic_int *forced, int table_value) {
    int f = atomic_load_explicit(forced, memory_order_relaxed);
    return f >= 0 ? f : table_value;
}

static atomic_int dec_tile_forced = -1;

void mm_set_dec_tile(int variant) {
    atomic_store_explicit(&dec_tile_forced, variant >= 0 && variant < MM_DEC_TILES ? variant : -1,
                          memory_order_relaxed);
}

int mm_dec_tile(void) { return forced_or(&dec_tile_forced, mm_dec_tile_default()); }

#if defined(__x86_64__) || defined(__i386__)
#include "x86_simd.h"

#include <cpuid.h>

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

bool mm_q32_vnni(dtype t) {
    return (t == DT_Q4_1 || t == DT_Q5_0 || t == DT_Q5_1 || t == DT_IQ4_NL) &&
           mm_avx512_supported();
}

/* Q4_1, Q5_0 and Q5_1 take the 16-row tiles above this many activation rows, the 4 x 4 tiles up
 * to it: the fifth bits' masks (built per block from 16 rows' qh) and the mins cost more than
 * the tiles save on a few rows. bench-matmul, one core, from DRAM, Zen 5, while another build
 * ran on the other core, GMAC/s, 4 x 4 -> 16-row tiles: T = 128 Q4_1 163-164 -> 221-224, Q5_0
 * 165-167 -> 225-226, Q5_1 148-150 -> 210-216; T = 24 Q5_0 110-144 -> 124-167, Q5_1 99-133 ->
 * 146-155; but T = 16 Q4_1 144-167 -> 126-153, Q5_1 112-115 -> 88-91, T = 8 Q5_1 124-125 ->
 * 82-85, T = 4 Q4_1 65-66 -> 58-61. IQ4_NL, whose codes are a lookup, takes them from
 * MM_DEC_T_MAX + 1. */
#define Q32_T16_MIN 16

int x86_rows16_min(dtype t) {
    switch (t) {
    case DT_Q4_0:
    case DT_Q8_0: return 2;
    case DT_IQ4_NL: return MM_DEC_T_MAX + 1;
    case DT_Q4_1:
    case DT_Q5_0:
    case DT_Q5_1: return Q32_T16_MIN + 1;
    default: return 0;
    }
}

bool x86_rows16(dtype t, int T) {
    const int min = x86_rows16_min(t);
    /* 16 rows fill Q8_0's 4 x 4 tiles' four groups: they ran T = 16 at 149-151 GMAC/s, the
     * 16-row tiles at 136-140 (Q4_0's were level there) */
    return min > 0 && T >= min && !(t == DT_Q8_0 && T == 16) && mm_avx512_supported();
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

/* ---- The 32-element block types in the VNNI tiles -------------------------------------------
 * Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL blocks start with an F16 d, then (Q4_1, Q5_1) an F16 min m,
 * then (Q5_0, Q5_1) the 32 fifth bits, then 16 bytes of nibbles: element j < 16 in the low
 * nibble of byte j, element 16 + j in its high nibble. vpdpbusd takes the values as unsigned
 * bytes u = value + off: Q4_0's nibble (off 8), Q5_0's 5-bit code (16), IQ4_NL's level + 128;
 * Q4_1 and Q5_1's codes as they are (off 0), their min term being a float step of its own
 * (dot_q4_1/dot_q5_1: sum += isum * (d * x.d) + asum * (m * x.d)). */
INLINE512 int q32_qs(dtype t) {
    return t == DT_Q4_1 ? 4 : t == DT_Q5_0 ? 6 : t == DT_Q5_1 ? 8 : 2;
}
INLINE512 int q32_off_shift(dtype t) { /* off = 1 << shift; -1: off 0 */
    return t == DT_Q4_0 ? 3 : t == DT_Q5_0 ? 4 : t == DT_IQ4_NL ? 7 : -1;
}
INLINE512 bool q32_min(dtype t) { return t == DT_Q4_1 || t == DT_Q5_1; }

/* The 16 bytes at off of blk[i] in 128-bit lane i, i < 4. */
INLINE512 __m512i lanes4(const uint8_t *const blk[4], int off) {
    __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(blk[0] + off)));
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(blk[1] + off)), 1);
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(blk[2] + off)), 2);
    return _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(blk[3] + off)), 3);
}

/* The F16 at off of blk[i] (a weight row's scale or min), exact to F32, in lanes 4i .. 4i + 3. */
INLINE512 __m512 f16_lanes4(const uint8_t *const blk[4], int off) {
    uint16_t h[4];
    for (int i = 0; i < 4; i++) memcpy(&h[i], blk[i] + off, 2);
    const uint64_t h4 =
        (uint64_t)h[0] | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 32 | (uint64_t)h[3] << 48;
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(
        idx, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)h4))));
}

/* Four rows' 16 nibble bytes z (one row per 128-bit lane) as u: *lo the low nibbles (elements
 * 0-15), *hi the high ones (16-31); for IQ4_NL the levels + 128 they index, looked up by
 * vpshufb; for the 5-bit types still without their fifth bits. */
INLINE512 void q32_nibbles(dtype t, __m512i z, __m512i *lo, __m512i *hi) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    *lo = _mm512_and_si512(z, low4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), low4);
    if (t == DT_IQ4_NL) {
        const __m512i lv = _mm512_broadcast_i32x4(_mm_xor_si128(
            _mm_loadu_si128((const __m128i *)iq4_levels), _mm_set1_epi8((char)0x80)));
        *lo = _mm512_shuffle_epi8(lv, *lo);
        *hi = _mm512_shuffle_epi8(lv, *hi);
    }
}

/* The blocks blk[0..3] (one per weight row) as u: 128-bit lane i of *lo holds row i's elements
 * 0-15, of *hi its elements 16-31. */
INLINE512 void q32_codes4(dtype t, const uint8_t *const blk[4], __m512i *lo, __m512i *hi) {
    q32_nibbles(t, lanes4(blk, q32_qs(t)), lo, hi);
    if (t == DT_Q5_0 || t == DT_Q5_1) { /* bit j of qh is element j's 16 */
        const int qh = t == DT_Q5_0 ? 2 : 4;
        uint64_t ml = 0, mh = 0;
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            uint32_t h;
            memcpy(&h, blk[i] + qh, 4);
            ml |= (uint64_t)(h & 0xffff) << 16 * i;
            mh |= (uint64_t)(h >> 16) << 16 * i;
        }
        const __m512i b4 = _mm512_set1_epi8(0x10);
        *lo = _mm512_mask_add_epi8(*lo, (__mmask64)ml, *lo, b4);
        *hi = _mm512_mask_add_epi8(*hi, (__mmask64)mh, *hi, b4);
    }
}

/* Weight rows w[0..3], rb bytes long (a tail repeats the last row; its outputs are dropped) x groups
 * xr[0 .. NG) (gstride blocks apart) over nb blocks; out[t * ldo + i] for i < nw, t < nt. */
INLINE512 void tile_vnni(dtype type, float *out, int ldo, const uint8_t *const w[4], size_t rb,
                         int nw, const q8_act_x4 *xr, size_t gstride, int nt, int nb, int NG) {
    const size_t bb = q32_bytes(type);
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    /* the weight offset (128 for Q8_0) as a shift; -1: none (the types with a min) */
    const int sh = type == DT_Q8_0 ? 7 : q32_off_shift(type);
    __m512 sum[NG_MAX];
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) sum[g] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            blk[i] = w[i] + (size_t)b * bb; /* d (F16), then the quants */
            _mm_prefetch((const char *)blk[i] + 4 * rb, _MM_HINT_T0); /* the next tile's */
        }
        /* the weight rows' scales (and Q4_1/Q5_1's mins), exact (finite F16) */
        const __m512 dw = f16_lanes4(blk, 0);
        const __m512 mw = q32_min(type) ? f16_lanes4(blk, 2) : _mm512_setzero_ps();
        __m512i lo, hi; /* 128-bit lane i: weight row i's unsigned quants 0-15 / 16-31 */
        if (type != DT_Q8_0) {
            q32_codes4(type, blk, &lo, &hi);
        } else {
            lo = _mm512_xor_si512(lanes4(blk, 2), bias);
            hi = _mm512_xor_si512(lanes4(blk, 18), bias);
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
            const __m512i xs = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb->s));
            const __m512 xd = _mm512_broadcast_f32x4(_mm_loadu_ps(xb->d));
            __m512i is = acc[g];
            if (sh >= 0) is = _mm512_sub_epi32(is, _mm512_slli_epi32(xs, sh));
            __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(dw, xd)); /* exact */
            if (q32_min(type)) /* + asum * (m * x.d) */
                s = _mm512_add_ps(s,
                                  _mm512_mul_ps(_mm512_cvtepi32_ps(xs), _mm512_mul_ps(mw, xd)));
            sum[g] = _mm512_add_ps(sum[g], s);
        }
    }
    for (int g = 0; g < NG; g++) {
        float res[16];
        _mm512_storeu_ps(res, sum[g]);
        for (int t = 0; t < 4 && 4 * g + t < nt; t++)
            for (int i = 0; i < nw; i++) out[(size_t)(4 * g + t) * ldo + i] = res[4 * i + t];
    }
}

/* Prefetch the same block of `rows` rows from w on (rows rb bytes apart), with the hint of
 * mm_dec_shape.hint. */
INLINE512 void dec_prefetch(const uint8_t *w, size_t rb, int rows, int HINT) {
#pragma GCC unroll 32
    for (int i = 0; i < rows; i++) {
        const char *a = (const char *)w + (size_t)i * rb;
        if (HINT == 0) _mm_prefetch(a, _MM_HINT_T1);
        else if (HINT == 1) _mm_prefetch(a, _MM_HINT_T0);
        else _mm_prefetch(a, _MM_HINT_NTA);
    }
}

/* ---- 16 weight rows with AVX-512 VNNI: Q4_0, Q8_0, IQ4_NL, Q4_1, Q5_0 and Q5_1 -----------------
 * A tile is 16 weight rows x NT activation rows (NT <= NT16_MAX); activation row t has one zmm of
 * sums, lane 4i + k for weight row 4k + i. Per block, z[k] holds rows 4k .. 4k + 3 (one per 128-bit
 * lane, their 16 nibble bytes), and a 64-bit unpack of z[2q] and z[2q + 1] puts two rows' bytes 8h
 * .. 8h + 7 side by side in each 128-bit lane: their low nibbles are elements 8h .. 8h + 7, the
 * high ones 16 + 8h .. (IQ4_NL's then looked up as q32_nibbles does, the 5-bit types' fifth bits
 * added by masks built from the 16 rows' qh), so one broadcast of the activation's 8 bytes there
 * (vpbroadcastq from xq) meets both rows in one vpdpbusd. Q8_0's 32 quant bytes per row go in as
 * two such halves, elements 0-15 in place of the low nibbles and 16-31 of the high ones, offset to
 * unsigned (w ^ 0x80) as in tile_vnni. Pair q's four vpdpbusd go into one accumulator; a vshufps
 * pair then adds each row's even and odd dwords into the exact block sums of all 16 rows in one
 * register. The 4 x 4 tiles (tile_vnni) instead load a 16-byte broadcast per vpdpbusd and shuffle
 * the weights per column; these load one activation qword per two. The weight offset (Q4_0 8, Q5_0
 * 16, Q8_0 and IQ4_NL 128) times the activation's sum (q8_act_x4.s) is then taken off, and the
 * float steps per lane are the scalar kernels' (mul, mul, add; Q4_1 and Q5_1 add their min term as
 * tile_vnni does): the same bits. Which T takes them: x86_rows16 (x86.h), which every caller asks.
 * Q4_0, one core, from DRAM (Zen 5, bench-matmul, GMAC/s, 4 x 4 tiles -> these):
 * T = 4 95 -> 132, T = 8 136 -> 170, T = 12 150 -> 192, T = 32 159 -> 196, T = 128 166 -> 225;
 * T = 16, which fills the 4 x 4 tiles' four groups, level (166-178 -> 167). Q8_0: T = 2 24-30 (its
 * AVX2 tiles) -> 33-47, T = 8 115-131 -> 129-145, T = 24 141-144 -> 160-165, T = 128 158-169 ->
 * 212-227, but T = 16 149-151 -> 136-140. */
#define KB16 64 /* blocks per K chunk: a 40 KiB buffer */
#define NT16_MAX 12 /* 12 sums beside 8 weight registers (16 spilled: T = 128 172 -> 195 GMAC/s
                     * from 16 to 12) */

/* The F16 at off (a scale or a min) of rows 4k + i, in lane 4i + k, exact to F32; p[k] is row
 * 4k's block, rows rb bytes apart. */
INLINE512 __m512 f16_rows16(const uint8_t *const p[4], size_t rb, int off) {
    uint64_t h4[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        uint16_t h[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) memcpy(&h[k], p[k] + i * rb + off, 2);
        h4[i] = (uint64_t)h[0] | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 32 |
                (uint64_t)h[3] << 48;
    }
    return _mm512_cvtph_ps(_mm256_setr_epi64x((long long)h4[0], (long long)h4[1],
                                              (long long)h4[2], (long long)h4[3]));
}

/* Block b of 16 weight rows as the 16-row tiles take it: lo[2q + h] and hi[2q + h] hold rows
 * 8q + i and 8q + 4 + i (128-bit lane i), their bytes 8h .. 8h + 7 as the low and the high
 * nibbles' codes; dw the rows' scales and mw their mins (lane 4i + k: row 4k + i). 640 bytes, a
 * zmm load each. */
typedef struct {
    __m512i lo[4], hi[4];
    __m512 dw, mw; /* mw: Q4_1's and Q5_1's mins (else unset) */
} blk16;

/* The block at wb of 16 rows rb bytes apart; the 16 rows after them are prefetched into L2 at even
 * blocks b (as the decode tiles do: without it T = 8 ran at half the speed from DRAM), at every
 * block for Q8_0, whose two blocks span more than a line (T = 8 85-88 -> 129-145 GMAC/s). */
INLINE512 void unpack16(dtype type, blk16 *o, const uint8_t *wb, size_t rb, int b) {
    if (type == DT_Q8_0 || (b & 1) == 0) dec_prefetch(wb + 16 * rb, rb, 16, 0);
    const uint8_t *const p[4] = {wb, wb + 4 * rb, wb + 8 * rb, wb + 12 * rb};
    o->dw = f16_rows16(p, rb, 0);
    if (q32_min(type)) o->mw = f16_rows16(p, rb, 2);
    const __m512i bias = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 2
    for (int q = 0; q < 2; q++) {
        __m512i z[2], z2[2];
        uint32_t qh[2][4]; /* Q5_0, Q5_1: bit j is element j's 16 */
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            const uint8_t *r = p[2 * q + k];
            const uint8_t *const blk[4] = {r, r + rb, r + 2 * rb, r + 3 * rb};
            z[k] = lanes4(blk, q32_qs(type));
            if (type == DT_Q5_0 || type == DT_Q5_1)
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++)
                    memcpy(&qh[k][i], blk[i] + (type == DT_Q5_0 ? 2 : 4), 4);
            /* Q8_0: elements 0-15 and 16-31, offset to unsigned (w ^ 0x80 = w + 128) */
            if (type == DT_Q8_0) {
                z[k] = _mm512_xor_si512(z[k], bias);
                z2[k] = _mm512_xor_si512(lanes4(blk, 18), bias);
            }
        }
        if (type == DT_Q8_0) {
            o->lo[2 * q] = _mm512_unpacklo_epi64(z[0], z[1]);
            o->lo[2 * q + 1] = _mm512_unpackhi_epi64(z[0], z[1]);
            o->hi[2 * q] = _mm512_unpacklo_epi64(z2[0], z2[1]);
            o->hi[2 * q + 1] = _mm512_unpackhi_epi64(z2[0], z2[1]);
            continue;
        }
        q32_nibbles(type, _mm512_unpacklo_epi64(z[0], z[1]), &o->lo[2 * q], &o->hi[2 * q]);
        q32_nibbles(type, _mm512_unpackhi_epi64(z[0], z[1]), &o->lo[2 * q + 1],
                    &o->hi[2 * q + 1]);
        if (type != DT_Q5_0 && type != DT_Q5_1) continue;
        /* byte j of lane i is element 8h + j of row 8q + i (j < 8), of row 8q + 4 + i (j >= 8) */
        const __m512i b4 = _mm512_set1_epi8(0x10);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            uint64_t ml = 0, mh = 0;
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                ml |= (uint64_t)((qh[0][i] >> 8 * h & 0xff) | (qh[1][i] >> 8 * h & 0xff) << 8)
                      << 16 * i;
                mh |= (uint64_t)((qh[0][i] >> (16 + 8 * h) & 0xff) |
                                 (qh[1][i] >> (16 + 8 * h) & 0xff) << 8)
                      << 16 * i;
            }
            o->lo[2 * q + h] = _mm512_mask_add_epi8(o->lo[2 * q + h], ml, o->lo[2 * q + h], b4);
            o->hi[2 * q + h] = _mm512_mask_add_epi8(o->hi[2 * q + h], mh, o->hi[2 * q + h], b4);
        }
    }
}

/* sum[t] += block wb against activation rows t < NT from xb (rows nb blocks apart) with their
 * sums from xs (groups of 4 rows, nb apart; xb's row is a group's first). */
INLINE512 void step16(dtype type, __m512 *sum, const blk16 *wb, const block_q8_act *xb,
                      const q8_act_x4 *xs, int nb, int NT) {
    const int sh = type == DT_Q8_0 ? 7 : q32_off_shift(type);
#pragma GCC unroll 12
    for (int t = 0; t < NT; t++) {
        __m512i xv[4]; /* bytes 8j .. 8j + 7 in every qword */
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            long long v;
            memcpy(&v, xb->qs + 8 * j, 8);
            xv[j] = _mm512_set1_epi64(v);
        }
        __m512i a[2];
#pragma GCC unroll 2
        for (int q = 0; q < 2; q++) {
            a[q] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wb->lo[2 * q], xv[0]);
            a[q] = _mm512_dpbusd_epi32(a[q], wb->lo[2 * q + 1], xv[1]);
            a[q] = _mm512_dpbusd_epi32(a[q], wb->hi[2 * q], xv[2]);
            a[q] = _mm512_dpbusd_epi32(a[q], wb->hi[2 * q + 1], xv[3]);
        }
        const __m512 f0 = _mm512_castsi512_ps(a[0]), f1 = _mm512_castsi512_ps(a[1]);
        __m512i is = _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(f0, f1, 0x88)),
                                      _mm512_castps_si512(_mm512_shuffle_ps(f0, f1, 0xdd)));
        const __m512i xsum = _mm512_set1_epi32(xs->s[t % 4]);
        const __m512 xd = _mm512_set1_ps(xb->d);
        /* the weight offset times the activation's sum */
        if (sh >= 0) is = _mm512_sub_epi32(is, _mm512_slli_epi32(xsum, sh));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(is), _mm512_mul_ps(wb->dw, xd));
        if (q32_min(type)) /* + asum * (m * x.d), as tile_vnni */
            v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_cvtepi32_ps(xsum),
                                               _mm512_mul_ps(wb->mw, xd)));
        sum[t] = _mm512_add_ps(sum[t], v);
        xb += nb;
        if (t % 4 == 3) xs += nb;
    }
}

/* out[t * ldo + j], j < 16, for activation rows t < NT of xq (rows nb blocks apart; sums in xg
 * as step16 takes them), blocks [b0, b1) of the 16 weight rows: unpacked here from w (rows rb
 * bytes apart; buf NULL) or already in buf[0 ..). Between K chunks the sums wait in out in
 * step16's lane order (lane 4i + k: weight row 4k + i): b0 > 0 adds to them, and the last chunk
 * (b1 == nb) leaves them in row order. */
INLINE512 void tile16(dtype type, float *out, size_t ldo, const uint8_t *w, size_t rb,
                      const blk16 *buf, const block_q8_act *xq, const q8_act_x4 *xg, int nb,
                      int b0, int b1, int NT) {
    const size_t bb = q32_bytes(type);
    const __m512i rows = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m512 sum[NT16_MAX];
#pragma GCC unroll 12
    for (int t = 0; t < NT; t++)
        sum[t] = b0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(out + (size_t)t * ldo);
    for (int b = b0; b < b1; b++) {
        blk16 blk;
        if (!buf) unpack16(type, &blk, w + (size_t)b * bb, rb, b);
        step16(type, sum, buf ? &buf[b - b0] : &blk, xq + b, xg + b, nb, NT);
    }
#pragma GCC unroll 12
    for (int t = 0; t < NT; t++)
        _mm512_storeu_ps(out + (size_t)t * ldo,
                         b1 == nb ? _mm512_permutexvar_ps(rows, sum[t]) : sum[t]);
}

/* Rows [r, r1) of type (any unpack16 takes) in 16-row tiles, returning the first row not done. Up
 * to NT16_MAX activation rows take one tile that unpacks the weights in registers; more go in tiles
 * of at most NT16_MAX that start at multiples of 4 (xr's groups), as evenly as that allows, and K
 * in chunks of KB16 blocks unpacked once into a buffer on the stack for all of them: Q4_0 T = 128
 * ran at 185 GMAC/s unpacking per tile and 236 from the buffer, T = 12 at 180 and 150
 * (bench-matmul, one core, Zen 5). */
INLINE512 int rows16(dtype type, float *out, const block_q8_act *xq, const q8_act_x4 *xr,
                     const tensor *w, int T, int r, int r1) {
    const int nb = (int)w->ne[0] / QK, n_out = (int)w->ne[1];
    const size_t rb = dtype_row_bytes(type, w->ne[0]);
    const bool buffered = T > NT16_MAX;
    const int kb = buffered ? KB16 : nb;
    blk16 buf[KB16];
    for (; r + 16 <= r1; r += 16) {
        const uint8_t *wr = (const uint8_t *)w->data + (size_t)r * rb;
        for (int b0 = 0; b0 < nb; b0 += kb) {
            const int b1 = b0 + kb < nb ? b0 + kb : nb;
            const blk16 *bp = NULL;
            if (buffered) {
                for (int b = b0; b < b1; b++)
                    unpack16(type, &buf[b - b0], wr + (size_t)b * q32_bytes(type), rb, b);
                bp = buf;
            }
            for (int t0 = 0; t0 < T;) {
                const int nt =
                    T - t0 < NT16_MAX ? T - t0 : (mm_even_tile(T - t0, NT16_MAX) + 3) & ~3;
                const block_q8_act *x = xq + (size_t)t0 * nb;
                const q8_act_x4 *xg = xr + (size_t)(t0 / 4) * nb;
                float *o = out + (size_t)t0 * n_out + r;
                switch (nt) {
#define TILE16(n)                                                                                 \
    case n: tile16(type, o, (size_t)n_out, wr, rb, bp, x, xg, nb, b0, b1, n); break;
                    TILE16(1) TILE16(2) TILE16(3) TILE16(4) TILE16(5) TILE16(6) TILE16(7)
                    TILE16(8) TILE16(9) TILE16(10) TILE16(11)
#undef TILE16
                default: tile16(type, o, (size_t)n_out, wr, rb, bp, x, xg, nb, b0, b1, 12); break;
                }
                t0 += nt;
            }
        }
    }
    return r;
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
 * A tile is 4 * NG weight rows (NG = 2, 4 or 8 groups of 4) x NT (1 to 3) activation rows: one
 * weight unpack serves them all (the VNNI GEMM tiles below, built for 16 activation rows, would
 * waste most lanes). For each activation row: group g (rows 4g .. 4g + 3) has one zmm:
 * 128-bit lane i holds a block of weight row 4g + i (its 16 quant bytes: the low nibbles are
 * elements 0-15, the high ones 16-31), the activation block's two halves are broadcast
 * to every 128-bit lane, and two vpdpbusd leave in dword c of lane i the sum of the 8 products
 * of weight row 4g + i at bytes 4c .. 4c + 3 of both halves. The weight offset (8) times
 * the activation's sums is taken off first (the accumulators start at -offset * x dwords: exact
 * integers). A 4 x 4 transpose-and-add of 4 groups then gives, in lane 4i + j, the exact
 * block sum of weight row 4j + i (2 groups: a 2 x 4 one, 8 sums), so the float steps per block
 * (mul, mul, add: the scalar kernel's) run for 16 (8) pairs in one register; the scales come in
 * one gather. Bit-identical to dot_q4_0 and to the AVX2 8x1 tiles, which still take the rows past
 * the last full tile, whatever the tile's shape and prefetch distance (mm_dec_tile).
 * (The same layout for Q8_0, two 16-byte halves per row offset by 128, ran slower than the AVX2
 * tiles on the memory-bound Q8_0 decode: tg 2 threads 23.8 -> 21-22 tok/s; not kept.) */

/* Per CPU (vendor, family, model) what ran fastest there: the Q4_0 decode tile variant, and
 * for the zmm float tiles the K chunk (float_kc), the fewest activation rows that take them
 * (zmm_min) and the fewest that convert the weights into a buffer first (buf_min; below it each
 * tile converts its weights in registers); other CPUs get the first row's choices. Derived
 * from scripts/bench-matmul.c (one core) and `llamaserve bench` (docs/PERFORMANCE.md, "Q4_0
 * decode tile per CPU", "F16 and F32 prefill on Zen 4" and "Zen 5: a second kind of CPU"). */
static const struct {
    bool amd;
    int family, model; /* model -1: any model of the family */
    int dec_tile, float_kc;
    int zmm_min[3]; /* F32, F16, BF16: the fewest activation rows that take the zmm tiles */
    int buf_min[3]; /* F32, F16, BF16: the fewest that convert the weights into a buffer */
    int kq_lanes_max[3]; /* Q4_K, Q5_K, Q6_K: the AVX2 lanes tiles below this many rows */
    int kq_tile_min[3];  /* Q4_K, Q5_K, Q6_K: the VNNI tiles from this many rows (0: default) */
    bool dec_spread; /* float decode tiles take rows a quarter of the thread's share apart */
    int avx2_buf_min; /* F16, BF16: the fewest rows whose AVX2 tiles read converted chunks */
    bool pf_once;     /* AVX2 float tiles: only a chunk's first tile prefetches the next rows */
} cpu_table[] = {
    /* Intel Emerald Rapids: tuned there; the L1 holds a 512 chunk; two 512-bit FMA ports */
    {false, 6, 207, 0, 512, {2, 2, 2}, {3, 3, 3}, {0, 0, 0}, {0, 0, 0}, false, 0, false},
    /* AMD Zen 4 (Genoa), measured 2026-11-29: 16-row decode tile; whole rows beat 512-element
     * chunks by 8-13%. Zen 4 splits a 512-bit FMA in two, so the zmm tiles win only where their
     * converted weight chunk serves many rows; below these row counts the AVX2 tiles are faster
     * (bench-matmul, one core, from DRAM, 2026-11-30, ms AVX2 / zmm: F16 T=8 89/157, T=32
     * 354/361, T=48 544/485; F32 T=16 248/271, T=24 366/327; BF16 T=16 223/240, T=24 317/286) */
    {true, 25, 17, 0, 4096, {20, 36, 20}, {3, 3, 3}, {0, 0, 0}, {0, 0, 0}, false, 0, false},
    /* AMD Zen 5 (Turin, family 26 model 2), measured 2026-11-30: two full 512-bit FMA pipes
     * (108 GMAC/s per core in zmm, 54 in ymm). Converting the weights in registers beats the
     * buffer up to 24 rows for F32 and 48 for F16 and BF16 (T = 16: F16 43-44 -> 62-68 GMAC/s);
     * with it the zmm tiles win from 6 rows (one full 6-row tile), and for F16 and BF16 from 3
     * since the rows split into even tiles (F16 T = 5 25.6 -> 39.0 GMAC/s, BF16 34.2 -> 57.7;
     * F32 level, T = 2 level for all); whole rows as the K chunk
     * (F32 T = 128 55-56 -> 58-62); decode tile variants within the noise of variant 0. The
     * K-quant VNNI tiles unpack 16 weight rows per pass and win only where many rows share it:
     * below 24 rows (Q4_K) and 16 (Q5_K) the AVX2 lanes tiles are faster (Q4_K T = 12 41-53 ->
     * 88-95 GMAC/s, T = 16 63-67 -> 87); Q6_K keeps the VNNI kernels, whose tiles beat its
     * decode kernels from 10 rows here, not 18 (T = 12 28-30 -> 52-54, T = 16 29-30 -> 46-66).
     * One core reads 38-40 GB/s as four long streams but 25 as tiles of four consecutive 4 KiB
     * rows, so the float decode tiles spread their rows (BF16 tg 13-17 -> 18-21 tok/s). With
     * AVX2 alone (--no-avx512), F16 and BF16 from 64 rows convert their weights into the
     * buffer for the 4 x 3 tiles (GMAC/s in registers / buffer, 2026-12-02: T = 128 F16
     * 42.8-43.2 / 43.4-45.9, BF16 41.5-41.9 / 43.5-44.0; T = 64 level; T = 32 45.4-46.0 /
     * 41.7-41.9; T = 6 31.5-44.4 / 26.6-27.9). */
    {true, 26, 2, 0, 4096, {6, 3, 3}, {32, 64, 64}, {24, 16, 0}, {0, 0, 10}, true, 64, false},
    /* AMD family 23 model 1 (Zen 1, as EPYC 7001, or a VM's "EPYC" CPU model), measured
     * 2026-12-02: AVX2 only, 128-bit units (one ymm FMA per cycle); vcvtph2ps ymm takes 4.6
     * cycles, so the F16 tiles converting in registers ran at 5.4-9.0 GMAC/s (T = 128,
     * bench-matmul, one core) and llama.cpp's F16 pp128 was 1.43x ours; and prefetches cost:
     * an L1-resident F32 tile ran at 15.3 GMAC/s without the next rows' prefetches and 9.6 with
     * them. The AVX-512 columns do not apply. */
    {true, 23, 1, 0, 512, {2, 2, 2}, {3, 3, 3}, {0, 0, 0}, {0, 0, 0}, false, 3, true},
};

/* The row of cpu_table for this CPU (0 when it is not there). */
static int cpu_row(void) {
    static int cached = -1; /* benign race: every thread computes the same answer */
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        unsigned a, b, cx, d, family = 0, model = 0;
        bool amd = false;
        c = 0;
        /* "AuthenticAMD": EBX "Auth", EDX "enti", ECX "cAMD" */
        if (__get_cpuid(0, &a, &b, &cx, &d))
            amd = b == 0x68747541u && d == 0x69746e65u && cx == 0x444d4163u;
        if (__get_cpuid(1, &a, &b, &cx, &d)) {
            family = (a >> 8) & 0xf;
            model = (a >> 4) & 0xf;
            if (family == 0xf) family += (a >> 20) & 0xff;
            if (family == 6 || family >= 0xf) model |= ((a >> 16) & 0xf) << 4;
        }
        for (size_t i = 0; i < sizeof cpu_table / sizeof cpu_table[0]; i++)
            if (cpu_table[i].amd == amd && cpu_table[i].family == (int)family &&
                (cpu_table[i].model < 0 || cpu_table[i].model == (int)model))
                c = (int)i;
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c;
}

int mm_dec_tile_default(void) { return cpu_table[cpu_row()].dec_tile; }

static atomic_int zmm_min_forced = -1;

void mm_set_float_zmm_min(int t) {
    atomic_store_explicit(&zmm_min_forced, t >= 1 ? t : -1, memory_order_relaxed);
}

/* type's entry of a by-type triple of cpu_table */
static int by_type(const int m[3], dtype type) {
    return type == DT_F16 ? m[1] : type == DT_BF16 ? m[2] : m[0];
}

int mm_float_zmm_min(dtype type) {
    return forced_or(&zmm_min_forced, by_type(cpu_table[cpu_row()].zmm_min, type));
}

/* type's entry of a K-quant triple of cpu_table (Q4_K, Q5_K, Q6_K); 0 for other types */
static int by_kquant(const int m[3], dtype type) {
    return type == DT_Q4_K ? m[0] : type == DT_Q5_K ? m[1] : type == DT_Q6_K ? m[2] : 0;
}

int mm_kq_lanes_max(dtype type) { return by_kquant(cpu_table[cpu_row()].kq_lanes_max, type); }
int mm_kq_tile_min(dtype type) { return by_kquant(cpu_table[cpu_row()].kq_tile_min, type); }

static atomic_int spread_forced = -1;

void mm_set_float_dec_spread(int on) {
    atomic_store_explicit(&spread_forced, on < 0 ? -1 : on != 0, memory_order_relaxed);
}

bool mm_float_dec_spread(void) {
    return forced_or(&spread_forced, cpu_table[cpu_row()].dec_spread);
}

static atomic_int buf_min_forced = -1;

void mm_set_float_buf_min(int t) {
    atomic_store_explicit(&buf_min_forced, t >= 1 ? t : -1, memory_order_relaxed);
}

int mm_float_buf_min(dtype type) {
    return forced_or(&buf_min_forced, by_type(cpu_table[cpu_row()].buf_min, type));
}

static atomic_int avx2_buf_min_forced = -1;

void mm_set_float_avx2_buf_min(int t) {
    atomic_store_explicit(&avx2_buf_min_forced, t < 0 ? -1 : t, memory_order_relaxed);
}

int mm_float_avx2_buf_min(void) {
    return forced_or(&avx2_buf_min_forced, cpu_table[cpu_row()].avx2_buf_min);
}

static atomic_int pf_once_forced = -1;

void mm_set_float_pf_once(int on) {
    atomic_store_explicit(&pf_once_forced, on < 0 ? -1 : on != 0, memory_order_relaxed);
}

bool mm_float_pf_once(void) {
    return forced_or(&pf_once_forced, cpu_table[cpu_row()].pf_once);
}

static atomic_int float_kc_forced = -1;

void mm_set_float_kc(int kc) {
    atomic_store_explicit(&float_kc_forced, kc >= 8 && kc <= 4096 && kc % 8 == 0 ? kc : -1,
                          memory_order_relaxed);
}

int mm_float_kc(void) { return forced_or(&float_kc_forced, cpu_table[cpu_row()].float_kc); }

/* The exact block sums of 16 rows from the 4 groups' accumulators: lane 4i + j = row 4j + i. */
INLINE512 __m512i dec_sums16(const __m512i acc[4]) {
    /* per 128-bit lane i: [A0+A2, B0+B2, A1+A3, B1+B3], then the 64-bit halves: [A, B, C, D] */
    __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[0], acc[1]),
                                  _mm512_unpackhi_epi32(acc[0], acc[1]));
    __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[2], acc[3]),
                                  _mm512_unpackhi_epi32(acc[2], acc[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
}

/* The same for 2 groups, 8 rows: lane 2i + j (of 8) = row 4j + i. */
INLINE512 __m256i dec_sums8(const __m512i acc[2]) {
    __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[0], acc[1]),
                                  _mm512_unpackhi_epi32(acc[0], acc[1]));
    __m512i s = _mm512_add_epi32(t0, _mm512_shuffle_epi32(t0, (_MM_PERM_ENUM)0x4e));
    const __m512i pick = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi32(pick, s));
}

/* The exact sum of an activation block's 32 codes (xlo, xhi: its halves broadcast), for the min
 * term of Q4_1/Q5_1. */
INLINE512 int32_t act_sum32(__m512i xlo, __m512i xhi) {
    const __m512i one = _mm512_set1_epi8(1);
    __m128i v = _mm512_castsi512_si128(
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), one, xlo), one, xhi));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4e));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xb1));
    return _mm_cvtsi128_si32(v);
}

/* An activation block for the decode tile: its halves broadcast to every 128-bit lane, the
 * accumulators' start (minus the weight offset times its codes, per dword: exact) and, for
 * Q4_1/Q5_1, the sum of its codes. */
INLINE512 void dec_act(dtype type, const block_q8_act *xb, __m512i *xlo, __m512i *xhi,
                       __m512i *noff, float *asum) {
    const int sh = q32_off_shift(type);
    const __m512i zero = _mm512_setzero_si512(), woff = _mm512_set1_epi8((char)(1 << (sh & 7)));
    *xlo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb->qs));
    *xhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xb->qs + 16)));
    *noff = zero;
    if (sh >= 0)
        *noff = _mm512_sub_epi32(
            zero, _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, woff, *xlo), woff, *xhi));
    *asum = q32_min(type) ? (float)act_sum32(*xlo, *xhi) : 0.0f; /* exact */
}

/* out[t * ldo + i]: activation row t (x + t * nb), weight row i < 4 * NG of w (rows rb bytes
 * apart), w of a 32-element type (q32_codes4; NG = 2 and 8 only for Q4_0); the rows pf bytes
 * further on (the next tiles') are prefetched into L2 when pf > 0.
 * PACKED (Q4_0 and IQ4_NL, NG = 4 only): w is instead a group of 16 rows in mm_dec_repack's
 * layout, one stream of 288-byte block groups that need no inserts and no gather (rb and pf
 * unused); the nibbles become codes as in place (q32_nibbles: IQ4_NL's lookup). */
INLINE512 void tile_vnni_dec(dtype type, float *out, size_t ldo, const uint8_t *w, size_t rb,
                             const block_q8_act *x, int nb, size_t pf, int NT, int NG, int HINT,
                             bool PACKED) {
    const size_t bb = q32_bytes(type);
    const __m512i gidx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
        _mm512_set1_epi32((int)rb));
    const __m256i gidx8 =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), _mm256_set1_epi32((int)rb));
    __m512 sum[MM_DEC_T_MAX][2];
    __m256 sum8[MM_DEC_T_MAX];
#pragma GCC unroll 3
    for (int t = 0; t < NT; t++) {
        sum[t][0] = sum[t][1] = _mm512_setzero_ps();
        sum8[t] = _mm256_setzero_ps();
    }
    for (int b = 0; b < nb; b++) {
        /* row 0's block b: d (F16), then the quants; PACKED: the 16 rows' block group b */
        const uint8_t *wb = w + (size_t)b * (PACKED ? MM_DEC_PACK_BYTES : bb);
        /* the rows ahead, every other block (36 bytes: every line is touched; every block was
         * slower, and so was every fourth), into L2 only: with T0 (into L1) tg ran at 38.5
         * tok/s on 2 threads, with T1 at 43-44 (the L1 fill buffers are too few for 16
         * streams) */
        if (!PACKED && pf && (b & 1) == 0) dec_prefetch(wb + pf, rb, 4 * NG, HINT);
        __m512i xlo[MM_DEC_T_MAX], xhi[MM_DEC_T_MAX], noff[MM_DEC_T_MAX];
        __m512i acc[MM_DEC_T_MAX][8];
        float asum[MM_DEC_T_MAX];
#pragma GCC unroll 3
        for (int t = 0; t < NT; t++)
            dec_act(type, &x[(size_t)t * nb + b], &xlo[t], &xhi[t], &noff[t], &asum[t]);
#pragma GCC unroll 8
        for (int g = 0; g < NG; g++) {
            const uint8_t *r = wb + (size_t)4 * g * rb;
            __m512i lo, hi;
            if (PACKED) {
                q32_nibbles(type, _mm512_loadu_si512(wb + 32 + 64 * g), &lo, &hi);
            } else {
                const uint8_t *const blk[4] = {r, r + rb, r + 2 * rb, r + 3 * rb};
                q32_codes4(type, blk, &lo, &hi);
            }
#pragma GCC unroll 3
            for (int t = 0; t < NT; t++)
                acc[t][g] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(noff[t], lo, xlo[t]), hi, xhi[t]);
        }
        if (NG == 2) { /* Q4_0 only */
            /* the 8 weight scales (F16 in the low half of the gathered dwords), exact to F32 */
            __m256 dw = _mm256_cvtph_ps(
                _mm256_cvtepi32_epi16(_mm256_i32gather_epi32((const int *)wb, gidx8, 1)));
#pragma GCC unroll 3
            for (int t = 0; t < NT; t++) {
                __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(x[(size_t)t * nb + b].d));
                __m256 isum = _mm256_cvtepi32_ps(dec_sums8(acc[t])); /* exact */
                sum8[t] = _mm256_add_ps(sum8[t], _mm256_mul_ps(isum, scale));
            }
            continue;
        }
#pragma GCC unroll 2
        for (int h = 0; h < NG / 4; h++) {
            /* the 16 weight scales of rows 16h .. 16h + 15 (PACKED: stored in lane order); the
             * gathered dwords hold d in their low half and, for Q4_1/Q5_1, m in the high one */
            __m512i dm = _mm512_setzero_si512();
            if (!PACKED) dm = _mm512_i32gather_epi32(gidx, wb + (size_t)16 * h * rb, 1);
            __m512 dw = PACKED ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)wb))
                               : _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
            __m512 mw = _mm512_setzero_ps();
            if (q32_min(type))
                mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
#pragma GCC unroll 3
            for (int t = 0; t < NT; t++) {
                const __m512 xd = _mm512_set1_ps(x[(size_t)t * nb + b].d);
                __m512 isum = _mm512_cvtepi32_ps(dec_sums16(acc[t] + 4 * h)); /* exact */
                __m512 s = _mm512_mul_ps(isum, _mm512_mul_ps(dw, xd));
                if (q32_min(type))
                    s = _mm512_add_ps(
                        s, _mm512_mul_ps(_mm512_set1_ps(asum[t]), _mm512_mul_ps(mw, xd)));
                sum[t][h] = _mm512_add_ps(sum[t][h], s);
            }
        }
    }
    for (int t = 0; t < NT; t++) {
        float res[16];
        if (NG == 2) {
            _mm256_storeu_ps(res, sum8[t]);
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 2; j++) out[(size_t)t * ldo + 4 * j + i] = res[2 * i + j];
            continue;
        }
        for (int h = 0; h < NG / 4; h++) {
            _mm512_storeu_ps(res, sum[t][h]);
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    out[(size_t)t * ldo + 16 * h + 4 * j + i] = res[4 * i + j];
        }
    }
}

/* Rows [r, r1) in tiles of 4 * NG rows; returns the first row not done. */
INLINE512 int rows_vnni_dec(dtype type, float *out, const block_q8_act *xq, const uint8_t *base,
                            size_t rb, size_t ldo, int nb, int T, int r, int r1, int pf_tiles,
                            int NG, int HINT) {
    const int rows = 4 * NG;
    const size_t pf = (size_t)pf_tiles * rows * rb;
    for (; r + rows <= r1; r += rows) {
        const uint8_t *wr = base + (size_t)r * rb;
        if (T == 1) tile_vnni_dec(type, out + r, ldo, wr, rb, xq, nb, pf, 1, NG, HINT, false);
        else if (T == 2) tile_vnni_dec(type, out + r, ldo, wr, rb, xq, nb, pf, 2, NG, HINT, false);
        else tile_vnni_dec(type, out + r, ldo, wr, rb, xq, nb, pf, 3, NG, HINT, false);
    }
    return r;
}

/* The types mm_dec_repack copies: an F16 d and 16 nibble bytes per block, no min, no fifth bit. */
static inline bool dec_packable(dtype t) { return t == DT_Q4_0 || t == DT_IQ4_NL; }

/* Rows [r0, r1) of a 32-element type through its AVX2 kernels: the rows the VNNI decode
 * tiles leave (the same bits). */
INLINE512 void rows_dec_rest(dtype type, float *out, const block_q8_act *xq, const tensor *w,
                             int T, int r0, int r1) {
    if (r0 >= r1) return;
    if (type == DT_Q4_0) x86_rows_q4_0_avx2(out, xq, w, T, r0, r1);
    else qdot_rows_avx2_q32(out, xq, w, T, r0, r1);
}

/* Rows [r0, r1) with w->packed (mm_dec_repack's layout): the whole groups of 16 from it, the
 * rows around them in place (rows_dec_rest). False, with nothing done, when no group fits. */
INLINE512 bool rows_packed_dec(dtype type, float *out, const block_q8_act *xq, const tensor *w,
                               int T, int r0, int r1) {
    const int nb = (int)w->ne[0] / QK, g0 = (r0 + 15) / 16, g1 = r1 / 16;
    const size_t ldo = (size_t)w->ne[1];
    if (g0 >= g1) return false;
    rows_dec_rest(type, out, xq, w, T, r0, 16 * g0);
    for (int g = g0; g < g1; g++) {
        const uint8_t *wg = (const uint8_t *)w->packed + (size_t)g * nb * MM_DEC_PACK_BYTES;
        float *o = out + 16 * g;
        if (T == 1) tile_vnni_dec(type, o, ldo, wg, 0, xq, nb, 0, 1, 4, 0, true);
        else if (T == 2) tile_vnni_dec(type, o, ldo, wg, 0, xq, nb, 0, 2, 4, 0, true);
        else tile_vnni_dec(type, o, ldo, wg, 0, xq, nb, 0, 3, 4, 0, true);
    }
    rows_dec_rest(type, out, xq, w, T, 16 * g1, r1);
    return true;
}

TARGET512 void x86_rows_q4_0_vnni_dec(float *out, const block_q8_act *xq, const tensor *w, int T,
                                     int r0, int r1) {
    const int n = (int)w->ne[0], nb = n / QK;
    const size_t rb = dtype_row_bytes(DT_Q4_0, n), ldo = (size_t)w->ne[1];
    const mm_dec_shape tile = mm_dec_tiles[mm_dec_tile()];
    int r = r0;
    /* whole groups of 16 from the repacked copy; the rest in place */
    if (w->packed && rows_packed_dec(DT_Q4_0, out, xq, w, T, r0, r1)) return;
    /* 3 activation rows on 32 weight rows would need 24 accumulators: T >= 2 takes 16-row tiles;
     * the rows past the last 32-row tile go through 16-row ones, then all through AVX2 tiles */
    if (tile.rows == 32 && T == 1)
        r = rows_vnni_dec(DT_Q4_0, out, xq, w->data, rb, ldo, nb, T, r, r1, tile.pf_tiles, 8, 0);
    if (tile.rows == 8)
        r = rows_vnni_dec(DT_Q4_0, out, xq, w->data, rb, ldo, nb, T, r, r1, tile.pf_tiles, 2, 0);
    else if (tile.hint == 1)
        r = rows_vnni_dec(DT_Q4_0, out, xq, w->data, rb, ldo, nb, T, r, r1, tile.pf_tiles, 4, 1);
    else if (tile.hint == 2)
        r = rows_vnni_dec(DT_Q4_0, out, xq, w->data, rb, ldo, nb, T, r, r1, tile.pf_tiles, 4, 2);
    else
        r = rows_vnni_dec(DT_Q4_0, out, xq, w->data, rb, ldo, nb, T, r, r1, tile.pf_tiles, 4, 0);
    rows_dec_rest(DT_Q4_0, out, xq, w, T, r, r1);
}

/* Q4_1, Q5_0, Q5_1 and IQ4_NL, one pair of functions per type so that each compiles for its type:
 * decode (_dec) on the 16-row tiles with the next tile's rows prefetched into L2 (variant 0's
 * shape, which ran fastest for Q4_0 on both CPUs of the table), or (IQ4_NL under --repack) the
 * packed tiles on whole groups of 16, the rows past the last full tile or group through the AVX2
 * passes (x86/quant_avx2_q32.c); T > MM_DEC_T_MAX (_vnni) on the 16-row tiles where x86_rows16
 * says, the rows past a thread's last 16 and the other T on the 4 x 4 tiles. The same bits. */
#define Q32_FNS(name, type)                                                                       \
    TARGET512 static void name##_dec(float *out, const block_q8_act *xq, const tensor *w, int T,  \
                                     int r0, int r1) {                                            \
        if (dec_packable(type) && w->packed && rows_packed_dec(type, out, xq, w, T, r0, r1))    \
            return;                                                                               \
        const int nb = (int)w->ne[0] / QK;                                                        \
        const size_t rb = dtype_row_bytes(type, w->ne[0]), ldo = (size_t)w->ne[1];                \
        int r = rows_vnni_dec(type, out, xq, w->data, rb, ldo, nb, T, r0, r1, 1, 4, 0);           \
        rows_dec_rest(type, out, xq, w, T, r, r1);                                                \
    }                                                                                             \
    TARGET512 static void name##_vnni(float *out, const block_q8_act *xq, const q8_act_x4 *xr,   \
                                      const tensor *w, int T, int r0, int r1) {                   \
        if (x86_rows16(type, T)) r0 = rows16(type, out, xq, xr, w, T, r0, r1);                    \
        rows_vnni(type, out, xr, w, T, r0, r1);                                                   \
    }
Q32_FNS(rows_q4_1, DT_Q4_1)
Q32_FNS(rows_q5_0, DT_Q5_0)
Q32_FNS(rows_q5_1, DT_Q5_1)
Q32_FNS(rows_iq4_nl, DT_IQ4_NL)

void x86_rows_q32_vnni_dec(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                           int r1) {
    switch (w->type) {
    case DT_Q4_1: rows_q4_1_dec(out, xq, w, T, r0, r1); return;
    case DT_Q5_0: rows_q5_0_dec(out, xq, w, T, r0, r1); return;
    case DT_Q5_1: rows_q5_1_dec(out, xq, w, T, r0, r1); return;
    case DT_IQ4_NL: rows_iq4_nl_dec(out, xq, w, T, r0, r1); return;
    default: return; /* mm_rows_x86 sends only these */
    }
}

void x86_rows_q32_vnni(float *out, const block_q8_act *xq, const q8_act_x4 *xr, const tensor *w,
                       int T, int r0, int r1) {
    switch (w->type) {
    case DT_Q4_1: rows_q4_1_vnni(out, xq, xr, w, T, r0, r1); return;
    case DT_Q5_0: rows_q5_0_vnni(out, xq, xr, w, T, r0, r1); return;
    case DT_Q5_1: rows_q5_1_vnni(out, xq, xr, w, T, r0, r1); return;
    case DT_IQ4_NL: rows_iq4_nl_vnni(out, xq, xr, w, T, r0, r1); return;
    default: return; /* mm_rows_x86 sends only these */
    }
}

size_t mm_dec_packed_bytes(const tensor *w) {
    if (dtype_uses_q8_K(w->type)) return qdot_avx512_packed_bytes(w);
    if (!dec_packable(w->type) || w->ne[1] < 16 || !mm_avx2_supported()) return 0;
    return (size_t)(w->ne[1] / 16) * (size_t)(w->ne[0] / QK) * MM_DEC_PACK_BYTES;
}

/* mm_dec_repack's layout, per group of 16 rows g and block b, at (g * nb + b) * 288 bytes:
 * the 16 F16 scales in the order the decode tile's sums come out (slot 4i + j: row 4j + i),
 * then rows 4k .. 4k + 3's 16 nibble bytes side by side (64 bytes per k): a zmm load each.
 * Q4_0 and IQ4_NL blocks are both d then those 16 bytes, so one layout carries both. */
void mm_dec_repack(void *dst, const tensor *w) {
    if (dtype_uses_q8_K(w->type)) {
        qdot_avx512_repack(dst, w);
        return;
    }
    const int nb = (int)(w->ne[0] / QK), n_out = (int)w->ne[1];
    const size_t rb = dtype_row_bytes(w->type, w->ne[0]), bb = dtype_block_bytes(w->type);
    const uint8_t *src = w->data;
    for (int g = 0; g < n_out / 16; g++)
        for (int b = 0; b < nb; b++) {
            uint8_t *o = (uint8_t *)dst + ((size_t)g * nb + b) * MM_DEC_PACK_BYTES;
            for (int r = 0; r < 16; r++) {
                const uint8_t *blk = src + (size_t)(16 * g + r) * rb + (size_t)b * bb;
                memcpy(o + 2 * (4 * (r % 4) + r / 4), blk, 2);
                memcpy(o + 32 + 16 * r, blk + 2, QK / 2);
            }
        }
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
#define KC_ZMM_MAX 4096 /* the longest K chunk of the zmm tiles' weight buffer */
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
 * [k0, k1) packed by rows_float512_block: pair p's step j at wp[p * (KC_ZMM_MAX / 8) + j]), else from
 * w; the tail always from w. save holds RT x RP_MAX zmm. With pf (the group's first tile), the
 * buffered steps also prefetch the next block's weight rows, which the next conversion pass
 * would otherwise wait for: bench-matmul f16 T = 128 on Zen 5, 71.5-73.0 -> 75.7-77.6 GMAC/s. */
INLINE512 void tile_float512(dtype type, float *out, int ldo, const uint8_t *w, size_t wstride,
                             const __m512 *wp, const float *x, int ldx, int k0, int k1, int n,
                             __m512 *save, bool first, bool last, bool pf, int RP, int RT) {
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
            if (pf && (k * esz) % 64 == 0) /* the next block's rows, into L2 */
                for (int p = 0; p < 2 * RP; p++)
                    _mm_prefetch((const char *)(w + (2 * RP + p) * wstride) + k * esz,
                                 _MM_HINT_T1);
#pragma GCC unroll 12
            for (int t = 0; t < RT; t++) {
                __m512 xv = bcast8(x + (size_t)t * ldx + k);
#pragma GCC unroll 4
                for (int p = 0; p < RP; p++)
                    acc[p][t] = _mm512_fmadd_ps(wp[p * (KC_ZMM_MAX / 8)], xv, acc[p][t]);
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
 * activation rows (mm_float_buf_min, at least 3), each K chunk (mm_float_kc() elements) of the
 * weight rows is first converted to F32 pairs in a buffer (exact: F16 and BF16 are subsets of
 * F32), which every tile of the group then reads; with fewer, each tile converts the weights in
 * registers. The buffer is on the stack: up to 128 KiB. */
INLINE512 void rows_float512_block(dtype type, float *out, const float *x, const uint8_t *wr,
                                   size_t rb, int n, int n_out, int t0, int t1, int RP) {
    __m512 save[TG * RP_MAX];
    __m512 wbuf[RP_MAX * (KC_ZMM_MAX / 8)]; /* 64-byte aligned as every __m512 */
    const bool many = t1 - t0 > RT_MAX && t1 - t0 >= mm_float_buf_min(type);
    const int kstep = many ? mm_float_kc() : n;
    for (int k0 = 0; k0 < n; k0 += kstep) {
        int k1 = k0 + kstep < n ? k0 + kstep : n;
        bool first = k0 == 0, last = k1 == n;
        const __m512 *wp = NULL;
        if (many) {
            for (int p = 0; p < RP; p++) {
                const uint8_t *a = wr + 2 * p * rb;
                for (int k = k0; k + 8 <= k1; k += 8)
                    wbuf[p * (KC_ZMM_MAX / 8) + (k - k0) / 8] = load8x2(type, a, a + rb, k);
            }
            wp = wbuf;
        }
        /* even tiles (16 rows: 6 + 5 + 5, not 6 + 6 + 2 + 2), each converting its weights once */
        for (int t = t0; t < t1;) {
            const int rt = mm_even_tile(t1 - t, RT_ZMM);
            float *o = out + (size_t)t * n_out;
            const float *xt = x + (size_t)t * n;
            __m512 *sv = save + (t - t0) * RP_MAX;
            switch (rt) {
#define TILE_RT(R)                                                                          \
    case R:                                                                                 \
        tile_float512(type, o, n_out, wr, rb, wp, xt, n, k0, k1, n, sv, first, last,        \
                      t == t0, RP, R);                                                      \
        break;
                TILE_RT(6) TILE_RT(5) TILE_RT(4) TILE_RT(3) TILE_RT(2) TILE_RT(1)
#undef TILE_RT
            }
            t += rt;
        }
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

TARGET512 void x86_rows_f32_zmm(float *out, const float *x, const tensor *w, int T, int r0, int r1) {
    rows_float512(DT_F32, out, x, w, T, r0, r1);
}
TARGET512 void x86_rows_f16_zmm(float *out, const float *x, const tensor *w, int T, int r0, int r1) {
    rows_float512(DT_F16, out, x, w, T, r0, r1);
}
TARGET512 void x86_rows_bf16_zmm(float *out, const float *x, const tensor *w, int T, int r0,
                                 int r1) {
    rows_float512(DT_BF16, out, x, w, T, r0, r1);
}

TARGET512 void x86_rows_q8_0_vnni(float *out, const block_q8_act *xq, const q8_act_x4 *xr,
                                 const tensor *w, int T, int r0, int r1) {
    if (x86_rows16(DT_Q8_0, T)) r0 = rows16(DT_Q8_0, out, xq, xr, w, T, r0, r1);
    rows_vnni(DT_Q8_0, out, xr, w, T, r0, r1); /* the rows past the last 16-row tile */
}
TARGET512 void x86_rows_q4_0_vnni(float *out, const block_q8_act *xq, const q8_act_x4 *xr,
                                 const tensor *w, int T, int r0, int r1) {
    if (x86_rows16(DT_Q4_0, T)) r0 = rows16(DT_Q4_0, out, xq, xr, w, T, r0, r1);
    rows_vnni(DT_Q4_0, out, xr, w, T, r0, r1); /* the rows past the last 16-row tile */
}

#else /* not x86 */

bool mm_avx512_supported(void) { return false; }
bool mm_q32_vnni(dtype t) {
    (void)t;
    return false;
}
int x86_rows16_min(dtype t) {
    (void)t;
    return 0;
}
bool x86_rows16(dtype t, int T) {
    (void)t, (void)T;
    return false;
}
void mm_avx512_allow(bool on) { (void)on; }
int mm_dec_tile_default(void) { return 0; }
void mm_set_float_kc(int kc) { (void)kc; }
int mm_float_kc(void) { return 512; }
void mm_set_float_zmm_min(int t) { (void)t; }
int mm_float_zmm_min(dtype type) {
    (void)type;
    return 2;
}
void mm_set_float_buf_min(int t) { (void)t; }
int mm_float_buf_min(dtype type) {
    (void)type;
    return 3;
}
int mm_kq_lanes_max(dtype type) {
    (void)type;
    return 0;
}
int mm_kq_tile_min(dtype type) {
    (void)type;
    return 0;
}
void mm_set_float_dec_spread(int on) { (void)on; }
bool mm_float_dec_spread(void) { return false; }
void mm_set_float_avx2_buf_min(int t) { (void)t; }
int mm_float_avx2_buf_min(void) { return 0; }
void mm_set_float_pf_once(int on) { (void)on; }
bool mm_float_pf_once(void) { return false; }
size_t mm_dec_packed_bytes(const tensor *w) { (void)w; return 0; }
void mm_dec_repack(void *dst, const tensor *w) { (void)dst, (void)w; }
void mm_repack_x4(q8_act_x4 *xr, const block_q8_act *xq, int T, int t0, int nb) {
    (void)xr, (void)xq, (void)T, (void)t0, (void)nb;
}

#endif
