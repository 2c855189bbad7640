/* quant_dot: the scalar dot products of the block types beyond Q8_0/Q4_0 (Q4_1, Q5_0, Q5_1,
 * IQ4_NL against 32-element activation blocks; Q2_K..Q6_K and IQ4_XS against 256-element
 * ones), and the 256-element activation quantizer. Each is the readable reference and the
 * test oracle of its SIMD twin: every block's sum is an exact integer, and the float steps per
 * block are written out once here, so a vector kernel that computes the same integers and then
 * these steps gives the same bits. Never allocates. */
#include "matmul.h"

#include <math.h>
#include <string.h>

void quantize_row_q8_K(block_q8_K *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *xb = x + i * QK_K;
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        out[i].d = d;
        for (int j = 0; j < QK_K; j++) out[i].qs[j] = (int8_t)lrintf(xb[j] * id);
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += out[i].qs[16 * g + j];
            out[i].bsums[g] = (int16_t)s;
        }
    }
}

/* Sum of a 32-element activation block's codes (the offset term of Q4_1/Q5_1). */
static int32_t act_sum(const block_q8_act *x) {
    int32_t s = 0;
    for (int j = 0; j < QK; j++) s += x->qs[j];
    return s;
}

float dot_q4_1(const block_q4_1 *w, const block_q8_act *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < QK / 2; j++) {
            isum += (w[b].qs[j] & 0x0f) * (int32_t)x[b].qs[j];
            isum += (w[b].qs[j] >> 4) * (int32_t)x[b].qs[j + QK / 2];
        }
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d) +
               (float)act_sum(&x[b]) * (f16_to_f32(w[b].m) * x[b].d);
    }
    return sum;
}

float dot_q5_0(const block_q5_0 *w, const block_q8_act *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < QK; j++) isum += (q5_code(w[b].qh, w[b].qs, j) - 16) * x[b].qs[j];
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d);
    }
    return sum;
}

float dot_q5_1(const block_q5_1 *w, const block_q8_act *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < QK; j++) isum += q5_code(w[b].qh, w[b].qs, j) * x[b].qs[j];
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d) +
               (float)act_sum(&x[b]) * (f16_to_f32(w[b].m) * x[b].d);
    }
    return sum;
}

float dot_iq4_nl(const block_iq4_nl *w, const block_q8_act *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int32_t isum = 0;
        for (int j = 0; j < QK / 2; j++) {
            isum += iq4_levels[w[b].qs[j] & 0x0f] * (int32_t)x[b].qs[j];
            isum += iq4_levels[w[b].qs[j] >> 4] * (int32_t)x[b].qs[j + QK / 2];
        }
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d);
    }
    return sum;
}

/* The K-quants: per super-block, isum = sum over sub-blocks of scale * (codes . x) and, for the
 * types with mins, msum = sum of min * (the sub-block's activation sum, from bsums); then
 * sum += isum * (d * dx) - msum * (dmin * dx). */

float dot_q2_K(const block_q2_K *w, const block_q8_K *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int32_t isum = 0, msum = 0;
        for (int s = 0; s < 16; s++) { /* sub-block s: elements 16s .. 16s + 15 */
            int32_t d16 = 0;
            for (int i = 16 * s; i < 16 * s + 16; i++) {
                const int h = i / 128, k = (i % 128) / 32, l = i % 32;
                d16 += ((w[b].qs[32 * h + l] >> (2 * k)) & 3) * x[b].qs[i];
            }
            isum += (w[b].scales[s] & 0x0f) * d16;
            msum += (w[b].scales[s] >> 4) * x[b].bsums[s];
        }
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d) -
               (float)msum * (f16_to_f32(w[b].dmin) * x[b].d);
    }
    return sum;
}

float dot_q3_K(const block_q3_K *w, const block_q8_K *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int sc[16];
        q3_K_scales(sc, w[b].scales);
        int32_t isum = 0;
        for (int s = 0; s < 16; s++) {
            int32_t d16 = 0;
            for (int i = 16 * s; i < 16 * s + 16; i++) {
                const int h = i / 128, k = (i % 128) / 32, l = i % 32;
                int q = (w[b].qs[32 * h + l] >> (2 * k)) & 3;
                if (!((w[b].hmask[l] >> (4 * h + k)) & 1)) q -= 4;
                d16 += q * x[b].qs[i];
            }
            isum += sc[s] * d16;
        }
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d);
    }
    return sum;
}

/* Q4_K and Q5_K share everything but the fifth bit. */
static float dot_q45_K(const uint8_t *blocks, size_t bb, bool q5, const block_q8_K *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        const block_q4_K *b4 = (const block_q4_K *)(blocks + (size_t)b * bb);
        const block_q5_K *b5 = (const block_q5_K *)b4;
        const uint8_t *scales = q5 ? b5->scales : b4->scales, *qs = q5 ? b5->qs : b4->qs;
        int32_t isum = 0, msum = 0;
        for (int s = 0; s < 8; s++) { /* sub-block s: elements 32s .. 32s + 31 */
            int sc, m;
            k4_scale_min(s, scales, &sc, &m);
            const int p = s / 2, half = s % 2;
            int32_t d32 = 0;
            for (int l = 0; l < 32; l++) {
                int q = half ? qs[32 * p + l] >> 4 : qs[32 * p + l] & 0x0f;
                if (q5) q += ((b5->qh[l] >> s) & 1) << 4;
                d32 += q * x[b].qs[32 * s + l];
            }
            isum += sc * d32;
            msum += m * (x[b].bsums[2 * s] + x[b].bsums[2 * s + 1]);
        }
        const uint16_t d = q5 ? b5->d : b4->d, dmin = q5 ? b5->dmin : b4->dmin;
        sum += (float)isum * (f16_to_f32(d) * x[b].d) - (float)msum * (f16_to_f32(dmin) * x[b].d);
    }
    return sum;
}

float dot_q4_K(const block_q4_K *w, const block_q8_K *x, int n) {
    return dot_q45_K((const uint8_t *)w, sizeof *w, false, x, n);
}

float dot_q5_K(const block_q5_K *w, const block_q8_K *x, int n) {
    return dot_q45_K((const uint8_t *)w, sizeof *w, true, x, n);
}

float dot_q6_K(const block_q6_K *w, const block_q8_K *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int32_t isum = 0;
        for (int s = 0; s < 16; s++) {
            int32_t d16 = 0;
            for (int i = 16 * s; i < 16 * s + 16; i++) {
                const int h = i / 128, k = (i % 128) / 32, l = i % 32;
                const uint8_t lb = w[b].ql[64 * h + 32 * (k % 2) + l];
                const int lo = k < 2 ? lb & 0x0f : lb >> 4;
                const int hi = (w[b].qh[32 * h + l] >> (2 * k)) & 3;
                d16 += ((lo | (hi << 4)) - 32) * x[b].qs[i];
            }
            isum += w[b].scales[s] * d16;
        }
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d);
    }
    return sum;
}

float dot_iq4_xs(const block_iq4_xs *w, const block_q8_K *x, int n) {
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int32_t isum = 0;
        for (int s = 0; s < 8; s++) {
            const int ls = ((w[b].scales_l[s / 2] >> (4 * (s % 2))) & 0x0f) |
                           (((w[b].scales_h >> (2 * s)) & 3) << 4);
            const uint8_t *qs = w[b].qs + 16 * s;
            int32_t d32 = 0;
            for (int j = 0; j < 16; j++) {
                d32 += iq4_levels[qs[j] & 0x0f] * x[b].qs[32 * s + j];
                d32 += iq4_levels[qs[j] >> 4] * x[b].qs[32 * s + j + 16];
            }
            isum += (ls - 32) * d32;
        }
        sum += (float)isum * (f16_to_f32(w[b].d) * x[b].d);
    }
    return sum;
}
