/* test_api_oom: allocation failure in the request parsers (server/api.c, with the tokenizer and
 * chat renderer they call), by injection: this test links with -Wl,--wrap for malloc, calloc,
 * realloc, strdup and free, so every allocation the parsers make (cJSON's too: api.c routes it
 * through malloc) passes through the wrappers below. For each request, a clean run counts its
 * allocations; then, for every N up to that count, the Nth allocation fails and the parser must
 * return -1 with the error filled as a 503 "out of memory" (never left unset, never blamed on
 * the request as a 400) and must leave nothing allocated. Only the parsers are covered: the
 * scheduler, the responses and http.c are not exercised here. */
#include "api.h"
#include "check.h"
#include "common.h"
#include "model.h"

#include <string.h>

/* --- the injector (single-threaded: the parsers start no threads) --- */

static bool counting; /* while a request runs */
static long n_allocs; /* allocations attempted while counting */
static long fail_at;  /* 0: none fails; else the fail_at-th attempt returns NULL */
static long live;     /* allocations made while counting and not yet freed */

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t a, size_t b);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
void __wrap_free(void *p);

static bool inject(void) {
    return counting && ++n_allocs == fail_at;
}

void *__wrap_malloc(size_t n) {
    if (inject()) return NULL;
    void *p = __real_malloc(n);
    live += p && counting;
    return p;
}

void *__wrap_calloc(size_t a, size_t b) {
    if (inject()) return NULL;
    void *p = __real_calloc(a, b);
    live += p && counting;
    return p;
}

void *__wrap_realloc(void *p, size_t n) {
    if (inject()) return NULL;
    void *q = __real_realloc(p, n);
    live += q && !p && counting;
    return q;
}

char *__wrap_strdup(const char *s) {
    if (inject()) return NULL;
    char *p = __real_strdup(s);
    live += p && counting;
    return p;
}

void __wrap_free(void *p) {
    live -= p && counting;
    __real_free(p);
}

/* --- the requests --- */

typedef enum { K_COMPLETION, K_CHAT, K_TOKENIZE, K_DETOKENIZE } kind;

static const struct {
    kind k;
    const char *body;
} requests[] = {
    {K_COMPLETION, "{\"prompt\":\"In the beginning God created\",\"max_tokens\":4,"
                   "\"stop\":[\"light\",\"And\"],\"logit_bias\":{\"5\":1.5,\"7\":-2},"
                   "\"echo\":true,\"logprobs\":2,\"seed\":3}"},
    {K_COMPLETION, "{\"prompt\":[1,450,3,100],\"echo\":true,\"max_tokens\":2}"},
    {K_COMPLETION, "{\"prompt\":[\"And the earth\"],\"n\":2,\"stream\":true,"
                   "\"stream_options\":{\"include_usage\":true}}"},
    {K_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
             "{\"role\":\"user\",\"content\":\"Who made the light?\"},"
             "{\"role\":\"assistant\",\"content\":\"God.\"},"
             "{\"role\":\"user\",\"content\":\"When?\"}],\"stop\":\"x\",\"logprobs\":true,"
             "\"top_logprobs\":2}"},
    {K_TOKENIZE, "{\"content\":\"In the beginning was the Word\",\"add_special\":true}"},
    {K_DETOKENIZE, "{\"tokens\":[1,450,3,100,200]}"},
};

/* Runs request r once; returns the parser's result and fills *e. */
static int run(const api_ctx *ctx, int r, api_error *e) {
    const char *b = requests[r].body;
    size_t len = strlen(b);
    api_call call;
    char *json = NULL;
    int rc = -1;
    switch (requests[r].k) {
    case K_COMPLETION:
        rc = api_parse_completion(ctx, b, len, &call, e);
        if (rc == 0) api_call_free(&call);
        break;
    case K_CHAT:
        rc = api_parse_chat(ctx, b, len, &call, e);
        if (rc == 0) api_call_free(&call);
        break;
    case K_TOKENIZE:
        rc = api_parse_tokenize(ctx, b, len, &json, e);
        break;
    case K_DETOKENIZE:
        rc = api_parse_detokenize(ctx, b, len, &json, e);
        break;
    }
    free(json);
    return rc;
}

static void test_request(const api_ctx *ctx, int r) {
    api_error e;
    counting = true, n_allocs = 0, fail_at = 0, live = 0;
    int rc = run(ctx, r, &e);
    counting = false;
    long total = n_allocs;
    CHECK(rc == 0 && live == 0, "request %d without failures: rc %d (%s), %ld left allocated", r,
          rc, rc ? e.message : "", live);
    CHECK(total > 0, "request %d allocates nothing: the wrappers are not linked", r);
    int bad = 0;
    for (long n = 1; n <= total; n++) {
        memset(&e, 0xa5, sizeof e); /* an unset error shows as garbage, not as a zeroed one */
        counting = true, n_allocs = 0, fail_at = n, live = 0;
        rc = run(ctx, r, &e);
        counting = false;
        bool filled = rc == -1 && e.status == 503 && e.type && !strcmp(e.type, "server_error") &&
                      memchr(e.message, '\0', sizeof e.message) &&
                      strstr(e.message, "out of memory") && memchr(e.param, '\0', sizeof e.param);
        if ((!filled || live != 0) && bad++ < 5)
            CHECK(0, "request %d, allocation %ld of %ld failing: rc %d, status %d, message \"%.80s\","
                  " %ld left allocated",
                  r, n, total, rc, e.status,
                  memchr(e.message, '\0', sizeof e.message) ? e.message : "(unset)", live);
    }
    CHECK(bad == 0, "request %d: %d of %ld injected failures handled wrongly", r, bad, total);
    printf("request %d: %ld allocations, each failed once\n", r, total);
}

int main(void) {
    char err[LS_ERR_LEN] = "";
    model *m = model_load(check_model_path("kjv-demo.gguf"), NULL, err, sizeof err);
    CHECK(m != NULL, "model_load: %s", err);
    if (!m) return check_summary();
    api_ctx ctx = {.m = m, .model_id = "kjv-demo", .ctx_size = 256, .parallel = 2,
                   .max_tokens_limit = 128, .default_seed = -1,
                   .chat_fmt = chat_format_for_model(m, CHAT_AUTO, NULL)};
    api_json_init(); /* before counting: cJSON's hooks are installed once */
    for (int r = 0; r < (int)(sizeof requests / sizeof requests[0]); r++)
        test_request(&ctx, r);
    model_free(m);
    return check_summary();
}
