/* api: OpenAI-compatible request parsing and errors (see api.h; the responses and streams are
 * in api_response.c). Validation is strict on the fields we know (type and range, with the
 * offending field named in `param`) and lenient on fields we do not (ignored, as llama.cpp and
 * vLLM do, so newer clients work). */
#include "api.h"

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
 * before each parse. */
static _Thread_local bool json_oom;

static void *json_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) json_oom = true;
    return p;
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
    free(c->echo_text);
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

/* "speculative": {"n_max": N, "n_min": M}, llama.cpp's per-request draft bounds for prompt
 * lookup (engine/spec.h); without it the server's --spec-ngram applies. Any other member (a
 * draft model's p_min, ...) is refused: it would be ignored. */
static int parse_speculative(const cJSON *o, gen_request *r, api_error *e) {
    r->spec_n_max = -1;
    r->spec_n_min = 0;
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "speculative");
    if (is_null(sp)) return 0;
    if (!cJSON_IsObject(sp)) return BAD("speculative", "'speculative' must be an object");
    const cJSON *it;
    cJSON_ArrayForEach(it, sp) {
        if (strcmp(it->string, "n_max") && strcmp(it->string, "n_min"))
            return BAD("speculative", "'speculative.%s' is not supported (only n_max and n_min: "
                       "drafts come from prompt lookup, not a draft model)", it->string);
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
        return BAD(c->chat ? "max_tokens" : "max_tokens",
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
    /* logit_bias: {"token id": bias in [-100, 100]} */
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(o, "logit_bias");
    if (!is_null(lb)) {
        if (!cJSON_IsObject(lb)) return BAD("logit_bias", "'logit_bias' must be an object");
        int cnt = cJSON_GetArraySize(lb);
        if (cnt > ctx->m->cfg.vocab_size)
            return BAD("logit_bias", "'logit_bias' has more entries than the vocabulary");
        r->bias = calloc((size_t)(cnt ? cnt : 1), sizeof *r->bias);
        if (!r->bias) return oom(e);
        const cJSON *it;
        cJSON_ArrayForEach(it, lb) {
            char *end = NULL;
            long id = strtol(it->string, &end, 10);
            if (!*it->string || *end || id < 0 || id >= ctx->m->cfg.vocab_size)
                return BAD("logit_bias", "logit_bias key '%s' is not a token id in [0, %d)",
                           it->string, ctx->m->cfg.vocab_size);
            if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < -100 ||
                it->valuedouble > 100)
                return BAD("logit_bias", "logit_bias values must be numbers in [-100, 100]");
            r->bias[r->n_bias].id = (int32_t)id;
            r->bias[r->n_bias].bias = (float)it->valuedouble;
            r->n_bias++;
        }
    }
    /* beam search (an extension llama.cpp and vLLM dropped): best_of beams, the n best returned */
    bool beam = false;
    long long best_of = n;
    double length_penalty = 1.0;
    if (get_bool(o, "use_beam_search", &beam, e) || get_int(o, "best_of", 1, 16, &best_of, e) ||
        get_num(o, "length_penalty", -10, 10, &length_penalty, e))
        return -1;
    if (beam) {
        if (best_of < n) return BAD("best_of", "'best_of' (%lld) must be at least 'n' (%lld)",
                                    best_of, n);
        c->beam_width = (int)best_of;
        c->length_penalty = (float)length_penalty;
    }
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

static int check_context(const api_ctx *ctx, api_call *c, bool max_given, api_error *e) {
    gen_request *r = &c->req;
    if (r->n_prompt >= ctx->ctx_size) {
        api_error_set(e, 400, "invalid_request_error", c->chat ? "messages" : "prompt",
                      "context_length_exceeded",
                      "This model's maximum context length is %d tokens per slot; the prompt "
                      "has %d tokens, leaving no room to generate",
                      ctx->ctx_size, r->n_prompt);
        return -1;
    }
    int room = ctx->ctx_size - r->n_prompt;
    if (!max_given) {
        if (r->max_tokens > room) r->max_tokens = room;
    } else if (r->max_tokens > room) {
        api_error_set(e, 400, "invalid_request_error", "max_tokens", "context_length_exceeded",
                      "This model's maximum context length is %d tokens per slot; you requested "
                      "%d tokens (%d in the prompt, %d for the completion)",
                      ctx->ctx_size, r->n_prompt + r->max_tokens, r->n_prompt, r->max_tokens);
        return -1;
    }
    return 0;
}

static int encode_text(const api_ctx *ctx, const char *text, bool add_bos, gen_request *r,
                       api_error *e) {
    /* A prompt longer than the context is refused anyway (check_context), so one pass into a
     * buffer of ctx_size + 1 ids suffices: a larger count means "too long", not "encode again". */
    size_t len = strlen(text);
    int cap = ctx->ctx_size + 1;
    r->prompt = malloc((size_t)cap * sizeof *r->prompt);
    if (!r->prompt) return oom(e);
    int n = tok_encode(ctx->m->tok, text, len, add_bos, r->prompt, cap);
    if (n == TOK_ENOMEM) return oom(e);
    if (n < 0) return BAD("prompt", "the prompt cannot be tokenized");
    r->n_prompt = n; /* n > cap: check_context reports the full count, nothing reads past cap */
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
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (is_null(p)) {
        BAD("prompt", "'prompt' is required");
        goto done;
    }
    /* a string; [string]; [ids]; [[ids]]: one prompt per request */
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
        (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        p = p->child;
    if (cJSON_IsString(p)) {
        if (!ls_utf8_valid(p->valuestring, strlen(p->valuestring))) {
            BAD("prompt", "'prompt' is not valid UTF-8");
            goto done;
        }
        if (encode_text(ctx, p->valuestring, tok_add_bos(ctx->m->tok), &c->req, e)) goto done;
        if (c->echo && !(c->echo_text = strdup(p->valuestring))) {
            oom(e);
            goto done;
        }
    } else if (cJSON_IsArray(p)) {
        int n = cJSON_GetArraySize(p);
        if (n == 0 || n > ctx->ctx_size) {
            BAD("prompt", n ? "'prompt' has more tokens than the context holds"
                            : "'prompt' must not be empty");
            if (n) e->code = "context_length_exceeded";
            goto done;
        }
        if (cJSON_IsString(p->child)) {
            BAD("prompt", "only one prompt per request is supported; send one request each");
            goto done;
        }
        c->req.prompt = malloc((size_t)n * sizeof *c->req.prompt);
        if (!c->req.prompt) {
            oom(e);
            goto done;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, p) {
            if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
                it->valuedouble < 0 || it->valuedouble >= ctx->m->cfg.vocab_size) {
                BAD("prompt", "'prompt' token ids must be integers in [0, %d)",
                    ctx->m->cfg.vocab_size);
                goto done;
            }
            c->req.prompt[c->req.n_prompt++] = (int32_t)it->valuedouble;
        }
        if (c->echo) { /* the prompt's text, only for echo */
            size_t cap = tok_decode(ctx->m->tok, c->req.prompt, n, NULL, 0) + 1;
            if (!(c->echo_text = malloc(cap))) {
                oom(e);
                goto done;
            }
            tok_decode(ctx->m->tok, c->req.prompt, n, c->echo_text, cap);
        }
    } else {
        BAD("prompt", "'prompt' must be a string, an array of strings or an array of token ids");
        goto done;
    }
    bool max_given = !is_null(cJSON_GetObjectItemCaseSensitive(o, "max_tokens"));
    if (check_context(ctx, c, max_given, e)) goto done;
    rc = 0;
done:
    cJSON_Delete(o);
    if (rc) api_call_free(c);
    return rc;
}

int api_parse_chat(const api_ctx *ctx, const char *body, size_t len, api_call *c, api_error *e) {
    memset(c, 0, sizeof *c);
    c->chat = true;
    preset(e);
    cJSON *o = parse_body(body, len, e);
    if (!o) return -1;
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
    /* the template and the message shapes are chat_template.c's (shared with /apply-template) */
    chat_error ce;
    int nt;
    if (chat_prompt_tokenize(api_chat_template(ctx), ctx->m->tok,
                             cJSON_GetObjectItemCaseSensitive(o, "messages"),
                             cJSON_GetObjectItemCaseSensitive(o, "tools"), &c->req.prompt, &nt,
                             &ce)) {
        api_error_set(e, ce.status, ce.status == 400 ? "invalid_request_error" : "server_error",
                      ce.param[0] ? ce.param : NULL, NULL, "%s", ce.message);
        goto done;
    }
    c->req.n_prompt = nt;
    c->req.n_stop_ids = chat_stop_ids(ctx->m->tok, ctx->chat_fmt, c->req.stop_ids, 4);
    bool max_given = !is_null(cJSON_GetObjectItemCaseSensitive(o, "max_tokens")) ||
                     !is_null(cJSON_GetObjectItemCaseSensitive(o, "max_completion_tokens"));
    if (check_context(ctx, c, max_given, e)) goto done;
    rc = 0;
done:
    cJSON_Delete(o);
    if (rc) api_call_free(c);
    return rc;
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
    if (chat_apply(api_chat_template(ctx), cJSON_GetObjectItemCaseSensitive(o, "messages"),
                   cJSON_GetObjectItemCaseSensitive(o, "tools"), agp, &text, &ce)) {
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
    bool add_special = false;
    int32_t *ids = NULL;
    if (get_str(o, "content", &content, e) || get_bool(o, "add_special", &add_special, e))
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
    cJSON *out = cJSON_CreateObject(), *arr = out ? cJSON_AddArrayToObject(out, "tokens") : NULL;
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
