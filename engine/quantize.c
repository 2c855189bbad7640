/* quantize: float rows to the block types of tensor.h, written from the formats' descriptions.
 * Each (sub-)block gets round-to-nearest codes under the scale (and min) that a small search
 * finds with the least squared error: a few dozen candidate scales, each followed by a least
 * squares refit of scale and min to the codes it gave. The K-quants then quantize their
 * sub-block scales against one F16 super-block scale and choose the codes again under the
 * scales as stored. No I/O, no allocation; thread-safe. */
#include "quantize.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#define N_CAND 31  /* candidate scales per fit */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* (int)lrintf(v) (to nearest, ties to even) for |v| < 2^22, without the library call the fits
 * made a few dozen times per element: adding 1.5 * 2^23 leaves no fraction bits, so the float
 * add rounds v to an integer, and subtracting it again is exact. The fits' arguments stay
 * within a code range of the scale they try (|v| <= 128.5); NaN (from NaN weights) gives 0, as
 * lrintf's result did once cast, and larger magnitudes +-2^22, which every caller clamps. */
static int round_small(float v) {
    if (!(v > -0x1p22f && v < 0x1p22f)) return v > 0.0f ? 1 << 22 : v < 0.0f ? -(1 << 22) : 0;
    return (int)((v + 0x1.8p23f) - 0x1.8p23f);
}
static float f16_round(float f) { return f16_to_f32(f32_to_f16(f)); }

/* Symmetric codes q in [qmin, qmax] (qmin = -qmax - 1) with value = s * q: the scale that maps
 * the element of largest magnitude to a code magnitude between qmax - 1.5 and -qmin + 0.5, on
 * either side, refitted by least squares (s = <x,q> / <q,q>); the one with the least error.
 * Returns s (0 for an all-zero block). */
static float fit_symmetric(const float *x, int n, int qmin, int qmax) {
    float amax = 0.0f;
    double sxx = 0.0;
    for (int i = 0; i < n; i++) {
        amax = fmaxf(amax, fabsf(x[i]));
        sxx += (double)x[i] * x[i];
    }
    if (amax == 0.0f) return 0.0f;
    double best_err = INFINITY;
    float best = amax / (float)-qmin;
    for (int sign = -1; sign <= 1; sign += 2)
        for (int k = 0; k < N_CAND; k++) {
            const float iscale = (float)sign * ((float)-qmin + 0.5f - 0.1f * (float)k) / amax;
            double sxq = 0.0, sqq = 0.0;
            for (int i = 0; i < n; i++) {
                const int q = clampi(round_small(iscale * x[i]), qmin, qmax);
                sxq += (double)x[i] * q;
                sqq += (double)q * q;
            }
            if (sqq == 0.0) continue;
            const double err = sxx - sxq * sxq / sqq; /* the error at the refitted scale */
            if (err < best_err) {
                best_err = err;
                best = (float)(sxq / sqq);
            }
        }
    return best;
}

/* Affine codes q in [0, qmax] with value = s * q + off: candidate scales spread the block's
 * range over qmax - 1 .. qmax + 1 steps, each refitted by least squares in (s, off). With
 * min_nonpos the offset is kept <= 0 (the K-quants store it as a non-negative min to subtract),
 * and the range always includes 0. */
static void fit_affine(const float *x, int n, int qmax, bool min_nonpos, float *s_out,
                       float *off_out) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
    }
    if (min_nonpos && mn > 0.0f) mn = 0.0f;
    assert(n <= QK);
    *s_out = 0.0f;
    *off_out = mn;
    if (mx <= mn) return; /* a constant block: the offset alone */
    double best_err = INFINITY;
    for (int k = 0; k < N_CAND; k++) {
        const float iscale = ((float)qmax - 1.0f + (2.0f * (float)k) / (N_CAND - 1)) / (mx - mn);
        double sq = 0.0, sqq = 0.0, sx = 0.0, sqx = 0.0;
        int qs[QK]; /* the codes again for the error below */
        for (int i = 0; i < n; i++) {
            const int q = clampi(round_small(iscale * (x[i] - mn)), 0, qmax);
            qs[i] = q;
            sq += q;
            sqq += (double)q * q;
            sx += x[i];
            sqx += (double)q * x[i];
        }
        const double det = n * sqq - sq * sq;
        if (det <= 0.0) continue;
        double s = (n * sqx - sq * sx) / det, off = (sqq * sx - sq * sqx) / det;
        if (min_nonpos && off > 0.0) {
            off = 0.0;
            s = sqx / sqq;
        }
        if (s <= 0.0) continue;
        double err = 0.0;
        for (int i = 0; i < n; i++) {
            const double e = x[i] - (s * qs[i] + off);
            err += e * e;
        }
        if (err < best_err) {
            best_err = err;
            *s_out = (float)s;
            *off_out = (float)off;
        }
    }
}

/* IQ4_NL's table: value = s * iq4_levels[idx]; the nearest level, the lower index on a tie. */
static int iq4_nearest(float v) {
    if (fabsf(v) <= 256.0f) {
        /* The levels are ascending integers at least 9 apart, so within this range the
         * rounded distances fall towards v and rise past it, and only the level at or below v
         * (lo: how many levels after the first are at most floor(v)) and the one above can be
         * nearest; counting is branch-free, as the fits' several dozen tries per element need
         * (random data mispredicts a search). The same answer as the full scan below. */
        int f = (int)v;
        f -= (float)f > v;                       /* floor(v) */
        f = f < -128 ? -128 : f > 127 ? 127 : f; /* the levels lie within int8's range */
        int lo = 0;
        for (int i = 1; i < 16; i++) lo += iq4_levels[i] <= f;
        const int up = lo + (lo < 15); /* (below level 0, lo = 0 is nearer than up = 1) */
        const float d_lo = fabsf(v - (float)iq4_levels[lo]);
        return fabsf(v - (float)iq4_levels[up]) < d_lo ? up : lo;
    }
    int best = 0;
    for (int i = 1; i < 16; i++)
        if (fabsf(v - (float)iq4_levels[i]) < fabsf(v - (float)iq4_levels[best])) best = i;
    return best;
}

/* As fit_symmetric over IQ4_NL's 16 levels: candidate scales map the largest magnitude to
 * a level magnitude between 98 and 128 on either side; each refitted by least squares. */
static float fit_iq4(const float *x, int n) {
    float amax = 0.0f;
    double sxx = 0.0;
    for (int i = 0; i < n; i++) {
        amax = fmaxf(amax, fabsf(x[i]));
        sxx += (double)x[i] * x[i];
    }
    if (amax == 0.0f) return 0.0f;
    double best_err = INFINITY;
    float best = amax / -127.0f;
    for (int sign = -1; sign <= 1; sign += 2)
        for (int k = 0; k < N_CAND; k++) {
            const float iscale = (float)sign * (128.0f - (float)k) / amax;
            double sxl = 0.0, sll = 0.0;
            for (int i = 0; i < n; i++) {
                const float l = (float)iq4_levels[iq4_nearest(iscale * x[i])];
                sxl += (double)x[i] * l;
                sll += (double)l * l;
            }
            const double err = sxx - sxl * sxl / sll;
            if (sll > 0.0 && err < best_err) {
                best_err = err;
                best = (float)(sxl / sll);
            }
        }
    return best;
}

/* Codes of x under a stored scale s: round(x / s) clamped, 0 where s is 0. */
static int code_sym(float x, float s, int qmin, int qmax) {
    return s == 0.0f ? 0 : clampi((int)lrintf(x / s), qmin, qmax);
}
static int code_affine(float x, float s, float off, int qmax) {
    return s == 0.0f ? 0 : clampi((int)lrintf((x - off) / s), 0, qmax);
}

/* ---- the 32-element types -------------------------------------------------------------- */

/* Q4_0 and Q5_0 (bits 4 or 5): symmetric codes stored as code + 8 or code + 16. */
static void quant_q4_0_q5_0(uint8_t *out, const float *x, int bits) {
    const int half = 1 << (bits - 1);
    const float s = f16_round(fit_symmetric(x, QK, -half, half - 1));
    const uint16_t d = f32_to_f16(s);
    memcpy(out, &d, 2);
    uint8_t *qs = out + (bits == 4 ? 2 : 6); /* Q5_0: d, qh[4], qs */
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
        const int lo = code_sym(x[j], s, -half, half - 1) + half;
        const int hi = code_sym(x[j + QK / 2], s, -half, half - 1) + half;
        qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
        qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + QK / 2);
    }
    if (bits == 5)
        for (int b = 0; b < 4; b++) out[2 + b] = (uint8_t)(qh >> (8 * b));
}

/* Q4_1 and Q5_1: affine codes, value = d * code + m. */
static void quant_q4_1_q5_1(uint8_t *out, const float *x, int bits) {
    const int qmax = (1 << bits) - 1;
    float s, off;
    fit_affine(x, QK, qmax, false, &s, &off);
    const uint16_t d = f32_to_f16(s), m = f32_to_f16(off);
    s = f16_to_f32(d);
    off = f16_to_f32(m);
    memcpy(out, &d, 2);
    memcpy(out + 2, &m, 2);
    uint8_t *qs = out + (bits == 4 ? 4 : 8);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
        const int lo = code_affine(x[j], s, off, qmax), hi = code_affine(x[j + 16], s, off, qmax);
        qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
        qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + QK / 2);
    }
    if (bits == 5)
        for (int b = 0; b < 4; b++) out[4 + b] = (uint8_t)(qh >> (8 * b));
}

static void quant_iq4_nl(block_iq4_nl *b, const float *x) {
    const float s = f16_round(fit_iq4(x, QK));
    b->d = f32_to_f16(s);
    for (int j = 0; j < QK / 2; j++) {
        const int lo = s == 0.0f ? 0 : iq4_nearest(x[j] / s);
        const int hi = s == 0.0f ? 0 : iq4_nearest(x[j + 16] / s);
        b->qs[j] = (uint8_t)(lo | hi << 4);
    }
}

/* ---- the super-block types ------------------------------------------------------------- */

/* Signed sub-block scales s[n] as integers sc in [-2^(bits-1), 2^(bits-1) - 1] times one F16
 * super-block scale (the largest magnitude maps to the most negative integer). Returns the
 * stored super-block scale; sc receives the integers. */
static float super_signed(const float *s, int n, int bits, int *sc) {
    float vmax = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(s[j]) > fabsf(vmax)) vmax = s[j];
    const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
    const float d = f16_round(vmax / (float)lo);
    for (int j = 0; j < n; j++) sc[j] = d == 0.0f ? 0 : clampi((int)lrintf(s[j] / d), lo, hi);
    return d;
}

/* Non-negative sub-block scales or mins as integers in [0, 2^bits - 1] times one F16 scale. */
static float super_unsigned(const float *s, int n, int bits, int *sc) {
    float vmax = 0.0f;
    for (int j = 0; j < n; j++) vmax = fmaxf(vmax, s[j]);
    const int top = (1 << bits) - 1;
    const float d = f16_round(vmax / (float)top);
    for (int j = 0; j < n; j++) sc[j] = d == 0.0f ? 0 : clampi((int)lrintf(s[j] / d), 0, top);
    return d;
}

/* Q2_K, Q4_K and Q5_K: n_sub affine sub-blocks (value = d * sc * q - dmin * m) with scales and
 * mins of sbits bits. Fills d, dmin, sc[], m[] and the codes q[256]. */
static void affine_super(const float *x, int n_sub, int qmax, int sbits, uint16_t *d16,
                         uint16_t *dmin16, int *sc, int *m, uint8_t *q) {
    const int len = QK_K / n_sub;
    float s[16], mins[16];
    for (int j = 0; j < n_sub; j++) {
        float off;
        fit_affine(x + j * len, len, qmax, true, &s[j], &off);
        mins[j] = -off;
    }
    const float d = super_unsigned(s, n_sub, sbits, sc);
    const float dmin = super_unsigned(mins, n_sub, sbits, m);
    *d16 = f32_to_f16(d);
    *dmin16 = f32_to_f16(dmin);
    for (int j = 0; j < n_sub; j++)
        for (int i = 0; i < len; i++)
            q[j * len + i] = (uint8_t)code_affine(x[j * len + i], d * (float)sc[j],
                                                  -dmin * (float)m[j], qmax);
}

static void quant_q2_K(block_q2_K *b, const float *x) {
    int sc[16], m[16];
    uint8_t q[QK_K];
    affine_super(x, 16, 3, 4, &b->d, &b->dmin, sc, m, q);
    for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)(sc[j] | m[j] << 4);
    memset(b->qs, 0, sizeof b->qs);
    /* element 128 h + 32 k + l: bits 2k of qs[32 h + l] */
    for (int i = 0; i < QK_K; i++)
        b->qs[32 * (i / 128) + i % 32] |= (uint8_t)(q[i] << (2 * ((i % 128) / 32)));
}

/* The 12 scale bytes of Q4_K/Q5_K from 8 six-bit scales and mins (k4_scale_min's inverse). */
static void pack_k4_scales(uint8_t *q, const int *sc, const int *m) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        q[j + 4] = (uint8_t)(m[j] | (m[j + 4] >> 4) << 6);
        q[j + 8] = (uint8_t)((sc[j + 4] & 0x0f) | (m[j + 4] & 0x0f) << 4);
    }
}

static void quant_q4_K_q5_K(uint8_t *out, const float *x, bool q5) {
    int sc[8], m[8];
    uint8_t q[QK_K];
    uint16_t d, dmin;
    affine_super(x, 8, q5 ? 31 : 15, 6, &d, &dmin, sc, m, q);
    block_q4_K *b4 = (block_q4_K *)out;
    block_q5_K *b5 = (block_q5_K *)out;
    uint8_t *scales = q5 ? b5->scales : b4->scales, *qs = q5 ? b5->qs : b4->qs;
    memcpy(out, &d, 2);
    memcpy(out + 2, &dmin, 2);
    pack_k4_scales(scales, sc, m);
    if (q5) memset(b5->qh, 0, sizeof b5->qh);
    /* element 64 p + 32 half + l: nibble half of qs[32 p + l]; Q5_K's bit 4 is bit 2p + half
     * of qh[l] */
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++) {
            const int lo = q[64 * p + l], hi = q[64 * p + 32 + l];
            qs[32 * p + l] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            if (q5) b5->qh[l] |= (uint8_t)((lo >> 4) << (2 * p) | (hi >> 4) << (2 * p + 1));
        }
}

static void quant_q3_K(block_q3_K *b, const float *x) {
    float s[16];
    int sc[16];
    for (int j = 0; j < 16; j++) s[j] = fit_symmetric(x + 16 * j, 16, -4, 3);
    const float d = super_signed(s, 16, 6, sc);
    b->d = f32_to_f16(d);
    memset(b->scales, 0, sizeof b->scales);
    for (int i = 0; i < 16; i++) { /* the layout q3_K_scales reads */
        const int v = sc[i] + 32;
        b->scales[i % 8] |= (uint8_t)((v & 0x0f) << (i < 8 ? 0 : 4));
        b->scales[8 + i % 4] |= (uint8_t)((v >> 4) << (2 * (i / 4)));
    }
    memset(b->qs, 0, sizeof b->qs);
    memset(b->hmask, 0, sizeof b->hmask);
    for (int i = 0; i < QK_K; i++) {
        const int u = code_sym(x[i], d * (float)sc[i / 16], -4, 3) + 4; /* 0..7 */
        const int h = i / 128, k = (i % 128) / 32, l = i % 32;
        b->qs[32 * h + l] |= (uint8_t)((u & 3) << (2 * k));
        if (u >> 2) b->hmask[l] |= (uint8_t)(1 << (4 * h + k));
    }
}

static void quant_q6_K(block_q6_K *b, const float *x) {
    float s[16];
    int sc[16];
    for (int j = 0; j < 16; j++) s[j] = fit_symmetric(x + 16 * j, 16, -32, 31);
    const float d = super_signed(s, 16, 8, sc);
    b->d = f32_to_f16(d);
    for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)sc[j];
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int i = 0; i < QK_K; i++) {
        const int u = code_sym(x[i], d * (float)sc[i / 16], -32, 31) + 32; /* 0..63 */
        const int h = i / 128, k = (i % 128) / 32, l = i % 32;
        b->ql[64 * h + 32 * (k % 2) + l] |= (uint8_t)((u & 0x0f) << (k < 2 ? 0 : 4));
        b->qh[32 * h + l] |= (uint8_t)((u >> 4) << (2 * k));
    }
}

static void quant_iq4_xs(block_iq4_xs *b, const float *x) {
    float s[8];
    int sc[8];
    for (int j = 0; j < 8; j++) s[j] = fit_iq4(x + 32 * j, 32);
    const float d = super_signed(s, 8, 6, sc);
    b->d = f32_to_f16(d);
    b->scales_h = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int ib = 0; ib < 8; ib++) {
        const int ls = sc[ib] + 32;
        b->scales_l[ib / 2] |= (uint8_t)((ls & 0x0f) << (4 * (ib % 2)));
        b->scales_h |= (uint16_t)((ls >> 4) << (2 * ib));
        const float dl = d * (float)sc[ib];
        const float *xb = x + 32 * ib;
        for (int j = 0; j < 16; j++) {
            const int lo = dl == 0.0f ? 0 : iq4_nearest(xb[j] / dl);
            const int hi = dl == 0.0f ? 0 : iq4_nearest(xb[j + 16] / dl);
            b->qs[16 * ib + j] = (uint8_t)(lo | hi << 4);
        }
    }
}

int quant_row(void *out, const float *x, dtype t, int64_t n) {
    const int be = dtype_block_elems(t);
    const size_t bb = dtype_block_bytes(t);
    if (be == 0) return -1;
    assert(n % be == 0); /* whole blocks only: the callers choose types that divide the row */
    uint8_t *o = out;
    for (int64_t i = 0; i < n / be && be > 1; i++) {
        const float *xb = x + i * be;
        uint8_t *ob = o + (size_t)i * bb;
        switch (t) {
        case DT_Q8_0: quantize_row_q8_0((block_q8_0 *)ob, xb, QK); break;
        case DT_Q4_0: quant_q4_0_q5_0(ob, xb, 4); break;
        case DT_Q5_0: quant_q4_0_q5_0(ob, xb, 5); break;
        case DT_Q4_1: quant_q4_1_q5_1(ob, xb, 4); break;
        case DT_Q5_1: quant_q4_1_q5_1(ob, xb, 5); break;
        case DT_IQ4_NL: quant_iq4_nl((block_iq4_nl *)ob, xb); break;
        case DT_Q2_K: quant_q2_K((block_q2_K *)ob, xb); break;
        case DT_Q3_K: quant_q3_K((block_q3_K *)ob, xb); break;
        case DT_Q4_K: quant_q4_K_q5_K(ob, xb, false); break;
        case DT_Q5_K: quant_q4_K_q5_K(ob, xb, true); break;
        case DT_Q6_K: quant_q6_K((block_q6_K *)ob, xb); break;
        case DT_IQ4_XS: quant_iq4_xs((block_iq4_xs *)ob, xb); break;
        default: return -1;
        }
    }
    return be > 1 ? 0 : quantize_row(out, x, t, n); /* F32, F16, BF16 */
}
