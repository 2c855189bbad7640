/* test_rope_scaling: rotary scaling in engine/model.c and forward.c against the float64
 * reference (tests/reference/llama_ref.py, Meta's published Llama 3.1 formula) on make-model's
 * tiny-llama3 shape, a Llama-3-shaped model with rope_freqs.weight; the golden file
 * tests/golden/forward-tiny-llama3.txt comes from tests/reference/make_golden.py. Also: the
 * factors change the logits well beyond the tolerance (the test would notice them ignored), and
 * llama.rope.scaling.type is read (linear, none, a refused one). Needs $LS_BIN (the built
 * binary) to write the model. */
#include "check.h"
#include "common.h"
#include "forward.h"
#include "gguf_builder.h"
#include "kv_cache.h"
#include "model.h"
#include "threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOK 128
#define TOL 1e-4 /* F32 weights: as tests/test_forward.c's F32 bound */

typedef struct {
    int n_tokens;
    int32_t tokens[MAX_TOK];
    float *logits; /* (n_tokens, vocab) */
} gcase;

/* Reads the cases' tokens and logits (the format make_golden.py documents). */
static int read_golden(const char *path, int vocab, gcase *cases, int max_cases) {
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    size_t cap = 1 << 16;
    char *line = malloc(cap);
    int n = -1;
    while (fgets(line, (int)cap, fp)) {
        size_t len = strlen(line);
        while (len == cap - 1 && line[len - 1] != '\n') { /* a logits line is long */
            line = realloc(line, cap *= 2);
            if (!fgets(line + len, (int)(cap - len), fp)) break;
            len = strlen(line);
        }
        char *p = line;
        if (!strncmp(p, "case ", 5) && n + 1 < max_cases) {
            n++;
            cases[n].n_tokens = 0;
            cases[n].logits = NULL;
        } else if (!strncmp(p, "tokens ", 7) && n >= 0) {
            int k = (int)strtol(p + 7, &p, 10);
            if (k > MAX_TOK) k = MAX_TOK;
            for (int i = 0; i < k; i++)
                cases[n].tokens[i] = (int32_t)strtol(p, &p, 10);
            cases[n].n_tokens = k;
            cases[n].logits = calloc((size_t)k * vocab, sizeof(float));
        } else if (!strncmp(p, "logits ", 7) && n >= 0 && cases[n].logits) {
            int pos = (int)strtol(p + 7, &p, 10);
            if (pos < 0 || pos >= cases[n].n_tokens) continue;
            for (int i = 0; i < vocab; i++)
                cases[n].logits[(size_t)pos * vocab + i] = strtof(p, &p);
        }
    }
    free(line);
    fclose(fp);
    return n + 1;
}

/* The largest |logit - golden| over every position of every case, prompt in one batch. */
static double max_err(const model *m, const gcase *cases, int n_cases) {
    char err[LS_ERR_LEN];
    int vocab = m->cfg.vocab_size;
    pool *p = pool_create(2);
    fwd_ctx *f = p ? fwd_create(m, MAX_TOK, p, err, sizeof err) : NULL;
    kv_cache *kv = f ? kv_create(&m->cfg, m->cfg.ctx_len, KV_F32, err, sizeof err) : NULL;
    float *out = malloc((size_t)MAX_TOK * vocab * sizeof(float));
    double e = INFINITY;
    if (kv && out) {
        e = 0;
        for (int c = 0; c < n_cases; c++) {
            int32_t pos[MAX_TOK], seq[MAX_TOK];
            bool all[MAX_TOK];
            for (int i = 0; i < cases[c].n_tokens; i++) {
                pos[i] = i;
                seq[i] = 0;
                all[i] = true;
            }
            kv_clear(kv);
            fwd_batch b = {.n_tokens = cases[c].n_tokens,
                           .token = cases[c].tokens,
                           .pos = pos,
                           .seq = seq,
                           .logits = all};
            if (fwd_decode(f, &kv, 1, &b, out, err, sizeof err) != 0) {
                CHECK(0, "fwd_decode: %s", err);
                e = INFINITY;
                break;
            }
            for (size_t i = 0; i < (size_t)cases[c].n_tokens * vocab; i++)
                e = fmax(e, fabs((double)out[i] - cases[c].logits[i]));
        }
    }
    free(out);
    if (kv) kv_free(kv);
    fwd_free(f);
    if (p) pool_destroy(p);
    return e;
}

static void check_golden(const char *path) {
    char err[LS_ERR_LEN];
    model *m = model_load(path, NULL, err, sizeof err);
    CHECK(m != NULL, "model_load %s: %s", path, err);
    if (!m) return;
    CHECK(m->rope_factors != NULL, "rope_freqs.weight was not read");
    gcase cases[4];
    int n =
        read_golden(check_test_path("golden/forward-tiny-llama3.txt"), m->cfg.vocab_size, cases, 4);
    CHECK(n == 2, "golden cases: %d", n);
    if (n > 0 && m->rope_factors) {
        double e = max_err(m, cases, n);
        printf("tiny-llama3 (rope_freqs): logits max abs err %.3g (bound %g)\n", e, TOL);
        CHECK(e < TOL, "logits differ from the reference by %g", e);
        /* the same weights without the factors: far off, so the bound above means something */
        const float *keep = m->rope_factors;
        m->rope_factors = NULL;
        double e0 = max_err(m, cases, n);
        m->rope_factors = keep;
        printf("tiny-llama3 without rope_freqs: max abs err %.3g\n", e0);
        CHECK(e0 > 100 * TOL, "ignoring rope_freqs changes the logits by only %g", e0);
    }
    for (int i = 0; i < n; i++)
        free(cases[i].logits);
    model_free(m);
}

/* llama.rope.scaling.type on the test-side tiny model: linear reads its factor, none is 1, an
 * unknown kind is refused by name. */
static void check_scaling_keys(const char *path) {
    char err[LS_ERR_LEN];
    const struct {
        const char *type;
        float factor;
        float want; /* 0: refused */
    } cases[] = {{"linear", 4.0f, 4.0f}, {"none", 4.0f, 1.0f}, {"yarn", 4.0f, 0}, {NULL, 0, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        gspec s;
        tiny_model(&s, 0, false);
        if (cases[k].type) {
            kv_str(&s, "llama.rope.scaling.type", cases[k].type);
            kv_f32(&s, "llama.rope.scaling.factor", cases[k].factor);
        }
        CHECK(gspec_save(&s, path) == 0, "write %s", path);
        gspec_free(&s);
        err[0] = '\0';
        model *m = model_load(path, NULL, err, sizeof err);
        if (cases[k].want == 0) {
            CHECK(m == NULL && strstr(err, "yarn"), "scaling %s: accepted (%s)", cases[k].type,
                  err);
        } else {
            CHECK(m != NULL, "scaling %s: %s", cases[k].type ? cases[k].type : "absent", err);
            if (m)
                CHECK(m->cfg.rope_scale == cases[k].want && m->rope_factors == NULL,
                      "scaling %s: factor %g", cases[k].type ? cases[k].type : "absent",
                      (double)m->cfg.rope_scale);
        }
        model_free(m);
    }
}

int main(void) {
    const char *bin = getenv("LS_BIN");
    /* both removed at exit, even when the test is killed (check.h) */
    const char *path = check_tmp_path("tiny-llama3.gguf"), *scaled = check_tmp_path("scaled.gguf");
    if (!bin || !path || !scaled) {
        fprintf(stderr, "needs LS_BIN (the built llamaserve) and a temporary folder\n");
        return 1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' make-model --shape tiny-llama3 --type f32 '%s'", bin, path);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    check_golden(path);
    check_scaling_keys(scaled);
    return check_summary();
}
