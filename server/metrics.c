/* metrics: lock-free counters and fixed-bucket histograms for /metrics. Routes are a small
 * fixed set, so requests are counted in a table indexed by (route, status class). */
#include "metrics.h"

#include "routes.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_PATH(path, method, kind, pub) path,
static const char *const routes[] = {HTTP_ROUTES(ROUTE_PATH) "other"}; /* routes.h's paths */
#define N_ROUTES (sizeof routes / sizeof routes[0])
/* 408: the request did not arrive within --request-timeout; 499: the client left first */
static const int statuses[] = {200, 400, 401, 404, 405, 408, 413, 429, 499, 500, 501, 503};
#define N_STATUS (sizeof statuses / sizeof statuses[0])
static atomic_ullong requests[N_ROUTES][N_STATUS + 1]; /* last column: any other status */
static atomic_ullong prompt_tokens, generated_tokens, cached_tokens;
static atomic_ullong spec_drafted, spec_accepted;
static atomic_int beam_running;
static atomic_int connections; /* open HTTP connections */

static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])
typedef struct {
    atomic_ullong count[N_BUCKETS + 1]; /* per bucket (not cumulative); last: +Inf */
    atomic_ullong sum_us;
} histogram;
static histogram ttft, itl, duration;
enum { STEP_DECODE, STEP_MIXED, STEP_PREFILL, N_STEP_KINDS };
static const char *const step_kinds[N_STEP_KINDS] = {"decode", "mixed", "prefill"};
static histogram steps[N_STEP_KINDS];
static atomic_ullong step_rows[N_STEP_KINDS][2]; /* decoding rows, prompt rows */

void metrics_request(const char *route, int status) {
    size_t r = N_ROUTES - 1, c = N_STATUS;
    for (size_t i = 0; i < N_ROUTES - 1; i++)
        if (!strcmp(route, routes[i])) r = i;
    for (size_t i = 0; i < N_STATUS; i++)
        if (statuses[i] == status) c = i;
    atomic_fetch_add_explicit(&requests[r][c], 1, memory_order_relaxed);
}

void metrics_prompt_cached(unsigned long long n) {
    atomic_fetch_add_explicit(&cached_tokens, n, memory_order_relaxed);
}

void metrics_tokens(unsigned long long prompt, unsigned long long generated) {
    atomic_fetch_add_explicit(&prompt_tokens, prompt, memory_order_relaxed);
    atomic_fetch_add_explicit(&generated_tokens, generated, memory_order_relaxed);
}

void metrics_spec(unsigned long long drafted, unsigned long long accepted) {
    atomic_fetch_add_explicit(&spec_drafted, drafted, memory_order_relaxed);
    atomic_fetch_add_explicit(&spec_accepted, accepted, memory_order_relaxed);
}

static void observe(histogram *h, double s) {
    size_t b = 0;
    while (b < N_BUCKETS && s > buckets[b]) b++;
    atomic_fetch_add_explicit(&h->count[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)(s * 1e6), memory_order_relaxed);
}

void metrics_ttft(double seconds) { observe(&ttft, seconds); }
void metrics_connections(int delta) {
    atomic_fetch_add_explicit(&connections, delta, memory_order_relaxed);
}
void metrics_beam_running(int delta) { atomic_fetch_add_explicit(&beam_running, delta, memory_order_relaxed); }
void metrics_itl(double seconds) { observe(&itl, seconds); }
void metrics_duration(double seconds) { observe(&duration, seconds); }

void metrics_step(double seconds, int decode_rows, int prompt_rows) {
    if (decode_rows < 0 || prompt_rows < 0 || decode_rows + prompt_rows == 0) return;
    const int k = prompt_rows == 0 ? STEP_DECODE : decode_rows == 0 ? STEP_PREFILL : STEP_MIXED;
    observe(&steps[k], seconds);
    atomic_fetch_add_explicit(&step_rows[k][0], (unsigned)decode_rows, memory_order_relaxed);
    atomic_fetch_add_explicit(&step_rows[k][1], (unsigned)prompt_rows, memory_order_relaxed);
}

typedef struct {
    char *buf;
    size_t len, cap;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (t->buf && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)n;
        char *nb = realloc(t->buf, cap);
        if (!nb) return;
        t->buf = nb;
        t->cap = cap;
    }
}

/* h's series; label: "" or one label pair, e.g. kind="decode" */
static void put_series(text *t, const char *name, const char *label, histogram *h) {
    const char *sep = *label ? "," : "";
    unsigned long long cum = 0;
    for (size_t b = 0; b <= N_BUCKETS; b++) {
        cum += atomic_load_explicit(&h->count[b], memory_order_relaxed);
        if (b < N_BUCKETS)
            put(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label, sep, buckets[b], cum);
        else
            put(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, sep, cum);
    }
    char braced[40] = "";
    if (*label) snprintf(braced, sizeof braced, "{%s}", label);
    put(t, "%s_sum%s %.6f\n%s_count%s %llu\n", name, braced,
        (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) * 1e-6, name, braced, cum);
}

static void put_histogram(text *t, const char *name, const char *help, histogram *h) {
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    put_series(t, name, "", h);
}

static void put_steps(text *t) {
    const char *name = "llamaserve_step_seconds";
    put(t, "# HELP %s Time of the scheduler's forward steps, by kind: decode (decoding rows "
           "only), mixed (decoding and prompt rows), prefill (prompt rows only).\n"
           "# TYPE %s histogram\n", name, name);
    for (int k = 0; k < N_STEP_KINDS; k++) {
        char label[32];
        snprintf(label, sizeof label, "kind=\"%s\"", step_kinds[k]);
        put_series(t, name, label, &steps[k]);
    }
    put(t, "# HELP llamaserve_step_rows_total Rows the scheduler's forward steps computed, by "
           "step kind and row kind (decode: a decoding slot's token and drafts; prompt).\n"
           "# TYPE llamaserve_step_rows_total counter\n");
    for (int k = 0; k < N_STEP_KINDS; k++)
        for (int r = 0; r < 2; r++)
            put(t, "llamaserve_step_rows_total{kind=\"%s\",rows=\"%s\"} %llu\n", step_kinds[k],
                r ? "prompt" : "decode",
                atomic_load_explicit(&step_rows[k][r], memory_order_relaxed));
}

char *metrics_render(int busy_slots, int slots, int queued, long long kv_tokens,
                     long long kv_capacity) {
    text t = {0};
    put(&t, "# HELP llamaserve_requests_total HTTP requests by route and status.\n"
            "# TYPE llamaserve_requests_total counter\n");
    for (size_t r = 0; r < N_ROUTES; r++)
        for (size_t c = 0; c <= N_STATUS; c++) {
            unsigned long long v = atomic_load_explicit(&requests[r][c], memory_order_relaxed);
            if (!v) continue;
            if (c < N_STATUS)
                put(&t, "llamaserve_requests_total{route=\"%s\",status=\"%d\"} %llu\n", routes[r],
                    statuses[c], v);
            else
                put(&t, "llamaserve_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                    routes[r], v);
        }
    put(&t, "# HELP llamaserve_prompt_tokens_total Prompt tokens processed.\n"
            "# TYPE llamaserve_prompt_tokens_total counter\nllamaserve_prompt_tokens_total %llu\n",
        atomic_load(&prompt_tokens));
    put(&t, "# HELP llamaserve_prompt_tokens_cached_total Prompt tokens found in a slot's KV "
            "cache (not computed again).\n"
            "# TYPE llamaserve_prompt_tokens_cached_total counter\n"
            "llamaserve_prompt_tokens_cached_total %llu\n",
        atomic_load(&cached_tokens));
    put(&t, "# HELP llamaserve_generated_tokens_total Tokens generated.\n"
            "# TYPE llamaserve_generated_tokens_total counter\n"
            "llamaserve_generated_tokens_total %llu\n",
        atomic_load(&generated_tokens));
    put(&t, "# HELP llamaserve_spec_draft_tokens_total Draft tokens verified by speculative "
            "decoding.\n"
            "# TYPE llamaserve_spec_draft_tokens_total counter\n"
            "llamaserve_spec_draft_tokens_total %llu\n",
        atomic_load(&spec_drafted));
    put(&t, "# HELP llamaserve_spec_accepted_tokens_total Draft tokens accepted (the acceptance "
            "rate is this over llamaserve_spec_draft_tokens_total).\n"
            "# TYPE llamaserve_spec_accepted_tokens_total counter\n"
            "llamaserve_spec_accepted_tokens_total %llu\n",
        atomic_load(&spec_accepted));
    put(&t, "# HELP llamaserve_queue_depth Requests waiting for a slot.\n"
            "# TYPE llamaserve_queue_depth gauge\nllamaserve_queue_depth %d\n", queued);
    put(&t, "# HELP llamaserve_slots_busy Slots running a request.\n"
            "# TYPE llamaserve_slots_busy gauge\nllamaserve_slots_busy %d\n", busy_slots);
    put(&t, "# HELP llamaserve_beam_searches_running Beam-search jobs running (each holds a slot per beam).\n"
            "# TYPE llamaserve_beam_searches_running gauge\nllamaserve_beam_searches_running %d\n",
        atomic_load(&beam_running));
    put(&t, "# HELP llamaserve_http_connections Open HTTP connections (idle ones included).\n"
            "# TYPE llamaserve_http_connections gauge\nllamaserve_http_connections %d\n",
        atomic_load(&connections));
    put(&t, "# HELP llamaserve_slots_total Slots.\n"
            "# TYPE llamaserve_slots_total gauge\nllamaserve_slots_total %d\n", slots);
    put(&t, "# HELP llamaserve_kv_cache_tokens Tokens held in the slots' KV caches (running "
            "requests and the prompt prefixes kept for later ones).\n"
            "# TYPE llamaserve_kv_cache_tokens gauge\nllamaserve_kv_cache_tokens %lld\n",
        kv_tokens);
    put(&t, "# HELP llamaserve_kv_cache_capacity_tokens Tokens the slots' KV caches can hold "
            "(slots x ctx_size).\n"
            "# TYPE llamaserve_kv_cache_capacity_tokens gauge\n"
            "llamaserve_kv_cache_capacity_tokens %lld\n",
        kv_capacity);
    put_histogram(&t, "llamaserve_time_to_first_token_seconds",
                  "Time from request arrival to its first generated token.", &ttft);
    put_histogram(&t, "llamaserve_inter_token_latency_seconds",
                  "Time between consecutive generated tokens of a request.", &itl);
    put_histogram(&t, "llamaserve_request_duration_seconds",
                  "Time from arrival to the end of the answer, completions and chat requests "
                  "answered 200.",
                  &duration);
    put_steps(&t);
    return t.buf;
}
