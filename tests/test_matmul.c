/* test_matmul: every matmul path equals its scalar row kernel bit for bit, whatever the thread
 * count and the number of rows in the block; the row kernels agree with double-precision sums
 * over the dequantized operands. Sizes are deliberately awkward. */
#include "check.h"
#include "matmul.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 23) - 1.0f;
}

/* Builds an (n_out, n_in) weight tensor of type t from random values; caller frees t->data. */
static tensor make_weights(dtype t, int n_in, int n_out, unsigned seed) {
    float *w = malloc((size_t)n_in * n_out * sizeof *w);
    uint8_t *data = malloc(dtype_row_bytes(t, n_in) * n_out + 64);
    unsigned s = seed;
    for (int i = 0; i < n_in * n_out; i++) w[i] = frand(&s);
    for (int r = 0; r < n_out; r++) {
        const float *src = w + (size_t)r * n_in;
        uint8_t *dst = data + dtype_row_bytes(t, n_in) * r;
        switch (t) {
        case DT_F32: memcpy(dst, src, (size_t)n_in * 4); break;
        case DT_F16:
            for (int i = 0; i < n_in; i++) ((uint16_t *)dst)[i] = f32_to_f16(src[i]);
            break;
        case DT_BF16:
            for (int i = 0; i < n_in; i++) ((uint16_t *)dst)[i] = f32_to_bf16(src[i]);
            break;
        case DT_Q8_0: quantize_row_q8_0((block_q8_0 *)dst, src, n_in); break;
        case DT_Q4_0: quantize_row_q4_0((block_q4_0 *)dst, src, n_in); break;
        }
    }
    free(w);
    tensor ten = {data, t, 2, {n_in, n_out, 1, 1}};
    return ten;
}

static float row_kernel(const tensor *w, int r, const float *x, const block_q8_act *xq, int n) {
    const void *row = tensor_row(w, r);
    switch (w->type) {
    case DT_F32: return dot_f32(row, x, n);
    case DT_F16: return dot_f16(row, x, n);
    case DT_BF16: return dot_bf16(row, x, n);
    case DT_Q8_0: return dot_q8_0(row, xq, n);
    case DT_Q4_0: return dot_q4_0(row, xq, n);
    }
    return NAN;
}

static void test_type(dtype t, int n_in, int n_out, int T) {
    tensor w = make_weights(t, n_in, n_out, 11u + (unsigned)n_in);
    float *x = malloc((size_t)T * n_in * sizeof *x);
    float *out = malloc((size_t)T * n_out * sizeof *out);
    float *out1 = malloc((size_t)n_out * sizeof *out1);
    float *wrow = malloc((size_t)n_in * sizeof *wrow), *xrow = malloc((size_t)n_in * sizeof *xrow);
    block_q8_act *xq = malloc((size_t)(n_in / QK + 1) * sizeof *xq);
    unsigned s = 99;
    for (int i = 0; i < T * n_in; i++) x[i] = frand(&s) * 3.0f;
    bool quant = t == DT_Q8_0 || t == DT_Q4_0;
    mm_scratch ms;
    CHECK(mm_scratch_init(&ms, T, n_in) == 0, "scratch");
    int mismatches = 0, alone_mismatch = 0, inaccurate = 0;
    for (int threads = 1; threads <= 3; threads++) {
        pool *p = pool_create(threads);
        matmul(out, x, &w, T, &ms, p);
        for (int tt = 0; tt < T; tt++) {
            const float *xt = x + (size_t)tt * n_in;
            if (quant) quantize_row_q8_act(xq, xt, n_in);
            /* the same row alone in a block of one */
            matmul(out1, xt, &w, 1, &ms, p);
            for (int r = 0; r < n_out; r++) {
                float want = row_kernel(&w, r, xt, xq, n_in);
                float got = out[(size_t)tt * n_out + r];
                if (memcmp(&want, &got, 4) != 0) mismatches++;
                if (memcmp(&out1[r], &got, 4) != 0) alone_mismatch++;
                if (threads > 1) continue;
                /* accuracy: the double sum over the dequantized operands */
                dequantize_row(wrow, tensor_row(&w, r), t, n_in);
                double ref = 0, mag = 0;
                for (int i = 0; i < n_in; i++) {
                    double xi = quant ? (double)xq[i / QK].d * xq[i / QK].qs[i % QK] : xt[i];
                    ref += (double)wrow[i] * xi;
                    mag += fabs((double)wrow[i] * xi);
                }
                if (fabs(ref - got) > 1e-5 * mag + 1e-6) inaccurate++;
            }
        }
        pool_destroy(p);
    }
    CHECK(mismatches == 0, "%s %dx%d T=%d: %d outputs differ from the scalar kernel",
          dtype_name(t), n_out, n_in, T, mismatches);
    CHECK(alone_mismatch == 0, "%s %dx%d T=%d: %d outputs depend on the block's other rows",
          dtype_name(t), n_out, n_in, T, alone_mismatch);
    CHECK(inaccurate == 0, "%s %dx%d T=%d: %d outputs far from the double reference",
          dtype_name(t), n_out, n_in, T, inaccurate);
    mm_scratch_free(&ms);
    free((void *)w.data);
    free(x);
    free(out);
    free(out1);
    free(wrow);
    free(xrow);
    free(xq);
}

int main(void) {
    const dtype types[] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0};
    for (int i = 0; i < 5; i++) {
        bool quant = types[i] == DT_Q8_0 || types[i] == DT_Q4_0;
        int n_in_a = quant ? 32 : 37, n_in_b = quant ? 32 * 23 : 701;
        test_type(types[i], n_in_a, 13, 1);
        test_type(types[i], n_in_b, 29, 7);
        test_type(types[i], n_in_b, 3, 5);
    }
    return check_summary();
}
