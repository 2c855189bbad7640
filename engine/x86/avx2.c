/* x86/avx2: AVX2+FMA+F16C register-tiled kernels for out (T, n_out) = x (T, n_in) @ W^T, the
 * Q8 activation quantizer, and mm_rows_x86, which sends each call to these or to the AVX-512
 * kernels of x86/avx512.c.

 * F32/F16/BF16: a tile is RW (<= 4) consecutive weight rows times RT (<= 2) activation rows;
 * each weight vector is loaded (and converted) once per k-step and used for RT activation rows,
 * and with many activation rows K is cut into L1-sized chunks, so a prefill or a batched decode
 * step reads each weight row from memory once for the whole block. A pair's accumulation never
 * depends on RW, RT or the chunking (see matmul_avx2.h).
 * Q8_0/Q4_0/IQ4_NL: 8 pairs per tile (8x1 for one activation row, 4x2 for two), exact integer
 * block sums, and per block the scalar kernel's float steps, so bit-identical to matmul.c. From 3
 * activation rows, those and the other 32-element types (Q4_1, Q5_0, Q5_1, IQ4_NL) take the
 * lanes tiles, on activations repacked in groups of 4 rows: the same bits.
 * The scalar kernels in matmul.c are the reference these are tested against (tests/test_matmul.c).
 * Never allocates on the heap; no global state besides the CPU-feature answer. */
#include "x86.h"
#include "quant_avx2.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include "x86_simd.h"

#include <cpuid.h>

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

/* ---- F32 / F16 / BF16 weights: F32 activations, FMA into one 8-lane accumulator per pair --- */
/* Every tile of columns [r0, r1) and rows [0, T). */
INLINE void rows_float(dtype type, float *out, const float *x, const tensor *w, int T, int r0,
                       int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1];
    const size_t rb = dtype_row_bytes(type, n);
    const uint8_t *base = w->data;
    if (T == 1 && mm_float_dec_spread()) {
        /* tile i: rows r0 + i + j * q, j < RW_MAX; then the rows past the last 4 q alone */
        const int q = (r1 - r0) / RW_MAX;
        __m256 save[RW_MAX];
        for (int i = 0; i < q; i++)
            tile_float(type, out + r0 + i, n_out, base + (size_t)(r0 + i) * rb, (size_t)q * rb, rb,
                       q, x, n, 0, n, n, save, true, true, true, RW_MAX, 1);
        for (int r = r0 + RW_MAX * q; r < r1; r++)
            rows_float_block(type, out + r, x, base + r * rb, rb, n, n_out, 0, 1, 1);
        return;
    }
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

/* The 32 nibbles 0..15 of 16 bytes (element i < 16 in byte i, i + 16 in byte 16 + i). */
INLINE __m256i load_nibbles(const uint8_t *qs) {
    /* both halves get the 16 bytes; the high half is shifted right by 4 (no lane-crossing
     * shuffle: those compete with the reduction below for the one shuffle port) */
    __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    q = _mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(q, _mm256_set1_epi8(0x0f));
}

/* Q4_0: the 32 nibbles 0..15 (unsigned). */
INLINE __m256i load_q4_0(const block_q4_0 *b) { return load_nibbles(b->qs); }

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
 * in lane r * RT + t. Q8_0, and IQ4_NL with its nibbles looked up as its signed levels: sum w*x
 * = maddubs(|x|, sign(w, x)), widened by madd. Q4_0 with nibbles q = w + 8: the int16 pair sums
 * maddubs(q, x) - maddubs(8, x) (q <= 15: no saturation), summed in int16 (hsum8x8_epi16). */
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

/* IQ4_NL's signed levels for nibbles 0..15 in each byte. */
INLINE __m256i iq4_levels_of(__m256i nibbles) {
    const __m256i lv =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4_levels));
    return _mm256_shuffle_epi8(lv, nibbles);
}

/* The steps above, shared by tile_quant and tile_packed16. sgn: signed weight values (Q8_0's
 * codes, IQ4_NL's levels), else Q4_0's nibbles. What an activation block contributes to every
 * pair: |x| for the signed values, 8 * (x[2i] + x[2i+1]) in int16 for Q4_0. */
INLINE __m256i quant_xs(bool sgn, __m256i xv) {
    return sgn ? _mm256_sign_epi8(xv, xv) : _mm256_maddubs_epi16(_mm256_set1_epi8(8), xv);
}

/* One pair's partial sums of weight values w times activations x: int32 for the signed values,
 * int16 (q - 8) * x pair sums (|.| <= 2032) for Q4_0. */
INLINE __m256i quant_pair(bool sgn, __m256i w, __m256i xv, __m256i xs) {
    if (sgn)
        return _mm256_madd_epi16(_mm256_maddubs_epi16(xs, _mm256_sign_epi8(w, xv)),
                                 _mm256_set1_epi16(1));
    return _mm256_sub_epi16(_mm256_maddubs_epi16(w, xv), xs);
}

/* The exact sums of 8 pairs (lane i: pair i) from quant_pair's partial sums. */
INLINE __m256i quant_sums(bool sgn, const __m256i p[QP_MAX]) {
    return sgn ? hsum8x8_epi32(p) : hsum8x8_epi16(p);
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
    const size_t bb = q32_bytes(type);
    const bool sgn = type != DT_Q4_0; /* signed values: Q8_0's codes, IQ4_NL's levels */
    __m256 sum = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i xv[RT_MAX], xs[RT_MAX]; /* signed: |x|; Q4_0: 8 * (x[2i] + x[2i+1]) in int16 */
        __m256 dx = _mm256_setzero_ps(); /* per lane: the activation row's scale */
#pragma GCC unroll 2
        for (int t = 0; t < RT; t++) {
            const block_q8_act *xb = x + (size_t)t * ldx + b;
            xv[t] = _mm256_loadu_si256((const __m256i *)xb->qs);
            xs[t] = quant_xs(sgn, xv[t]);
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
            if (type == DT_IQ4_NL) wq = iq4_levels_of(wq); /* the nibbles index its levels */
            int32_t d32;
            memcpy(&d32, blk, 4); /* d and the first quant bytes; the high half is masked off */
            __m256i d = _mm256_set1_epi32(d32);
            dwh = r == 0 ? d : blend_group(dwh, d, RT, true, r);
#pragma GCC unroll 2
            for (int t = 0; t < RT; t++) p[r * RT + t] = quant_pair(sgn, wq, xv[t], xs[t]);
        }
        /* scale = d_w * d_x lane by lane: the same float product as the scalar kernel's */
        __m256 scale = _mm256_mul_ps(f16_lo_to_f32(dwh), dx);
        __m256i is = quant_sums(sgn, p);
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

/* One activation row against a group of 16 rows in mm_dec_repack's layout (--repack; Q4_0 and
 * IQ4_NL): tile_quant's 8x1 steps twice per block, reading one stream of 288-byte blocks instead
 * of 16 row streams. Slot s of a block's scales belongs to row 4 (s % 4) + s / 4, so the rows go
 * into the reductions in slot order: lane l of half h is slot 8h + l, whose scale is the
 * block's F16 there. The same integers and float steps as tile_quant: the same bits. */
INLINE void tile_packed16(dtype type, float *out, const uint8_t *wg, const block_q8_act *x,
                          int nb) {
    const bool sgn = type == DT_IQ4_NL;
    __m256 sum[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = wg + (size_t)b * MM_DEC_PACK_BYTES;
        const __m256i xv = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i xs = quant_xs(sgn, xv);
        const __m256 dx = _mm256_broadcast_ss(&x[b].d);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i p[8];
#pragma GCC unroll 8
            for (int l = 0; l < 8; l++) {
                const int slot = 8 * h + l, row = 4 * (slot % 4) + slot / 4;
                const __m256i q = load_nibbles(wb + 32 + 16 * row); /* after the 16 scales */
                p[l] = quant_pair(sgn, sgn ? iq4_levels_of(q) : q, xv, xs);
            }
            const __m256i is = quant_sums(sgn, p);
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wb + 16 * h)));
            sum[h] = _mm256_add_ps(sum[h],
                                   _mm256_mul_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(d, dx)));
        }
    }
    float res[16];
    _mm256_storeu_ps(res, sum[0]);
    _mm256_storeu_ps(res + 8, sum[1]);
    for (int slot = 0; slot < 16; slot++) out[4 * (slot % 4) + slot / 4] = res[slot];
}

/* Columns [r0, r1) from the weights in place (w->data). */
INLINE void rows_mapped(dtype type, float *out, const block_q8_act *xq, const tensor *w, int T,
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

/* Columns [r0, r1): with one activation row and a repacked copy (w->packed: Q4_0, IQ4_NL), the
 * whole groups of 16 from it and the rows around them in place; else all in place. */
INLINE void rows_quant(dtype type, float *out, const block_q8_act *xq, const tensor *w, int T,
                       int r0, int r1) {
    const int nb = (int)w->ne[0] / QK, g0 = (r0 + 15) / 16, g1 = r1 / 16;
    if (T != 1 || !w->packed || g0 >= g1) {
        rows_mapped(type, out, xq, w, T, r0, r1);
        return;
    }
    rows_mapped(type, out, xq, w, T, r0, 16 * g0);
    for (int g = g0; g < g1; g++)
        tile_packed16(type, out + 16 * g,
                      (const uint8_t *)w->packed + (size_t)g * nb * MM_DEC_PACK_BYTES, xq, nb);
    rows_mapped(type, out, xq, w, T, 16 * g1, r1);
}

/* ---- The 32-element block types with AVX2 on repacked activations: the sums in lanes -------
 * tile_vnni's layout (x86/avx512.c) in ymm: 128-bit lane i of register p holds weight row
 * 2p + i, dword t activation row t of a group of 4, so one register holds 8 pairs. For each
 * 4-byte column c of a block, vpshufd puts the row's dword c in all of its lane, a 16-byte
 * broadcast of the repacked activations puts row t's dword c in dword t, and vpmaddubsw adds
 * the products pairwise into int16, which stay exact over as many columns as their sum fits
 * (lanes_cols), so one vpmaddwd per that many columns widens them: no horizontal reduction, and
 * one weight unpack serves every activation group. The types with codes offset to unsigned
 * (Q4_0's nibble q = w + 8, Q5_0's 5-bit code w + 16) take the offset times the activation
 * block's sum (q8_act_x4.s) off; Q4_1 and Q5_1 add that sum times m * x.d as a float step, as
 * their scalar twins do; Q8_0 and IQ4_NL's signed values move their signs onto the activations
 * (vpsignb), one column per vpmaddwd. The float steps are the scalar kernels': the same bits. */
#define NG_LANES 4 /* activation groups (of 4 rows) per lanes tile */

/* Columns per vpmaddwd: int16 pair sums of codes < 16 (8 columns: 8 x 2 x 15 x 127 = 30480),
 * of codes < 32 (4: 31496), or of signed bytes (1: 2 x 127 x 127 = 32258). */
INLINE int lanes_cols(dtype t) {
    return t == DT_Q4_0 || t == DT_Q4_1 ? 8 : t == DT_Q5_0 || t == DT_Q5_1 ? 4 : 1;
}
INLINE bool lanes_signed(dtype t) { return t == DT_Q8_0 || t == DT_IQ4_NL; }
INLINE bool lanes_min(dtype t) { return t == DT_Q4_1 || t == DT_Q5_1; }

/* 0x10 in byte j of lane i where bit 16 * half + j of row i's qh is set (Q5_0/Q5_1's fifth
 * bits of elements 16 * half + j). */
INLINE __m256i lanes_fifth_bits(const uint8_t *a, const uint8_t *b, size_t qh, int half) {
    uint32_t ha, hb;
    memcpy(&ha, a + qh, 4);
    memcpy(&hb, b + qh, 4);
    const __m256i h = _mm256_setr_epi32((int)ha, 0, 0, 0, (int)hb, 0, 0, 0);
    const char k0 = (char)(2 * half), k1 = (char)(2 * half + 1);
    const __m256i shuf = _mm256_setr_epi8(k0, k0, k0, k0, k0, k0, k0, k0, k1, k1, k1, k1, k1, k1,
                                          k1, k1, k0, k0, k0, k0, k0, k0, k0, k0, k1, k1, k1, k1,
                                          k1, k1, k1, k1);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(h, shuf), bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* A row pair's blocks as the values the tile multiplies, row a's in the low lane: *lo elements
 * 0-15, *hi 16-31 (codes for the unsigned types, signed values for Q8_0 and IQ4_NL). */
INLINE void lanes_values(dtype t, const uint8_t *a, const uint8_t *b, __m256i *lo, __m256i *hi) {
    if (t == DT_Q8_0) {
        *lo = lanes_pair16(a, b, offsetof(block_q8_0, qs));
        *hi = lanes_pair16(a, b, offsetof(block_q8_0, qs) + 16);
        return;
    }
    const size_t qs = t == DT_Q4_0   ? offsetof(block_q4_0, qs)
                      : t == DT_Q4_1 ? offsetof(block_q4_1, qs)
                      : t == DT_Q5_0 ? offsetof(block_q5_0, qs)
                      : t == DT_Q5_1 ? offsetof(block_q5_1, qs)
                                     : offsetof(block_iq4_nl, qs);
    const __m256i z = lanes_pair16(a, b, qs), m4 = _mm256_set1_epi8(0x0f);
    *lo = _mm256_and_si256(z, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(z, 4), m4);
    if (t == DT_IQ4_NL) {
        *lo = iq4_levels_of(*lo);
        *hi = iq4_levels_of(*hi);
    } else if (t == DT_Q5_0 || t == DT_Q5_1) {
        const size_t qh = t == DT_Q5_0 ? offsetof(block_q5_0, qh) : offsetof(block_q5_1, qh);
        *lo = _mm256_or_si256(*lo, lanes_fifth_bits(a, b, qh, 0));
        *hi = _mm256_or_si256(*hi, lanes_fifth_bits(a, b, qh, 1));
    }
}

INLINE void tile_lanes(dtype type, float *out, int ldo, const uint8_t *const w[4], size_t rb,
                       int nw, const q8_act_x4 *xr, size_t gstride, int nt, int nb, int NG) {
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t bb = q32_bytes(type);
    const int ce = lanes_cols(type);
    /* the unsigned codes' offset as a shift (8: 3, 16: 4), -1: none */
    const int sh = type == DT_Q4_0 ? 3 : type == DT_Q5_0 ? 4 : -1;
    __m256 sum[2][NG_LANES];
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) sum[0][g] = sum[1][g] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            blk[i] = w[i] + (size_t)b * bb;
            _mm_prefetch((const char *)blk[i] + 4 * rb, _MM_HINT_T0); /* the next tile's */
        }
        __m256i lo[2], hi[2], abs_lo[2], abs_hi[2], isum[2][NG_LANES];
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
            lanes_values(type, blk[2 * p], blk[2 * p + 1], &lo[p], &hi[p]);
            if (lanes_signed(type)) {
                abs_lo[p] = _mm256_abs_epi8(lo[p]);
                abs_hi[p] = _mm256_abs_epi8(hi[p]);
            }
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) isum[p][g] = _mm256_setzero_si256();
        }
#pragma GCC unroll 8
        for (int c0 = 0; c0 < 8; c0 += ce) {
            __m256i acc[2][NG_LANES];
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) acc[0][g] = acc[1][g] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int c = c0; c < c0 + ce; c++) {
                __m256i a[2], u[2];
#pragma GCC unroll 2
                for (int p = 0; p < 2; p++) {
                    a[p] = lanes_dword(c < 4 ? lo[p] : hi[p], c);
                    u[p] = lanes_signed(type) ? lanes_dword(c < 4 ? abs_lo[p] : abs_hi[p], c)
                                              : a[p];
                }
#pragma GCC unroll 4
                for (int g = 0; g < NG; g++) {
                    const __m256i x = _mm256_broadcastsi128_si256(
                        _mm_loadu_si128((const __m128i *)xr[g * gstride + b].q[c]));
#pragma GCC unroll 2
                    for (int p = 0; p < 2; p++)
                        acc[p][g] = _mm256_add_epi16(
                            acc[p][g],
                            _mm256_maddubs_epi16(u[p], lanes_signed(type)
                                                           ? _mm256_sign_epi8(x, a[p])
                                                           : x));
                }
            }
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++)
#pragma GCC unroll 4
                for (int g = 0; g < NG; g++)
                    isum[p][g] = _mm256_add_epi32(isum[p][g], _mm256_madd_epi16(acc[p][g], ones));
        }
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
            const __m256 dw = lanes_f16(blk[2 * p], blk[2 * p + 1], 0); /* d leads every block */
            const __m256 mw = lanes_min(type) ? lanes_f16(blk[2 * p], blk[2 * p + 1], 2)
                                              : _mm256_setzero_ps();
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) {
                const q8_act_x4 *xb = &xr[g * gstride + b];
                const __m256i xs =
                    _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xb->s));
                const __m256 xd = _mm256_broadcast_ps((const __m128 *)xb->d);
                __m256i is = isum[p][g];
                if (sh >= 0) is = _mm256_sub_epi32(is, _mm256_slli_epi32(xs, sh));
                __m256 st = _mm256_mul_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(dw, xd));
                if (lanes_min(type)) /* + asum * (m * x.d) */
                    st = _mm256_add_ps(
                        st, _mm256_mul_ps(_mm256_cvtepi32_ps(xs), _mm256_mul_ps(mw, xd)));
                sum[p][g] = _mm256_add_ps(sum[p][g], st);
            }
        }
    }
    for (int g = 0; g < NG; g++) lanes_store(out, ldo, sum[0][g], sum[1][g], g, nw, nt);
}

/* Columns [r0, r1) x the T activation rows of xr, in tiles of 4 weight rows x NG_LANES groups;
 * a last ragged tile repeats its last weight row and drops those outputs. */
INLINE void rows_lanes(dtype type, float *out, const q8_act_x4 *xr, const tensor *w, int T,
                       int r0, int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1], nb = n / QK, G = (T + 3) / 4;
    const size_t rb = dtype_row_bytes(type, n);
    const uint8_t *base = w->data;
    for (int r = r0; r < r1; r += 4) {
        const int nw = r1 - r < 4 ? r1 - r : 4;
        const uint8_t *wr[4];
        for (int i = 0; i < 4; i++) wr[i] = base + (size_t)(r + (i < nw ? i : nw - 1)) * rb;
        for (int g = 0; g < G; g += NG_LANES) {
            float *o = out + (size_t)4 * g * n_out + r;
            const q8_act_x4 *x = xr + (size_t)g * nb;
            const int nt = T - 4 * g;
            switch (G - g < NG_LANES ? G - g : NG_LANES) {
            case 1: tile_lanes(type, o, n_out, wr, rb, nw, x, nb, nt, nb, 1); break;
            case 2: tile_lanes(type, o, n_out, wr, rb, nw, x, nb, nt, nb, 2); break;
            case 3: tile_lanes(type, o, n_out, wr, rb, nw, x, nb, nt, nb, 3); break;
            default: tile_lanes(type, o, n_out, wr, rb, nw, x, nb, nt, nb, 4); break;
            }
        }
    }
}

bool mm_q32_x86(dtype t) {
    return (t == DT_Q4_1 || t == DT_Q5_0 || t == DT_Q5_1 || t == DT_IQ4_NL) && mm_avx2_supported();
}

/* One function per type, so that each inlines its type's constant steps. */
#define LANES_ROWS(name, type)                                                                   \
    TARGET static void name(float *out, const q8_act_x4 *xr, const tensor *w, int T, int r0,    \
                            int r1) {                                                           \
        rows_lanes(type, out, xr, w, T, r0, r1);                                                \
    }
LANES_ROWS(rows_q8_0_lanes, DT_Q8_0)
LANES_ROWS(rows_q4_0_lanes, DT_Q4_0)
LANES_ROWS(rows_q4_1_lanes, DT_Q4_1)
LANES_ROWS(rows_q5_0_lanes, DT_Q5_0)
LANES_ROWS(rows_q5_1_lanes, DT_Q5_1)
LANES_ROWS(rows_iq4_nl_lanes, DT_IQ4_NL)

static void rows_q32_lanes(float *out, const q8_act_x4 *xr, const tensor *w, int T, int r0,
                           int r1) {
    switch (w->type) {
    case DT_Q4_1: rows_q4_1_lanes(out, xr, w, T, r0, r1); return;
    case DT_Q5_0: rows_q5_0_lanes(out, xr, w, T, r0, r1); return;
    case DT_Q5_1: rows_q5_1_lanes(out, xr, w, T, r0, r1); return;
    default: rows_iq4_nl_lanes(out, xr, w, T, r0, r1); return; /* IQ4_NL */
    }
}

TARGET static void rows_q8_0(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                             int r1) {
    rows_quant(DT_Q8_0, out, xq, w, T, r0, r1);
}
TARGET static void rows_iq4_nl(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                               int r1) {
    rows_quant(DT_IQ4_NL, out, xq, w, T, r0, r1);
}
TARGET void x86_rows_q4_0_avx2(float *out, const block_q8_act *xq, const tensor *w, int T, int r0,
                              int r1) {
    rows_quant(DT_Q4_0, out, xq, w, T, r0, r1);
}

void mm_rows_x86(float *out, const float *x, const block_q8_act *xq, const q8_act_x4 *xr,
                 const tensor *w, int T, int r0, int r1) {
    /* the zmm float tiles where they are faster on this CPU: same bits */
    const bool vl = T >= 2 && mm_avx512_supported() && T >= mm_float_zmm_min(w->type);
    /* up to MM_DEC_T_MAX activation rows of mm_q32_vnni's types, and one of Q4_0 (up to
     * MM_DEC_T_MAX with --repack's copy, or without xr): the VNNI decode tiles (16 weight rows),
     * same bits; Q8_0 decode stays on the AVX2 8x1 tiles (memory-bound; see tile_vnni_dec) */
    const bool dec = T <= MM_DEC_T_MAX && mm_avx512_supported();
    switch (w->type) {
    case DT_F32:
        if (vl) x86_rows_f32_zmm(out, x, w, T, r0, r1);
        else rows_f32(out, x, w, T, r0, r1);
        break;
    case DT_F16:
        if (vl) x86_rows_f16_zmm(out, x, w, T, r0, r1);
        else rows_f16(out, x, w, T, r0, r1);
        break;
    case DT_BF16:
        if (vl) x86_rows_bf16_zmm(out, x, w, T, r0, r1);
        else rows_bf16(out, x, w, T, r0, r1);
        break;
    case DT_Q8_0:
        if (xr && mm_avx512_supported()) x86_rows_q8_0_vnni(out, xq, xr, w, T, r0, r1);
        else if (xr) rows_q8_0_lanes(out, xr, w, T, r0, r1);
        else rows_q8_0(out, xq, w, T, r0, r1);
        break;
    case DT_Q4_0:
        if (dec && (T == 1 || w->packed || !xr)) x86_rows_q4_0_vnni_dec(out, xq, w, T, r0, r1);
        else if (xr && mm_avx512_supported()) x86_rows_q4_0_vnni(out, xq, xr, w, T, r0, r1);
        else if (xr) rows_q4_0_lanes(out, xr, w, T, r0, r1);
        else x86_rows_q4_0_avx2(out, xq, w, T, r0, r1);
        break;
    case DT_Q4_1:
    case DT_Q5_0:
    case DT_Q5_1:
    case DT_IQ4_NL: /* with AVX-512 VNNI, xr is there for T > MM_DEC_T_MAX */
        if (dec) x86_rows_q32_vnni_dec(out, xq, w, T, r0, r1);
        else if (xr && mm_avx512_supported()) x86_rows_q32_vnni(out, xq, xr, w, T, r0, r1);
        else if (xr) rows_q32_lanes(out, xr, w, T, r0, r1);
        else if (w->type == DT_IQ4_NL) rows_iq4_nl(out, xq, w, T, r0, r1);
        else qdot_rows_avx2_q32(out, xq, w, T, r0, r1);
        break;
    default: break; /* matmul sends only the types above here (simd_type in matmul.c) */
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

#else /* not x86: the scalar kernels are the only ones */

bool mm_avx2_supported(void) { return false; }
bool mm_q32_x86(dtype t) {
    (void)t;
    return false;
}
void mm_rows_x86(float *out, const float *x, const block_q8_act *xq, const q8_act_x4 *xr,
                 const tensor *w, int T, int r0, int r1) {
    (void)out, (void)x, (void)xq, (void)xr, (void)w, (void)T, (void)r0, (void)r1;
}
void quantize_row_q8_act_avx2(block_q8_act *out, const float *x, int64_t n) {
    (void)out, (void)x, (void)n;
}

#endif
