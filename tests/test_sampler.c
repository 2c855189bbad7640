/* test_sampler: every step of engine/sampler.c alone against hand-computed values, then the
 * chain (sampler_sample) for reproducibility and for being exactly the composition of the steps.
 * Everything random here comes from fixed seeds, so every run checks the same numbers. */
#include "check.h"
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static bool near(double a, double b, double tol) {
    return fabs(a - b) <= tol;
}

static void fill_cands(tok_cand *c, const float *logits, const int *ids, int n) {
    for (int i = 0; i < n; i++)
        c[i] = (tok_cand){.id = ids ? ids[i] : i, .logit = logits[i]};
}

/* The reference order: logit descending, id ascending. */
static int ref_cmp(const void *pa, const void *pb) {
    const tok_cand *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static void test_rng(void) {
    /* Reference values computed independently (a few lines of Python implementing splitmix64 and
     * xoshiro256** from their published descriptions). splitmix64 from 0 starts 0xe220a8397b1dcdaf,
     * the well-known first output of that generator. */
    rng r;
    rng_seed(&r, 0);
    CHECK(r.s[0] == 0xe220a8397b1dcdafull && r.s[1] == 0x6e789e6aa1b965f4ull &&
              r.s[2] == 0x06c45d188009454full && r.s[3] == 0xf88bb8a8724c81ecull,
          "seed 0 state %llx", (unsigned long long)r.s[0]);
    const uint64_t want0[3] = {0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull};
    for (int i = 0; i < 3; i++) {
        uint64_t v = rng_next(&r);
        CHECK(v == want0[i], "seed 0 output %d: %llx", i, (unsigned long long)v);
    }
    rng_seed(&r, 42);
    const uint64_t want42[3] = {0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull,
                                0xae17533239e499a1ull};
    for (int i = 0; i < 3; i++) {
        uint64_t v = rng_next(&r);
        CHECK(v == want42[i], "seed 42 output %d: %llx", i, (unsigned long long)v);
    }
    /* rng_uniform is the top 24 bits over 2^24. */
    rng_seed(&r, 42);
    const float wantu[3] = {1406987.0f / 16777216.0f, 6358233.0f / 16777216.0f,
                            11409235.0f / 16777216.0f};
    for (int i = 0; i < 3; i++) {
        float u = rng_uniform(&r);
        CHECK(u == wantu[i], "uniform %d: %.9g", i, u);
    }
    /* Range and a coarse mean over many draws. */
    rng_seed(&r, 7);
    double sum = 0;
    bool in_range = true;
    for (int i = 0; i < 100000; i++) {
        float u = rng_uniform(&r);
        in_range &= u >= 0.0f && u < 1.0f;
        sum += u;
    }
    CHECK(in_range, "uniform out of [0,1)");
    CHECK(near(sum / 100000, 0.5, 0.005), "mean %g", sum / 100000);
    rng a, b;
    rng_seed(&a, 1);
    rng_seed(&b, 2);
    CHECK(rng_next(&a) != rng_next(&b), "seeds 1 and 2 agree");
}

static void test_greedy(void) {
    const float a[] = {1, 3, 3, 2};
    CHECK(sample_greedy(a, 4) == 1, "tie goes to the lower id");
    const float b[] = {NAN, 0.5f, -1};
    CHECK(sample_greedy(b, 3) == 1, "NaN must not win");
    const float c[] = {-INFINITY, -INFINITY};
    CHECK(sample_greedy(c, 2) == 0, "all banned: lowest id");
    const float d[] = {-5, -4, -4.5f};
    CHECK(sample_greedy(d, 3) == 1, "negatives");
}

static void test_bias(void) {
    float l[] = {1, 2, 3, 4};
    const logit_bias bias[] = {{1, 0.5f}, {2, -100.0f}, {3, -150.0f},
                               {7, 5.0f}, {-1, 5.0f},   {0, -99.0f}};
    sampler_apply_bias(l, 4, bias, 6);
    CHECK(l[0] == -98.0f, "bias -99 is a bias, not a ban: %g", l[0]);
    CHECK(l[1] == 2.5f, "bias +0.5: %g", l[1]);
    CHECK(l[2] == -INFINITY && l[3] == -INFINITY, "bans: %g %g", l[2], l[3]);
}

static void test_penalties(void) {
    /* token 0 twice, 1 once, 2 once, 3 never; 7 and -1 are out of range. */
    const int32_t hist[] = {0, 1, 0, 2, 7, -1};
    float l[] = {2, -2, 1, 0.5f, 3};
    sampler_apply_penalties(l, 5, hist, 6, -1, 2.0f, 0.5f, 0.25f);
    CHECK(l[0] == 0.0f, "2/2 - 0.5 - 2*0.25 = 0, got %g", l[0]);
    CHECK(l[1] == -4.75f, "-2*2 - 0.5 - 0.25 = -4.75, got %g", l[1]);
    CHECK(l[2] == -0.25f, "1/2 - 0.5 - 0.25 = -0.25, got %g", l[2]);
    CHECK(l[3] == 0.5f && l[4] == 3.0f, "untouched: %g %g", l[3], l[4]);

    /* The window: last 3 = {2, 7, -1} touches only token 2; last 2 touches nothing. */
    float w[] = {2, -2, 1, 0.5f, 3};
    sampler_apply_penalties(w, 5, hist, 6, 3, 2.0f, 0.0f, 0.0f);
    CHECK(w[0] == 2 && w[1] == -2 && w[2] == 0.5f, "last_n 3: %g %g %g", w[0], w[1], w[2]);
    sampler_apply_penalties(w, 5, hist, 6, 2, 2.0f, 1.0f, 1.0f);
    sampler_apply_penalties(w, 5, hist, 6, 0, 2.0f, 1.0f, 1.0f);
    CHECK(w[0] == 2 && w[1] == -2 && w[2] == 0.5f, "last_n 2 / 0 changed something");

    /* Frequency alone, OpenAI style: logit -= frequency * count. */
    float f[] = {1, 1, 1};
    const int32_t h2[] = {2, 2, 2, 1};
    sampler_apply_penalties(f, 3, h2, 4, -1, 1.0f, 0.0f, 0.5f);
    CHECK(f[0] == 1.0f && f[1] == 0.5f && f[2] == -0.5f, "frequency: %g %g %g", f[0], f[1], f[2]);
    float pr[] = {1, 1, 1};
    sampler_apply_penalties(pr, 3, h2, 4, -1, 1.0f, 0.75f, 0.0f);
    CHECK(pr[0] == 1.0f && pr[1] == 0.25f && pr[2] == 0.25f, "presence: %g %g %g", pr[0], pr[1],
          pr[2]);

    /* The counted form agrees with the reference and leaves its table zeroed. */
    rng r;
    rng_seed(&r, 99);
    enum { N = 50, H = 300 };
    int32_t counts[N] = {0}, h[H];
    bool same = true, zero = true;
    for (int trial = 0; trial < 20; trial++) {
        float a[N], b[N];
        for (int i = 0; i < N; i++)
            a[i] = b[i] = rng_uniform(&r) * 8 - 4;
        for (int i = 0; i < H; i++)
            h[i] = (int32_t)(rng_next(&r) % (N + 5)) - 2;
        int last_n = trial % 4 == 0 ? -1 : (int)(rng_next(&r) % (H + 20));
        sampler_apply_penalties(a, N, h, H, last_n, 1.3f, 0.2f, 0.05f);
        sampler_apply_penalties_counted(b, N, h, H, last_n, 1.3f, 0.2f, 0.05f, counts);
        same &= memcmp(a, b, sizeof a) == 0;
        for (int i = 0; i < N; i++)
            zero &= counts[i] == 0;
    }
    CHECK(same, "counted penalties differ from the reference");
    CHECK(zero, "count table not left zeroed");
}

static void test_temperature(void) {
    float l[] = {1, -2, 4};
    sampler_apply_temperature(l, 3, 2.0f);
    CHECK(l[0] == 0.5f && l[1] == -1.0f && l[2] == 2.0f, "t=2: %g %g %g", l[0], l[1], l[2]);
    sampler_apply_temperature(l, 3, 0.0f);
    CHECK(l[0] == 0.5f && l[1] == -1.0f && l[2] == 2.0f, "t=0 must leave logits alone");
    sampler_apply_temperature(l, 3, 0.5f);
    CHECK(l[0] == 1.0f && l[1] == -2.0f && l[2] == 4.0f, "t=0.5: %g %g %g", l[0], l[1], l[2]);
}

static void test_top_k(void) {
    const float l[] = {1, 5, 3, 5, -1};
    tok_cand c[5];
    fill_cands(c, l, NULL, 5);
    CHECK(sampler_top_k(c, 5, 2) == 2, "k=2 keeps 2");
    CHECK(c[0].id == 1 && c[1].id == 3, "top 2 of equal logits by id: %d %d", c[0].id, c[1].id);
    fill_cands(c, l, NULL, 5);
    CHECK(sampler_top_k(c, 5, 3) == 3 && c[2].id == 2, "k=3 third is id 2: %d", c[2].id);
    fill_cands(c, l, NULL, 5);
    CHECK(sampler_top_k(c, 5, 0) == 5 && c[0].id == 0 && c[4].id == 4, "k=0 is off");
    CHECK(sampler_top_k(c, 5, 9) == 5 && c[0].id == 0, "k>=n is off");
    fill_cands(c, l, NULL, 5);
    CHECK(sampler_top_k(c, 5, 1) == 1 && c[0].id == 1, "k=1 is the argmax");

    /* Against a full sort, on many candidates with plenty of ties. */
    enum { N = 5000 };
    static tok_cand a[N], b[N];
    rng r;
    rng_seed(&r, 5);
    bool ok = true;
    for (int trial = 0; trial < 10; trial++) {
        for (int i = 0; i < N; i++) {
            float x = (float)(rng_next(&r) % 200) * 0.25f - 25.0f;
            a[i] = b[i] = (tok_cand){.id = i, .logit = x};
        }
        int k = 1 + (int)(rng_next(&r) % 300);
        qsort(b, N, sizeof *b, ref_cmp);
        ok &= sampler_top_k(a, N, k) == k;
        for (int i = 0; i < k; i++)
            ok &= a[i].id == b[i].id;
    }
    CHECK(ok, "top_k disagrees with a full sort");
}

/* Probabilities 0.5, 0.25, 0.125, 0.125 given in a scrambled order. */
static void quarter_cands(tok_cand *c) {
    const float l[] = {logf(0.125f), logf(0.25f), logf(0.5f), logf(0.125f)};
    const int ids[] = {30, 20, 10, 5};
    fill_cands(c, l, ids, 4);
}

static void test_top_p(void) {
    tok_cand c[4];
    struct {
        float p;
        int want;
    } cases[] = {{0.0f, 1},    {0.4999f, 1}, {0.5001f, 2}, {0.7499f, 2}, {0.7501f, 3},
                 {0.8749f, 3}, {0.8751f, 4}, {0.9999f, 4}, {1.0f, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        quarter_cands(c);
        int n = sampler_top_p(c, 4, cases[i].p);
        CHECK(n == cases[i].want, "top_p %g keeps %d, want %d", cases[i].p, n, cases[i].want);
    }
    quarter_cands(c);
    int n = sampler_top_p(c, 4, 0.8f);
    CHECK(n == 3 && c[0].id == 10 && c[1].id == 20 && c[2].id == 5,
          "sorted prefix, tie by id: %d %d %d", c[0].id, c[1].id, c[2].id);
    CHECK(near(c[0].p, 0.5, 1e-6) && near(c[1].p, 0.25, 1e-6) && near(c[2].p, 0.125, 1e-6),
          "p filled: %g %g %g", c[0].p, c[1].p, c[2].p);
    tok_cand one = {.id = 3, .logit = 0};
    CHECK(sampler_top_p(&one, 1, 0.1f) == 1, "a single candidate stays");

    /* A flat distribution needs a prefix far longer than the first lazy chunk: compare with a
     * brute force over a full sort. */
    enum { N = 6000 };
    static tok_cand a[N], b[N];
    rng r;
    rng_seed(&r, 11);
    bool ok = true;
    const float ps[] = {0.05f, 0.3f, 0.9f, 0.99f};
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < N; i++) {
            float x = (float)(rng_next(&r) % 1000) * 0.001f;
            a[i] = b[i] = (tok_cand){.id = i, .logit = x};
        }
        qsort(b, N, sizeof *b, ref_cmp);
        double sum = 0, cum = 0;
        for (int i = 0; i < N; i++)
            sum += exp((double)b[i].logit - b[0].logit);
        int want = N;
        for (int i = 0; i < N; i++) {
            cum += exp((double)b[i].logit - b[0].logit);
            if (cum >= ps[t] * sum) {
                want = i + 1;
                break;
            }
        }
        int got = sampler_top_p(a, N, ps[t]);
        ok &= got == want;
        for (int i = 0; i < got && i < want; i++)
            ok &= a[i].id == b[i].id;
        CHECK(got == want, "flat top_p %g: %d want %d", ps[t], got, want);
    }
    CHECK(ok, "flat top_p prefix differs from the brute force");
}

static void test_min_p(void) {
    /* Relative probabilities 1, e^-1 = 0.368, e^-2 = 0.135, e^-3 = 0.0498. */
    const float l[] = {-2, 0, -3, -1};
    const int ids[] = {2, 0, 3, 1};
    tok_cand c[4];
    struct {
        float m;
        int want;
    } cases[] = {{0.5f, 1}, {0.2f, 2}, {0.1f, 3}, {0.04f, 4}, {2.0f, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fill_cands(c, l, ids, 4);
        int n = sampler_min_p(c, 4, cases[i].m);
        CHECK(n == cases[i].want, "min_p %g keeps %d, want %d", cases[i].m, n, cases[i].want);
        bool sorted = true;
        for (int j = 0; j < n; j++)
            sorted &= c[j].id == j;
        CHECK(sorted, "min_p %g: kept not sorted", cases[i].m);
    }
    fill_cands(c, l, ids, 4);
    CHECK(sampler_min_p(c, 4, 0.0f) == 4 && c[0].id == 2, "min_p 0 is off and keeps order");
    /* Boundary: e^-1 = 0.36788; just under keeps it, just over drops it. */
    fill_cands(c, l, ids, 4);
    CHECK(sampler_min_p(c, 4, 0.3678f) == 2, "just under e^-1");
    fill_cands(c, l, ids, 4);
    CHECK(sampler_min_p(c, 4, 0.3680f) == 1, "just over e^-1");
    fill_cands(c, l, ids, 4);
    sampler_min_p(c, 4, 0.1f);
    double z = 1 + exp(-1) + exp(-2) + exp(-3);
    CHECK(near(c[0].p, 1 / z, 1e-6) && near(c[1].p, exp(-1) / z, 1e-6), "p filled: %g %g", c[0].p,
          c[1].p);
}

static void test_softmax_draw(void) {
    tok_cand c[3] = {{.id = 7, .logit = 0}, {.id = 9, .logit = logf(3.0f)}};
    sampler_softmax(c, 2);
    CHECK(near(c[0].p, 0.25, 1e-7) && near(c[1].p, 0.75, 1e-7), "softmax: %g %g", c[0].p, c[1].p);
    /* Sums to 1 on large logits (max subtraction keeps exp finite). */
    tok_cand big[100];
    for (int i = 0; i < 100; i++)
        big[i] = (tok_cand){.id = i, .logit = 1000.0f + (float)i * 0.1f};
    sampler_softmax(big, 100);
    double s = 0;
    bool finite = true;
    for (int i = 0; i < 100; i++) {
        s += big[i].p;
        finite &= isfinite(big[i].p);
    }
    CHECK(finite && near(s, 1.0, 1e-5), "softmax sum %g", s);
    CHECK(near(big[99].p / big[98].p, exp(0.1), 1e-4), "ratio");

    c[0].p = 0.25f;
    c[1].p = 0.75f;
    CHECK(sampler_draw(c, 2, 0.0f) == 7, "u=0");
    CHECK(sampler_draw(c, 2, 0.2499f) == 7, "u just under 0.25");
    CHECK(sampler_draw(c, 2, 0.25f) == 9, "u=0.25 exactly belongs to the next token");
    CHECK(sampler_draw(c, 2, 0x1.fffffep-1f) == 9, "largest u below 1");
    CHECK(sampler_draw(c, 0, 0.5f) == -1, "empty");
    tok_cand z[3] = {{.id = 1, .p = 0}, {.id = 2, .p = 1}, {.id = 3, .p = 0}};
    CHECK(sampler_draw(z, 3, 0.0f) == 2 && sampler_draw(z, 3, 0x1.fffffep-1f) == 2,
          "zero-probability candidates are never drawn");
    tok_cand un[2] = {{.id = 4, .p = 2}, {.id = 5, .p = 6}}; /* unnormalised: 0.25 / 0.75 */
    CHECK(sampler_draw(un, 2, 0.2f) == 4 && sampler_draw(un, 2, 0.3f) == 5, "unnormalised p");
}

/* The empirical distribution of sampler_draw under the RNG matches the probabilities: each
 * frequency within 5 standard deviations (fixed seed, so this is a fixed check). */
static void test_draw_distribution(void) {
    const float probs[5] = {0.4f, 0.3f, 0.15f, 0.1f, 0.05f};
    tok_cand c[5];
    for (int i = 0; i < 5; i++)
        c[i] = (tok_cand){.id = 100 + i, .logit = logf(probs[i])};
    sampler_softmax(c, 5);
    enum { N = 200000 };
    int hits[5] = {0};
    rng r;
    rng_seed(&r, 1234);
    for (int i = 0; i < N; i++) {
        int id = sampler_draw(c, 5, rng_uniform(&r));
        if (id >= 100 && id < 105) hits[id - 100]++;
    }
    int total = 0;
    for (int i = 0; i < 5; i++) {
        double f = (double)hits[i] / N, sd = sqrt(probs[i] * (1 - probs[i]) / N);
        CHECK(fabs(f - probs[i]) < 5 * sd, "token %d: frequency %g vs %g", i, f, probs[i]);
        total += hits[i];
    }
    CHECK(total == N, "draws outside the candidates");
}

static void test_logprobs(void) {
    enum { N = 100 };
    float l[N];
    rng r;
    rng_seed(&r, 3);
    for (int i = 0; i < N; i++)
        l[i] = rng_uniform(&r) * 10 - 5;
    l[17] = l[42]; /* a tie */
    long double z = 0;
    for (int i = 0; i < N; i++)
        z += expl((long double)l[i]);
    sample_info info;
    sampler_logprobs(l, N, 17, 5, &info);
    double direct = (double)logl(expl((long double)l[17]) / z);
    CHECK(info.id == 17 && near(info.logprob, direct, 1e-5), "logprob %g vs %g", info.logprob,
          direct);
    CHECK(info.n_top == 5, "n_top %d", info.n_top);
    /* The alternatives: the 5 highest logits, best first, each with its log-probability. */
    tok_cand ref[N];
    fill_cands(ref, l, NULL, N);
    qsort(ref, N, sizeof *ref, ref_cmp);
    bool ok = true;
    for (int i = 0; i < 5; i++) {
        ok &= info.top_id[i] == ref[i].id;
        ok &= near(info.top_logprob[i], (double)logl(expl((long double)ref[i].logit) / z), 1e-5);
        if (i) ok &= info.top_logprob[i] <= info.top_logprob[i - 1];
    }
    CHECK(ok, "top alternatives wrong");

    /* Stable: shifting every logit by 1000 changes nothing (a float exp would overflow). */
    float sh[N];
    for (int i = 0; i < N; i++)
        sh[i] = l[i] + 1000.0f;
    sample_info s2;
    sampler_logprobs(sh, N, 17, 5, &s2);
    CHECK(isfinite(s2.logprob) && near(s2.logprob, direct, 1e-3), "shifted %g", s2.logprob);

    sampler_logprobs(l, N, 0, 50, &s2);
    CHECK(s2.n_top == SAMPLER_MAX_TOP, "k clamped to SAMPLER_MAX_TOP: %d", s2.n_top);
    sampler_logprobs(l, 3, 0, 10, &s2);
    CHECK(s2.n_top == 3, "k clamped to n: %d", s2.n_top);
    sampler_logprobs(l, N, 0, 0, &s2);
    CHECK(s2.n_top == 0, "k=0");
    /* A tie among the alternatives goes to the lower id. */
    const float t[] = {1, 2, 2, 0};
    sampler_logprobs(t, 4, 0, 2, &s2);
    CHECK(s2.top_id[0] == 1 && s2.top_id[1] == 2, "tie order %d %d", s2.top_id[0], s2.top_id[1]);
}

static void random_logits(rng *r, float *l, int n) {
    for (int i = 0; i < n; i++)
        l[i] = (rng_uniform(r) - 0.5f) * 12.0f;
}

/* A fixed mixed configuration on a Llama-sized vocabulary. */
static void busy_params(sampler_params *p, uint64_t seed) {
    sampler_params_default(p);
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.9f;
    p->min_p = 0.02f;
    p->repeat_penalty = 1.1f;
    p->frequency_penalty = 0.1f;
    p->presence_penalty = 0.2f;
    p->seed = seed;
}

static int run_sequence(const sampler_params *p, int n_vocab, int n_steps, int32_t *out) {
    sampler *s = sampler_create(p, n_vocab);
    if (!s) return -1;
    static float l[32000];
    rng r;
    rng_seed(&r, 777); /* the logits are the same for every run; only the sampler seed varies */
    for (int i = 0; i < n_steps; i++) {
        random_logits(&r, l, n_vocab);
        out[i] = sampler_sample(s, l, out, i, 0, NULL);
    }
    sampler_free(s);
    return 0;
}

static void test_chain(void) {
    enum { V = 32000, STEPS = 100 };
    sampler_params p;
    int32_t a[STEPS], b[STEPS], c[STEPS];
    busy_params(&p, 2024);
    CHECK(run_sequence(&p, V, STEPS, a) == 0 && run_sequence(&p, V, STEPS, b) == 0, "create");
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, different sequences");
    busy_params(&p, 2025);
    run_sequence(&p, V, STEPS, c);
    CHECK(memcmp(a, c, sizeof a) != 0, "different seeds, same sequence");
    bool in_range = true;
    for (int i = 0; i < STEPS; i++)
        in_range &= a[i] >= 0 && a[i] < V;
    CHECK(in_range, "token out of range");

    /* The chain is the composition of the steps, in the documented order. */
    static float l[V], work[V];
    static tok_cand cands[V];
    static int32_t counts[V];
    rng lr;
    rng_seed(&lr, 31);
    const logit_bias bias[] = {{5, 2.0f}, {6, -100.0f}};
    busy_params(&p, 99);
    p.bias = bias;
    p.n_bias = 2;
    p.penalty_last_n = 8;
    sampler *s = sampler_create(&p, V);
    rng mine;
    rng_seed(&mine, 99);
    int32_t hist[20] = {0};
    bool same = true;
    for (int step = 0; step < 20; step++) {
        random_logits(&lr, l, V);
        sample_info info;
        int got = sampler_sample(s, l, hist, step, 3, &info);
        memcpy(work, l, sizeof l);
        sampler_apply_bias(work, V, bias, 2);
        sampler_apply_penalties_counted(work, V, hist, step, 8, p.repeat_penalty,
                                        p.presence_penalty, p.frequency_penalty, counts);
        sampler_apply_temperature(work, V, p.temperature);
        int n = 0;
        for (int i = 0; i < V; i++)
            if (work[i] != -INFINITY) cands[n++] = (tok_cand){.id = i, .logit = work[i]};
        n = sampler_top_k(cands, n, p.top_k);
        n = sampler_top_p(cands, n, p.top_p);
        n = sampler_min_p(cands, n, p.min_p);
        sampler_softmax(cands, n);
        int want = sampler_draw(cands, n, rng_uniform(&mine));
        same &= got == want && got != 6;
        sample_info ref;
        sampler_logprobs(l, V, got, 3, &ref); /* raw logits: before bias and temperature */
        same &= info.id == got && info.logprob == ref.logprob && info.n_top == 3 &&
                info.top_id[0] == ref.top_id[0] && info.top_logprob[2] == ref.top_logprob[2];
        hist[step] = got;
    }
    CHECK(same, "sampler_sample is not the composition of its steps");
    sampler_free(s);

    /* Temperature 0: the argmax after bias and penalties; the RNG is not consumed. */
    sampler_params_default(&p);
    p.temperature = 0.0f;
    const logit_bias ban[] = {{2, -100.0f}};
    p.bias = ban;
    p.n_bias = 1;
    p.repeat_penalty = 4.0f;
    s = sampler_create(&p, 4);
    const float g[] = {1.0f, 2.0f, 5.0f, 1.5f};
    const int32_t h[] = {1};
    CHECK(sampler_sample(s, g, NULL, 0, 0, NULL) == 1, "banned argmax skipped");
    CHECK(sampler_sample(s, g, h, 1, 0, NULL) == 3, "penalised 2/4 = 0.5 < 1.5");
    sampler_free(s);

    /* top_k 1 at any temperature is greedy. */
    sampler_params_default(&p);
    p.top_k = 1;
    p.temperature = 1.5f;
    s = sampler_create(&p, V);
    bool greedy = true;
    for (int i = 0; i < 10; i++) {
        random_logits(&lr, l, V);
        greedy &= sampler_sample(s, l, NULL, 0, 0, NULL) == sample_greedy(l, V);
    }
    CHECK(greedy, "top_k 1 is not greedy");
    sampler_free(s);

    /* Every token banned: no crash, lowest id. */
    sampler_params_default(&p);
    s = sampler_create(&p, 3);
    const float allban[] = {-INFINITY, -INFINITY, -INFINITY};
    CHECK(sampler_sample(s, allban, NULL, 0, 0, NULL) == 0, "all banned");
    sampler_free(s);

    CHECK(sampler_create(&p, 0) == NULL, "n_vocab 0 refused");

    /* The sampler copies the bias list: changing the caller's array afterwards has no effect. */
    logit_bias mutable_bias[] = {{0, 50.0f}};
    sampler_params_default(&p);
    p.temperature = 0.0f;
    p.bias = mutable_bias;
    p.n_bias = 1;
    s = sampler_create(&p, 3);
    mutable_bias[0].id = 1;
    const float u3[] = {0, 1, 2};
    CHECK(sampler_sample(s, u3, NULL, 0, 0, NULL) == 0, "bias not copied at creation");
    sampler_free(s);
}

int main(void) {
    test_rng();
    test_greedy();
    test_bias();
    test_penalties();
    test_temperature();
    test_top_k();
    test_top_p();
    test_min_p();
    test_softmax_draw();
    test_draw_distribution();
    test_logprobs();
    test_chain();
    return check_summary();
}
