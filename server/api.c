/* api: OpenAI-compatible request parsing and errors (see api.h; the responses and streams are
 * in api_response.c). Validation is strict on the fields we know (type and range, with the
 * offending field named in `param`) and lenient on fields we do not (ignored, as llama.cpp and
 * vLLM do, so newer clients work). */
#include "api_internal.h"

#include "common.h"
#include "json_schema.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void api_error_set(api_error *e, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* A 400 naming the offending field; returns -1 so that `return BAD(...)` reads as one. */
static int bad(api_error *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(api_error *e, const char *param, const char *fmt, ...) {
    e->status = 400;
    e->type = "invalid_request_error";
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}
#define BAD(param, ...) bad(e, param, __VA_ARGS__)

/* A 503 for memory that ran out: the server's trouble, not the request's. Returns -1. */
static int oom(api_error *e) {
    api_error_set(e, 503, "server_error", NULL, NULL, "out of memory");
    return -1;
}

/* What a request that fails without a reason gets: every parser fills this first, so that
 * the caller never sends an error nobody set. */
static void preset(api_error *e) {
    api_error_set(e, 500, "server_error", NULL, NULL, "internal error");
}

/* cJSON allocates through json_malloc, so that a parse that ran out of memory can be told
 * from a body that is not JSON (cJSON returns NULL for both). json_oom is per thread, cleared
 * before each parse; json_failures counts every failure of this thread (api_json_failures). */
static _Thread_local bool json_oom;
static _Thread_local unsigned long json_failures;

static void *json_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        json_oom = true;
        json_failures++;
    }
    return p;
}

unsigned long api_json_failures(void) {
    return json_failures;
}

static void json_free(void *p) {
    free(p);
}

static void json_hooks(void) {
    cJSON_Hooks h = {json_malloc, json_free};
    cJSON_InitHooks(&h);
}

void api_json_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, json_hooks);
}

bool api_json_put(cJSON *obj, const char *key, cJSON *item) {
    if (cJSON_AddItemToObject(obj, key, item)) return true;
    cJSON_Delete(item);
    return false;
}

bool api_json_append(cJSON *arr, cJSON *item) {
    if (cJSON_AddItemToArray(arr, item)) return true;
    cJSON_Delete(item);
    return false;
}

char *api_error_json(const api_error *e) {
    api_json_init();
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

void api_call_free(api_call *c) {
    for (int i = 0; i < c->n_echo; i++) free(c->echo_text[i]);
    free(c->echo_text);
    cJSON_Delete(c->resp_echo);
    tools_req_free(c->tools);
    gen_request_free(&c->req);
    memset(c, 0, sizeof *c);
}

/* --- validation helpers --- */

static bool is_null(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* Each returns 0 (absent or null leaves *out as is), or -1 with *e filled. */
static int get_num(const cJSON *o, const char *k, double lo, double hi, double *out, api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (is_null(v)) return 0;
    if (!cJSON_IsNumber(v)) return BAD(k, "'%s' must be a number", k);
    if (!isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return BAD(k, "'%s' must be between %g and %g, got %g", k, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return 0;
}

static int get_int(const cJSON *o, const char *k, double lo, double hi, long long *out,
                   api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (is_null(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return BAD(k, "'%s' must be an integer", k);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return BAD(k, "'%s' must be between %.0f and %.0f, got %.0f", k, lo, hi, v->valuedouble);
    *out = (long long)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *k, bool *out, api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (is_null(v)) return 0;
    if (!cJSON_IsBool(v)) return BAD(k, "'%s' must be a boolean", k);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_str(const cJSON *o, const char *k, const char **out, api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (is_null(v)) return 0;
    if (!cJSON_IsString(v)) return BAD(k, "'%s' must be a string", k);
    if (!ls_utf8_valid(v->valuestring, strlen(v->valuestring)))
        return BAD(k, "'%s' is not valid UTF-8", k);
    *out = v->valuestring;
    return 0;
}

/* Byte offset of the first NUL in body, raw or written as the escape \u0000, or -1. cJSON
 * keeps strings NUL-terminated, so such a string would be cut short without a word. An
 * unescaped backslash is only valid inside a string, so skipping each escaped character is
 * enough to tell "\\u0000" (a backslash, then text) from "\u0000". */
static long nul_offset(const char *body, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (body[i] == '\0') return (long)i;
        if (body[i] != '\\' || i + 1 >= len) continue;
        if (body[i + 1] == 'u' && i + 6 <= len && memcmp(body + i + 2, "0000", 4) == 0)
            return (long)i;
        i++; /* the escaped character */
    }
    return -1;
}

static cJSON *parse_body(const char *body, size_t len, api_error *e) {
    if (len == 0) return BAD(NULL, "the request body is empty; expected a JSON object"), NULL;
    if (!ls_utf8_valid(body, len)) return BAD(NULL, "the request body is not valid UTF-8"), NULL;
    long nul = nul_offset(body, len);
    if (nul >= 0)
        return BAD(NULL, "the request body contains a NUL character (byte %ld); strings may not "
                         "contain U+0000", nul), NULL;
    const char *end = NULL;
    api_json_init();
    json_oom = false;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root && json_oom) return oom(e), NULL;
    if (!root) {
        BAD(NULL, "the request body is not valid JSON (near byte %ld)",
            end ? (long)(end - body) : 0L);
        return NULL;
    }
    while (end && (size_t)(end - body) < len && strchr(" \t\r\n", *end)) end++;
    if (end && (size_t)(end - body) < len) {
        cJSON_Delete(root);
        BAD(NULL, "unexpected data after the JSON object (byte %ld)", (long)(end - body));
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        BAD(NULL, "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

static uint64_t fresh_seed(void) {
    static atomic_ullong counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                 (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
    return x;
}

/* "speculative": {"n_max": N, "n_min": M}, llama.cpp's per-request draft bounds (prompt lookup,
 * engine/spec.h, or --model-draft); without it the server's --spec-ngram applies. Any other
 * member (p_min, ...) is refused: it would be ignored. */
static int parse_speculative(const cJSON *o, gen_request *r, api_error *e) {
    r->spec_n_max = -1;
    r->spec_n_min = 0;
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "speculative");
    if (is_null(sp)) return 0;
    if (!cJSON_IsObject(sp)) return BAD("speculative", "'speculative' must be an object");
    const cJSON *it;
    cJSON_ArrayForEach(it, sp) {
        if (strcmp(it->string, "n_max") && strcmp(it->string, "n_min"))
            return BAD("speculative", "'speculative.%s' is not supported (only n_max and n_min)",
                       it->string);
    }
    long long n_max = -1, n_min = 0;
    if (get_int(sp, "n_max", 0, SCHED_MAX_DRAFT, &n_max, e) ||
        get_int(sp, "n_min", 0, SCHED_MAX_DRAFT, &n_min, e))
        return -1;
    if (n_max >= 0 && n_min > n_max)
        return BAD("speculative", "'speculative.n_min' (%lld) exceeds 'n_max' (%lld)", n_min,
                   n_max);
    r->spec_n_max = (int)n_max;
    r->spec_n_min = (int)n_min;
    return 0;
}

/* Sampling fields that beam search does not use (it ranks by the model's own log-probabilities):
 * given with any other value than these, they would be ignored without a word. */
static const struct {
    const char *field;
    double neutral, also;
} beam_unused[] = {
    {"temperature", 1, 0}, {"top_p", 1, 1}, {"top_k", 0, 0}, {"min_p", 0, 0},
    {"presence_penalty", 0, 0}, {"frequency_penalty", 0, 0}, {"repeat_penalty", 1, 1},
};

/* Beam search (an extension llama.cpp and vLLM dropped): use_beam_search with best_of beams,
 * the n best returned, ranked with length_penalty. Without it, best_of other than n and
 * length_penalty other than 1 would be silently ignored: they are refused. The sampling
 * fields' types and ranges are checked already. */
static int parse_beam(const cJSON *o, api_call *c, long long n, api_error *e) {
    bool beam = false;
    long long best_of = n;
    double length_penalty = 1.0;
    if (get_bool(o, "use_beam_search", &beam, e) || get_int(o, "best_of", 1, API_MAX_BEST_OF, &best_of, e) ||
        get_num(o, "length_penalty", -10, 10, &length_penalty, e))
        return -1;
    if (!beam) {
        if (best_of != n)
            return BAD("best_of", "'best_of' other than 'n' needs 'use_beam_search': true (this "
                                  "server returns every sampled choice)");
        if (length_penalty != 1.0)
            return BAD("length_penalty", "'length_penalty' applies only with 'use_beam_search'");
        return 0;
    }
    if (best_of < n)
        return BAD("best_of", "'best_of' (%lld) must be at least 'n' (%lld)", best_of, n);
    for (size_t i = 0; i < sizeof beam_unused / sizeof beam_unused[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, beam_unused[i].field);
        if (cJSON_IsNumber(v) && v->valuedouble != beam_unused[i].neutral &&
            v->valuedouble != beam_unused[i].also)
            return BAD(beam_unused[i].field, "'%s' has no effect on beam search, which ranks by "
                       "the model's log-probabilities; leave it out", beam_unused[i].field);
    }
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(o, "logit_bias");
    if ((cJSON_IsObject(lb) || cJSON_IsArray(lb)) && lb->child)
        return BAD("logit_bias", "'logit_bias' is not supported with beam search");
    c->beam_width = (int)best_of;
    c->length_penalty = (float)length_penalty;
    c->req.beam_width = c->beam_width; /* the scheduler runs it (sched_beam.c) */
    c->req.length_penalty = c->length_penalty;
    return 0;
}

/* Appends one bias entry to r->bias (grown as needed). */
static int add_bias(gen_request *r, int *cap, int32_t id, float bias, api_error *e) {
    if (r->n_bias == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        logit_bias *nb = realloc(r->bias, (size_t)nc * sizeof *nb);
        if (!nb) return oom(e);
        r->bias = nb;
        *cap = nc;
    }
    r->bias[r->n_bias].id = id;
    r->bias[r->n_bias].bias = bias;
    r->n_bias++;
    return 0;
}

/* A bias value: a number in [-100, 100], or (pairs only) false, which bans the token. */
static int bias_value(const cJSON *v, bool pairs, float *out, api_error *e) {
    if (pairs && cJSON_IsFalse(v)) {
        *out = -100.0f; /* the sampler bans a token at -100 or less */
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < -100 ||
        v->valuedouble > 100)
        return BAD("logit_bias", pairs ? "logit_bias biases must be numbers in [-100, 100] or false"
                                       : "logit_bias values must be numbers in [-100, 100]");
    *out = (float)v->valuedouble;
    return 0;
}

/* One [token, bias] pair of llama.cpp's list form: the token an id, or a string whose every
 * token (encoded without BOS) gets the bias. */
static int bias_pair(const api_ctx *ctx, const cJSON *pair, gen_request *r, int *cap,
                     api_error *e) {
    int vocab = ctx->m->cfg.vocab_size;
    if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2)
        return BAD("logit_bias", "logit_bias list entries must be [token, bias] pairs");
    const cJSON *tok = pair->child, *val = tok->next;
    float bias = 0;
    if (bias_value(val, true, &bias, e)) return -1;
    if (cJSON_IsNumber(tok)) {
        double id = tok->valuedouble;
        if (id != floor(id) || id < 0 || id >= vocab)
            return BAD("logit_bias", "logit_bias token %g is not a token id in [0, %d)", id, vocab);
        return add_bias(r, cap, (int32_t)id, bias, e);
    }
    if (!cJSON_IsString(tok) || !tok->valuestring[0])
        return BAD("logit_bias", "a logit_bias token must be an id or a non-empty string");
    size_t len = strlen(tok->valuestring);
    int n = tok_encode(ctx->m->tok, tok->valuestring, len, false, NULL, 0);
    if (n == TOK_ENOMEM) return oom(e);
    if (n < 0) return BAD("logit_bias", "a logit_bias string cannot be tokenized");
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) return oom(e);
    int rc = tok_encode(ctx->m->tok, tok->valuestring, len, false, ids, n) == n ? 0 : oom(e);
    for (int i = 0; rc == 0 && i < n; i++) rc = add_bias(r, cap, ids[i], bias, e);
    free(ids);
    return rc;
}

/* logit_bias: OpenAI's {"token id": bias in [-100, 100]}, or llama.cpp's list of [token, bias]
 * pairs (token an id or a string, bias a number or false). Fills r->bias. */
static int parse_bias(const api_ctx *ctx, const cJSON *lb, gen_request *r, api_error *e) {
    if (is_null(lb)) return 0;
    int cap = 0;
    const cJSON *it;
    if (cJSON_IsArray(lb)) {
        cJSON_ArrayForEach(it, lb) if (bias_pair(ctx, it, r, &cap, e)) return -1;
        return 0;
    }
    if (!cJSON_IsObject(lb))
        return BAD("logit_bias", "'logit_bias' must be an object or a list of [token, bias] pairs");
    if (cJSON_GetArraySize(lb) > ctx->m->cfg.vocab_size)
        return BAD("logit_bias", "'logit_bias' has more entries than the vocabulary");
    cJSON_ArrayForEach(it, lb) {
        char *end = NULL;
        long id = strtol(it->string, &end, 10);
        float bias = 0;
        if (!*it->string || *end || id < 0 || id >= ctx->m->cfg.vocab_size)
            return BAD("logit_bias", "logit_bias key '%s' is not a token id in [0, %d)",
                       it->string, ctx->m->cfg.vocab_size);
        if (bias_value(it, false, &bias, e) || add_bias(r, &cap, (int32_t)id, bias, e)) return -1;
    }
    return 0;
}

/* The fields completions and chat share: sampling, stop, n, stream, max_tokens. */
static int parse_common(const api_ctx *ctx, const cJSON *o, api_call *c, int default_max,
                        api_error *e) {
    gen_request *r = &c->req;
    sampler_params *sp = &r->sp;
    sampler_params_default(sp);
    double temperature = 1.0, top_p = 1.0, min_p = 0.0, presence = 0, frequency = 0, rep = 1.0;
    long long top_k = 0, n = 1, max_tokens = default_max, seed = ctx->default_seed;
    const char *model_name = NULL, *user = NULL;
    bool seed_given = false;
    if (get_str(o, "model", &model_name, e) || get_str(o, "user", &user, e) ||
        get_num(o, "temperature", 0, 2, &temperature, e) || get_num(o, "top_p", 0, 1, &top_p, e) ||
        get_num(o, "min_p", 0, 1, &min_p, e) ||
        get_num(o, "presence_penalty", -2, 2, &presence, e) ||
        get_num(o, "frequency_penalty", -2, 2, &frequency, e) ||
        get_num(o, "repeat_penalty", 0.01, 10, &rep, e) ||
        get_int(o, "top_k", 0, 1e9, &top_k, e) || get_int(o, "n", 1, SCHED_MAX_N, &n, e) ||
        get_int(o, "max_tokens", 0, 1e15, &max_tokens, e) ||
        get_bool(o, "stream", &c->stream, e) || get_bool(o, "ignore_eos", &r->ignore_eos, e))
        return -1;
    /* llama.cpp's field: false computes the whole prompt even when a slot has it cached */
    r->cache_prompt = true;
    if (get_bool(o, "cache_prompt", &r->cache_prompt, e)) return -1;
    if (c->chat && get_int(o, "max_completion_tokens", 0, 1e15, &max_tokens, e)) return -1;
    if (parse_speculative(o, r, e)) return -1;
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(o, "seed");
    if (!is_null(sv)) {
        if (get_int(o, "seed", -9.2e18, 9.2e18, &seed, e)) return -1;
        seed_given = true;
    }
    if (max_tokens > ctx->max_tokens_limit)
        return BAD("max_tokens",
                   "'max_tokens' is %lld; this server allows at most %d", max_tokens,
                   ctx->max_tokens_limit);
    if (n > ctx->parallel)
        return BAD("n", "'n' is %lld; this server runs at most %d sequences at once", n,
                   ctx->parallel);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
    if (!is_null(so)) {
        if (!cJSON_IsObject(so)) return BAD("stream_options", "'stream_options' must be an object");
        if (get_bool(so, "include_usage", &c->include_usage, e)) return -1;
    }
    /* stop: a string or up to 4 strings, none empty, each at most SCHED_MAX_STOP_BYTES */
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (!is_null(st)) {
        const cJSON *items[SCHED_MAX_STOP];
        int k = 0;
        if (cJSON_IsString(st)) {
            items[k++] = st;
        } else if (cJSON_IsArray(st)) {
            if (cJSON_GetArraySize(st) > SCHED_MAX_STOP)
                return BAD("stop", "'stop' takes at most %d strings", SCHED_MAX_STOP);
            const cJSON *it;
            cJSON_ArrayForEach(it, st) items[k++] = it;
        } else {
            return BAD("stop", "'stop' must be a string or an array of strings");
        }
        for (int i = 0; i < k; i++) {
            if (!cJSON_IsString(items[i])) return BAD("stop", "'stop' entries must be strings");
            size_t len = strlen(items[i]->valuestring);
            if (len == 0 || len > SCHED_MAX_STOP_BYTES)
                return BAD("stop", "each stop string must be 1 to %d bytes", SCHED_MAX_STOP_BYTES);
            if (!ls_utf8_valid(items[i]->valuestring, len))
                return BAD("stop", "a stop string is not valid UTF-8");
            r->stop[r->n_stop] = strdup(items[i]->valuestring);
            if (!r->stop[r->n_stop]) return oom(e);
            r->n_stop++;
        }
    }
    if (parse_bias(ctx, cJSON_GetObjectItemCaseSensitive(o, "logit_bias"), r, e)) return -1;
    if (get_bool(o, "timings_per_token", &c->timings_per_token, e)) return -1;
    if (parse_beam(o, c, n, e)) return -1;
    bool beam = c->beam_width > 0;
    /* constrained output: grammar, json_schema, response_format (json_schema.c) */
    char gparam[64], gmsg[512];
    int grc = json_request_grammar(o, &r->grammar, gparam, sizeof gparam, gmsg, sizeof gmsg);
    if (grc == -2) return oom(e);
    if (grc < 0) return BAD(gparam, "%s", gmsg);
    if (r->grammar && beam)
        return BAD("use_beam_search", "a grammar with beam search is not supported");
    (void)model_name; /* one model is served: any name is accepted, the served id answers */
    (void)user;
    r->max_tokens = (int)max_tokens;
    r->n = (int)n;
    r->n_top_logprobs = -1;
    sp->temperature = (float)temperature;
    sp->top_p = (float)top_p;
    sp->top_k = (int)top_k;
    sp->min_p = (float)min_p;
    sp->presence_penalty = (float)presence;
    sp->frequency_penalty = (float)frequency;
    sp->repeat_penalty = (float)rep;
    sp->penalty_last_n = -1;
    sp->seed = seed_given || seed >= 0 ? (uint64_t)seed : fresh_seed();
    sp->bias = r->bias;
    sp->n_bias = r->n_bias;
    return 0;
}

/* Checks that a prompt of n_prompt tokens leaves room for the completion (called once per
 * prompt; without max_tokens given, the completion shrinks to the room left). */
static int check_context(const api_ctx *ctx, api_call *c, int n_prompt, bool max_given,
                         api_error *e) {
    gen_request *r = &c->req;
    if (n_prompt >= ctx->ctx_size) {
        api_error_set(e, 400, "invalid_request_error", c->chat ? "messages" : "prompt",
                      "context_length_exceeded",
                      "This model's maximum context length is %d tokens per slot; the prompt "
                      "has %d tokens, leaving no room to generate",
                      ctx->ctx_size, n_prompt);
        return -1;
    }
    int room = ctx->ctx_size - n_prompt;
    if (!max_given) {
        if (r->max_tokens > room) r->max_tokens = room;
    } else if (r->max_tokens > room) {
        api_error_set(e, 400, "invalid_request_error", "max_tokens", "context_length_exceeded",
                      "This model's maximum context length is %d tokens per slot; you requested "
                      "%d tokens (%d in the prompt, %d for the completion)",
                      ctx->ctx_size, n_prompt + r->max_tokens, n_prompt, r->max_tokens);
        return -1;
    }
    return 0;
}

/* One prompt, a string or an array of token ids, into *ids (malloc'ed; caller frees, also on
 * failure) and *n (more than ctx_size ids: too long, check_context refuses it; only the first
 * ctx_size + 1 are stored). With echo, its text into *echo (caller frees). */
static int parse_prompt(const api_ctx *ctx, const cJSON *p, int32_t **ids, int *n, char **echo,
                        api_error *e) {
    if (cJSON_IsString(p)) {
        if (!ls_utf8_valid(p->valuestring, strlen(p->valuestring)))
            return BAD("prompt", "'prompt' is not valid UTF-8");
        /* A prompt longer than the context is refused anyway (check_context), so one pass into
         * a buffer of ctx_size + 1 ids suffices: a larger count means "too long". */
        int cap = ctx->ctx_size + 1;
        if (!(*ids = malloc((size_t)cap * sizeof **ids))) return oom(e);
        *n = tok_encode(ctx->m->tok, p->valuestring, strlen(p->valuestring),
                        tok_add_bos(ctx->m->tok), *ids, cap);
        if (*n == TOK_ENOMEM) return oom(e);
        if (*n < 0) return BAD("prompt", "the prompt cannot be tokenized");
        if (echo && !(*echo = strdup(p->valuestring))) return oom(e);
        return 0;
    }
    if (!cJSON_IsArray(p))
        return BAD("prompt", "'prompt' must be a string, an array of token ids, or an array of "
                             "those");
    int len = cJSON_GetArraySize(p);
    if (len == 0) return BAD("prompt", "'prompt' must not be empty");
    if (len > ctx->ctx_size) {
        BAD("prompt", "'prompt' has more tokens than the context holds");
        e->code = "context_length_exceeded";
        return -1;
    }
    if (!(*ids = malloc((size_t)len * sizeof **ids))) return oom(e);
    *n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, p) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            it->valuedouble < 0 || it->valuedouble >= ctx->m->cfg.vocab_size)
            return BAD("prompt", "'prompt' token ids must be integers in [0, %d)",
                       ctx->m->cfg.vocab_size);
        (*ids)[(*n)++] = (int32_t)it->valuedouble;
    }
    if (echo) { /* the prompt's text, only for echo */
        size_t cap = tok_decode(ctx->m->tok, *ids, *n, NULL, 0) + 1;
        if (!(*echo = malloc(cap))) return oom(e);
        tok_decode(ctx->m->tok, *ids, *n, *echo, cap);
    }
    return 0;
}

/* Appends ids to the request's prompt, ending prompt i of np. */
static int add_prompt(gen_request *r, const int32_t *ids, int n, int i, int np, api_error *e) {
    int32_t *all = realloc(r->prompt, (size_t)(r->n_prompt + n) * sizeof *all);
    if (!all) return oom(e);
    r->prompt = all;
    memcpy(all + r->n_prompt, ids, (size_t)n * sizeof *ids);
    r->n_prompt += n;
    if (np > 1) {
        if (!r->prompt_end && !(r->prompt_end = calloc((size_t)np, sizeof *r->prompt_end)))
            return oom(e);
        r->prompt_end[i] = r->n_prompt;
    }
    return 0;
}

/* `prompt`: a string, an array of ids, or an array of several of those, each its own prompt
 * with n choices (the request's choices become n for each prompt, in order). */
static int parse_prompts(const api_ctx *ctx, const cJSON *o, api_call *c, api_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (is_null(p)) return BAD("prompt", "'prompt' is required");
    /* a string or an array of ids is one prompt; otherwise each item is one */
    bool several = cJSON_IsArray(p) && p->child && !cJSON_IsNumber(p->child);
    int np = several ? cJSON_GetArraySize(p) : 1, n = c->req.n;
    if ((long long)np * n > ctx->parallel)
        return BAD("prompt", "%d prompts with n = %d need %lld slots at once; this server has %d",
                   np, n, (long long)np * n, ctx->parallel);
    if (np > 1 && c->beam_width > 0)
        return BAD("prompt", "several prompts with 'use_beam_search' are not supported");
    bool max_given = !is_null(cJSON_GetObjectItemCaseSensitive(o, "max_tokens"));
    if (c->echo && !(c->echo_text = calloc((size_t)np, sizeof *c->echo_text))) return oom(e);
    const cJSON *it = several ? p->child : p;
    for (int i = 0; i < np; i++, it = it->next) {
        int32_t *ids = NULL;
        int len = 0;
        char *echo = NULL;
        int rc = parse_prompt(ctx, it, &ids, &len, c->echo ? &echo : NULL, e);
        if (c->echo) c->echo_text[c->n_echo++] = echo;
        rc = rc ? rc : check_context(ctx, c, len, max_given, e);
        rc = rc ? rc : add_prompt(&c->req, ids, len, i, np, e);
        free(ids);
        if (rc) return rc;
    }
    c->req.n_prompts = np;
    c->req.n = np * n;
    return 0;
}

int api_parse_completion(const api_ctx *ctx, const char *body, size_t len, api_call *c,
                         api_error *e) {
    memset(c, 0, sizeof *c);
    preset(e);
    cJSON *o = parse_body(body, len, e);
    if (!o) return -1;
    int rc = -1;
    if (parse_common(ctx, o, c, 16, e)) goto done;
    long long logprobs = -1;
    if (get_int(o, "logprobs", 0, 5, &logprobs, e) || get_bool(o, "echo", &c->echo, e)) goto done;
    c->logprobs = (int)logprobs;
    c->req.n_top_logprobs = (int)logprobs;
    const char *suffix = NULL;
    if (get_str(o, "suffix", &suffix, e)) goto done;
    if (suffix && suffix[0]) { /* "" is what some clients send for none */
        BAD("suffix", "'suffix' (text after the insertion) is not supported: this server "
                      "continues the prompt only");
        goto done;
    }
    const char *chat_only[] = {"tools", "tool_choice", "parallel_tool_calls"};
    for (int i = 0; i < 3; i++)
        if (!is_null(cJSON_GetObjectItemCaseSensitive(o, chat_only[i]))) {
            BAD(chat_only[i], "'%s' is supported on /v1/chat/completions only", chat_only[i]);
            goto done;
        }
    if (c->beam_width > 0 && c->logprobs >= 0) {
        BAD("logprobs", "'logprobs' is not supported with beam search");
        goto done;
    }
    if (parse_prompts(ctx, o, c, e)) goto done;
    rc = 0;
done:
    cJSON_Delete(o);
    if (rc) api_call_free(c);
    return rc;
}

/* Chat fields for what this server cannot do (audio output): a 400 naming them, unless they
 * ask for nothing. (The legacy functions/function_call are tools.c's to refuse.) */
static int refuse_chat_extras(const cJSON *o, api_error *e) {
    const cJSON *mod = cJSON_GetObjectItemCaseSensitive(o, "modalities"),
                *audio = cJSON_GetObjectItemCaseSensitive(o, "audio");
    if (!is_null(audio)) return BAD("audio", "audio output is not supported");
    if (is_null(mod)) return 0;
    const cJSON *it;
    if (!cJSON_IsArray(mod)) return BAD("modalities", "'modalities' must be an array");
    cJSON_ArrayForEach(it, mod) {
        if (!cJSON_IsString(it) || strcmp(it->valuestring, "text") != 0)
            return BAD("modalities", "the only output modality supported is \"text\"");
    }
    return 0;
}

int api_parse_chat(const api_ctx *ctx, const char *body, size_t len, api_call *c, api_error *e) {
    memset(c, 0, sizeof *c);
    preset(e);
    cJSON *o = parse_body(body, len, e);
    if (!o) return -1;
    int rc = api_parse_chat_object(ctx, o, c, e);
    cJSON_Delete(o);
    return rc;
}

int api_parse_chat_object(const api_ctx *ctx, const cJSON *o, api_call *c, api_error *e) {
    memset(c, 0, sizeof *c);
    c->chat = true;
    preset(e);
    int rc = -1;
    if (parse_common(ctx, o, c, ctx->max_tokens_limit, e)) goto done;
    bool logprobs = false;
    long long top = 0;
    if (get_bool(o, "logprobs", &logprobs, e) || get_int(o, "top_logprobs", 0, 20, &top, e))
        goto done;
    if (top > 0 && !logprobs) {
        BAD("top_logprobs", "'top_logprobs' requires 'logprobs': true");
        goto done;
    }
    c->logprobs = logprobs ? (int)top : -1;
    c->req.n_top_logprobs = c->logprobs;
    if (c->beam_width > 0 && c->logprobs >= 0) {
        BAD("logprobs", "'logprobs' is not supported with beam search");
        goto done;
    }
    if (refuse_chat_extras(o, e)) goto done;
    /* the template and the message shapes are chat_template.c's (shared with /apply-template);
     * tools, tool_choice and the grammar that forces a call are tools.c's */
    chat_error ce;
    int nt;
    cJSON *msgs = NULL, *tools = NULL;
    gram_rules *tg = NULL;
    int trc = tools_setup(api_chat_template(ctx), o, true, &c->tools, &msgs, &tools, &tg, &ce);
    if (trc == 0 && tg && (c->req.grammar || c->beam_width)) {
        gram_rules_free(tg);
        snprintf(ce.param, sizeof ce.param, "tool_choice");
        snprintf(ce.message, sizeof ce.message, "'tool_choice' \"required\" or a named "
                 "function cannot be combined with %s", c->beam_width ? "beam search"
                 : "'grammar', 'json_schema' or a JSON 'response_format'");
        ce.status = 400;
        trc = -1;
    } else if (tg) {
        c->req.grammar = tg;
    }
    if (trc == 0)
        trc = chat_prompt_tokenize(api_chat_template(ctx), ctx->m->tok, msgs, tools,
                                   &c->req.prompt, &nt, &ce);
    cJSON_Delete(msgs);
    cJSON_Delete(tools);
    if (trc) {
        api_error_set(e, ce.status, ce.status == 400 ? "invalid_request_error" : "server_error",
                      ce.param[0] ? ce.param : NULL, NULL, "%s", ce.message);
        goto done;
    }
    c->req.n_prompt = nt;
    c->req.n_stop_ids = chat_stop_ids(ctx->m->tok, ctx->chat_fmt, c->req.stop_ids, SCHED_MAX_STOP_IDS);
    bool max_given = !is_null(cJSON_GetObjectItemCaseSensitive(o, "max_tokens")) ||
                     !is_null(cJSON_GetObjectItemCaseSensitive(o, "max_completion_tokens"));
    if (check_context(ctx, c, c->req.n_prompt, max_given, e)) goto done;
    rc = 0;
done:
    if (rc) api_call_free(c);
    return rc;
}

cJSON *api_body_parse(const char *body, size_t len, api_error *e) {
    preset(e);
    return parse_body(body, len, e);
}

const chat_template *api_chat_template(const api_ctx *ctx) {
    return ctx->chat ? ctx->chat : chat_template_builtin(ctx->chat_fmt);
}

/* {"key": value} as compact JSON text (caller frees), or NULL when memory runs out. */
static char *one_string_object(const char *key, const char *value) {
    cJSON *out = cJSON_CreateObject();
    char *json = out && cJSON_AddStringToObject(out, key, value) ? cJSON_PrintUnformatted(out) : NULL;
    cJSON_Delete(out);
    return json;
}

int api_parse_apply_template(const api_ctx *ctx, const char *body, size_t len, char **json_out,
                             api_error *e) {
    preset(e);
    cJSON *o = parse_body(body, len, e);
    if (!o) return -1;
    int rc = -1;
    char *text = NULL;
    bool agp = true;
    chat_error ce;
    if (get_bool(o, "add_generation_prompt", &agp, e)) goto done;
    cJSON *msgs = NULL, *tools = NULL;
    tools_req *t = NULL;
    int trc = tools_setup(api_chat_template(ctx), o, false, &t, &msgs, &tools, NULL, &ce);
    tools_req_free(t);
    if (trc == 0) trc = chat_apply(api_chat_template(ctx), msgs, tools, agp, &text, &ce);
    cJSON_Delete(msgs);
    cJSON_Delete(tools);
    if (trc) {
        api_error_set(e, ce.status, ce.status == 400 ? "invalid_request_error" : "server_error",
                      ce.param[0] ? ce.param : NULL, NULL, "%s", ce.message);
        goto done;
    }
    if (!(*json_out = one_string_object("prompt", text))) {
        oom(e);
        goto done;
    }
    rc = 0;
done:
    free(text);
    cJSON_Delete(o);
    return rc;
}

/* --- tokenize / detokenize --- */

int api_parse_tokenize(const api_ctx *ctx, const char *body, size_t len, char **json_out,
                       api_error *e) {
    preset(e);
    cJSON *o = parse_body(body, len, e);
    if (!o) return -1;
    int rc = -1;
    const char *content = NULL;
    bool add_special = false, with_pieces = false;
    int32_t *ids = NULL;
    if (get_str(o, "content", &content, e) || get_bool(o, "add_special", &add_special, e) ||
        get_bool(o, "with_pieces", &with_pieces, e))
        goto done;
    if (!content) {
        BAD("content", "'content' is required");
        goto done;
    }
    int n = tok_encode(ctx->m->tok, content, strlen(content), add_special, NULL, 0);
    if (n == TOK_ENOMEM) {
        oom(e);
        goto done;
    }
    if (n < 0) {
        BAD("content", "the text cannot be tokenized");
        goto done;
    }
    if (!(ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids)) ||
        tok_encode(ctx->m->tok, content, strlen(content), add_special, ids, n) != n) {
        oom(e); /* the same text encoded once already: only memory can fail now */
        goto done;
    }
    cJSON *out = cJSON_CreateObject(), *arr = NULL;
    if (with_pieces) {
        if (out && (arr = api_token_pieces(ctx, ids, n)) && !cJSON_AddItemToObject(out, "tokens", arr)) {
            cJSON_Delete(arr);
            arr = NULL;
        }
        n = 0; /* the pieces are in */
    } else if (out) {
        arr = cJSON_AddArrayToObject(out, "tokens");
    }
    bool built = arr != NULL;
    for (int i = 0; built && i < n; i++) {
        cJSON *num = cJSON_CreateNumber(ids[i]);
        built = num && cJSON_AddItemToArray(arr, num);
    }
    *json_out = built ? cJSON_PrintUnformatted(out) : NULL;
    cJSON_Delete(out);
    if (!*json_out) {
        oom(e);
        goto done;
    }
    rc = 0;
done:
    free(ids);
    cJSON_Delete(o);
    return rc;
}

int api_parse_detokenize(const api_ctx *ctx, const char *body, size_t len, char **json_out,
                         api_error *e) {
    preset(e);
    cJSON *o = parse_body(body, len, e);
    if (!o) return -1;
    int rc = -1;
    int32_t *ids = NULL;
    char *text = NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    if (!cJSON_IsArray(t)) {
        BAD("tokens", "'tokens' must be an array of token ids");
        goto done;
    }
    int n = cJSON_GetArraySize(t), i = 0;
    ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) {
        oom(e);
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, t) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            it->valuedouble < 0 || it->valuedouble >= ctx->m->cfg.vocab_size) {
            BAD("tokens", "'tokens' must be integers in [0, %d)", ctx->m->cfg.vocab_size);
            goto done;
        }
        ids[i++] = (int32_t)it->valuedouble;
    }
    size_t need = tok_decode(ctx->m->tok, ids, n, NULL, 0) + 1;
    text = malloc(need);
    if (!text) {
        oom(e);
        goto done;
    }
    tok_decode(ctx->m->tok, ids, n, text, need);
    /* byte tokens can leave a partial character: never put invalid UTF-8 on the wire */
    const char *content = ls_utf8_valid(text, strlen(text)) ? text : "\xef\xbf\xbd";
    if (!(*json_out = one_string_object("content", content))) {
        oom(e);
        goto done;
    }
    rc = 0;
done:
    free(ids);
    free(text);
    cJSON_Delete(o);
    return rc;
}

/* --- what api_native.c shares (api_internal.h) --- */

int api_common_parse(const api_ctx *ctx, const cJSON *o, api_call *c, int default_max,
                     api_error *e) {
    return parse_common(ctx, o, c, default_max, e);
}

int api_context_check(const api_ctx *ctx, api_call *c, bool max_given, api_error *e) {
    return check_context(ctx, c, c->req.n_prompt, max_given, e);
}

int api_get_int(const cJSON *o, const char *k, double lo, double hi, long long *out,
                api_error *e) {
    return get_int(o, k, lo, hi, out, e);
}

int api_get_bool(const cJSON *o, const char *k, bool *out, api_error *e) {
    return get_bool(o, k, out, e);
}

uint64_t api_fresh_seed(void) {
    return fresh_seed();
}

int api_oom(api_error *e) {
    return oom(e);
}

/* --- embeddings --- */

/* Appends input number c->req.n (a string, or an array of ids) to the embedding request:
 * its ids at the end of req.prompt (grown to hold *cap), its end in req.input_off. */
static int add_input(const api_ctx *ctx, const cJSON *v, api_call *c, int *cap, api_error *e) {
    gen_request *r = &c->req;
    const int idx = r->n, room = ctx->ctx_size + 1; /* one more: "too long" shows as a count */
    if (idx >= SCHED_MAX_INPUTS)
        return BAD("input", "'input' has more than %d inputs", SCHED_MAX_INPUTS);
    if (r->n_prompt + room > *cap) {
        int ncap = *cap * 2 > r->n_prompt + room ? *cap * 2 : r->n_prompt + room;
        int32_t *np = realloc(r->prompt, (size_t)ncap * sizeof *np);
        if (!np) return oom(e);
        r->prompt = np;
        *cap = ncap;
    }
    int32_t *ids = r->prompt + r->n_prompt;
    int n = 0;
    if (cJSON_IsString(v)) {
        size_t len = strlen(v->valuestring);
        if (len == 0) return BAD("input", "'input' %d is an empty string", idx);
        if (!ls_utf8_valid(v->valuestring, len))
            return BAD("input", "'input' %d is not valid UTF-8", idx);
        n = tok_encode(ctx->m->tok, v->valuestring, len, tok_add_bos(ctx->m->tok), ids, room);
        if (n == TOK_ENOMEM) return oom(e);
        if (n < 0) return BAD("input", "'input' %d cannot be tokenized", idx);
    } else if (cJSON_IsArray(v)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
                it->valuedouble < 0 || it->valuedouble >= ctx->m->cfg.vocab_size)
                return BAD("input", "'input' token ids must be integers in [0, %d)",
                           ctx->m->cfg.vocab_size);
            if (n < room) ids[n] = (int32_t)it->valuedouble;
            n++;
        }
        if (n == 0) return BAD("input", "'input' %d is an empty array of token ids", idx);
    } else {
        return BAD("input", "'input' must be a string, an array of strings, an array of token "
                            "ids or an array of arrays of token ids");
    }
    if (n > ctx->ctx_size) {
        api_error_set(e, 400, "invalid_request_error", "input", "context_length_exceeded",
                      "'input' %d has %d tokens; this model's context holds %d tokens per slot",
                      idx, n, ctx->ctx_size);
        return -1;
    }
    r->n_prompt += n;
    r->input_off[++r->n] = r->n_prompt;
    return 0;
}

int api_parse_embeddings(const api_ctx *ctx, const char *body, size_t len, bool llama, api_call *c,
                         api_error *e) {
    memset(c, 0, sizeof *c);
    c->embed = c->req.embed = true;
    c->embed_llama = llama;
    preset(e);
    cJSON *o = parse_body(body, len, e);
    if (!o) return -1;
    int rc = -1, cap = 0;
    const char *fmt = NULL;
    if (get_str(o, "encoding_format", &fmt, e)) goto done;
    if (fmt && strcmp(fmt, "float") != 0 && strcmp(fmt, "base64") != 0) {
        BAD("encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
        goto done;
    }
    c->base64 = fmt && !strcmp(fmt, "base64");
    if (c->base64 && llama) { /* llama.cpp ignores it here; a silent float would mislead */
        BAD("encoding_format", "'encoding_format' \"base64\" is served on /v1/embeddings only");
        goto done;
    }
    if (!is_null(cJSON_GetObjectItemCaseSensitive(o, "dimensions"))) {
        BAD("dimensions", "'dimensions' is not supported: embeddings have the model's %d",
            ctx->m->cfg.dim);
        goto done;
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
    if (is_null(in) && llama) in = cJSON_GetObjectItemCaseSensitive(o, "content");
    if (is_null(in)) {
        BAD("input", "'input' is required");
        goto done;
    }
    /* one input: a string or an array of ids; else an array of them */
    bool many = cJSON_IsArray(in) && in->child && !cJSON_IsNumber(in->child);
    int n = many ? cJSON_GetArraySize(in) : 1;
    if (cJSON_IsArray(in) && !in->child) {
        BAD("input", "'input' must not be empty");
        goto done;
    }
    if (n > SCHED_MAX_INPUTS) {
        BAD("input", "'input' has %d inputs; at most %d are accepted", n, SCHED_MAX_INPUTS);
        goto done;
    }
    if (!(c->req.input_off = calloc((size_t)n + 1, sizeof *c->req.input_off))) {
        oom(e);
        goto done;
    }
    if (!many) {
        if (add_input(ctx, in, c, &cap, e)) goto done;
    } else {
        const cJSON *it;
        cJSON_ArrayForEach(it, in) {
            if (cJSON_IsNumber(it)) {
                BAD("input", "'input' mixes token ids with other inputs");
                goto done;
            }
            if (add_input(ctx, it, c, &cap, e)) goto done;
        }
    }
    rc = 0;
done:
    cJSON_Delete(o);
    if (rc) api_call_free(c);
    return rc;
}
