/* test_quantize: engine/quantize.c and engine/quant_mix.c. Every type's quantizer round-trips
 * the real kjv-demo matrices through the engine's own dequantize_row within the relative RMS
 * error documented in docs/QUANTIZATION.md; awkward rows (zeros, constants, one outlier, one
 * sign) give finite values; the mix rules give llama.cpp's types on a 22-layer model with
 * grouped-query attention (TinyLlama's shape), where the kjv-demo files cannot show them. */
#include "check.h"
#include "gguf.h"
#include "quantize.h"

#include <math.h>
#include <string.h>

/* The documented bounds: RMS(dequantized - original) / RMS(original), per matrix. */
static const struct {
    dtype t;
    double max_rel_rms;
} bounds[] = {
    {DT_F16, 0.001},   {DT_BF16, 0.005},  {DT_Q8_0, 0.01},  {DT_Q6_K, 0.025},
    {DT_Q5_K, 0.045},  {DT_Q5_1, 0.045},  {DT_Q5_0, 0.05},  {DT_Q4_K, 0.085},
    {DT_Q4_1, 0.085},  {DT_IQ4_NL, 0.09}, {DT_IQ4_XS, 0.09}, {DT_Q4_0, 0.095},
    {DT_Q3_K, 0.17},   {DT_Q2_K, 0.31},
};
#define N_BOUNDS (sizeof bounds / sizeof bounds[0])

static double rel_rms(const float *a, const float *b, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)a[i] * a[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static void test_round_trip_kjv(void) {
    char path[1024], err[256];
    const char *dir = getenv("LS_MODELS_DIR");
    snprintf(path, sizeof path, "%s/kjv-demo.gguf", dir ? dir : "../shared/models");
    gguf_file *f = gguf_open(path, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return;
    for (size_t b = 0; b < N_BOUNDS; b++) {
        const dtype t = bounds[b].t;
        double worst = 0.0;
        int n_tested = 0;
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const gguf_tensor *g = &f->tensors[i];
            /* layers 0 and 1 and the output: enough to show each type, quick under ASan */
            if (g->n_dims != 2 || g->ne[0] % dtype_block_elems(t) != 0 ||
                (strncmp(g->name.s, "blk.0.", 6) && strncmp(g->name.s, "blk.1.", 6) &&
                 !gguf_str_eq(g->name, "output.weight")))
                continue;
            const int64_t n = g->ne[0] * g->ne[1];
            float *deq = malloc((size_t)n * sizeof *deq);
            uint8_t *q = malloc(dtype_row_bytes(t, g->ne[0]) * (size_t)g->ne[1]);
            CHECK(quant_row(q, g->data, t, n) == 0, "%s encodes", dtype_name(t));
            dequantize_row(deq, q, t, n);
            const double e = rel_rms(g->data, deq, n);
            worst = e > worst ? e : worst;
            n_tested++;
            free(deq);
            free(q);
        }
        CHECK(n_tested >= 11, "%s: %d matrices", dtype_name(t), n_tested);
        CHECK(worst <= bounds[b].max_rel_rms, "%s: relative RMS error %.4f > %.4f",
              dtype_name(t), worst, bounds[b].max_rel_rms);
        printf("%-6s worst relative RMS error %.4f (bound %.3f) over %d matrices\n",
               dtype_name(t), worst, bounds[b].max_rel_rms, n_tested);
    }
    gguf_close(f);
}

/* Rows a search can trip on: every value must come back finite and an all-zero row exactly. */
static void test_awkward_rows(void) {
    enum { N = 512 };
    static float rows[5][N], deq[N];
    static uint8_t q[N * 4];
    for (int i = 0; i < N; i++) {
        rows[0][i] = 0.0f;                                    /* zeros */
        rows[1][i] = 0.25f;                                   /* a constant */
        rows[2][i] = i == 77 ? 1000.0f : 0.001f * (i % 7);    /* one outlier */
        rows[3][i] = -0.5f - 0.01f * (float)(i % 13);         /* negative only */
        rows[4][i] = (i % 32 == 0) ? 3.0f : 0.0f;             /* sparse */
    }
    for (size_t b = 0; b < N_BOUNDS; b++) {
        const dtype t = bounds[b].t;
        for (int r = 0; r < 5; r++) {
            CHECK(quant_row(q, rows[r], t, N) == 0, "%s", dtype_name(t));
            dequantize_row(deq, q, t, N);
            int finite = 1;
            for (int i = 0; i < N; i++) finite &= isfinite(deq[i]) != 0;
            CHECK(finite, "%s row %d: non-finite values", dtype_name(t), r);
            if (r == 0) {
                int zero = 1;
                for (int i = 0; i < N; i++) zero &= deq[i] == 0.0f;
                CHECK(zero, "%s: zeros come back as zeros", dtype_name(t));
            }
            if (r == 3) /* one sign: within the type's bound */
                CHECK(rel_rms(rows[r], deq, N) <= bounds[b].max_rel_rms, "%s: %.4f",
                      dtype_name(t), rel_rms(rows[r], deq, N));
        }
    }
}

static dtype type_of(const char *ftype, bool pure, const char *name, int64_t ne0) {
    quant_tensor_info ti = {name, 2, ne0, 22, 8, true};
    return quant_tensor_type(quant_ftype_find(ftype), pure, &ti);
}

static void test_mix_rules(void) {
    /* names: case-insensitive, the plain K names are the _M mixes */
    CHECK(quant_ftype_find("q4_k_m") && quant_ftype_find("q4_k_m")->file_type == 15, "Q4_K_M");
    CHECK(quant_ftype_find("Q4_K") == quant_ftype_find("Q4_K_M"), "Q4_K is Q4_K_M");
    CHECK(quant_ftype_find("q6_k")->file_type == 18 && quant_ftype_find("Q6_K")->base == DT_Q6_K,
          "Q6_K");
    CHECK(!quant_ftype_find("Q4_K_S") && !quant_ftype_find("IQ2_XXS") && !quant_ftype_find(""),
          "unknown names");
    /* 22 layers: llama.cpp's use_more_bits covers 0, 1 (below n/8 = 2), 19..21 (from 7n/8 = 19)
     * and every third layer from n/8 + 2 = 4 */
    static const int more[22] = {1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1};
    char name[64];
    for (int l = 0; l < 22; l++) {
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
        CHECK(type_of("Q4_K_M", false, name, 2048) == (more[l] ? DT_Q6_K : DT_Q4_K), "%s", name);
        CHECK(type_of("Q3_K_M", false, name, 2048) == (l < 2 ? DT_Q5_K : DT_Q4_K), "%s", name);
        /* 8 query heads per KV head: Q2_K's attn_v is Q4_K */
        CHECK(type_of("Q2_K", false, name, 2048) == DT_Q4_K, "%s", name);
        CHECK(type_of("IQ4_XS", false, name, 2048) == DT_Q5_K, "%s", name);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        CHECK(type_of("Q5_K_M", false, name, 5632) == (more[l] ? DT_Q6_K : DT_Q5_K), "%s", name);
        CHECK(type_of("Q3_K_M", false, name, 5632) == (l < 1 ? DT_Q5_K : DT_Q4_K), "%s", name);
        CHECK(type_of("Q4_K_M", true, name, 5632) == DT_Q4_K, "--pure %s", name);
    }
    CHECK(type_of("Q4_0", false, "output.weight", 2048) == DT_Q6_K, "Q4_0's output is Q6_K");
    CHECK(type_of("Q4_0", true, "output.weight", 2048) == DT_Q4_0, "--pure output");
    CHECK(type_of("Q8_0", false, "output.weight", 2048) == DT_Q8_0, "Q8_0's output");
    CHECK(type_of("Q4_K_M", false, "output.weight", 100) == DT_Q8_0, "an odd output row");
    CHECK(type_of("F16", false, "output.weight", 2048) == DT_F16, "F16 has no rules");
    CHECK(type_of("Q2_K", false, "blk.0.ffn_gate.weight", 704) == DT_Q4_0, "Q2_K fallback");
    CHECK(type_of("IQ4_XS", true, "blk.0.ffn_gate.weight", 704) == DT_IQ4_NL, "IQ4_XS fallback");
    CHECK(type_of("Q6_K", true, "blk.0.ffn_gate.weight", 704) == DT_Q8_0, "Q6_K fallback");
    CHECK(type_of("Q5_K_M", true, "blk.0.ffn_gate.weight", 704) == DT_Q5_1, "Q5_K fallback");
    CHECK(type_of("Q4_0", true, "blk.0.ffn_gate.weight", 100) == DT_F16, "no block divides");
    /* a tied model: token_embd is the output matrix */
    quant_tensor_info tied = {"token_embd.weight", 2, 2048, 22, 8, false};
    CHECK(quant_tensor_type(quant_ftype_find("Q4_K_M"), false, &tied) == DT_Q6_K, "tied");
    quant_tensor_info norm = {"blk.0.attn_norm.weight", 1, 2048, 22, 8, true};
    CHECK(!quant_wants(&norm), "norms are not quantized");
    quant_tensor_info mat = {"blk.0.attn_q.weight", 2, 2048, 22, 8, true};
    CHECK(quant_wants(&mat), "matrices are");
}

int main(void) {
    test_round_trip_kjv();
    test_awkward_rows();
    test_mix_rules();
    return check_summary();
}
