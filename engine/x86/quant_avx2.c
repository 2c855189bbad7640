/* x86/quant_avx2: AVX2 twins of the scalar dot products in quant_dot.c, for the types of the
 * K-quant mixes people download most (Q4_K, Q5_K, Q6_K; Q2_K, Q3_K and IQ4_XS are in
 * quant_avx2_k2.c, where qdot_rows_avx2 sends them; the 32-element types go through
 * x86/avx2.c's mm_rows_x86).
 * Each computes the same exact integers per block as its scalar twin (codes times activation
 * codes with maddubs/madd, then the block's scales), and then the scalar twin's float steps per
 * block, in the same order: the results are the same bits. The K-quants decode each weight
 * block once for a group of up to 8 activation rows (prefill). Never allocates. */
#include "quant_avx2.h"

#include "x86.h"

#include <limits.h>
#include <string.h>

/* Two int16 values as a little-endian pair in one int32. */
static int32_t pack16(int lo, int hi) {
    return (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
}

void mm_repack_K_x4(q8_K_x4 *xr, const block_q8_K *xk, int T, int t0, int nb) {
    for (int b = 0; b < nb; b++) {
        q8_K_x4 *o = &xr[b];
        for (int t = 0; t < 4; t++) {
            const block_q8_K *src = t0 + t < T ? &xk[(size_t)(t0 + t) * nb + b] : NULL;
            for (int c = 0; c < QK_K / 4; c++) {
                int32_t v = 0;
                if (src) memcpy(&v, src->qs + 4 * c, 4);
                o->q[c][t] = v;
            }
            for (int j = 0; j < 4; j++) { /* sub-blocks 2j and 2j + 1: |sum| <= 32 * 128 */
                const int s0 = src ? src->bsums[4 * j] + src->bsums[4 * j + 1] : 0;
                const int s1 = src ? src->bsums[4 * j + 2] + src->bsums[4 * j + 3] : 0;
                o->m[j][t] = pack16(s0, s1);
            }
            for (int j = 0; j < 8; j++)
                o->b[j][t] = src ? pack16(src->bsums[2 * j], src->bsums[2 * j + 1]) : 0;
            o->d[t] = src ? src->d : 0.0f;
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include "quant_avx512.h"
#include "x86_simd.h"

/* F16 bits to F32 with F16C: the same value as f16_to_f32 (exact for every finite half), without
 * a call (which would cost a vzeroupper and spills in these loops). */
INLINE float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

/* Q4_K and Q5_K: eight sub-blocks of 32 with 6-bit scales and mins. A block is decoded once
 * (k4_block) and then multiplied with each activation row of a group. */
typedef struct {
    __m256i c[8];  /* sub-block s's 32 codes (0..31) */
    __m256i sc[8]; /* sub-block s's scale in every int16 lane */
    __m256i m2;    /* the mins as int16, each twice: min s in lanes 2s and 2s + 1 */
    float d, dmin;
} k4_block;

/* The 8 scales as int16 in both 128-bit halves (for a byte shuffle into the lanes), and the
 * mins each twice (m2: min s in int16 lanes 2s and 2s + 1, for one madd with the 16 bsums). */
INLINE void k4_scale_vectors(const uint8_t *scales, __m256i *scw, __m256i *m2) {
    uint64_t sc8, m8;
    k4_scales_mins(scales, &sc8, &m8);
    *scw = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc8)));
    const __m128i m16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)m8));
    *m2 = _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16));
}

/* pat: bytes 2s, 2s + 1 (int16 lane s) in every int16 lane, for _mm256_shuffle_epi8. */
INLINE __m256i k4_lane_pattern(int s) {
    return _mm256_set1_epi16((short)((2 * s) | (2 * s + 1) << 8));
}

/* The 32 codes (0..31) of Q4_K/Q5_K sub-block s = 2p + half: the low (half 0) or high nibbles
 * of q (bytes 32p .. 32p + 31 of qs) and, for Q5_K, bit s of each qh byte as the fifth bit. */
INLINE __m256i q45_K_codes(__m256i q, __m256i qh, int s, bool q5) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), x10 = _mm256_set1_epi8(0x10);
    __m256i c = s % 2 ? _mm256_and_si256(_mm256_srli_epi16(q, 4), m4) : _mm256_and_si256(q, m4);
    if (q5) {
        const __m256i bit = _mm256_set1_epi8((char)(1 << s));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
        c = _mm256_or_si256(c, _mm256_and_si256(set, x10));
    }
    return c;
}

INLINE void decode_q45_K(k4_block *kb, bool q5, const uint8_t *blk) {
    const block_q4_K *b4 = (const block_q4_K *)blk;
    const block_q5_K *b5 = (const block_q5_K *)blk;
    const uint8_t *scales = q5 ? b5->scales : b4->scales, *qs = q5 ? b5->qs : b4->qs;
    const __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)b5->qh) : _mm256_setzero_si256();
    __m256i scw;
    k4_scale_vectors(scales, &scw, &kb->m2);
    for (int p = 0; p < 4; p++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
        for (int half = 0; half < 2; half++) {
            const int s = 2 * p + half;
            kb->sc[s] = _mm256_shuffle_epi8(scw, k4_lane_pattern(s));
            kb->c[s] = q45_K_codes(q, qh, s, q5);
        }
    }
    kb->d = h2f(q5 ? b5->d : b4->d);
    kb->dmin = h2f(q5 ? b5->dmin : b4->dmin);
}

/* sum += this block's share, the float steps of dot_q4_K/dot_q5_K. */
INLINE void acc_q45_K(const k4_block *kb, const block_q8_K *x, float *sum) {
    __m256i acc = _mm256_setzero_si256();
    for (int s = 0; s < 8; s++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * s));
        acc = _mm256_add_epi32(acc,
                               _mm256_madd_epi16(_mm256_maddubs_epi16(kb->c[s], xv), kb->sc[s]));
    }
    const __m256i mv = _mm256_madd_epi16(kb->m2, _mm256_loadu_si256((const __m256i *)x->bsums));
    int32_t isum, msum;
    hsum2_i32(acc, mv, &isum, &msum);
    *sum += (float)isum * (kb->d * x->d) - (float)msum * (kb->dmin * x->d);
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales; codes - 32 as codes, minus 32 x the sums. */
typedef struct {
    __m256i c[8]; /* elements 32j .. 32j + 31 (sub-blocks 2j, 2j + 1) */
    __m256i sc[8]; /* the two sub-blocks' scales, 8 int16 lanes each */
    __m256i s16;   /* the 16 scales as int16 */
    float d;
} k6_block;

/* The codes (0..63) of Q6_K elements 128h + 32k .. 128h + 32k + 31 into c[k], k < 4: low 4
 * bits from ql, high 2 from qh. */
INLINE void q6_K_codes(__m256i c[4], const block_q6_K *w, int h) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    const __m256i A = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h));
    const __m256i B = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32));
    const __m256i H = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));
    c[0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
    c[1] = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
    c[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m30));
    c[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
}

/* The 16 scales of a Q6_K block as int16 lanes. */
INLINE __m256i q6_K_scales16(const block_q6_K *w) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w->scales));
}

/* The scales of Q6_K sub-blocks 2j (low 128 bits) and 2j + 1 (high), 8 int16 lanes each, from
 * s16 = q6_K_scales16: the half holding them in both halves, then a byte shuffle. */
INLINE __m256i q6_K_scale_pair(__m256i s16, int j) {
    const __m256i half = j < 4 ? _mm256_permute2x128_si256(s16, s16, 0x00)
                               : _mm256_permute2x128_si256(s16, s16, 0x11);
    const int k = j % 4; /* int16 lanes 2k and 2k + 1 of that half: bytes 4k .. 4k + 3 */
    const __m128i lo = _mm_set1_epi16((short)((4 * k) | (4 * k + 1) << 8));
    const __m128i hi = _mm_set1_epi16((short)((4 * k + 2) | (4 * k + 3) << 8));
    return _mm256_shuffle_epi8(half, _mm256_set_m128i(hi, lo));
}

INLINE void decode_q6_K(k6_block *kb, const block_q6_K *w) {
    for (int h = 0; h < 2; h++) q6_K_codes(kb->c + 4 * h, w, h);
    kb->s16 = q6_K_scales16(w);
    for (int j = 0; j < 8; j++) kb->sc[j] = q6_K_scale_pair(kb->s16, j);
    kb->d = h2f(w->d);
}

INLINE void acc_q6_K(const k6_block *kb, const block_q8_K *x, float *sum) {
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * j));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(kb->c[j], xv), kb->sc[j]));
    }
    /* the sum over sub-blocks of scale x activation sum */
    const __m256i sv = _mm256_madd_epi16(kb->s16, _mm256_loadu_si256((const __m256i *)x->bsums));
    int32_t isum, ssum;
    hsum2_i32(acc, sv, &isum, &ssum);
    *sum += (float)(isum - 32 * ssum) * (kb->d * x->d);
}

#define PF_AHEAD 1024 /* bytes of weights prefetched ahead of the block being read */

/* One block of one activation row (decode): the same integers as acc_q45_K, computed straight
 * from the block without storing it decoded. The scales reach the lanes by a byte shuffle of
 * the 8 int16 scales (in both 128-bit halves), and the mins' term is one madd of the mins (each
 * twice) with the 16 bsums: *acc and *msum hold the codes' and the mins' sums in 8 lanes each
 * (exact integers, as the scalar twin's). */
INLINE void blk_q45_K(bool q5, const uint8_t *blk, const block_q8_K *x, __m256i *acc_out,
                      __m256i *msum) {
    const block_q4_K *b4 = (const block_q4_K *)blk;
    const block_q5_K *b5 = (const block_q5_K *)blk;
    const uint8_t *scales = q5 ? b5->scales : b4->scales, *qs = q5 ? b5->qs : b4->qs;
    const __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)b5->qh) : _mm256_setzero_si256();
    __m256i scw, m2;
    k4_scale_vectors(scales, &scw, &m2);
    *msum = _mm256_madd_epi16(m2, _mm256_loadu_si256((const __m256i *)x->bsums));
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * p));
#pragma GCC unroll 2
        for (int half = 0; half < 2; half++) {
            const int s = 2 * p + half;
            const __m256i c = q45_K_codes(q, qh, s, q5);
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * s));
            const __m256i sc = _mm256_shuffle_epi8(scw, k4_lane_pattern(s));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(c, xv), sc));
        }
    }
    *acc_out = acc;
}

/* One block of Q6_K against one activation row: as acc_q6_K, the 16 scales widened once and
 * shuffled into the lanes (q6_K_scale_pair); *acc the codes' sum, *ssum the scales times the 16
 * bsums (one madd), in 8 lanes each: exact integers. */
INLINE void blk_q6_K(const block_q6_K *w, const block_q8_K *x, __m256i *acc_out, __m256i *ssum) {
    const __m256i s16 = q6_K_scales16(w);
    *ssum = _mm256_madd_epi16(s16, _mm256_loadu_si256((const __m256i *)x->bsums));
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i c[4];
        q6_K_codes(c, w, h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const int j = 4 * h + k;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * j));
            const __m256i sc = q6_K_scale_pair(s16, j);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(c[k], xv), sc));
        }
    }
    *acc_out = acc;
}

/* One weight row against one activation row: the blocks' sums reduced together (hsum2_i32),
 * then the scalar twin's float steps. */
INLINE float dot1_k(dtype t, const uint8_t *row, const block_q8_K *x, int nb) {
    const size_t bb = kq_bytes(t);
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bb;
        /* the weights a few blocks ahead (the next row's, at the end of this one: rows are
         * contiguous): one row at a time is too few streams for the hardware prefetcher */
        for (size_t ahead = PF_AHEAD; ahead < PF_AHEAD + bb; ahead += 64)
            _mm_prefetch((const char *)blk + ahead, _MM_HINT_T0);
        __m256i acc, vs;
        int32_t isum, v;
        if (t == DT_Q6_K) {
            const block_q6_K *w = (const block_q6_K *)blk;
            blk_q6_K(w, &x[b], &acc, &vs);
            hsum2_i32(acc, vs, &isum, &v);
            sum += (float)(isum - 32 * v) * (h2f(w->d) * x[b].d);
        } else {
            const block_q4_K *w = (const block_q4_K *)blk; /* Q5_K's d and dmin lie alike */
            blk_q45_K(t == DT_Q5_K, blk, &x[b], &acc, &vs);
            hsum2_i32(acc, vs, &isum, &v);
            sum += (float)isum * (h2f(w->d) * x[b].d) - (float)v * (h2f(w->dmin) * x[b].d);
        }
    }
    return sum;
}

/* The F16 in the high (or low) half of each of 8 dwords, exact to F32. */
INLINE __m256 half8_ps(__m256i dd, bool high) {
    const __m256i h =
        high ? _mm256_srli_epi32(dd, 16) : _mm256_and_si256(dd, _mm256_set1_epi32(0xffff));
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08);
    return _mm256_cvtph_ps(_mm256_castsi256_si128(p));
}

/* out[i] for the 8 rows row0 + i * rb against one activation row, block b of row i at row0 +
 * b * bs + i * rb (in place: bs the block's bytes, rb the row's). Each row's block is dot1_k's,
 * the 8 rows' sums are reduced together (hsum8x8: lane i is row i), and each lane runs its row's
 * float steps in the scalar twin's order: the same bits as dot1_k, with one reduction tree per
 * 8 rows instead of one per row. In place, the next 8 rows are prefetched into L2 (as
 * x86/avx2.c's tile_quant does); packed (qdot_avx512_repack's layout: rb the block's bytes, bs 8
 * blocks), the rows are one stream, which the hardware prefetchers follow. */
INLINE void rows8_k(dtype t, float *out, const uint8_t *row0, size_t rb, size_t bs, bool packed,
                    const block_q8_K *x, int nb) {
    const size_t bb = kq_bytes(t);
    /* the dword holding d (and Q4_K/Q5_K's dmin above it; Q6_K's d is its block's last bytes,
     * so the dword before, d in its high half) */
    const size_t dd_at = t == DT_Q6_K ? offsetof(block_q6_K, d) - 2 : offsetof(block_q4_K, d);
    const __m256i gidx =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)rb));
    __m256 sum = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = row0 + (size_t)b * bs;
        __m256i acc[8], vs[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            const uint8_t *blk = wb + (size_t)i * rb;
            for (size_t l = 0; !packed && l < bb; l += 64)
                _mm_prefetch((const char *)blk + 8 * rb + l, _MM_HINT_T1);
            if (t == DT_Q6_K) blk_q6_K((const block_q6_K *)blk, &x[b], &acc[i], &vs[i]);
            else blk_q45_K(t == DT_Q5_K, blk, &x[b], &acc[i], &vs[i]);
        }
        const __m256i is = hsum8x8(acc), v = hsum8x8(vs);
        const __m256i dd = _mm256_i32gather_epi32((const int *)(wb + dd_at), gidx, 1);
        const __m256 xd = _mm256_set1_ps(x[b].d);
        if (t == DT_Q6_K) { /* (isum - 32 ssum) * (d * x.d) */
            const __m256i q = _mm256_sub_epi32(is, _mm256_slli_epi32(v, 5));
            sum = _mm256_add_ps(
                sum, _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_mul_ps(half8_ps(dd, true), xd)));
        } else { /* isum * (d * x.d) - msum * (dmin * x.d) */
            const __m256 a =
                _mm256_mul_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(half8_ps(dd, false), xd));
            const __m256 m =
                _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(half8_ps(dd, true), xd));
            sum = _mm256_add_ps(sum, _mm256_sub_ps(a, m));
        }
    }
    _mm256_storeu_ps(out, sum);
}

/* The K-quant rows: each weight block decoded once for a group of up to KT activation rows,
 * each of which accumulates its blocks in order, exactly as the scalar kernel does. */
#define KT 8
INLINE void rows_k(dtype t, float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                   int r1) {
    const int n = (int)w->ne[0], n_out = (int)w->ne[1], nb = n / QK_K;
    const size_t bb = kq_bytes(t);
    if (T == 1) {
        const size_t rb = dtype_row_bytes(t, n);
        const uint8_t *base = w->data;
        int r = r0;
        if (w->packed) /* the whole groups of 8 from the repacked copy (--repack) */
            for (; r < r1 && r % 8; r++) out[r] = dot1_k(t, base + (size_t)r * rb, xk, nb);
        for (; r + 8 <= r1; r += 8) {
            if (w->packed)
                rows8_k(t, out + r, (const uint8_t *)w->packed + (size_t)r * rb, bb, 8 * bb, true,
                        xk, nb);
            else
                rows8_k(t, out + r, base + (size_t)r * rb, rb, bb, false, xk, nb);
        }
        for (; r < r1; r++) out[r] = dot1_k(t, base + (size_t)r * rb, xk, nb);
        return;
    }
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = tensor_row(w, r);
        for (int t0 = 0; t0 < T; t0 += KT) {
            const int tn = T - t0 < KT ? T - t0 : KT;
            float sum[KT] = {0};
            for (int b = 0; b < nb; b++) {
                const uint8_t *blk = row + (size_t)b * bb;
                if (t == DT_Q6_K) {
                    k6_block kb;
                    decode_q6_K(&kb, (const block_q6_K *)blk);
                    for (int i = 0; i < tn; i++)
                        acc_q6_K(&kb, xk + (size_t)(t0 + i) * nb + b, &sum[i]);
                } else {
                    k4_block kb;
                    decode_q45_K(&kb, t == DT_Q5_K, blk);
                    for (int i = 0; i < tn; i++)
                        acc_q45_K(&kb, xk + (size_t)(t0 + i) * nb + b, &sum[i]);
                }
            }
            for (int i = 0; i < tn; i++) out[(size_t)(t0 + i) * n_out + r] = sum[i];
        }
    }
}

TARGET static void rows_q4_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                             int r1) {
    rows_k(DT_Q4_K, out, xk, w, T, r0, r1);
}
TARGET static void rows_q5_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                             int r1) {
    rows_k(DT_Q5_K, out, xk, w, T, r0, r1);
}
TARGET static void rows_q6_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                             int r1) {
    rows_k(DT_Q6_K, out, xk, w, T, r0, r1);
}

/* ---- Q4_K, Q5_K, Q6_K with several activation rows: the sums in lanes ----------------------
 * x86/avx2.c's Q4_0 lanes tiles for the K-quants, on activations repacked by mm_repack_K_x4:
 * 128-bit lane i of register p holds weight row 2p + i, dword t activation row t of a group of
 * 4. For each 4-byte column c, vpshufd puts the row's codes 4c .. 4c + 3 in all of its lane, a
 * 16-byte broadcast puts row t's activation codes in dword t, and vpmaddubsw adds the products
 * pairwise into int16. Columns stay exact in int16 while their sum fits (Q4_K's codes < 16: a
 * sub-block's 8 columns, 8 x 2 x 15 x 127 = 30480; Q5_K's < 32: 4 columns, 31496; Q6_K's < 64:
 * 2 columns, 32004), then one vpmaddwd applies the sub-block's scale (a byte shuffle puts it in
 * every int16 of the row's lane) and adds pairs into the block's int32 sum. The mins' term of
 * Q4_K/Q5_K is four vpmaddwd of the mins with the 32-code sums (m), Q6_K's codes' offset (32)
 * times the scales eight with the 16-code sums (b). The same integers as the scalar twins, then
 * their float steps per block: the same bits, with no horizontal reduction. */
#define NG_K 4 /* activation groups (of 4 rows) per tile */

/* Columns 4u .. 4u + 3 of a block (16 codes, unit u < 16) of the row pair a (low lane), b. */
INLINE __m256i k_unit_codes(dtype t, const uint8_t *a, const uint8_t *b, int u) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    if (t == DT_Q6_K) { /* elements 16u ..: ql's low or high nibbles, qh's 2 bits at 2k */
        const int h = u / 8, k = u % 8 / 2, l0 = 16 * (u % 2);
        const __m256i ql =
            lanes_pair16(a, b, offsetof(block_q6_K, ql) + 64 * h + 32 * (k % 2) + l0);
        const __m256i qh = lanes_pair16(a, b, offsetof(block_q6_K, qh) + 32 * h + l0);
        const __m256i lo = k < 2 ? _mm256_and_si256(ql, m4)
                                 : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
        __m256i hi;
        switch (k) { /* the 2 bits at 2k, to bits 4-5 */
        case 0: hi = _mm256_slli_epi16(qh, 4); break;
        case 1: hi = _mm256_slli_epi16(qh, 2); break;
        case 2: hi = qh; break;
        default: hi = _mm256_srli_epi16(qh, 2); break;
        }
        return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
    }
    /* Q4_K/Q5_K sub-block s = u / 2, its elements 16 (u % 2) ..: the low (s even) or high
     * nibbles of qs[32 (s / 2) + 16 (u % 2) ..], and Q5_K's fifth bit, bit s of
     * qh[16 (u % 2) ..] */
    const int s = u / 2, half = u % 2;
    const size_t qs = t == DT_Q5_K ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const __m256i q = lanes_pair16(a, b, qs + 32 * (s / 2) + 16 * half);
    __m256i c = s % 2 ? _mm256_and_si256(_mm256_srli_epi16(q, 4), m4) : _mm256_and_si256(q, m4);
    if (t == DT_Q5_K) {
        const __m256i qh = lanes_pair16(a, b, offsetof(block_q5_K, qh) + 16 * half);
        const __m256i bit = _mm256_set1_epi8((char)(1 << s));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
        c = _mm256_or_si256(c, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
    }
    return c;
}

/* Columns per vpmaddwd (see above), and the block's columns per scale. */
INLINE int k_cols_exact(dtype t) { return t == DT_Q4_K ? 8 : t == DT_Q5_K ? 4 : 2; }
INLINE int k_cols_scale(dtype t) { return t == DT_Q6_K ? 4 : 8; }

/* Row pair p's scales as int16, row 2p's in the low lane: Q4_K/Q5_K's 8 in sc[0] and mins in
 * *mn; Q6_K's 16 in sc[0] (0-7) and sc[1] (8-15). */
INLINE void k_pair_scales(dtype t, const uint8_t *a, const uint8_t *b, __m256i sc[2],
                          __m256i *mn) {
    if (t == DT_Q6_K) {
        const int8_t *sa = ((const block_q6_K *)a)->scales, *sb = ((const block_q6_K *)b)->scales;
        const __m128i a16 = _mm_loadu_si128((const __m128i *)sa);
        const __m128i b16 = _mm_loadu_si128((const __m128i *)sb);
        sc[0] = _mm256_cvtepi8_epi16(_mm_unpacklo_epi64(a16, b16));
        sc[1] = _mm256_cvtepi8_epi16(_mm_unpackhi_epi64(a16, b16));
        return;
    }
    const size_t so = t == DT_Q5_K ? offsetof(block_q5_K, scales) : offsetof(block_q4_K, scales);
    uint64_t s0, m0, s1, m1;
    k4_scales_mins(a + so, &s0, &m0);
    k4_scales_mins(b + so, &s1, &m1);
    sc[0] = _mm256_cvtepu8_epi16(_mm_set_epi64x((long long)s1, (long long)s0));
    *mn = _mm256_cvtepu8_epi16(_mm_set_epi64x((long long)m1, (long long)m0));
}

/* Where a block's F16 d (or Q4_K/Q5_K's dmin) is. */
INLINE size_t k_f16_at(dtype t, bool dmin) {
    return t == DT_Q6_K ? offsetof(block_q6_K, d)
           : dmin       ? offsetof(block_q4_K, dmin) /* Q5_K's too */
                        : offsetof(block_q4_K, d);
}

INLINE void tile_k_lanes(dtype type, float *out, int ldo, const uint8_t *const w[4], int nw,
                         const q8_K_x4 *xr, size_t gstride, int nt, int nb, int NG) {
    const size_t bb = kq_bytes(type);
    const int ce = k_cols_exact(type), cs = k_cols_scale(type);
    __m256 sum[2][NG_K];
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) sum[0][g] = sum[1][g] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            blk[i] = w[i] + (size_t)b * bb;
            for (size_t l = 0; l < bb; l += 64) /* the next block */
                _mm_prefetch((const char *)blk[i] + bb + l, _MM_HINT_T0);
        }
        __m256i sc[2][2], mn[2], isum[2][NG_K], osum[2][NG_K];
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
            k_pair_scales(type, blk[2 * p], blk[2 * p + 1], sc[p], &mn[p]);
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) {
                isum[p][g] = _mm256_setzero_si256();
                osum[p][g] = _mm256_setzero_si256();
            }
        }
        /* Q4_K/Q5_K: the mins times the 32-code sums; Q6_K: the scales times the 16-code sums */
        const int nj = type == DT_Q6_K ? 8 : 4;
#pragma GCC unroll 8
        for (int j = 0; j < nj; j++) {
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) {
                const q8_K_x4 *xb = &xr[g * gstride + b];
                const __m256i xs = _mm256_broadcastsi128_si256(
                    _mm_loadu_si128((const __m128i *)(type == DT_Q6_K ? xb->b[j] : xb->m[j])));
#pragma GCC unroll 2
                for (int p = 0; p < 2; p++) {
                    const __m256i v = type == DT_Q6_K ? lanes_dword(sc[p][j / 4], j)
                                                      : lanes_dword(mn[p], j);
                    osum[p][g] = _mm256_add_epi32(osum[p][g], _mm256_madd_epi16(v, xs));
                }
            }
        }
        for (int c0 = 0; c0 < QK_K / 4; c0 += ce) { /* ce columns, exact in int16 */
            __m256i acc[2][NG_K];
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) acc[0][g] = acc[1][g] = _mm256_setzero_si256();
            __m256i codes[2][2];
#pragma GCC unroll 8
            for (int c = c0; c < c0 + ce; c++) {
                if (c % 4 == 0 || c == c0)
#pragma GCC unroll 2
                    for (int p = 0; p < 2; p++)
                        codes[p][c / 4 % 2] = k_unit_codes(type, blk[2 * p], blk[2 * p + 1], c / 4);
                __m256i a[2];
#pragma GCC unroll 2
                for (int p = 0; p < 2; p++) a[p] = lanes_dword(codes[p][c / 4 % 2], c);
#pragma GCC unroll 4
                for (int g = 0; g < NG; g++) {
                    const __m256i x = _mm256_broadcastsi128_si256(
                        _mm_loadu_si128((const __m128i *)xr[g * gstride + b].q[c]));
#pragma GCC unroll 2
                    for (int p = 0; p < 2; p++)
                        acc[p][g] = _mm256_add_epi16(acc[p][g], _mm256_maddubs_epi16(a[p], x));
                }
            }
            const int s = c0 / cs; /* the scale of these columns */
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++) {
                const __m256i scs = _mm256_shuffle_epi8(sc[p][s / 8], k4_lane_pattern(s % 8));
#pragma GCC unroll 4
                for (int g = 0; g < NG; g++)
                    isum[p][g] = _mm256_add_epi32(isum[p][g], _mm256_madd_epi16(acc[p][g], scs));
            }
        }
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
            const __m256 d = lanes_f16(blk[2 * p], blk[2 * p + 1], k_f16_at(type, false));
#pragma GCC unroll 4
            for (int g = 0; g < NG; g++) {
                const __m256 xd = _mm256_broadcast_ps((const __m128 *)xr[g * gstride + b].d);
                if (type == DT_Q6_K) { /* (isum - 32 ssum) * (d * x.d) */
                    const __m256i is =
                        _mm256_sub_epi32(isum[p][g], _mm256_slli_epi32(osum[p][g], 5));
                    sum[p][g] = _mm256_add_ps(
                        sum[p][g], _mm256_mul_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(d, xd)));
                    continue;
                }
                const __m256 dmin =
                    lanes_f16(blk[2 * p], blk[2 * p + 1], k_f16_at(type, true));
                const __m256 a =
                    _mm256_mul_ps(_mm256_cvtepi32_ps(isum[p][g]), _mm256_mul_ps(d, xd));
                const __m256 m =
                    _mm256_mul_ps(_mm256_cvtepi32_ps(osum[p][g]), _mm256_mul_ps(dmin, xd));
                sum[p][g] = _mm256_add_ps(sum[p][g], _mm256_sub_ps(a, m));
            }
        }
    }
    for (int g = 0; g < NG; g++) lanes_store(out, ldo, sum[0][g], sum[1][g], g, nw, nt);
}

/* Columns [r0, r1) x the T activation rows of xr, in tiles of 4 weight rows x NG_K groups; a
 * last ragged tile repeats its last weight row and drops those outputs. */
INLINE void rows_k_lanes(dtype type, float *out, const q8_K_x4 *xr, const tensor *w, int T,
                         int r0, int r1) {
    const int n_out = (int)w->ne[1], nb = (int)w->ne[0] / QK_K, G = (T + 3) / 4;
    const size_t rb = dtype_row_bytes(type, w->ne[0]); /* once: a lookup and a division */
    const uint8_t *base = w->data;
    for (int r = r0; r < r1; r += 4) {
        const int nw = r1 - r < 4 ? r1 - r : 4;
        const uint8_t *wr[4];
        for (int i = 0; i < 4; i++) wr[i] = base + (size_t)(r + (i < nw ? i : nw - 1)) * rb;
        for (int g = 0; g < G; g += NG_K) {
            float *o = out + (size_t)4 * g * n_out + r;
            const q8_K_x4 *x = xr + (size_t)g * nb;
            const int nt = T - 4 * g;
            switch (G - g < NG_K ? G - g : NG_K) {
            case 1: tile_k_lanes(type, o, n_out, wr, nw, x, nb, nt, nb, 1); break;
            case 2: tile_k_lanes(type, o, n_out, wr, nw, x, nb, nt, nb, 2); break;
            case 3: tile_k_lanes(type, o, n_out, wr, nw, x, nb, nt, nb, 3); break;
            default: tile_k_lanes(type, o, n_out, wr, nw, x, nb, nt, nb, 4); break;
            }
        }
    }
}

TARGET static void rows_q4_K_lanes(float *out, const q8_K_x4 *xr, const tensor *w, int T, int r0,
                                   int r1) {
    rows_k_lanes(DT_Q4_K, out, xr, w, T, r0, r1);
}
TARGET static void rows_q5_K_lanes(float *out, const q8_K_x4 *xr, const tensor *w, int T, int r0,
                                   int r1) {
    rows_k_lanes(DT_Q5_K, out, xr, w, T, r0, r1);
}
TARGET static void rows_q6_K_lanes(float *out, const q8_K_x4 *xr, const tensor *w, int T, int r0,
                                   int r1) {
    rows_k_lanes(DT_Q6_K, out, xr, w, T, r0, r1);
}

/* Where the lanes tiles overtake the per-row passes (bench-matmul, one core, AVX-512 off, Zen 4,
 * GMAC/s, passes -> lanes): Q4_K T=3 37.2 -> 42.0; Q5_K T=4 30.9 -> 28.2, T=6 24.5-35.9 ->
 * 34.3-37.0, T=8 38.6 -> 46.4; Q6_K T=8 40.6 -> 32.4, T=12 37.0-37.6 -> 40.3-41.2, T=16 39.7 ->
 * 47.1. Q6_K's columns stay exact in int16 only in pairs and its codes cost more to unpack, so
 * its tiles need more activation rows to pay for each block's fixed work. */
int qdot_avx2_lanes_min(dtype t) {
    if (!mm_avx2_supported()) return 0;
    const int min = t == DT_Q4_K ? 3 : t == DT_Q5_K ? 6 : t == DT_Q6_K ? 12 : 0;
    return qdot_avx512_has(t) && mm_kq_lanes_max(t) <= min ? 0 : min;
}

int qdot_avx2_lanes_max(dtype t) {
    return qdot_avx512_has(t) ? mm_kq_lanes_max(t) : INT_MAX;
}

bool qdot_avx2_packed(dtype t) {
    return (t == DT_Q4_K || t == DT_Q5_K || t == DT_Q6_K) && mm_avx2_supported() &&
           !qdot_avx512_has(t);
}

bool qdot_avx2_has(dtype t) {
    return qdot_avx2_k2_has(t) ||
           (mm_avx2_supported() && (t == DT_Q4_K || t == DT_Q5_K || t == DT_Q6_K));
}

void qdot_rows_avx2(float *out, const block_q8_act *xq, const block_q8_K *xk, const q8_K_x4 *xkr,
                    const tensor *w, int T, int r0, int r1) {
    if (qdot_avx2_k2_has(w->type)) {
        qdot_rows_avx2_k2(out, xq, xk, w, T, r0, r1);
        return;
    }
    switch (xkr ? w->type : DT_F32) { /* qdot_avx2_lanes_min's types */
    case DT_Q4_K: rows_q4_K_lanes(out, xkr, w, T, r0, r1); return;
    case DT_Q5_K: rows_q5_K_lanes(out, xkr, w, T, r0, r1); return;
    case DT_Q6_K: rows_q6_K_lanes(out, xkr, w, T, r0, r1); return;
    default: break;
    }
    switch (w->type) {
    case DT_Q4_K: rows_q4_K(out, xk, w, T, r0, r1); return;
    case DT_Q5_K: rows_q5_K(out, xk, w, T, r0, r1); return;
    case DT_Q6_K: rows_q6_K(out, xk, w, T, r0, r1); return;
    default: return; /* qdot_avx2_has says which */
    }
}

/* quantize_row_q8_K with AVX2: the same max, the same scale and reciprocal, the same product
 * rounded to nearest even (vcvtps2dq under the default rounding mode, as lrintf), and the same
 * exact 16-element sums: the same bytes. */
TARGET void quantize_row_q8_K_avx2(block_q8_K *out, const float *x, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + i * QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK_K / 8; j++) /* max(|x|, m): a NaN is skipped, as by fmaxf */
            m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + 8 * j)), m);
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float d = _mm_cvtss_f32(h) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        out[i].d = d;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i gs[16]; /* group g's 16 codes, summed lane-wise in 8 int32 lanes */
        for (int j = 0; j < QK_K / 32; j++) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] =
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 32 * j + 8 * k), vid));
            gs[2 * j] = _mm256_add_epi32(q[0], q[1]);
            gs[2 * j + 1] = _mm256_add_epi32(q[2], q[3]);
            const __m256i q16a = _mm256_packs_epi32(q[0], q[1]);
            const __m256i q16b = _mm256_packs_epi32(q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(out[i].qs + 32 * j),
                                _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b), order));
        }
        const __m256i lo = hsum8x8(gs), hi = hsum8x8(gs + 8);
        /* packs interleaves 128-bit halves: lo0-3 hi0-3 | lo4-7 hi4-7; put them back in order */
        const __m256i s16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xd8);
        _mm256_storeu_si256((__m256i *)out[i].bsums, s16);
    }
}

#else /* not x86: the scalar kernels */

bool qdot_avx2_has(dtype t) {
    (void)t;
    return false;
}

void qdot_rows_avx2(float *out, const block_q8_act *xq, const block_q8_K *xk, const q8_K_x4 *xkr,
                    const tensor *w, int T, int r0, int r1) {
    (void)out, (void)xq, (void)xk, (void)xkr, (void)w, (void)T, (void)r0, (void)r1;
}

int qdot_avx2_lanes_min(dtype t) {
    (void)t;
    return 0;
}

int qdot_avx2_lanes_max(dtype t) {
    (void)t;
    return 0;
}

bool qdot_avx2_packed(dtype t) {
    (void)t;
    return false;
}

void quantize_row_q8_K_avx2(block_q8_K *out, const float *x, int64_t n) {
    (void)out, (void)x, (void)n;
}

#endif
