/* x86/attention_avx2: AVX2 helpers for forward.c's blockwise attention (see attention_avx2.h):
 * a block of 8 keys transposed once, scores over it for several query rows, a row's softmax
 * step over the block with an 8-lane exp, and the block's value rows added to a row's output in
 * one pass. Bit-identical to forward.c's scalar twins (tests/test_matmul.c compares them). */
#include "attention_avx2.h"

#include "tensor.h"

#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include "attention_x86.h"

/* 8 rows of 8 floats (rows r[0..7], each from element i) stored transposed: kt[c * 8 + j] =
 * r[j][i + c] for c < 8. */
INLINE void transpose8(float *kt, const __m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    _mm256_storeu_ps(kt + 0, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(kt + 8, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(kt + 16, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(kt + 24, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(kt + 32, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(kt + 40, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(kt + 48, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(kt + 56, _mm256_permute2f128_ps(u3, u7, 0x31));
}

TARGET void attn_keys8_t_avx2(float *kt, const void *k, bool f16, size_t stride, int head_dim) {
    int i = 0;
    for (; i + 8 <= head_dim; i += 8) {
        __m256 r[8];
        for (int j = 0; j < 8; j++)
            r[j] = f16 ? _mm256_cvtph_ps(_mm_loadu_si128(
                             (const __m128i *)((const uint16_t *)k + (size_t)j * stride + i)))
                       : _mm256_loadu_ps((const float *)k + (size_t)j * stride + i);
        transpose8(kt + (size_t)i * 8, r);
    }
    for (; i < head_dim; i++)
        for (int j = 0; j < 8; j++)
            kt[i * 8 + j] = f16 ? f16_to_f32(((const uint16_t *)k)[(size_t)j * stride + i])
                                : ((const float *)k)[(size_t)j * stride + i];
}

TARGET void attn_scores8t_avx2(float s[8], const float *q, const float *kt, int head_dim) {
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < head_dim; i++)
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(q[i]), _mm256_loadu_ps(kt + 8 * i)));
    _mm256_storeu_ps(s, acc);
}

TARGET void attn_scores8t_rows_avx2(float *s, const float *const *q, int nq, const float *kt,
                                    int head_dim) {
    int r = 0;
    for (; r + 8 <= nq; r += 8) { /* eight chains: an add's latency hidden by the other seven */
        __m256 a[8];
        for (int c = 0; c < 8; c++)
            a[c] = _mm256_setzero_ps();
        for (int i = 0; i < head_dim; i++) {
            __m256 k = _mm256_loadu_ps(kt + 8 * i);
            for (int c = 0; c < 8; c++)
                a[c] = _mm256_add_ps(a[c], _mm256_mul_ps(_mm256_set1_ps(q[r + c][i]), k));
        }
        for (int c = 0; c < 8; c++)
            _mm256_storeu_ps(s + 8 * (r + c), a[c]);
    }
    for (; r + 4 <= nq; r += 4) { /* four independent chains of adds in flight */
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < head_dim; i++) {
            __m256 k = _mm256_loadu_ps(kt + 8 * i);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_set1_ps(q[r][i]), k));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_set1_ps(q[r + 1][i]), k));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(_mm256_set1_ps(q[r + 2][i]), k));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(_mm256_set1_ps(q[r + 3][i]), k));
        }
        _mm256_storeu_ps(s + 8 * r, a0);
        _mm256_storeu_ps(s + 8 * (r + 1), a1);
        _mm256_storeu_ps(s + 8 * (r + 2), a2);
        _mm256_storeu_ps(s + 8 * (r + 3), a3);
    }
    for (; r < nq; r++)
        attn_scores8t_avx2(s + 8 * r, q[r], kt, head_dim);
}

TARGET void attn_accum8_avx2(float *out, bool rescale, float shrink, const float w[8], int n,
                             const void *v, bool f16, size_t stride, int head_dim) {
    const float *vf = v;
    const uint16_t *vh = v;
    const __m256 sh = _mm256_set1_ps(shrink);
    int i = 0;
    for (; i + 64 <= head_dim; i += 64) { /* eight chunks: eight independent chains in flight */
        __m256 o[8];
        for (int c = 0; c < 8; c++) {
            o[c] = _mm256_loadu_ps(out + i + 8 * c);
            if (rescale) o[c] = _mm256_mul_ps(o[c], sh);
        }
        for (int j = 0; j < n; j++) {
            const __m256 wj = _mm256_set1_ps(w[j]);
            for (int c = 0; c < 8; c++) {
                const size_t at = (size_t)j * stride + i + 8 * c;
                __m256 x = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vh + at)))
                               : _mm256_loadu_ps(vf + at);
                o[c] = _mm256_add_ps(o[c], _mm256_mul_ps(wj, x));
            }
        }
        for (int c = 0; c < 8; c++)
            _mm256_storeu_ps(out + i + 8 * c, o[c]);
    }
    for (; i + 32 <= head_dim; i += 32) { /* four chunks: four independent chains in flight */
        __m256 o[4];
        for (int c = 0; c < 4; c++) {
            o[c] = _mm256_loadu_ps(out + i + 8 * c);
            if (rescale) o[c] = _mm256_mul_ps(o[c], sh);
        }
        for (int j = 0; j < n; j++) {
            const __m256 wj = _mm256_set1_ps(w[j]);
            for (int c = 0; c < 4; c++) {
                const size_t at = (size_t)j * stride + i + 8 * c;
                __m256 x = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vh + at)))
                               : _mm256_loadu_ps(vf + at);
                o[c] = _mm256_add_ps(o[c], _mm256_mul_ps(wj, x));
            }
        }
        for (int c = 0; c < 4; c++)
            _mm256_storeu_ps(out + i + 8 * c, o[c]);
    }
    for (; i + 8 <= head_dim; i += 8) {
        __m256 o = _mm256_loadu_ps(out + i);
        if (rescale) o = _mm256_mul_ps(o, sh);
        for (int j = 0; j < n; j++) {
            const size_t at = (size_t)j * stride + i;
            __m256 x = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vh + at)))
                           : _mm256_loadu_ps(vf + at);
            o = _mm256_add_ps(o, _mm256_mul_ps(_mm256_set1_ps(w[j]), x));
        }
        _mm256_storeu_ps(out + i, o);
    }
    for (; i < head_dim; i++) {
        float x = out[i];
        if (rescale) x *= shrink;
        for (int j = 0; j < n; j++) {
            const size_t at = (size_t)j * stride + i;
            x += w[j] * (f16 ? f16_to_f32(vh[at]) : vf[at]);
        }
        out[i] = x;
    }
}

TARGET void attn_f16_rows_avx2(float *out, const uint16_t *v, size_t stride, int nr, int n) {
    for (int j = 0; j < nr; j++) {
        const uint16_t *row = v + (size_t)j * stride;
        float *o = out + (size_t)j * n;
        int i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(o + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + i))));
        for (; i < n; i++)
            o[i] = f16_to_f32(row[i]);
    }
}

TARGET void attn_exp8_avx2(float out[8], const float x[8]) {
    _mm256_storeu_ps(out, exp8(_mm256_loadu_ps(x)));
}

TARGET bool attn_softmax8_avx2(float w[8], float *shrink, float *max, float sum[8],
                               const float s[8], float scale) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s), _mm256_set1_ps(scale));
    /* attn_softmax8's tree: lanes j and j + 4, then j and j + 2, then 0 and 1 */
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    const float bm = _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps(m2, m2, 1)));
    __m256 sm = _mm256_loadu_ps(sum);
    const bool rescale = bm > *max;
    if (rescale) {
        *shrink = _mm_cvtss_f32(_mm256_castps256_ps128(exp8(_mm256_set1_ps(*max - bm))));
        sm = _mm256_mul_ps(sm, _mm256_set1_ps(*shrink));
        *max = bm;
    }
    const __m256 wv = exp8(_mm256_sub_ps(v, _mm256_set1_ps(*max)));
    _mm256_storeu_ps(w, wv);
    _mm256_storeu_ps(sum, _mm256_add_ps(sm, wv));
    return rescale;
}

/* A block's F16 scale as F32 by F16C: exact, as f16_to_f32 (every half is a float). */
INLINE __m256 q8_0_scale(const block_q8_0 *b) {
    return _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(b->d)));
}

/* 8 elements c.. of a Q8_0 block as F32: d * q, exact. */
INLINE __m256 q8_0_8(const block_q8_0 *b, __m256 d, int c) {
    __m128i q8 = _mm_loadl_epi64((const __m128i *)(b->qs + c));
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)));
}

TARGET void attn_keys8_t_q8_0_avx2(float *kt, const void *k, size_t row_bytes, int head_dim) {
    for (int b = 0; b < head_dim / QK; b++) {
        const block_q8_0 *blk[8];
        __m256 d[8];
        for (int j = 0; j < 8; j++) {
            blk[j] = (const block_q8_0 *)((const char *)k + (size_t)j * row_bytes) + b;
            d[j] = q8_0_scale(blk[j]);
        }
        for (int c = 0; c < QK; c += 8) {
            __m256 r[8];
            for (int j = 0; j < 8; j++)
                r[j] = q8_0_8(blk[j], d[j], c);
            transpose8(kt + (size_t)(b * QK + c) * 8, r);
        }
    }
}

TARGET void attn_accum8_q8_0_avx2(float *out, bool rescale, float shrink, const float w[8], int n,
                                  const void *v, size_t row_bytes, int head_dim) {
    const __m256 sh = _mm256_set1_ps(shrink);
    for (int b = 0; b < head_dim / QK; b++) { /* one block: four chains of 8 in flight */
        __m256 o[4];
        for (int c = 0; c < 4; c++) {
            o[c] = _mm256_loadu_ps(out + b * QK + 8 * c);
            if (rescale) o[c] = _mm256_mul_ps(o[c], sh);
        }
        for (int j = 0; j < n; j++) {
            const block_q8_0 *blk =
                (const block_q8_0 *)((const char *)v + (size_t)j * row_bytes) + b;
            const __m256 d = q8_0_scale(blk);
            const __m256 wj = _mm256_set1_ps(w[j]);
            for (int c = 0; c < 4; c++) {
                __m256 x = q8_0_8(blk, d, 8 * c);
                o[c] = _mm256_add_ps(o[c], _mm256_mul_ps(wj, x));
            }
        }
        for (int c = 0; c < 4; c++)
            _mm256_storeu_ps(out + b * QK + 8 * c, o[c]);
    }
}

TARGET void attn_dequant_q8_0_avx2(float *out, const void *blocks, int n) {
    const block_q8_0 *b = blocks;
    for (int i = 0; i < n / QK; i++, b++) {
        const __m256 d = _mm256_set1_ps(f16_to_f32(b->d));
        for (int c = 0; c < QK; c += 8) {
            __m128i q8 = _mm_loadl_epi64((const __m128i *)(b->qs + c));
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
            _mm256_storeu_ps(out + (size_t)i * QK + c, _mm256_mul_ps(d, q));
        }
    }
}

TARGET void attn_scale_avx2(float *out, float c, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(out + i), _mm256_set1_ps(c)));
    for (; i < n; i++)
        out[i] *= c;
}

TARGET void attn_axpy_avx2(float *out, float w, const void *v, bool f16, int n) {
    int i = 0;
    const __m256 wv = _mm256_set1_ps(w);
    for (; i + 8 <= n; i += 8) {
        __m256 x =
            f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)v + i)))
                : _mm256_loadu_ps((const float *)v + i);
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), _mm256_mul_ps(wv, x)));
    }
    for (; i < n; i++)
        out[i] += w * (f16 ? f16_to_f32(((const uint16_t *)v)[i]) : ((const float *)v)[i]);
}

/* Rows r0 .. r0 + NR - 1, elements c0 .. c0 + 8 * NZ - 1 of out: the rescale (rows whose bit
 * is set in resc), then the 8 weighted value rows, each element's operations in the scalar
 * order; the NR x NZ outputs stay in registers across the 8 rows (NR <= 2, NZ <= 4: with the 4
 * value vectors and a weight, 13 of the 16 ymm registers). */
INLINE void values_rows8(float *const *out, int r0, int NR, int NZ, int resc,
                         const float shrink[8], const float w[64], const float *v, int head_dim,
                         int c0) {
    __m256 o[2][4];
    for (int r = 0; r < NR; r++)
        for (int z = 0; z < NZ; z++) {
            o[r][z] = _mm256_loadu_ps(out[r0 + r] + c0 + 8 * z);
            if (resc >> (r0 + r) & 1)
                o[r][z] = _mm256_mul_ps(o[r][z], _mm256_set1_ps(shrink[r0 + r]));
        }
    for (int j = 0; j < 8; j++) {
        __m256 x[4];
        for (int z = 0; z < NZ; z++)
            x[z] = _mm256_loadu_ps(v + (size_t)j * head_dim + c0 + 8 * z);
        for (int r = 0; r < NR; r++) {
            const __m256 wr = _mm256_set1_ps(w[j * 8 + r0 + r]);
            for (int z = 0; z < NZ; z++)
                o[r][z] = _mm256_add_ps(o[r][z], _mm256_mul_ps(wr, x[z]));
        }
    }
    for (int r = 0; r < NR; r++)
        for (int z = 0; z < NZ; z++)
            _mm256_storeu_ps(out[r0 + r] + c0 + 8 * z, o[r][z]);
}

/* values_rows8 over the whole row (32 elements at a time, then 8) with NR a constant. */
INLINE void values_group8(float *const *out, int r0, int NR, int resc, const float shrink[8],
                          const float w[64], const float *v, int head_dim) {
    int c0 = 0;
    for (; c0 + 32 <= head_dim; c0 += 32)
        values_rows8(out, r0, NR, 4, resc, shrink, w, v, head_dim, c0);
    for (; c0 < head_dim; c0 += 8)
        values_rows8(out, r0, NR, 1, resc, shrink, w, v, head_dim, c0);
}

/* s[j] (lanes: rows) = sum over i in order of qt[i] * k[j][i]: 8 add chains in flight. */
INLINE void scores_rows8(__m256 s[8], const float *qt, const float *k, int head_dim) {
    for (int j = 0; j < 8; j++)
        s[j] = _mm256_setzero_ps();
    for (int i = 0; i < head_dim; i++) {
        const __m256 qi = _mm256_loadu_ps(qt + 8 * i);
        for (int j = 0; j < 8; j++)
            s[j] = _mm256_add_ps(s[j], _mm256_mul_ps(qi, _mm256_set1_ps(k[j * head_dim + i])));
    }
}

/* The scores and attn_softmax8 of one block of 8 positions for 8 query rows in lanes (the
 * block step attn_block8_avx2's): max and sumt updated, w[j * 8 + r] = row r's weight of
 * position j, shrink[r] row r's rescale where bit r of the result is set (the rows that
 * rescale). */
INLINE int attn_lanes_weights(float shrink[8], float w[64], const float *qt, float max[8],
                              float sumt[64], const float *k, int head_dim, float scale) {
    __m256 s[8], sm[8];
    scores_rows8(s, qt, k, head_dim);
    /* attn_softmax8, row r in lane r: the same operations on each lane */
    const __m256 sc = _mm256_set1_ps(scale);
    for (int j = 0; j < 8; j++) {
        s[j] = _mm256_mul_ps(s[j], sc);
        sm[j] = _mm256_loadu_ps(sumt + 8 * j);
    }
    /* its max tree: j and j + 4, then 0 and 2, 1 and 3, then the two */
    __m256 m4[4];
    for (int j = 0; j < 4; j++)
        m4[j] = _mm256_max_ps(s[j], s[j + 4]);
    const __m256 bm = _mm256_max_ps(_mm256_max_ps(m4[0], m4[2]), _mm256_max_ps(m4[1], m4[3]));
    __m256 mx = _mm256_loadu_ps(max);
    const __m256 up = _mm256_cmp_ps(bm, mx, _CMP_GT_OQ);
    const int resc = _mm256_movemask_ps(up);
    if (resc) { /* lanes that do not rescale keep their sums and max */
        const __m256 sh = exp8(_mm256_sub_ps(mx, bm));
        _mm256_storeu_ps(shrink, sh);
        for (int j = 0; j < 8; j++)
            sm[j] = _mm256_blendv_ps(sm[j], _mm256_mul_ps(sm[j], sh), up);
        mx = _mm256_blendv_ps(mx, bm, up);
        _mm256_storeu_ps(max, mx);
    }
    for (int j = 0; j < 8; j++) {
        const __m256 wj = exp8(_mm256_sub_ps(s[j], mx));
        _mm256_storeu_ps(w + 8 * j, wj);
        _mm256_storeu_ps(sumt + 8 * j, _mm256_add_ps(sm[j], wj));
    }
    return resc;
}

/* attn_block8_avx2's body, inlined once per head_dim the models use (see there). */
INLINE void block8_avx2(float *const *out, int nr, const float *qt, float max[8], float sumt[64],
                        const float *k, const float *v, int head_dim, float scale) {
    float shrink[8], w[64];
    const int resc = attn_lanes_weights(shrink, w, qt, max, sumt, k, head_dim, scale);
    int r0 = 0;
    for (; r0 + 2 <= nr; r0 += 2)
        values_group8(out, r0, 2, resc, shrink, w, v, head_dim);
    if (r0 < nr)
        values_group8(out, r0, 1, resc, shrink, w, v, head_dim);
}

TARGET void attn_block8_avx2(float *const *out, int nr, const float *qt, float max[8],
                             float sumt[64], const float *k, const float *v, int head_dim,
                             float scale) {
    /* a constant head_dim unrolls the scores' loop and addresses the key rows from one base */
    if (head_dim == 64)
        block8_avx2(out, nr, qt, max, sumt, k, v, 64, scale);
    else if (head_dim == 128)
        block8_avx2(out, nr, qt, max, sumt, k, v, 128, scale);
    else
        block8_avx2(out, nr, qt, max, sumt, k, v, head_dim, scale);
}

#else /* not x86: forward.c runs its scalar loops */

void attn_keys8_t_avx2(float *kt, const void *k, bool f16, size_t stride, int head_dim) {
    (void)kt, (void)k, (void)f16, (void)stride, (void)head_dim;
}
void attn_scores8t_avx2(float s[8], const float *q, const float *kt, int head_dim) {
    (void)s, (void)q, (void)kt, (void)head_dim;
}
void attn_scores8t_rows_avx2(float *s, const float *const *q, int nq, const float *kt,
                             int head_dim) {
    (void)s, (void)q, (void)nq, (void)kt, (void)head_dim;
}
void attn_accum8_avx2(float *out, bool rescale, float shrink, const float w[8], int n,
                      const void *v, bool f16, size_t stride, int head_dim) {
    (void)out, (void)rescale, (void)shrink, (void)w, (void)n, (void)v, (void)f16, (void)stride;
    (void)head_dim;
}
void attn_f16_rows_avx2(float *out, const uint16_t *v, size_t stride, int nr, int n) {
    (void)out, (void)v, (void)stride, (void)nr, (void)n;
}
void attn_exp8_avx2(float out[8], const float x[8]) {
    (void)out, (void)x;
}
bool attn_softmax8_avx2(float w[8], float *shrink, float *max, float sum[8], const float s[8],
                        float scale) {
    (void)w, (void)shrink, (void)max, (void)sum, (void)s, (void)scale;
    return false;
}
void attn_keys8_t_q8_0_avx2(float *kt, const void *k, size_t row_bytes, int head_dim) {
    (void)kt, (void)k, (void)row_bytes, (void)head_dim;
}
void attn_accum8_q8_0_avx2(float *out, bool rescale, float shrink, const float w[8], int n,
                           const void *v, size_t row_bytes, int head_dim) {
    (void)out, (void)rescale, (void)shrink, (void)w, (void)n, (void)v, (void)row_bytes;
    (void)head_dim;
}
void attn_dequant_q8_0_avx2(float *out, const void *blocks, int n) {
    (void)out, (void)blocks, (void)n;
}
void attn_scale_avx2(float *out, float c, int n) {
    (void)out, (void)c, (void)n;
}
void attn_axpy_avx2(float *out, float w, const void *v, bool f16, int n) {
    (void)out, (void)w, (void)v, (void)f16, (void)n;
}

void attn_block8_avx2(float *const *out, int nr, const float *qt, float max[8], float sumt[64],
                      const float *k, const float *v, int head_dim, float scale) {
    (void)out, (void)nr, (void)qt, (void)max, (void)sumt, (void)k, (void)v, (void)head_dim;
    (void)scale;
}

#endif
