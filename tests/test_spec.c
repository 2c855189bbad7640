/* test_spec: engine/spec.c's prompt-lookup drafts on hand-worked sequences, and against a
 * second, naive implementation (build the whole sequence, scan it forwards keeping the last
 * match) on random sequences over small alphabets, where matches are frequent; and the check
 * that a draft model shares the model's vocabulary, on the demo model's files. */
#include "check.h"
#include "spec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N(a) ((int)(sizeof(a) / sizeof(a)[0]))

static int draft_of(const int32_t *h, int n, int lo, int hi, int32_t *d, int n_max) {
    return spec_ngram_draft(h, n, lo, hi, d, n_max);
}

static void test_hand(void) {
    int32_t d[16];
    CHECK(draft_of(NULL, 0, 1, 3, d, 8) == 0, "empty history drafts nothing");
    int32_t one[] = {7};
    CHECK(draft_of(one, 1, 1, 3, d, 8) == 0, "one token has no earlier occurrence");
    /* a copied passage: after "10 11" the rest of the passage follows */
    int32_t copy[] = {1, 10, 11, 12, 13, 14, 2, 10, 11};
    int k = draft_of(copy, N(copy), 1, 3, d, 3);
    CHECK(k == 3 && d[0] == 12 && d[1] == 13 && d[2] == 14, "copy: %d %d %d %d", k, d[0], d[1],
          d[2]);
    CHECK(draft_of(copy, N(copy), 1, 3, d, 0) == 0, "n_max 0");
    /* the most recent occurrence wins among equal lengths */
    int32_t recent[] = {5, 1, 2, 7, 1, 2, 8, 9, 1, 2};
    k = draft_of(recent, N(recent), 1, 3, d, 1);
    CHECK(k == 1 && d[0] == 8, "most recent: %d %d", k, d[0]);
    /* a longer match wins over a more recent shorter one */
    int32_t longer[] = {1, 2, 3, 40, 9, 3, 50, 1, 2, 3};
    k = draft_of(longer, N(longer), 1, 3, d, 1);
    CHECK(k == 1 && d[0] == 40, "longer match: %d %d", k, d[0]);
    /* ngram_min 2 refuses a one-token match */
    int32_t single[] = {4, 7, 3, 7};
    CHECK(draft_of(single, N(single), 1, 3, d, 4) >= 1 && d[0] == 3, "1-gram %d", d[0]);
    CHECK(draft_of(single, N(single), 2, 3, d, 4) == 0, "min 2");
    /* the draft goes on through its own tokens: a loop continues */
    int32_t loop[] = {1, 2, 1, 2};
    k = draft_of(loop, N(loop), 1, 3, d, 5);
    CHECK(k == 5 && d[0] == 1 && d[1] == 2 && d[2] == 1 && d[3] == 2 && d[4] == 1, "loop %d", k);
    /* ngram_max above SPEC_NGRAM_MAX is clamped, not read past */
    k = draft_of(copy, N(copy), 1, 100, d, 2);
    CHECK(k == 2 && d[0] == 12 && d[1] == 13, "clamped %d", k);
}

/* The naive reference: next token after the last n tokens of seq (len), scanning forwards. */
static int32_t naive_next(const int32_t *seq, int len, int n) {
    int32_t found = -1;
    for (int m = 0; m + n < len; m++)
        if (!memcmp(seq + m, seq + len - n, (size_t)n * sizeof *seq)) found = seq[m + n];
    return found;
}

static int naive_draft(const int32_t *h, int n_hist, int lo, int hi, int32_t *d, int n_max) {
    int32_t seq[256];
    memcpy(seq, h, (size_t)n_hist * sizeof *h);
    int k = 0;
    for (; k < n_max; k++) {
        int32_t next = -1;
        for (int n = hi; n >= lo && next < 0; n--)
            if (n_hist + k >= n + 1) next = naive_next(seq, n_hist + k, n);
        if (next < 0) break;
        d[k] = seq[n_hist + k] = next;
    }
    return k;
}

static void test_random(void) {
    uint32_t x = 12345;
    int mismatches = 0, drafted = 0;
    for (int trial = 0; trial < 2000; trial++) {
        int32_t h[200];
        int n = 1 + (int)(trial % 150), alphabet = 2 + trial % 9;
        for (int i = 0; i < n; i++) {
            x = x * 1664525u + 1013904223u;
            h[i] = (int32_t)((x >> 16) % (uint32_t)alphabet);
        }
        int lo = 1 + trial % 3, hi = 3;
        int32_t a[16], b[16], c[16];
        int ka = spec_ngram_draft(h, n, lo, hi, a, 16);
        int kb = naive_draft(h, n, lo, hi, b, 16);
        int kc = spec_ngram_draft(h, n, lo, hi, c, 5); /* a shorter n_max: a prefix */
        drafted += ka;
        if (ka != kb || memcmp(a, b, (size_t)ka * sizeof *a) ||
            kc != (ka < 5 ? ka : 5) || memcmp(a, c, (size_t)kc * sizeof *a))
            mismatches++;
    }
    CHECK(mismatches == 0, "%d of 2000 random histories differ from the naive drafts", mismatches);
    CHECK(drafted > 1000, "the random histories drafted only %d tokens", drafted);
}

static void test_draft_vocab(void) {
    char err[256] = "";
    model *f32 = model_load(check_model_path("kjv-demo.gguf"), NULL, err, sizeof err);
    model *q4 = model_load(check_model_path("kjv-demo-q4_0.gguf"), NULL, err, sizeof err);
    model *bin = model_load(check_model_path("kjv-demo.bin"), NULL, err, sizeof err); /* none */
    model *other = model_load(check_model_path("stories260K.bin"), NULL, err, sizeof err);
    CHECK(f32 && q4 && bin && other, "%s", err);
    if (f32 && q4 && bin && other) {
        CHECK(spec_check_draft_vocab(f32, q4, err, sizeof err) == 0, "%s", err);
        CHECK(spec_check_draft_vocab(f32, other, err, sizeof err) == -1 &&
                  strstr(err, "same vocabulary"),
              "%s", err);
        CHECK(bin->tok == NULL && spec_check_draft_vocab(f32, bin, err, sizeof err) == -1 &&
                  strstr(err, "no tokenizer"),
              "%s", err);
    }
    model_free(f32);
    model_free(q4);
    model_free(bin);
    model_free(other);
}

int main(void) {
    test_hand();
    test_random();
    test_draft_vocab();
    return check_summary();
}
