/* test_tensor: F16/BF16 conversion and the Q8_0/Q4_0 codecs, against exhaustive or
 * double-precision checks; round-trip error bounds for every quantized type. */
#include "check.h"
#include "tensor.h"

#include <math.h>
#include <string.h>

static float frand(unsigned *s) { /* deterministic uniform in [-1, 1) */
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 23) - 1.0f;
}

static void test_f16(void) {
    /* every F16 value survives F16 -> F32 -> F16, and F16 -> F32 matches ldexp arithmetic */
    int bad_roundtrip = 0, bad_value = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
        double ref = exp == 0 ? ldexp(man, -24) : ldexp(1024 + man, exp - 25);
        if (h & 0x8000) ref = -ref;
        if (exp == 0x1f) {
            if (man == 0 ? !isinf(f) : !isnan(f)) bad_value++;
            if (man != 0) continue; /* NaN payloads need not survive */
        } else if ((double)f != ref) {
            bad_value++;
        }
        if (f32_to_f16(f) != h) bad_roundtrip++;
    }
    CHECK(bad_value == 0, "%d F16 values decoded wrongly", bad_value);
    CHECK(bad_roundtrip == 0, "%d F16 values did not round-trip", bad_roundtrip);
    /* rounding: to nearest, ties to even */
    CHECK(f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie below rounds to even (down)");
    CHECK(f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie above rounds to even (up)");
    CHECK(f32_to_f16(65519.0f) == 0x7bff, "65519 rounds to the largest finite F16");
    CHECK(f32_to_f16(65520.0f) == 0x7c00, "65520 overflows to infinity");
    CHECK(f32_to_f16(1e-9f) == 0, "tiny values flush to zero");
    CHECK(f32_to_f16(-0x1p-24f) == 0x8001, "smallest negative subnormal");
    CHECK(isnan(f16_to_f32(f32_to_f16(NAN))), "NaN stays NaN");
    /* random values: the nearest F16 (checked against its neighbours) */
    unsigned s = 1;
    int bad_nearest = 0;
    for (int i = 0; i < 100000; i++) {
        float x = frand(&s) * 70000.0f * (i % 3 == 0 ? 1e-6f : 1.0f);
        uint16_t h = f32_to_f16(x);
        if ((h & 0x7fff) >= 0x7c00) continue;
        double e = fabs((double)f16_to_f32(h) - x);
        double up = fabs((double)f16_to_f32((uint16_t)(h + 1)) - x);
        double down = (h & 0x7fff) ? fabs((double)f16_to_f32((uint16_t)(h - 1)) - x) : INFINITY;
        if (e > up || e > down) bad_nearest++;
    }
    CHECK(bad_nearest == 0, "%d values not rounded to the nearest F16", bad_nearest);
}

static void test_bf16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (f32_to_bf16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d BF16 values did not round-trip", bad);
    CHECK(f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "tie rounds to even (down)");
    CHECK(f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "tie rounds to even (up)");
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))), "NaN stays NaN");
}

/* Quantize then dequantize random rows; every element must be within the type's bound. */
static void test_roundtrip(dtype t) {
    enum { N = 32 * 37 };
    static float x[N], y[N];
    static uint8_t blocks[N * 2];
    unsigned s = 7;
    double worst = 0;
    int bad = 0;
    for (int rep = 0; rep < 50; rep++) {
        float scale = rep % 5 == 0 ? 1e-3f : rep % 5 == 1 ? 100.0f : 1.0f;
        for (int i = 0; i < N; i++) x[i] = frand(&s) * scale;
        if (rep == 3) memset(x, 0, sizeof x); /* all-zero blocks must give zeros */
        if (t == DT_Q8_0) quantize_row_q8_0((block_q8_0 *)blocks, x, N);
        else quantize_row_q4_0((block_q4_0 *)blocks, x, N);
        dequantize_row(y, blocks, t, N);
        for (int b = 0; b < N / QK; b++) {
            float amax = 0;
            for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[b * QK + j]));
            /* Q8_0: step amax/127, error <= half a step, plus the F16 rounding of the scale
             * (relative 2^-11, or 2^-25 absolute among subnormals) times the largest code.
             * Q4_0: step amax/8; the clamp of +8 to +7 on the side opposite the extreme can cost
             * a whole step. */
            double d = t == DT_Q8_0 ? amax / 127.0 : amax / 8.0;
            double d_err = fmax(d * 0x1p-11, 0x1p-25);
            double bound = t == DT_Q8_0 ? d * 0.5 + 127 * d_err + 1e-12 : d + 8 * d_err + 1e-12;
            for (int j = 0; j < QK; j++) {
                double e = fabs((double)y[b * QK + j] - x[b * QK + j]);
                if (amax > 0 && e / amax > worst) worst = e / amax;
                if (e > bound) bad++;
            }
        }
    }
    CHECK(bad == 0, "%s: %d elements outside the round-trip bound", dtype_name(t), bad);
    printf("%s round trip: worst error %.4f of the block's max |x|\n", dtype_name(t), worst);
}

static void test_sizes(void) {
    CHECK(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
    CHECK(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");
    CHECK(dtype_row_bytes(DT_Q4_0, 64) == 36, "Q4_0 row bytes");
    CHECK(dtype_row_bytes(DT_BF16, 5) == 10, "BF16 row bytes");
    CHECK(!dtype_supported(9) && dtype_supported(3) && dtype_supported(23) && dtype_supported(30),
          "supported types");
    CHECK(dtype_row_bytes(DT_Q4_K, 512) == 288 && dtype_row_bytes(DT_Q5_0, 64) == 44, "row bytes");
}

/* IQ4_NL and IQ4_XS (no llama.cpp-made file in ../shared to compare with the numpy reference):
 * elements worked out by hand from the layout. Levels: index 0 -> -127, 1 -> -104, 8 -> 1,
 * 15 -> 113. */
static void test_iq4(void) {
    block_iq4_nl nl = {.d = 0x3c00 /* 1.0 */};
    nl.qs[0] = 0xf0; /* element 0: index 0; element 16: index 15 */
    nl.qs[3] = 0x81; /* element 3: index 1; element 19: index 8 */
    float y[QK_K];
    dequantize_row(y, &nl, DT_IQ4_NL, QK);
    CHECK(y[0] == -127 && y[16] == 113 && y[3] == -104 && y[19] == 1, "IQ4_NL: %g %g %g %g", y[0],
          y[16], y[3], y[19]);
    block_iq4_xs xs = {.d = 0x3800 /* 0.5 */, .scales_h = 0x6 /* sub-block 0: 2, 1: 1 */};
    xs.scales_l[0] = 0x21; /* sub-block 0 low bits 1 (scale 33 - 32 = 1), 1: 2 (18 - 32 = -14) */
    xs.qs[0] = 0x18;       /* element 0: index 8; element 16: index 1 */
    xs.qs[16] = 0x0f;      /* element 32: index 15; element 48: index 0 */
    dequantize_row(y, &xs, DT_IQ4_XS, QK_K);
    CHECK(y[0] == 0.5f && y[16] == -52 && y[32] == -791 && y[48] == 889,
          "IQ4_XS: %g %g %g %g", y[0], y[16], y[32], y[48]);
}

/* quantize_row writes what each type's own encoder writes, and F32/F16/BF16 come back through
 * dequantize_row as those encoders' exact values. */
static void test_quantize_row(void) {
    enum { N = 32 * 5 };
    static float x[N], y[N];
    static uint8_t a[N * 4], b[N * 4];
    unsigned s = 11;
    for (int i = 0; i < N; i++) x[i] = frand(&s) * 3.0f;
    const dtype types[] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0};
    for (int k = 0; k < 5; k++) {
        dtype t = types[k];
        quantize_row(a, x, t, N);
        for (int i = 0; i < N; i++) {
            if (t == DT_F32) memcpy(b + 4 * i, &x[i], 4);
            if (t == DT_F16 || t == DT_BF16) {
                uint16_t h = t == DT_F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
                memcpy(b + 2 * i, &h, 2);
            }
        }
        if (t == DT_Q8_0) quantize_row_q8_0((block_q8_0 *)b, x, N);
        if (t == DT_Q4_0) quantize_row_q4_0((block_q4_0 *)b, x, N);
        CHECK(memcmp(a, b, dtype_row_bytes(t, N)) == 0,
              "%s: quantize_row differs from the type's encoder", dtype_name(t));
        if (t == DT_F32) {
            dequantize_row(y, a, t, N);
            CHECK(memcmp(x, y, sizeof x) == 0, "F32 round trip is exact");
        }
    }
}

int main(void) {
    test_f16();
    test_quantize_row();
    test_iq4();
    test_bf16();
    test_roundtrip(DT_Q8_0);
    test_roundtrip(DT_Q4_0);
    test_sizes();
    return check_summary();
}
