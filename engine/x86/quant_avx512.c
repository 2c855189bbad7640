/* x86/quant_avx512: kernels on AVX-512 VNNI for the 256-element block types (Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K, IQ4_XS). Prefill: super-blocks of 16 weight rows are decoded once and transposed
 * (lane = weight row), then every activation row passes over them with broadcast vpdpbusd, 8
 * activation rows at a time. Decode: 8 weight rows per pass with zmm codes, their sums reduced
 * together. Exact integers per block and the scalar twin's float steps per block, in order:
 * the bits of dot_q2_K .. dot_iq4_xs. */
#include "quant_avx512.h"
#include "quant_avx2.h"

#include "x86.h"

#include <assert.h>
#include <stddef.h>
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

/* Q2_K/Q3_K: element 128h + 32k + l (k < 4) is bits 2k, 2k + 1 of qs[32h + l]; Q3_K's third
 * bit is bit 4h + k of hmask[l], and the code kept is the stored one + 4 (0..7: a clear bit
 * subtracts 4 in the file's terms, so a set bit adds 4 here; the 4 x bsums come off later). */
INLINE512 void decode_q23(kblock *kb, bool q3, const uint8_t *blk) {
    const block_q2_K *b2 = (const block_q2_K *)blk;
    const block_q3_K *b3 = (const block_q3_K *)blk;
    const uint8_t *qs = q3 ? b3->qs : b2->qs;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m512i hm = q3 ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)b3->hmask))
                          : _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
        for (int k2 = 0; k2 < 2; k2++) { /* k = 2 k2 (low half of the zmm) and 2 k2 + 1 */
            __m512i c = join256(_mm256_and_si256(_mm256_srli_epi16(q, 4 * k2), m3),
                                _mm256_and_si256(_mm256_srli_epi16(q, 4 * k2 + 2), m3));
            if (q3) {
                const __m512i bit = join256(_mm256_set1_epi8((char)(1 << (4 * h + 2 * k2))),
                                            _mm256_set1_epi8((char)(1 << (4 * h + 2 * k2 + 1))));
                c = _mm512_mask_add_epi8(c, _mm512_test_epi8_mask(hm, bit), c, _mm512_set1_epi8(4));
            }
            kb->c[2 * h + k2] = c;
        }
    }
    kb->d = _cvtsh_ss(q3 ? b3->d : b2->d);
    kb->dmin = q3 ? 0.0f : _cvtsh_ss(b2->dmin);
}

/* IQ4_XS: sub-block s (elements 32s ..) is the low then the high nibbles of qs[16s .. 16s + 15],
 * each an index into iq4_levels; the code kept is the level + 128 (1..241, unsigned; the 128 x
 * bsums come off later). */
INLINE512 void decode_iq4xs(kblock *kb, const block_iq4_xs *w) {
    int8_t lv[16];
    for (int i = 0; i < 16; i++)
        lv[i] = (int8_t)(iq4_levels[i] + 128);
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lv));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int k = 0; k < 4; k++) { /* sub-blocks 2k, 2k + 1: 128-bit lanes lo, hi, lo, hi */
        const __m256i q = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * k));
        const __m512i n =
            join256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        kb->c[k] = _mm512_shuffle_epi8(tbl, _mm512_shuffle_i64x2(n, n, _MM_SHUFFLE(3, 1, 2, 0)));
    }
    kb->d = _cvtsh_ss(w->d);
    kb->dmin = 0.0f;
}

/* How a type's block sum is put together (the scalar twin's order):
 *  ns   sub-blocks per super-block (8 of 32 elements or 16 of 16);
 *  off  log2 of the offset added to the codes (Q6_K 32, Q3_K 4, IQ4_XS 128), taken off as
 *       off x (scales . bsums); 0 for the types with mins (Q2_K, Q4_K, Q5_K), whose mins . bsums
 *       share is scaled by dmin. */
INLINE512 int kind_ns(dtype t) {
    return t == DT_Q4_K || t == DT_Q5_K || t == DT_IQ4_XS ? 8 : 16;
}
INLINE512 int kind_off(dtype t) {
    return t == DT_Q6_K ? 5 : t == DT_Q3_K ? 2 : t == DT_IQ4_XS ? 7 : 0;
}

/* ---- weight-row tiles: lanes are 16 weight rows --------------------------------------------
 * A tile holds NBC super-blocks of 16 weight rows transposed: w[c] has dword c (codes 4c .. 4c +
 * 3) of row i's block in lane i. One activation row's dword c, broadcast, goes into vpdpbusd
 * (unsigned codes times signed activations): 64 / ns of them give every row's exact sub-block
 * sum, times the sub-block scales (vpmulld); the bsums share (mins, or the scales times the
 * codes' offset) goes through vpdpwssd with int16 pairs. The float steps then run on 16 lanes,
 * one per weight row, as the scalar twin does them (mul, mul, sub/none, add). No horizontal sum;
 * the decode is paid once per 16 rows for all activation rows. */
#define TR 16 /* weight rows per tile */
#define NBT 4 /* super-blocks per tile (23 KB, in L1 while every activation row passes) */

typedef struct {
    __m512i w[64];  /* dword c of each row's codes */
    __m512i sc[16]; /* sub-block scales (ns of them) */
    __m512i mp[8];  /* int16 pair (u, u + 1 of bsums) multipliers: mins or scales */
    __m512 d, dmin;
} ktile;

INLINE512 __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* One row's block into kb, its ns sub-block scales into sc[s] and the multipliers of the bsums
 * into mp[u] (the int16 pair for bsums 2u, 2u + 1) at lane i. */
INLINE512 void row_decode(kblock *kb, int32_t sc[16][TR], int32_t mp[8][TR], int i, dtype t,
                          const uint8_t *blk) {
    int v16[16]; /* the multiplier of bsums[j] */
    if (t == DT_Q6_K || t == DT_Q3_K) {
        if (t == DT_Q6_K) {
            decode_q6(kb, (const block_q6_K *)blk);
            for (int s = 0; s < 16; s++)
                v16[s] = ((const block_q6_K *)blk)->scales[s];
        } else {
            decode_q23(kb, true, blk);
            q3_K_scales(v16, ((const block_q3_K *)blk)->scales);
        }
        for (int s = 0; s < 16; s++)
            sc[s][i] = v16[s];
    } else if (t == DT_Q2_K) {
        const block_q2_K *b2 = (const block_q2_K *)blk;
        decode_q23(kb, false, blk);
        for (int s = 0; s < 16; s++) {
            sc[s][i] = b2->scales[s] & 0x0f;
            v16[s] = b2->scales[s] >> 4;
        }
    } else if (t == DT_IQ4_XS) {
        decode_iq4xs(kb, (const block_iq4_xs *)blk);
        for (int s = 0; s < 8; s++)
            sc[s][i] = v16[2 * s] = v16[2 * s + 1] = iq4_xs_scale((const block_iq4_xs *)blk, s);
    } else {
        const bool q5 = t == DT_Q5_K;
        decode_q45(kb, q5, blk);
        const uint8_t *scales =
            q5 ? ((const block_q5_K *)blk)->scales : ((const block_q4_K *)blk)->scales;
        for (int s = 0; s < 8; s++) {
            k4_scale_min(s, scales, &sc[s][i], &v16[2 * s]);
            v16[2 * s + 1] = v16[2 * s];
        }
    }
    for (int u = 0; u < 8; u++)
        mp[u][i] =
            (int32_t)((uint32_t)(uint16_t)v16[2 * u] | (uint32_t)(uint16_t)v16[2 * u + 1] << 16);
}

/* Block b of rows r .. r + TR - 1 of base (rows rb bytes apart, blocks bb; rows past r1 - 1
 * repeat it) into kt. */
INLINE512 void tile_decode(ktile *kt, dtype t, const uint8_t *base, size_t rb, size_t bb, int r,
                           int r1, int b) {
    int32_t codes[TR][64], sc[16][TR], mp[8][TR];
    float d[TR], dmin[TR];
    for (int i = 0; i < TR; i++) {
        const uint8_t *blk = base + (size_t)(r + i < r1 ? r + i : r1 - 1) * rb + (size_t)b * bb;
        kblock kb;
        row_decode(&kb, sc, mp, i, t, blk);
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
    for (int s = 0; s < kind_ns(t); s++)
        kt->sc[s] = _mm512_loadu_si512(sc[s]);
    for (int u = 0; u < 8; u++)
        kt->mp[u] = _mm512_loadu_si512(mp[u]);
    kt->d = _mm512_loadu_ps(d);
    kt->dmin = _mm512_loadu_ps(dmin);
}

#define NA 8 /* activation rows per pass: each weight load serves NA vpdpbusd */

/* NA activation rows' block against a tile block: sum[a] += the block's share, per lane. */
INLINE512 void tile_block(const ktile *kt, dtype t, const block_q8_K *const x[NA], __m512 sum[NA]) {
    const int ns = kind_ns(t), dw = 64 / ns, off = kind_off(t); /* dw: dwords per sub-block */
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
        if (off) {
            const __m512i q = _mm512_sub_epi32(isum[a], _mm512_slli_epi32(msum[a], off));
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
    /* once per call: each is a table lookup (and a division), too dear per block */
    const size_t rb = dtype_row_bytes(t, w->ne[0]), bb = kq_bytes(t);
    const uint8_t *base = w->data;
    ktile kt[NBT];
    for (int r = r0; r < r1; r += TR) {
        const __mmask16 keep = (__mmask16)(r1 - r >= TR ? 0xffff : (1u << (r1 - r)) - 1);
        for (int b0 = 0; b0 < nb; b0 += NBT) {
            const int bn = nb - b0 < NBT ? nb - b0 : NBT;
            for (int b = 0; b < bn; b++)
                tile_decode(&kt[b], t, base, rb, bb, r, r1, b0 + b);
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
                    tile_block(&kt[b], t, x, sum);
                }
                for (int a = 0; a < tn; a++)
                    _mm512_mask_storeu_ps(out + (size_t)(t0 + a) * n_out + r, keep, sum[a]);
            }
        }
    }
}

/* ---- one activation row (decode) ------------------------------------------------------------
 * Per super-block and weight row, the exact integers as the scalar twin: codes in four zmm,
 * vpmaddubsw by the activation and vpdpwssd by the sub-block scales (int16, spread with vpermw)
 * into acc (16 lanes); the bsums term (mins, or the scales for the offset types) with vpmaddwd
 * into vs (8 lanes). DEC_R weight rows at a time: their acc and vs are reduced together by one
 * hadd tree, and the float steps run in vector lanes, one lane per row, in the scalar twin's
 * order. The rows past the last group of DEC_R go row by row (sum2 and scalar steps). */
#define PF_AHEAD 1024 /* bytes of weights prefetched ahead of the block being read */
/* weight rows per decode pass: 8 (Q4_K from DRAM, one core: 4 rows 24.8 GMAC/s, 8 rows 33.4,
 * row by row 26.5; docs/PERFORMANCE.md); sums_rows and dot_rows assume 8 */
#define DEC_R 8

/* The int16 lanes idx(k, l) = base + l / span of a permutation that spreads scale bytes. */
INLINE512 __m512i spread_idx(int base, int span) {
    int16_t v[32];
    for (int l = 0; l < 32; l++)
        v[l] = (int16_t)(base + l / span);
    return _mm512_loadu_si512(v);
}

/* The decode kernels' constants, made once per call. */
typedef struct {
    __m512i idx8[4];  /* 8 sub-blocks of 32: scales 2k, 2k + 1 over the 64 codes of c[k] */
    __m512i idx16[4]; /* 16 sub-blocks of 16: scales 4k .. 4k + 3 */
    __m256i pairs;    /* the 8 mins over the 16 bsums (one per 16 elements) */
} dconst;

INLINE512 void dconst_init(dconst *k) {
    for (int i = 0; i < 4; i++) {
        k->idx8[i] = spread_idx(2 * i, 16);
        k->idx16[i] = spread_idx(4 * i, 8);
    }
    k->pairs = _mm512_castsi512_si256(spread_idx(0, 2));
}

/* acc += the four zmm of codes times the activation, times the scales sc (int16) spread by idx. */
INLINE512 __m512i codes_dot(const kblock *kb, const block_q8_K *x, __m512i sc,
                            const __m512i idx[4]) {
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++)
        acc = _mm512_dpwssd_epi32(
            acc, _mm512_maddubs_epi16(kb->c[k], _mm512_loadu_si512((const void *)(x->qs + 64 * k))),
            _mm512_permutexvar_epi16(idx[k], sc));
    return acc;
}

/* Q4_K/Q5_K: the 8 scales and 8 mins of k4_scale_min as bytes (k4_scales_mins). */
INLINE512 void blk_q45(bool q5, const uint8_t *blk, const block_q8_K *x, const dconst *k,
                       __m512i *acc, __m256i *vs) {
    const uint8_t *sb = q5 ? ((const block_q5_K *)blk)->scales : ((const block_q4_K *)blk)->scales;
    uint64_t scb, mnb;
    k4_scales_mins(sb, &scb, &mnb);
    const __m512i sc = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scb)));
    const __m256i mn = _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mnb)));
    kblock kb;
    decode_q45(&kb, q5, blk);
    *acc = codes_dot(&kb, x, sc, k->idx8);
    *vs = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x->bsums),
                            _mm256_permutexvar_epi16(k->pairs, mn));
}

INLINE512 void blk_q6(const block_q6_K *w, const block_q8_K *x, const dconst *k, __m512i *acc,
                      __m256i *vs) {
    const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w->scales));
    kblock kb;
    decode_q6(&kb, w);
    *acc = codes_dot(&kb, x, _mm512_castsi256_si512(s16), k->idx16);
    *vs = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x->bsums), s16);
}

/* IQ4_XS's eight scales minus 32 as int32 (iq4_xs_scale, vectorised): nibble s of the 32-bit
 * scales_l, bits 2s, 2s + 1 of scales_h on top. */
INLINE512 __m256i iq4xs_scales32(const block_iq4_xs *w) {
    uint32_t l32;
    memcpy(&l32, w->scales_l, 4);
    const __m256i lo =
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)l32),
                                           _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                         _mm256_set1_epi32(0x0f));
    const __m256i hi =
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w->scales_h),
                                           _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                         _mm256_set1_epi32(3));
    return _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
}

/* Q2_K/Q3_K: codes < 8, so vpmaddubsw does not saturate; the bsums term is Q2_K's mins or
 * Q3_K's scales (times the codes' offset 4, taken off in the float step). */
INLINE512 void blk_q23(bool q3, const uint8_t *blk, const block_q8_K *x, const dconst *k,
                       __m512i *acc, __m256i *vs) {
    __m256i s16, v16; /* the scales; the multipliers of the bsums */
    if (q3) {
        s16 = v16 = _mm256_cvtepi8_epi16(q3_K_scales8(((const block_q3_K *)blk)->scales));
    } else {
        const __m128i s = _mm_loadu_si128((const __m128i *)((const block_q2_K *)blk)->scales);
        const __m128i m4 = _mm_set1_epi8(0x0f);
        s16 = _mm256_cvtepu8_epi16(_mm_and_si128(s, m4));
        v16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
    }
    kblock kb;
    decode_q23(&kb, q3, blk);
    *acc = codes_dot(&kb, x, _mm512_castsi256_si512(s16), k->idx16);
    *vs = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x->bsums), v16);
}

/* IQ4_XS: the signed levels (|level| <= 127) times the activations as vpmaddubsw of |level| by
 * the activation with the level's sign (no saturation: 2 x 127 x 127 < 2^15); no bsums term. */
INLINE512 void blk_iq4xs(const block_iq4_xs *w, const block_q8_K *x, const dconst *k, __m512i *acc,
                         __m256i *vs) {
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)iq4_levels));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m512i sc = _mm512_castsi128_si512(_mm256_cvtepi32_epi16(iq4xs_scales32(w)));
    __m512i a = _mm512_setzero_si512();
    for (int j = 0; j < 4; j++) { /* sub-blocks 2j, 2j + 1: 128-bit lanes lo, hi, lo, hi */
        const __m256i q = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * j));
        __m512i n = join256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        n = _mm512_shuffle_i64x2(n, n, _MM_SHUFFLE(3, 1, 2, 0));
        const __m512i v = _mm512_shuffle_epi8(tbl, n);
        const __m512i xv = _mm512_loadu_si512((const void *)(x->qs + 64 * j));
        const __m512i xs =
            _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(v), _mm512_setzero_si512(), xv);
        a = _mm512_dpwssd_epi32(a, _mm512_maddubs_epi16(_mm512_abs_epi8(v), xs),
                                _mm512_permutexvar_epi16(k->idx8[j], sc));
    }
    *acc = a;
    *vs = _mm256_setzero_si256();
}

/* One row's block blk against x: acc sums to the scalar twin's isum, vs to its bsums term. */
INLINE512 void blk_int(dtype t, const uint8_t *blk, const block_q8_K *x, const dconst *k,
                       __m512i *acc, __m256i *vs) {
    if (t == DT_Q4_K || t == DT_Q5_K)
        blk_q45(t == DT_Q5_K, blk, x, k, acc, vs);
    else if (t == DT_Q6_K)
        blk_q6((const block_q6_K *)blk, x, k, acc, vs);
    else if (t == DT_IQ4_XS)
        blk_iq4xs((const block_iq4_xs *)blk, x, k, acc, vs);
    else
        blk_q23(t == DT_Q3_K, blk, x, k, acc, vs);
}

/* The float steps: types with mins (Q2_K, Q4_K, Q5_K) subtract vs x dmin; the others take the
 * codes' offset (Q6_K 32, Q3_K 4) off the integer: (is - vs x 2^dec_off) x d. */
INLINE512 bool has_min(dtype t) {
    return t == DT_Q2_K || t == DT_Q4_K || t == DT_Q5_K;
}
INLINE512 int dec_off(dtype t) {
    return t == DT_Q6_K ? 5 : t == DT_Q3_K ? 2 : 0;
}

/* Where d (F16) lies in a block, as a dword read that stays inside the block: its low half,
 * dmin the high half (Q2_K, Q4_K, Q5_K, IQ4_XS); the high half (Q3_K, Q6_K: d is last). */
INLINE512 size_t d_dword(dtype t) {
    return t == DT_Q2_K   ? offsetof(block_q2_K, d)
           : t == DT_Q3_K ? offsetof(block_q3_K, d) - 2
           : t == DT_Q6_K ? offsetof(block_q6_K, d) - 2
                          : 0;
}

/* isum (16 lanes) and msum (8 lanes) to their exact totals. */
INLINE512 void sum2(__m512i isum, __m256i msum, int32_t *is, int32_t *ms) {
    const __m256i i8 =
        _mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1));
    hsum2_i32(i8, msum, is, ms);
}

/* One weight row against one activation row: the scalar twin's steps, block by block. */
INLINE512 float dot1(dtype t, const uint8_t *row, const block_q8_K *x, int nb, const dconst *k) {
    const size_t bb = kq_bytes(t);
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bb;
        for (size_t ahead = PF_AHEAD; ahead < PF_AHEAD + bb; ahead += 64)
            _mm_prefetch((const char *)blk + ahead, _MM_HINT_T0);
        __m512i acc;
        __m256i vsum;
        blk_int(t, blk, &x[b], k, &acc, &vsum);
        int32_t is, vs;
        sum2(acc, vsum, &is, &vs);
        uint32_t dd;
        memcpy(&dd, blk + d_dword(t), 4);
        if (has_min(t))
            sum += (float)is * (_cvtsh_ss((uint16_t)dd) * x[b].d) -
                   (float)vs * (_cvtsh_ss((uint16_t)(dd >> 16)) * x[b].d);
        else
            sum += (float)(is - vs * (1 << dec_off(t))) *
                   (_cvtsh_ss((uint16_t)(d_dword(t) ? dd >> 16 : dd)) * x[b].d);
    }
    return sum;
}

/* The totals of the DEC_R rows' acc and vs: row i's in lane i of *is and *vsum. */
INLINE512 void sums_rows(const __m512i acc[DEC_R], const __m256i vs[DEC_R], __m256i *is,
                         __m256i *vsum) {
    __m256i v[DEC_R];
    for (int i = 0; i < DEC_R; i++)
        v[i] =
            _mm256_add_epi32(_mm512_castsi512_si256(acc[i]), _mm512_extracti64x4_epi64(acc[i], 1));
    *is = hsum8x8(v);
    *vsum = hsum8x8(vs);
}

/* The F16 in the high (or low) half of each dword, exact to F32. */
INLINE512 __m256 half_ps(__m256i dd, bool high) {
    const __m256i h =
        high ? _mm256_srli_epi32(dd, 16) : _mm256_and_si256(dd, _mm256_set1_epi32(0xffff));
    return _mm256_cvtph_ps(_mm256_cvtepi32_epi16(h));
}

/* out[i] for rows row0 + i * rb, i < DEC_R, against one activation row; block b of row i at
 * row0 + b * bs + i * rb: in place bs is the block's bytes and rb the row's, in
 * qdot_avx512_repack's layout rb is the block's bytes and bs DEC_R blocks. Each lane runs its
 * row's float steps in the scalar twin's order. packed: one stream, which the hardware
 * prefetchers follow (software prefetch 1-16 block groups ahead into L2 gave nothing this host
 * could measure, 2026-11-30). */
INLINE512 void dot_rows(dtype t, float *out, const uint8_t *row0, size_t rb, size_t bs,
                        bool packed, const block_q8_K *x, int nb, const dconst *k) {
    const size_t bb = kq_bytes(t);
    const __m256i gidx =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)rb));
    __m256 sum = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = row0 + (size_t)b * bs;
        __m512i acc[DEC_R];
        __m256i vs[DEC_R];
        for (int i = 0; i < DEC_R; i++) {
            const uint8_t *blk = wb + (size_t)i * rb;
            /* the next group's rows, into L2, as the Q4_0 decode tile does (Zen 4, one core,
             * Q4_K 2048 x 5632 from DRAM: 34.9 GMAC/s; 1 KiB ahead in the row itself, into L1,
             * as dot1: 17.2; the next group into L1: 21.3; two groups ahead into L2: 33.5) */
            for (size_t ahead = 0; !packed && ahead < bb; ahead += 64)
                _mm_prefetch((const char *)blk + DEC_R * rb + ahead, _MM_HINT_T1);
            blk_int(t, blk, &x[b], k, &acc[i], &vs[i]);
        }
        __m256i is, vsum;
        sums_rows(acc, vs, &is, &vsum);
        const __m256i dd = _mm256_i32gather_epi32((const int *)(wb + d_dword(t)), gidx, 1);
        const __m256 xd = _mm256_set1_ps(x[b].d);
        if (has_min(t)) {
            const __m256 d = half_ps(dd, false), dmin = half_ps(dd, true);
            const __m256 a = _mm256_mul_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(d, xd));
            const __m256 m = _mm256_mul_ps(_mm256_cvtepi32_ps(vsum), _mm256_mul_ps(dmin, xd));
            sum = _mm256_add_ps(sum, _mm256_sub_ps(a, m));
        } else {
            const __m256 d = half_ps(dd, d_dword(t) != 0);
            const __m256i q = _mm256_sub_epi32(is, _mm256_slli_epi32(vsum, dec_off(t)));
            sum = _mm256_add_ps(sum, _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_mul_ps(d, xd)));
        }
    }
    _mm256_storeu_ps(out, sum);
}

/* Fewer activation rows than this take the decode kernels (rows_one), the rest the tiles.
 * rows_one reads each weight block once per activation row (about 17 ms per row of the Q4_K
 * matrix below); a tile first decodes its weight blocks for the vpdpbusd passes, which costs
 * about 8 rows' worth, then about 4 ms per row. Where they cross, from bench-matmul (Q4_K etc.,
 * one core, weights from DRAM, AMD EPYC Zen 4, 2026-11-30; ms per 30 copies, rows_one / tile):
 *   Q2_K T=12 219/250, T=16 285/258;  Q3_K T=12 254/317, T=16 357/332;
 *   Q4_K T=10 176/217, T=12 213/222, T=16 289/222;  Q5_K T=10 217/261, T=12 263/258;
 *   Q6_K T=16 328/354, T=24 603/428;  IQ4_XS T=6 174/267, T=8 230/211.
 * (At 4, where all types switched before, a Q4_K step of 4 rows took 2.3x one of 3.) Both
 * paths give the scalar twins' bits, so the switch point changes only the speed. A CPU in
 * x86/avx512.c's table may set its own (mm_kq_tile_min: Zen 5 takes Q6_K's tiles from 10). */
INLINE512 int one_t_max(dtype t) {
    const int m = mm_kq_tile_min(t);
    if (m > 0) return m;
    switch (t) {
    case DT_Q2_K: return 14;
    case DT_Q3_K: return 15;
    case DT_Q6_K: return 18;
    case DT_IQ4_XS: return 8;
    default: return 12; /* Q4_K, Q5_K */
    }
}

/* Rows [r, r1) of base (rb bytes apart) one at a time, in place; nb blocks, n_out outputs. */
INLINE512 void rows_dot1(dtype t, float *out, const block_q8_K *xk, const uint8_t *base,
                         size_t rb, int nb, int n_out, int T, int r, int r1, const dconst *k) {
    for (; r < r1; r++)
        for (int ti = 0; ti < T; ti++)
            out[(size_t)ti * n_out + r] =
                dot1(t, base + (size_t)r * rb, xk + (size_t)ti * nb, nb, k);
}

/* T < one_t_max(t) activation rows: groups of DEC_R weight rows, then the rest row by row. With
 * w->packed, the whole groups within [r0, r1) come from it and the rows around them in place. */
INLINE512 void rows_one(dtype t, float *out, const block_q8_K *xk, const tensor *w, int T, int r0,
                        int r1) {
    const int nb = (int)w->ne[0] / QK_K, n_out = (int)w->ne[1];
    const size_t rb = dtype_row_bytes(t, w->ne[0]), bb = kq_bytes(t);
    const uint8_t *base = w->data;
    dconst k;
    dconst_init(&k);
    int r = r0;
    const int g0 = (r0 + DEC_R - 1) / DEC_R, g1 = r1 / DEC_R;
    if (w->packed && g0 < g1) {
        rows_dot1(t, out, xk, base, rb, nb, n_out, T, r0, DEC_R * g0, &k);
        for (int g = g0; g < g1; g++) {
            const uint8_t *wg = (const uint8_t *)w->packed + (size_t)g * DEC_R * rb;
            for (int ti = 0; ti < T; ti++)
                dot_rows(t, &out[(size_t)ti * n_out + DEC_R * g], wg, bb, DEC_R * bb, true,
                         xk + (size_t)ti * nb, nb, &k);
        }
        r = DEC_R * g1;
    }
    for (; r + DEC_R <= r1; r += DEC_R)
        for (int ti = 0; ti < T; ti++)
            dot_rows(t, &out[(size_t)ti * n_out + r], base + (size_t)r * rb, rb, bb, false,
                     xk + (size_t)ti * nb, nb, &k);
    rows_dot1(t, out, xk, base, rb, nb, n_out, T, r, r1, &k);
}

/* One function per type, so that each kernel is compiled for its type. */
#define ROWS_FN(name, type)                                                                        \
    TARGET512 static void name(float *out, const block_q8_K *xk, const tensor *w, int T, int r0,   \
                               int r1) {                                                           \
        if (T < one_t_max(type))                                                                   \
            rows_one(type, out, xk, w, T, r0, r1);                                                 \
        else                                                                                       \
            rows_tile(type, out, xk, w, T, r0, r1);                                                \
    }
ROWS_FN(rows_q2_K, DT_Q2_K)
ROWS_FN(rows_q3_K, DT_Q3_K)
ROWS_FN(rows_q4_K, DT_Q4_K)
ROWS_FN(rows_q5_K, DT_Q5_K)
ROWS_FN(rows_q6_K, DT_Q6_K)
ROWS_FN(rows_iq4_xs, DT_IQ4_XS)

bool qdot_avx512_has(dtype t) {
    return dtype_uses_q8_K(t) && mm_avx512_supported();
}

size_t qdot_avx512_packed_bytes(const tensor *w) {
    /* the same layout serves x86/quant_avx2.c's 8-row passes (qdot_avx2_packed) */
    if (!(qdot_avx512_has(w->type) || qdot_avx2_packed(w->type)) || w->ne[1] < DEC_R) return 0;
    return (size_t)(w->ne[1] / DEC_R) * DEC_R * dtype_row_bytes(w->type, w->ne[0]);
}

/* Per group g of DEC_R rows, at g * DEC_R * (row bytes): block 0 of its rows in order, then
 * block 1 of its rows, and so on. */
void qdot_avx512_repack(void *dst, const tensor *w) {
    const int nb = (int)(w->ne[0] / QK_K), n_out = (int)w->ne[1];
    const size_t bb = dtype_block_bytes(w->type);
    uint8_t *o = dst;
    for (int g = 0; g < n_out / DEC_R; g++)
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < DEC_R; r++, o += bb)
                memcpy(o, (const uint8_t *)tensor_row(w, DEC_R * g + r) + (size_t)b * bb, bb);
}

void qdot_rows_avx512(float *out, const block_q8_K *xk, const tensor *w, int T, int r0, int r1) {
    assert(w->ne[0] % QK_K == 0 && T >= 0 && 0 <= r0 && r0 <= r1 && r1 <= w->ne[1]);
    switch (w->type) {
    case DT_Q2_K:
        rows_q2_K(out, xk, w, T, r0, r1);
        return;
    case DT_Q3_K:
        rows_q3_K(out, xk, w, T, r0, r1);
        return;
    case DT_Q4_K:
        rows_q4_K(out, xk, w, T, r0, r1);
        return;
    case DT_Q5_K:
        rows_q5_K(out, xk, w, T, r0, r1);
        return;
    case DT_Q6_K:
        rows_q6_K(out, xk, w, T, r0, r1);
        return;
    case DT_IQ4_XS:
        rows_iq4_xs(out, xk, w, T, r0, r1);
        return;
    default:
        return; /* qdot_avx512_has says which */
    }
}

#else /* not x86 */

bool qdot_avx512_has(dtype t) {
    (void)t;
    return false;
}

size_t qdot_avx512_packed_bytes(const tensor *w) {
    (void)w;
    return 0;
}

void qdot_avx512_repack(void *dst, const tensor *w) {
    (void)dst, (void)w;
}
void qdot_rows_avx512(float *out, const block_q8_K *xk, const tensor *w, int T, int r0, int r1) {
    (void)out, (void)xk, (void)w, (void)T, (void)r0, (void)r1;
}

#endif
