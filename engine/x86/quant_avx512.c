/* x86/quant_avx512: K-quant (Q4_K, Q5_K, Q6_K) kernels on AVX-512 VNNI. Prefill: super-blocks
 * of 16 weight rows are decoded once and transposed (lane = weight row), then every activation
 * row passes over them with broadcast vpdpbusd, 8 activation rows at a time. Decode: row by row
 * with zmm codes and vpdpwssd by the scales. Exact integers per
 * block and the scalar twin's float steps per block, in order: the bits of dot_q4_K, dot_q5_K
 * and dot_q6_K. */
#include "quant_avx512.h"

#include "x86.h"

#include <assert.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include "x86_simd.h"

/* One row's decoded super-block: element 64k + e is byte e of c[k] (unsigned codes). */
typedef struct {
    __m512i c[4];
    float d, dmin;
} kblock;

INLINE512 __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

INLINE512 void decode_q45(kblock *kb, bool q5, const uint8_t *blk) {
    const block_q4_K *b4 = (const block_q4_K *)blk;
    const block_q5_K *b5 = (const block_q5_K *)blk;
    const uint8_t *qs = q5 ? b5->qs : b4->qs;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m512i qh = q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b5->qh))
                          : _mm512_setzero_si512();
    for (int k = 0; k < 4; k++) { /* sub-blocks 2k (low nibbles) and 2k + 1 (high) */
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
        __m512i c = join256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        if (q5) { /* bit s of qh[l] is the fifth bit of sub-block s's element l */
            const __m512i bit = join256(_mm256_set1_epi8((char)(1 << (2 * k))),
                                        _mm256_set1_epi8((char)(1 << (2 * k + 1))));
            c = _mm512_mask_add_epi8(c, _mm512_test_epi8_mask(qh, bit), c, _mm512_set1_epi8(0x10));
        }
        kb->c[k] = c;
    }
    kb->d = _cvtsh_ss(q5 ? b5->d : b4->d);
    kb->dmin = _cvtsh_ss(q5 ? b5->dmin : b4->dmin);
}

INLINE512 void decode_q6(kblock *kb, const block_q6_K *w) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) { /* elements 128h + 32k .. + 31 in c[k]: low 4 bits from ql,
                                   * high 2 from qh */
        const __m256i A = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h));
        const __m256i B = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32));
        const __m256i H = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));
        const __m256i c0 = _mm256_or_si256(_mm256_and_si256(A, m4),
                                           _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
        const __m256i c1 = _mm256_or_si256(_mm256_and_si256(B, m4),
                                           _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
        const __m256i c2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4),
                                           _mm256_and_si256(H, m30));
        const __m256i c3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
        kb->c[2 * h] = join256(c0, c1);
        kb->c[2 * h + 1] = join256(c2, c3);
    }
    kb->d = _cvtsh_ss(w->d);
    kb->dmin = 0.0f;
}

/* ---- weight-row tiles: lanes are 16 weight rows --------------------------------------------
 * A tile holds NBC super-blocks of 16 weight rows transposed: w[c] has dword c (codes 4c .. 4c +
 * 3) of row i's block in lane i. One activation row's dword c, broadcast, goes into vpdpbusd
 * (unsigned codes times signed activations): eight (Q4_K/Q5_K) or four (Q6_K) of them give
 * every row's exact sub-block sum, times the sub-block scales (vpmulld); the bsums share goes
 * through vpdpwssd with the scales or mins in int16 pairs. The float steps then run on 16 lanes,
 * one per weight row, as the scalar twin does them (mul, mul, sub/none, add). No horizontal sum;
 * the decode is paid once per 16 rows for all activation rows. */
#define TR 16 /* weight rows per tile */
#define NBT 4 /* super-blocks per tile (23 KB, in L1 while every activation row passes) */

typedef struct {
    __m512i w[64];  /* dword c of each row's codes */
    __m512i sc[16]; /* sub-block scales (Q4_K/Q5_K: 8 of 32 elements; Q6_K: 16 of 16) */
    __m512i mp[8];  /* int16 pair (u, u + 1 of bsums) multipliers: mins or Q6_K scales */
    __m512 d, dmin;
} ktile;

INLINE512 __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Block b of rows r .. r + TR - 1 (rows past r1 - 1 repeat it) into kt. */
INLINE512 void tile_decode(ktile *kt, dtype t, const tensor *w, int r, int r1, int b) {
    const size_t bb = dtype_block_bytes(t);
    int32_t codes[TR][64], sc[16][TR], mp[8][TR];
    float d[TR], dmin[TR];
    for (int i = 0; i < TR; i++) {
        const uint8_t *blk =
            (const uint8_t *)tensor_row(w, r + i < r1 ? r + i : r1 - 1) + (size_t)b * bb;
        kblock kb;
        if (t == DT_Q6_K) {
            const block_q6_K *q6 = (const block_q6_K *)blk;
            decode_q6(&kb, q6);
            for (int s = 0; s < 16; s++)
                sc[s][i] = q6->scales[s];
            for (int u = 0; u < 8; u++)
                mp[u][i] = (int32_t)((uint32_t)(uint16_t)q6->scales[2 * u] |
                                     (uint32_t)(uint16_t)q6->scales[2 * u + 1] << 16);
        } else {
            const bool q5 = t == DT_Q5_K;
            decode_q45(&kb, q5, blk);
            const uint8_t *scales =
                q5 ? ((const block_q5_K *)blk)->scales : ((const block_q4_K *)blk)->scales;
            for (int s = 0; s < 8; s++) {
                int m;
                k4_scale_min(s, scales, &sc[s][i], &m);
                mp[s][i] = (int32_t)((uint32_t)m | (uint32_t)m << 16);
            }
        }
        for (int k = 0; k < 4; k++)
            _mm512_storeu_si512((void *)&codes[i][16 * k], kb.c[k]);
        d[i] = kb.d;
        dmin[i] = kb.dmin;
    }
    const __m512i rows =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(64));
    for (int c = 0; c < 64; c++)
        kt->w[c] = _mm512_i32gather_epi32(rows, &codes[0][c], 4);
    for (int s = 0; s < (t == DT_Q6_K ? 16 : 8); s++)
        kt->sc[s] = _mm512_loadu_si512(sc[s]);
    for (int u = 0; u < 8; u++)
        kt->mp[u] = _mm512_loadu_si512(mp[u]);
    kt->d = _mm512_loadu_ps(d);
    kt->dmin = _mm512_loadu_ps(dmin);
}

#define NA 8 /* activation rows per pass: each weight load serves NA vpdpbusd */

/* NA activation rows' block against a tile block: sum[a] += the block's share, per lane. */
INLINE512 void tile_block(const ktile *kt, bool q6, const block_q8_K *const x[NA], __m512 sum[NA]) {
    const int ns = q6 ? 16 : 8, dw = 64 / ns; /* sub-blocks, dwords per sub-block */
    __m512i isum[NA], msum[NA];
    for (int a = 0; a < NA; a++)
        isum[a] = msum[a] = _mm512_setzero_si512();
    for (int s = 0; s < ns; s++) {
        __m512i acc[NA];
        for (int a = 0; a < NA; a++)
            acc[a] = _mm512_setzero_si512();
        for (int c = s * dw; c < s * dw + dw; c++) {
            const __m512i wc = _mm512_load_si512((const void *)&kt->w[c]);
            for (int a = 0; a < NA; a++)
                acc[a] = _mm512_dpbusd_epi32(acc[a], wc, bcast4(x[a]->qs + 4 * c));
        }
        for (int a = 0; a < NA; a++)
            isum[a] = _mm512_add_epi32(isum[a], _mm512_mullo_epi32(acc[a], kt->sc[s]));
    }
    for (int a = 0; a < NA; a++) {
        for (int u = 0; u < 8; u++)
            msum[a] = _mm512_dpwssd_epi32(msum[a], kt->mp[u],
                                          bcast4((const int8_t *)(x[a]->bsums + 2 * u)));
        const __m512 dx = _mm512_set1_ps(x[a]->d);
        if (q6) {
            const __m512i q = _mm512_sub_epi32(isum[a], _mm512_slli_epi32(msum[a], 5));
            sum[a] = _mm512_add_ps(sum[a],
                                   _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_mul_ps(kt->d, dx)));
        } else {
            const __m512 i = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[a]), _mm512_mul_ps(kt->d, dx));
            const __m512 m =
                _mm512_mul_ps(_mm512_cvtepi32_ps(msum[a]), _mm512_mul_ps(kt->dmin, dx));
            sum[a] = _mm512_add_ps(sum[a], _mm512_sub_ps(i, m));
        }
    }
}

/* Tiles of TR rows; per tile, NBT blocks decoded at a time; NA activation rows at a time (the
 * last pass repeats its last row), their 16 running sums each parked in out between block chunks
 * (a stored float loads back the same). */
INLINE512 void rows_tile(dtype t, float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                         int r1) {
    const int nb = (int)w->ne[0] / QK_K, n_out = (int)w->ne[1];
    ktile kt[NBT];
    for (int r = r0; r < r1; r += TR) {
        const __mmask16 keep = (__mmask16)(r1 - r >= TR ? 0xffff : (1u << (r1 - r)) - 1);
        for (int b0 = 0; b0 < nb; b0 += NBT) {
            const int bn = nb - b0 < NBT ? nb - b0 : NBT;
            for (int b = 0; b < bn; b++)
                tile_decode(&kt[b], t, w, r, r1, b0 + b);
            for (int t0 = 0; t0 < T; t0 += NA) {
                const int tn = T - t0 < NA ? T - t0 : NA;
                __m512 sum[NA];
                for (int a = 0; a < NA; a++) {
                    const float *o = out + (size_t)(t0 + (a < tn ? a : tn - 1)) * n_out + r;
                    sum[a] = b0 ? _mm512_maskz_loadu_ps(keep, o) : _mm512_setzero_ps();
                }
                for (int b = 0; b < bn; b++) {
                    const block_q8_K *x[NA];
                    for (int a = 0; a < NA; a++)
                        x[a] = xk + (size_t)(t0 + (a < tn ? a : tn - 1)) * nb + b0 + b;
                    tile_block(&kt[b], t == DT_Q6_K, x, sum);
                }
                for (int a = 0; a < tn; a++)
                    _mm512_mask_storeu_ps(out + (size_t)(t0 + a) * n_out + r, keep, sum[a]);
            }
        }
    }
}

/* ---- one activation row (decode) ------------------------------------------------------------
 * Row by row, block by block as the scalar twin: codes in four zmm, vpmaddubsw by the activation
 * and vpdpwssd by the sub-block scales (int16, spread with vpermw); the bsums share with vpmaddwd;
 * both sums reduced together. */
#define ONE_T_MAX 4   /* fewer activation rows than this go row by row */
#define PF_AHEAD 1024 /* bytes of weights prefetched ahead of the block being read */

/* The int16 lanes idx(k, l) = base + l / span of a permutation that spreads scale bytes. */
INLINE512 __m512i spread_idx(int base, int span) {
    int16_t v[32];
    for (int l = 0; l < 32; l++)
        v[l] = (int16_t)(base + l / span);
    return _mm512_loadu_si512(v);
}

/* isum (16 lanes) and msum (8 lanes) to their exact totals. */
INLINE512 void sum2(__m512i isum, __m256i msum, int32_t *is, int32_t *ms) {
    const __m256i i8 =
        _mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1));
    const __m256i t = _mm256_hadd_epi32(i8, msum); /* per 128 bits: i i m m */
    const __m256i u = _mm256_hadd_epi32(t, t);     /* per 128 bits: i m i m */
    const __m128i v = _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
    *is = _mm_cvtsi128_si32(v);
    *ms = _mm_extract_epi32(v, 1);
}

INLINE512 float dot1_q45(bool q5, const uint8_t *row, const block_q8_K *x, int nb) {
    const size_t bb = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const __m512i idx[4] = {spread_idx(0, 16), spread_idx(2, 16), spread_idx(4, 16),
                            spread_idx(6, 16)};
    const __m256i pairs = _mm512_castsi512_si256(spread_idx(0, 2));
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bb;
        for (size_t ahead = PF_AHEAD; ahead < PF_AHEAD + bb; ahead += 64)
            _mm_prefetch((const char *)blk + ahead, _MM_HINT_T0);
        /* the 8 scales and 8 mins of k4_scale_min as bytes, four at a time */
        const uint8_t *sb =
            q5 ? ((const block_q5_K *)blk)->scales : ((const block_q4_K *)blk)->scales;
        uint32_t a, m, c;
        memcpy(&a, sb, 4);
        memcpy(&m, sb + 4, 4);
        memcpy(&c, sb + 8, 4);
        const uint64_t scb = (uint64_t)(a & 0x3f3f3f3fu) |
                             (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
        const uint64_t mnb = (uint64_t)(m & 0x3f3f3f3fu) |
                             (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((m >> 2) & 0x30303030u)) << 32;
        const __m512i sc =
            _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scb)));
        const __m256i mn =
            _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mnb)));
        kblock kb;
        decode_q45(&kb, q5, blk);
        __m512i acc = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++)
            acc = _mm512_dpwssd_epi32(
                acc,
                _mm512_maddubs_epi16(kb.c[k], _mm512_loadu_si512((const void *)(x[b].qs + 64 * k))),
                _mm512_permutexvar_epi16(idx[k], sc));
        const __m256i msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x[b].bsums),
                                               _mm256_permutexvar_epi16(pairs, mn));
        int32_t is, ms;
        sum2(acc, msum, &is, &ms);
        sum += (float)is * (kb.d * x[b].d) - (float)ms * (kb.dmin * x[b].d);
    }
    return sum;
}

INLINE512 float dot1_q6(const block_q6_K *w, const block_q8_K *x, int nb) {
    const __m512i idx[4] = {spread_idx(0, 8), spread_idx(4, 8), spread_idx(8, 8),
                            spread_idx(12, 8)};
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        for (size_t ahead = PF_AHEAD; ahead < PF_AHEAD + sizeof *w; ahead += 64)
            _mm_prefetch((const char *)&w[b] + ahead, _MM_HINT_T0);
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[b].scales));
        const __m512i sc = _mm512_castsi256_si512(s16);
        kblock kb;
        decode_q6(&kb, &w[b]);
        __m512i acc = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++)
            acc = _mm512_dpwssd_epi32(
                acc,
                _mm512_maddubs_epi16(kb.c[k], _mm512_loadu_si512((const void *)(x[b].qs + 64 * k))),
                _mm512_permutexvar_epi16(idx[k], sc));
        const __m256i ssum =
            _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x[b].bsums), s16);
        int32_t is, ss;
        sum2(acc, ssum, &is, &ss);
        sum += (float)(is - 32 * ss) * (kb.d * x[b].d);
    }
    return sum;
}

/* T activation rows one at a time: for T below a tile's worth the transposing costs more. */
INLINE512 void rows_one(dtype t, float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                        int r1) {
    const int nb = (int)w->ne[0] / QK_K, n_out = (int)w->ne[1];
    for (int r = r0; r < r1; r++)
        for (int ti = 0; ti < T; ti++)
            out[(size_t)ti * n_out + r] =
                t == DT_Q6_K
                    ? dot1_q6((const block_q6_K *)tensor_row(w, r), xk + (size_t)ti * nb, nb)
                    : dot1_q45(t == DT_Q5_K, tensor_row(w, r), xk + (size_t)ti * nb, nb);
}

TARGET512 static void rows_q4_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                                int r1) {
    if (T < ONE_T_MAX)
        rows_one(DT_Q4_K, out, xk, w, T, r0, r1);
    else
        rows_tile(DT_Q4_K, out, xk, w, T, r0, r1);
}
TARGET512 static void rows_q5_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                                int r1) {
    if (T < ONE_T_MAX)
        rows_one(DT_Q5_K, out, xk, w, T, r0, r1);
    else
        rows_tile(DT_Q5_K, out, xk, w, T, r0, r1);
}
TARGET512 static void rows_q6_K(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                                int r1) {
    if (T < ONE_T_MAX)
        rows_one(DT_Q6_K, out, xk, w, T, r0, r1);
    else
        rows_tile(DT_Q6_K, out, xk, w, T, r0, r1);
}

bool qdot_avx512_has(dtype t) {
    return (t == DT_Q4_K || t == DT_Q5_K || t == DT_Q6_K) && mm_avx512_supported();
}

void qdot_rows_avx512(float *out, const block_q8_K *xk, const tensor *w, int T, int r0, int r1) {
    assert(w->ne[0] % QK_K == 0 && T >= 0 && 0 <= r0 && r0 <= r1 && r1 <= w->ne[1]);
    switch (w->type) {
    case DT_Q4_K:
        rows_q4_K(out, xk, w, T, r0, r1);
        return;
    case DT_Q5_K:
        rows_q5_K(out, xk, w, T, r0, r1);
        return;
    case DT_Q6_K:
        rows_q6_K(out, xk, w, T, r0, r1);
        return;
    default:
        return;
    }
}

#else /* not x86 */

bool qdot_avx512_has(dtype t) {
    (void)t;
    return false;
}
void qdot_rows_avx512(float *out, const block_q8_K *xk, const tensor *w, int T, int r0, int r1) {
    (void)out, (void)xk, (void)w, (void)T, (void)r0, (void)r1;
}

#endif
