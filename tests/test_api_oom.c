/* test_api_oom: allocation failure by injection. This test links with -Wl,--wrap for malloc,
 * calloc, realloc, strdup and free, so every allocation of the code under test (cJSON's too:
 * api.c routes it through malloc) passes through the wrappers below. A clean run counts the
 * allocations; then, for every N up to that count, the Nth fails.
 * - The request parsers (server/api.c, with the tokenizer and chat renderer they call): each
 *   must return -1 with the error filled as a 503 "out of memory" (never left unset, never
 *   blamed on the request as a 400) and leave nothing allocated.
 * - A generation through the scheduler (submit, admission, the text and logprobs it appends):
 *   the request must fail with "out of memory" (503 at submission, or its choice ending with
 *   FINISH_ERROR), never end as a normal answer with text or logprobs silently missing; and
 *   the scheduler must serve a clean request afterwards.
 * - The same for a chat request and /apply-template rendered by a Jinja template (jinja*.c),
 *   and for llama.cpp's /completion (api_native.c) and /tokenize's with_pieces.
 * - Whole requests over HTTP (http.c, and the writers of api*.c it calls): whichever allocation
 *   fails, the answer is the right one, an error status with an OpenAI-style error object, or a
 *   closed connection; never a 200 with an empty or cut body.
 * Not covered: the response writers (api_response.c) on their own, and streamed answers. */
#include "api.h"
#include "check.h"
#include "common.h"
#include "http.h"
#include "model.h"
#include "scheduler.h"

#include <cjson/cJSON.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* --- the injector (atomic: the scheduler thread allocates too) --- */

static atomic_bool counting; /* while a request runs */
static atomic_long n_allocs; /* allocations attempted while counting */
static atomic_long fail_at;  /* 0: none fails; else the fail_at-th attempt returns NULL */
static atomic_long live;     /* allocations made while counting and not yet freed */

static void count_from(long fail) {
    atomic_store(&n_allocs, 0);
    atomic_store(&fail_at, fail);
    atomic_store(&live, 0);
    atomic_store(&counting, true);
}

static void count_stop(void) {
    atomic_store(&counting, false);
}

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
    return atomic_load(&counting) && atomic_fetch_add(&n_allocs, 1) + 1 == atomic_load(&fail_at);
}

void *__wrap_malloc(size_t n) {
    if (inject()) return NULL;
    void *p = __real_malloc(n);
    atomic_fetch_add(&live, p && atomic_load(&counting));
    return p;
}

void *__wrap_calloc(size_t a, size_t b) {
    if (inject()) return NULL;
    void *p = __real_calloc(a, b);
    atomic_fetch_add(&live, p && atomic_load(&counting));
    return p;
}

void *__wrap_realloc(void *p, size_t n) {
    if (inject()) return NULL;
    void *q = __real_realloc(p, n);
    atomic_fetch_add(&live, q && !p && atomic_load(&counting));
    return q;
}

char *__wrap_strdup(const char *s) {
    if (inject()) return NULL;
    char *p = __real_strdup(s);
    atomic_fetch_add(&live, p && atomic_load(&counting));
    return p;
}

void __wrap_free(void *p) {
    atomic_fetch_sub(&live, p && atomic_load(&counting));
    __real_free(p);
}

/* --- the requests --- */

typedef enum { K_COMPLETION, K_CHAT, K_TOKENIZE, K_DETOKENIZE, K_APPLY, K_RESPONSES, K_NATIVE,
               K_EMBED } kind;

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
    {K_COMPLETION, "{\"prompt\":\"And\",\"response_format\":{\"type\":\"json_schema\","
                   "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\","
                   "\"properties\":{\"a\":{\"enum\":[1,\"b\"]},\"c\":{\"type\":\"integer\","
                   "\"minimum\":3,\"maximum\":77}},\"required\":[\"a\"]}}}}"},
    {K_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
             "\"grammar\":\"root ::= (\\\"a\\\" | [b-d]{1,3})+\"}"},
    {K_RESPONSES, "{\"input\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
                  "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":"
                  "\"input_text\",\"text\":\"Who\"},{\"type\":\"input_text\",\"text\":\"made it?\"}]}],"
                  "\"max_output_tokens\":5,\"metadata\":{\"k\":\"v\"},"
                  "\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"x\",\"schema\":"
                  "{\"type\":\"object\"}}},\"store\":false,\"stream\":true}"},
    {K_TOKENIZE, "{\"content\":\"In the beginning was the Word\",\"add_special\":true}"},
    {K_DETOKENIZE, "{\"tokens\":[1,450,3,100,200]}"},
    {K_TOKENIZE, "{\"content\":\"And \\u00e1\",\"with_pieces\":true}"},
    /* llama.cpp's /completion: a mixed prompt, bias pairs with a string and false */
    {K_NATIVE, "{\"prompt\":[1,\"In the beginning\",450],\"n_predict\":4,\"n_probs\":2,"
               "\"logit_bias\":[[5,1.5],[\"light\",false]],\"stop\":[\"And\"]}"},
    {K_EMBED, "{\"input\":[\"In the beginning\",[1,450,3],\"And the earth\",\"a\",\"b\"],"
              "\"encoding_format\":\"base64\"}"},
    /* tools (tools.c): the generic format's offer and history, the forcing grammar */
    {K_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Ur?\"}],\"tools\":[{\"type\":"
             "\"function\",\"function\":{\"name\":\"w\",\"parameters\":{\"type\":\"object\","
             "\"properties\":{\"c\":{\"type\":\"string\",\"maxLength\":8}},\"required\":"
             "[\"c\"]}}}],\"tool_choice\":\"required\",\"parallel_tool_calls\":false}"},
    {K_APPLY, "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\","
              "\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
              "\"id\":\"1\",\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":"
              "\"{\\\"c\\\":1}\"}},{\"id\":\"2\",\"type\":\"function\",\"function\":{\"name\":"
              "\"w\",\"arguments\":{\"c\":2}}}]},{\"role\":\"tool\",\"content\":\"r1\"},"
              "{\"role\":\"tool\",\"content\":\"r2\"}],\"tools\":[{\"type\":\"function\","
              "\"function\":{\"name\":\"w\"}}]}"},
    /* rendered by a Jinja template (main sets ctx.chat for the last N_JINJA_REQUESTS) */
    {K_CHAT, "{\"messages\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Who\"},"
             "{\"type\":\"text\",\"text\":\"made it?\"}]}]}"},
    {K_APPLY, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":"
              "\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\"}]},"
              "{\"role\":\"tool\",\"content\":\"r\"}]}"},
    {K_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":"
             "\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\",\"type\":\"function\","
             "\"function\":{\"name\":\"w\",\"arguments\":\"{\\\"c\\\":1}\"}}]},{\"role\":"
             "\"tool\",\"content\":\"r\"}],\"tools\":[{\"type\":\"function\",\"function\":{"
             "\"name\":\"w\",\"parameters\":{\"type\":\"object\",\"properties\":{\"c\":{"
             "\"type\":\"integer\"}}}}}],\"tool_choice\":{\"type\":\"function\",\"function\":{"
             "\"name\":\"w\"}}}"},
};
#define N_JINJA_REQUESTS 3 /* the last ones */

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
    case K_RESPONSES:
        rc = api_parse_responses(ctx, b, len, &call, e);
        if (rc == 0) api_call_free(&call);
        break;
    case K_TOKENIZE:
        rc = api_parse_tokenize(ctx, b, len, &json, e);
        break;
    case K_DETOKENIZE:
        rc = api_parse_detokenize(ctx, b, len, &json, e);
        break;
    case K_APPLY:
        rc = api_parse_apply_template(ctx, b, len, &json, e);
        break;
    case K_NATIVE:
        rc = api_parse_native(ctx, b, len, &call, e);
        if (rc == 0) api_call_free(&call);
        break;
    case K_EMBED:
        rc = api_parse_embeddings(ctx, b, len, false, &call, e);
        if (rc == 0) api_call_free(&call);
        break;
    }
    free(json);
    return rc;
}

static void test_request(const api_ctx *ctx, int r) {
    api_error e;
    count_from(0);
    int rc = run(ctx, r, &e);
    count_stop();
    long total = n_allocs;
    CHECK(rc == 0 && live == 0, "request %d without failures: rc %d (%s), %ld left allocated", r,
          rc, rc ? e.message : "", live);
    CHECK(total > 0, "request %d allocates nothing: the wrappers are not linked", r);
    int bad = 0;
    for (long n = 1; n <= total; n++) {
        memset(&e, 0xa5, sizeof e); /* an unset error shows as garbage, not as a zeroed one */
        count_from(n);
        rc = run(ctx, r, &e);
        count_stop();
        bool filled = rc == -1 && e.status == 503 && e.type && !strcmp(e.type, "server_error") &&
                      memchr(e.message, '\0', sizeof e.message) &&
                      strstr(e.message, "out of memory") && memchr(e.param, '\0', sizeof e.param);
        if ((!filled || live != 0) && bad++ < 5)
            CHECK(0,
                  "request %d, allocation %ld of %ld failing: rc %d, status %d, message \"%.80s\","
                  " %ld left allocated",
                  r, n, total, rc, e.status,
                  memchr(e.message, '\0', sizeof e.message) ? e.message : "(unset)", live);
    }
    CHECK(bad == 0, "request %d: %d of %ld injected failures handled wrongly", r, bad, total);
    printf("request %d: %ld allocations, each failed once\n", r, total);
}

/* One generation with the Nth allocation from submission to the end failing (0: none).
 * Returns the allocations counted; *ok says whether the outcome was right. */
static long generate(const api_ctx *ctx, sched *s, long fail, bool *ok) {
    const char *body = "{\"prompt\":\"In the beginning\",\"max_tokens\":120,\"logprobs\":1,"
                       "\"temperature\":0,\"ignore_eos\":true}";
    api_call call;
    api_error e;
    char err[LS_ERR_LEN] = "";
    *ok = false;
    if (api_parse_completion(ctx, body, strlen(body), &call, &e) != 0) {
        CHECK(0, "parse: %s", e.message);
        return 0;
    }
    int status = 0;
    count_from(fail);
    job *j = sched_submit(s, &call.req, &status, err, sizeof err);
    if (j) job_wait(j); /* every allocation of the request is made before it finishes */
    count_stop();
    long total = n_allocs;
    if (!j) {
        *ok = fail > 0 && status == 503 && strstr(err, "out of memory");
        if (!*ok) CHECK(0, "allocation %ld failing: submit %d \"%s\"", fail, status, err);
    } else {
        pthread_mutex_lock(&j->mu);
        const choice_log *o = &j->choices[0]; /* the published counts */
        if (fail == 0)
            *ok = o->finish == FINISH_LENGTH && o->n_gen == 120 && o->n_toks == 120 && o->len > 0;
        else
            *ok = o->finish == FINISH_ERROR && strstr(j->error, "out of memory");
        if (!*ok)
            CHECK(0, "allocation %ld failing: finish %d, %d tokens, %d logprobs, %zu bytes, \"%s\"",
                  fail, (int)o->finish, o->n_gen, o->n_toks, o->len, j->error);
        pthread_mutex_unlock(&j->mu);
        job_release(j);
    }
    api_call_free(&call);
    return total;
}

/* One slot of 256 tokens, one thread, a queue of one: what both the scheduler and the HTTP
 * checks run on. */
static sched_params one_slot(void) {
    return (sched_params){.parallel = 1,
                          .ctx_size = 256,
                          .batch_size = 64,
                          .threads = 1,
                          .max_queue = 1,
                          .kv = KV_F32};
}

static void test_scheduler(const model *m, const api_ctx *ctx) {
    sched_params sp = one_slot();
    sp.prompt_cache = false;
    char err[LS_ERR_LEN] = "";
    sched *s = sched_create(m, &sp, err, sizeof err);
    CHECK(s != NULL, "sched_create: %s", err);
    if (!s) return;
    bool ok;
    long total = generate(ctx, s, 0, &ok);
    CHECK(ok && total > 0, "a clean generation (%ld allocations)", total);
    int bad = 0;
    for (long n = 1; n <= total && bad < 5; n++) {
        generate(ctx, s, n, &ok);
        bad += !ok;
    }
    CHECK(bad == 0, "%d injected failures in a generation handled wrongly", bad);
    generate(ctx, s, 0, &ok);
    CHECK(ok, "a clean generation after the failures");
    printf("generation: %ld allocations, each failed once\n", total);
    sched_destroy(s);
}

/* --- whole requests over HTTP --- */

static const struct {
    const char *method, *path, *body;
} http_requests[] = {
    {"GET", "/health", NULL},
    {"GET", "/v1/models", NULL},
    {"GET", "/metrics", NULL},
    {"GET", "/props", NULL},
    {"POST", "/tokenize", "{\"content\":\"In the beginning\"}"},
    {"POST", "/v1/completions", "{\"prompt\":\"In the beginning\",\"max_tokens\":2}"},
    {"POST", "/v1/chat/completions",
     "{\"messages\":[{\"role\":\"user\",\"content\":"
     "\"Who?\"}],\"max_tokens\":2}"},
};

/* One request on a fresh connection (Connection: close), its answer read to the end into out
 * (NUL-terminated; cut at cap). Returns the bytes read, 0 when the server closed without an
 * answer, -1 when the test itself could not connect or send. No allocation: the injector counts
 * this thread too. */
static long http_call(int port, int r, char *out, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char *body = http_requests[r].body ? http_requests[r].body : "";
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     http_requests[r].method, http_requests[r].path, strlen(body), body);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t len = 0;
    ssize_t got;
    while ((got = read(fd, out + len, cap - 1 - len)) > 0)
        len += (size_t)got;
    out[len] = '\0';
    close(fd);
    return (long)len;
}

/* The status of an answer and its body (after the blank line); 0 when it is not HTTP. */
static int http_status(const char *answer, const char **body) {
    int status = 0;
    const char *end = strstr(answer, "\r\n\r\n");
    *body = end ? end + 4 : "";
    return end && sscanf(answer, "HTTP/1.%*d %d", &status) == 1 ? status : 0;
}

/* Whether body is an OpenAI-style error object: {"error":{"message":"...","type":"...",...}}. */
static bool is_error_object(const char *body) {
    cJSON *root = cJSON_Parse(body), *e = cJSON_GetObjectItem(root, "error");
    bool ok = cJSON_IsString(cJSON_GetObjectItem(e, "message")) &&
              cJSON_IsString(cJSON_GetObjectItem(e, "type")) && cJSON_HasObjectItem(e, "param") &&
              cJSON_HasObjectItem(e, "code");
    cJSON_Delete(root);
    return ok;
}

/* Request r with every allocation in turn failing. A clean run gives the right answer (200
 * with a whole body); with a failure the answer is either that, or 500/503 with an error
 * object, or no answer at all (libmicrohttpd closes a connection whose request cannot even be
 * recorded); a 200 with an empty body, or one with an item left out, is wrong. The body of a
 * 200 is compared with the clean one where nothing in it moves between calls. */
static void test_http_request(int port, int r) {
    static char clean[1 << 16], got[1 << 16];
    const char *path = http_requests[r].path, *body;
    count_from(0);
    long len = http_call(port, r, clean, sizeof clean);
    count_stop();
    long total = n_allocs;
    CHECK(len > 0 && http_status(clean, &body) == 200 && body[0], "%s without failures: %.200s",
          path, clean);
    const char *clean_body = strstr(clean, "\r\n\r\n") ? strstr(clean, "\r\n\r\n") + 4 : "";
    bool exact = strcmp(path, "/metrics") != 0 && strcmp(path, "/v1/completions") != 0 &&
                 strcmp(path, "/v1/chat/completions") != 0; /* counters, ids and times move */
    int bad = 0, n_err = 0;
    for (long n = 1; n <= total; n++) {
        count_from(n);
        len = http_call(port, r, got, sizeof got);
        count_stop();
        int status = len > 0 ? http_status(got, &body) : 0;
        bool ok = len == 0 || (status == 200 && body[0] && (!exact || !strcmp(body, clean_body))) ||
                  ((status == 500 || status == 503) && is_error_object(body));
        n_err += status == 500 || status == 503;
        if (!ok && bad++ < 5)
            CHECK(0, "%s, allocation %ld of %ld failing: %ld bytes: %.300s", path, n, total, len,
                  got);
    }
    CHECK(bad == 0, "%s: %d of %ld injected failures answered wrongly", path, bad, total);
    printf("%s: %ld allocations, each failed once, %d answered with an error\n", path, total,
           n_err);
}

static void test_http(const model *m, const api_ctx *ctx) {
    cfg_server cfg;
    cfg_defaults(&cfg);
    cfg.port = 0;
    cfg.log_requests = false;
    char err[LS_ERR_LEN] = "";
    http_server *h = http_start(&cfg, err, sizeof err);
    CHECK(h != NULL, "http_start: %s", err);
    sched_params sp = one_slot();
    sp.on_progress = http_progress;
    sp.progress_arg = h;
    sched *s = h ? sched_create(m, &sp, err, sizeof err) : NULL;
    CHECK(!h || s != NULL, "sched_create: %s", err);
    if (s) {
        http_set_ready(h, s, ctx);
        for (int r = 0; r < (int)(sizeof http_requests / sizeof http_requests[0]); r++)
            test_http_request(http_port(h), r);
    }
    if (h) http_stop(h);
    if (s) sched_destroy(s);
    if (h) http_free(h);
    cfg_free(&cfg);
}

int main(void) {
    char err[LS_ERR_LEN] = "";
    model *m = model_load(check_model_path("kjv-demo.gguf"), NULL, err, sizeof err);
    CHECK(m != NULL, "model_load: %s", err);
    if (!m) return check_summary();
    api_ctx ctx = {.m = m,
                   .model_id = "kjv-demo",
                   .ctx_size = 256,
                   .parallel = 2,
                   .max_tokens_limit = 128,
                   .default_seed = -1,
                   .chat_fmt = chat_format_for_model(m, CHAT_AUTO, NULL)};
    api_json_init(); /* before counting: cJSON's hooks are installed once */
    int n_req = (int)(sizeof requests / sizeof requests[0]);
    for (int r = 0; r < n_req - N_JINJA_REQUESTS; r++)
        test_request(&ctx, r);
    /* the chat template interpreter, its arena and the message shapes */
    static const char tmpl[] =
        "{{ bos_token }}{% set ns = namespace(n=0) %}{% for m in messages %}"
        "{% set ns.n = ns.n + 1 %}<|{{ m.role }}|>{{ m.content | trim if m.content is string }}"
        "{{ m.tool_calls | tojson if m.tool_calls }}{{ eos_token }}{% endfor %}"
        "{{ tools | tojson if tools }}{{ ns.n }}{% if add_generation_prompt %}<|assistant|>"
        "{% endif %}";
    ctx.chat = chat_template_load(m, CHAT_AUTO, tmpl, strlen(tmpl), "test", err, sizeof err);
    CHECK(ctx.chat, "chat_template_load: %s", err);
    for (int r = n_req - N_JINJA_REQUESTS; ctx.chat && r < n_req; r++)
        test_request(&ctx, r);
    chat_template_free((chat_template *)ctx.chat);
    ctx.chat = NULL;
    test_scheduler(m, &ctx);
    test_http(m, &ctx);
    model_free(m);
    return check_summary();
}
