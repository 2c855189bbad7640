/* api_native: llama.cpp's native API, for the tools written against llama.cpp's server:
 * POST /completion (its request fields, response, stream), GET /props, GET /slots and
 * /tokenize's pieces, in the shapes of llama.cpp's tools/server/README.md. Sampling, stop
 * strings and logit_bias are parsed by api.c's common code (api_internal.h), never twice.
 * No I/O, no threads; reads a job only through a job_view. */
#include "api_internal.h"

#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LS_VERSION
#define LS_VERSION "unknown"
#endif

/* llama.cpp's defaults for /completion, where they differ from OpenAI's */
#define NATIVE_TEMPERATURE 0.8
#define NATIVE_TOP_K 40
#define NATIVE_TOP_P 0.95
#define NATIVE_MIN_P 0.05
#define NATIVE_REPEAT_LAST_N 64

/* llama.cpp request fields we do not implement, with the value that leaves them off: a request
 * may send the value (llama.cpp's own clients send every field), any other is a 400 naming the
 * field. off = NAN: any non-null value is refused; an empty list is "off" too. */
static const struct {
    const char *key;
    double off;
} unsupported[] = {
    {"dynatemp_range", 0},
    {"n_indent", 0},
    {"n_keep", 0},
    {"n_cmpl", 1},
    {"n_cache_reuse", 0},
    {"typical_p", 1},
    {"dry_multiplier", 0},
    {"xtc_probability", 0},
    {"mirostat", 0},
    {"min_keep", 0},
    {"t_max_predict_ms", 0},
    {"id_slot", -1},
    {"top_n_sigma", -1},
    {"n_discard", 0},
    {"post_sampling_probs", 0},
    {"return_progress", 0},
    {"samplers", NAN},
    {"lora", NAN},
    {"response_fields", NAN},
    {"multimodal_data", NAN},
    {"image_data", NAN},
    {"input_extra", NAN},
    {"input_prefix", NAN},
    {"input_suffix", NAN},
};

static int refuse_unsupported(const cJSON *o, api_error *e) {
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, unsupported[i].key);
        double off = unsupported[i].off;
        if (!v || cJSON_IsNull(v)) continue;
        if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0) continue;
        if (!isnan(off) && cJSON_IsNumber(v) && v->valuedouble == off) continue;
        if (!isnan(off) && off == 0 && cJSON_IsFalse(v)) continue;
        api_error_set(e, 400, "invalid_request_error", unsupported[i].key, NULL,
                      "'%s' is not supported by this server (llamaserve implements temperature, "
                      "top_k, top_p, min_p, penalties, logit_bias, grammar and seed)",
                      unsupported[i].key);
        return -1;
    }
    return 0;
}

/* Appends text's tokens to r->prompt (room for ctx_size + 1 ids: more is refused anyway). */
static int append_text(const api_ctx *ctx, const char *text, bool bos, gen_request *r,
                       api_error *e) {
    int cap = ctx->ctx_size + 1;
    if (r->n_prompt >= cap) return 0; /* too long already: api_context_check refuses it */
    int n = tok_encode(ctx->m->tok, text, strlen(text), bos, r->prompt + r->n_prompt,
                       cap - r->n_prompt);
    if (n == TOK_ENOMEM) return api_oom(e);
    if (n < 0) {
        api_error_set(e, 400, "invalid_request_error", "prompt", NULL,
                      "the prompt cannot be tokenized");
        return -1;
    }
    r->n_prompt = n > cap - r->n_prompt ? cap : r->n_prompt + n;
    return 0;
}

/* prompt: a string, a list of ids, or a mixed list of ids and strings (llama.cpp's forms; a
 * BOS goes first when the prompt begins with a string). One prompt per request. */
static int native_prompt(const api_ctx *ctx, const cJSON *p, gen_request *r, api_error *e) {
    const char *why = NULL;
    if (!p || cJSON_IsNull(p))
        why = "'prompt' is required";
    else if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 0)
        why = "'prompt' must not be empty";
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsArray(p->child)) p = p->child;
    bool several = false, has_id = false;
    const cJSON *it;
    if (cJSON_IsArray(p)) {
        cJSON_ArrayForEach(it, p) {
            several = several || cJSON_IsArray(it) || cJSON_IsObject(it);
            has_id = has_id || cJSON_IsNumber(it);
        }
        several = several || (!has_id && cJSON_GetArraySize(p) > 1);
    }
    if (!why && several)
        why = "several prompts in one /completion request are not supported; send one each";
    if (!why && !cJSON_IsString(p) && !cJSON_IsArray(p))
        why = "'prompt' must be a string, a list of token ids, or a list of ids and strings";
    if (why) {
        api_error_set(e, 400, "invalid_request_error", "prompt", NULL, "%s", why);
        return -1;
    }
    if (!(r->prompt = malloc((size_t)(ctx->ctx_size + 1) * sizeof *r->prompt))) return api_oom(e);
    bool bos = tok_add_bos(ctx->m->tok);
    if (cJSON_IsString(p)) return append_text(ctx, p->valuestring, bos, r, e);
    int vocab = ctx->m->cfg.vocab_size;
    cJSON_ArrayForEach(it, p) {
        if (cJSON_IsString(it)) {
            if (append_text(ctx, it->valuestring, bos && it == p->child, r, e)) return -1;
            continue;
        }
        double id = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (id != floor(id) || id < 0 || id >= vocab) {
            api_error_set(e, 400, "invalid_request_error", "prompt", NULL,
                          "'prompt' token ids must be integers in [0, %d)", vocab);
            return -1;
        }
        if (r->n_prompt <= ctx->ctx_size) r->prompt[r->n_prompt++] = (int32_t)id;
    }
    return 0;
}

/* Sampling fields that llama.cpp defaults differently from OpenAI: set where absent. */
static void native_defaults(const cJSON *o, sampler_params *sp) {
    if (!cJSON_GetObjectItemCaseSensitive(o, "temperature")) sp->temperature = NATIVE_TEMPERATURE;
    if (!cJSON_GetObjectItemCaseSensitive(o, "top_k")) sp->top_k = NATIVE_TOP_K;
    if (!cJSON_GetObjectItemCaseSensitive(o, "top_p")) sp->top_p = (float)NATIVE_TOP_P;
    if (!cJSON_GetObjectItemCaseSensitive(o, "min_p")) sp->min_p = (float)NATIVE_MIN_P;
}

int api_parse_native(const api_ctx *ctx, const char *body, size_t len, api_call *c, api_error *e) {
    memset(c, 0, sizeof *c);
    cJSON *o = api_body_parse(body, len, e);
    if (!o) return -1;
    int rc = -1;
    c->native = true;
    long long n_predict = -1, n_probs = 0, last_n = NATIVE_REPEAT_LAST_N, seed = 0;
    if (refuse_unsupported(o, e) || api_common_parse(ctx, o, c, ctx->max_tokens_limit, e) ||
        api_get_int(o, "n_predict", -1, 1e15, &n_predict, e) ||
        api_get_int(o, "n_probs", 0, SAMPLER_MAX_TOP, &n_probs, e) ||
        api_get_int(o, "repeat_last_n", -1, 1e9, &last_n, e) ||
        api_get_int(o, "seed", -9.2e18, 9.2e18, &seed, e) ||
        api_get_bool(o, "return_tokens", &c->return_tokens, e))
        goto done;
    const char *bad = c->req.n != 1 ? "n" : c->beam_width > 0 ? "use_beam_search" : NULL;
    if (bad) {
        api_error_set(e, 400, "invalid_request_error", bad, NULL,
                      "'%s' is not supported on /completion (use /v1/completions)", bad);
        goto done;
    }
    if (n_predict > ctx->max_tokens_limit) {
        api_error_set(e, 400, "invalid_request_error", "n_predict", NULL,
                      "'n_predict' is %lld; this server allows at most %d", n_predict,
                      ctx->max_tokens_limit);
        goto done;
    }
    c->n_predict = (int)n_predict;
    if (n_predict >= 0) c->req.max_tokens = (int)n_predict;
    native_defaults(o, &c->req.sp);
    c->req.sp.penalty_last_n = (int)last_n;
    if (seed == -1) c->req.sp.seed = api_fresh_seed(); /* llama.cpp: -1 is a random seed */
    /* every token is recorded (for "tokens"); n_probs > 0 adds its alternatives */
    c->req.n_top_logprobs = (int)n_probs;
    c->logprobs = n_probs > 0 ? (int)n_probs : -1;
    if (native_prompt(ctx, cJSON_GetObjectItemCaseSensitive(o, "prompt"), &c->req, e)) goto done;
    /* n_predict runs until the end or the context is full, as llama.cpp's does */
    if (api_context_check(ctx, c, false, e)) goto done;
    rc = 0;
done:
    cJSON_Delete(o);
    if (rc) api_call_free(c);
    return rc;
}

/* --- responses --- */

/* One token as llama.cpp's probabilities show it: id, token (U+FFFD when its bytes are not
 * whole characters), bytes, and logprob. */
static cJSON *token_json(const tokenizer *t, int32_t id, float logprob) {
    char buf[8];
    size_t n;
    const char *p = tok_piece_bytes(t, id, buf, &n);
    cJSON *o = cJSON_CreateObject(), *bytes = cJSON_AddArrayToObject(o, "bytes");
    cJSON_AddNumberToObject(o, "id", id);
    if (ls_utf8_valid(p, n))
        api_text_add(o, "token", p, n);
    else
        cJSON_AddStringToObject(o, "token", "\xef\xbf\xbd");
    for (size_t i = 0; i < n; i++)
        api_json_append(bytes, cJSON_CreateNumber((unsigned char)p[i]));
    cJSON_AddNumberToObject(o, "logprob", logprob);
    return o;
}

/* completion_probabilities of tokens [from, to) of o. */
static cJSON *probs_json(const api_ctx *ctx, const choice_out *o, int from, int to) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = from; i < to; i++) {
        const gen_token *g = &o->toks[i];
        cJSON *item = token_json(ctx->m->tok, g->id, g->logprob);
        cJSON *tops = cJSON_AddArrayToObject(item, "top_logprobs");
        for (int k = 0; k < g->n_top; k++)
            api_json_append(tops, token_json(ctx->m->tok, g->top_id[k], g->top_logprob[k]));
        api_json_append(arr, item);
    }
    return arr;
}

static cJSON *ids_json(const choice_out *o, int from, int to) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = from; i < to; i++)
        api_json_append(arr, cJSON_CreateNumber(o->toks[i].id));
    return arr;
}

/* llama.cpp's sampling parameters ("generation_settings", /props' "params") of call c and its
 * request r (the job's: the call's own was handed to the scheduler). Both NULL: the defaults a
 * /completion request gets. */
static cJSON *params_json(const api_ctx *ctx, const api_call *c, const gen_request *r) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "n_predict", c ? c->n_predict : -1);
    cJSON_AddNumberToObject(p, "seed", r ? (double)r->sp.seed : (double)ctx->default_seed);
    cJSON_AddNumberToObject(p, "temperature", r ? r->sp.temperature : NATIVE_TEMPERATURE);
    cJSON_AddNumberToObject(p, "top_k", r ? r->sp.top_k : NATIVE_TOP_K);
    cJSON_AddNumberToObject(p, "top_p", r ? r->sp.top_p : NATIVE_TOP_P);
    cJSON_AddNumberToObject(p, "min_p", r ? r->sp.min_p : NATIVE_MIN_P);
    cJSON_AddNumberToObject(p, "repeat_last_n", r ? r->sp.penalty_last_n : NATIVE_REPEAT_LAST_N);
    cJSON_AddNumberToObject(p, "repeat_penalty", r ? r->sp.repeat_penalty : 1.0);
    cJSON_AddNumberToObject(p, "presence_penalty", r ? r->sp.presence_penalty : 0.0);
    cJSON_AddNumberToObject(p, "frequency_penalty", r ? r->sp.frequency_penalty : 0.0);
    cJSON *stop = cJSON_AddArrayToObject(p, "stop");
    for (int i = 0; r && i < r->n_stop; i++)
        api_json_append(stop, cJSON_CreateString(r->stop[i]));
    cJSON_AddNumberToObject(p, "max_tokens", r ? r->max_tokens : -1);
    cJSON_AddBoolToObject(p, "ignore_eos", r && r->ignore_eos);
    cJSON_AddBoolToObject(p, "stream", c && c->stream);
    cJSON_AddNumberToObject(p, "n_probs", c && c->logprobs > 0 ? c->logprobs : 0);
    cJSON_AddBoolToObject(p, "cache_prompt", !r || r->cache_prompt);
    cJSON_AddBoolToObject(p, "grammar", r && r->grammar); /* the rules are not echoed */
    cJSON *smp = cJSON_AddArrayToObject(p, "samplers");   /* sampler.h's fixed chain */
    static const char *const chain[] = {"logit_bias", "penalties", "temperature",
                                        "top_k",      "top_p",     "min_p"};
    for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++)
        api_json_append(smp, cJSON_CreateString(chain[i]));
    cJSON_AddBoolToObject(p, "timings_per_token", c && c->timings_per_token);
    return p;
}

/* How many of o's tokens lie wholly in its text: all of them, but a stop string's (and a
 * token that straddles its start) are cut from the text, so their probabilities go too, as
 * llama.cpp drops them. */
static int tokens_in_text(const api_ctx *ctx, const gen_request *r, const choice_out *o) {
    if (!o->stop_word) return o->n_toks;
    size_t end = 0;
    bool strip = r->n_prompt == 1; /* a BOS-only prompt: the first text's space is dropped */
    int k = 0;
    for (; k < o->n_toks; k++) {
        char buf[8];
        size_t n;
        const char *p = tok_piece_bytes(ctx->m->tok, o->toks[k].id, buf, &n);
        if (strip && n > 0) {
            n -= p[0] == ' ';
            strip = false;
        }
        if ((end += n) > o->len) break;
    }
    return k;
}

static const char *stop_type(const choice_out *o) {
    switch (o->finish) {
    case FINISH_NONE:
        return "none";
    case FINISH_LENGTH:
        return "limit";
    case FINISH_STOP:
        return o->stop_word ? "word" : "eos";
    default:
        return "none"; /* errors are answered as errors, never with this */
    }
}

/* The prompt's text as the model saw it (llama.cpp's "prompt"). */
static void add_prompt(const api_ctx *ctx, cJSON *r, const gen_request *req) {
    size_t cap = tok_decode(ctx->m->tok, req->prompt, req->n_prompt, NULL, 0) + 1;
    char *text = malloc(cap);
    if (!text) return;
    tok_decode(ctx->m->tok, req->prompt, req->n_prompt, text, cap);
    cJSON_AddStringToObject(r, "prompt", ls_utf8_valid(text, strlen(text)) ? text : "\xef\xbf\xbd");
    free(text);
}

/* The last object of a native answer: everything, with content and tokens only when it is not
 * a stream (a stream has sent them already). */
static cJSON *final_json(const api_ctx *ctx, const api_call *c, const job_view *j, bool stream) {
    const choice_out *o = &j->choices[0];
    const gen_request *r = &j->req;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddNumberToObject(res, "index", 0);
    api_text_add(res, "content", o->text && !stream ? o->text : "", stream ? 0 : o->len);
    api_json_put(res, "tokens", ids_json(o, 0, c->return_tokens && !stream ? o->n_toks : 0));
    cJSON_AddNumberToObject(res, "id_slot", o->slot - 1);
    cJSON_AddBoolToObject(res, "stop", true);
    cJSON_AddStringToObject(res, "model", ctx->model_id);
    cJSON_AddNumberToObject(res, "tokens_predicted", o->n_gen);
    cJSON_AddNumberToObject(res, "tokens_evaluated", r->n_prompt);
    api_json_put(res, "generation_settings", params_json(ctx, c, r));
    add_prompt(ctx, res, r);
    cJSON_AddBoolToObject(res, "has_new_line", o->len && memchr(o->text, '\n', o->len));
    cJSON_AddBoolToObject(res, "truncated",
                          o->finish == FINISH_LENGTH && r->n_prompt + o->n_gen >= ctx->ctx_size);
    cJSON_AddStringToObject(res, "stop_type", stop_type(o));
    cJSON_AddStringToObject(res, "stopping_word", o->stop_word ? r->stop[o->stop_word - 1] : "");
    cJSON_AddNumberToObject(res, "tokens_cached", o->n_cached);
    api_json_put(res, "timings", api_timings_json(j, ls_now()));
    if (c->logprobs > 0 && !stream)
        api_json_put(res, "completion_probabilities",
                     probs_json(ctx, o, 0, tokens_in_text(ctx, r, o)));
    return res;
}

char *api_native_json(const api_ctx *ctx, const api_call *c, const job_view *j) {
    api_json_init();
    cJSON *res = final_json(ctx, c, j, false);
    char *s = cJSON_PrintUnformatted(res);
    cJSON_Delete(res);
    return s;
}

/* Appends "data: <event>\n\n"; frees event. Memory that runs out drops the event (the stream
 * then ends without its final event, which a client reads as an error). */
static void emit(char **buf, size_t *len, size_t *cap, cJSON *event) {
    char *s = cJSON_PrintUnformatted(event);
    cJSON_Delete(event);
    if (!s) return;
    size_t n = strlen(s), need = *len + n + 9;
    if (need > *cap) {
        char *nb = realloc(*buf, need * 2);
        if (!nb) {
            free(s);
            return;
        }
        *buf = nb;
        *cap = need * 2;
    }
    *len += (size_t)sprintf(*buf + *len, "data: %s\n\n", s);
    free(s);
}

bool api_native_stream_events(api_stream *st, char **buf, size_t *len, size_t *cap) {
    const api_call *c = st->call;
    const job_view *j = st->j;
    const choice_out *o = &j->choices[0];
    if (st->sent_done) return true;
    if (o->finish == FINISH_ERROR || o->finish == FINISH_CANCEL) {
        api_error e;
        api_error_set(&e, 500, "server_error", NULL, NULL, "%s",
                      o->finish == FINISH_CANCEL
                          ? "the request was cancelled (server shutting down)"
                          : j->error);
        char *s = api_error_json(&e);
        cJSON *ev = s ? cJSON_Parse(s) : NULL;
        free(s);
        if (ev) emit(buf, len, cap, ev);
        st->sent_done = true;
        return true;
    }
    if (o->len > st->sent_len[0] || o->n_toks > st->sent_toks[0]) {
        cJSON *ev = cJSON_CreateObject();
        cJSON_AddNumberToObject(ev, "index", 0);
        api_text_add(ev, "content", o->text ? o->text + st->sent_len[0] : "",
                     o->len - st->sent_len[0]);
        api_json_put(ev, "tokens", ids_json(o, st->sent_toks[0], o->n_toks));
        cJSON_AddBoolToObject(ev, "stop", false);
        cJSON_AddNumberToObject(ev, "id_slot", o->slot - 1);
        cJSON_AddNumberToObject(ev, "tokens_predicted", o->n_gen);
        cJSON_AddNumberToObject(ev, "tokens_evaluated", j->req.n_prompt);
        if (c->logprobs > 0)
            api_json_put(ev, "completion_probabilities",
                         probs_json(st->ctx, o, st->sent_toks[0], o->n_toks));
        if (c->timings_per_token) api_json_put(ev, "timings", api_timings_json(j, ls_now()));
        emit(buf, len, cap, ev);
        st->sent_len[0] = o->len;
        st->sent_toks[0] = o->n_toks;
    }
    if (o->finish == FINISH_NONE) return false;
    emit(buf, len, cap, final_json(st->ctx, c, j, true));
    st->sent_done = true;
    return true;
}

/* --- /props, /slots, /tokenize --- */

char *api_props_json(const api_ctx *ctx) {
    api_json_init();
    cJSON *r = cJSON_CreateObject();
    cJSON *d = cJSON_AddObjectToObject(r, "default_generation_settings");
    cJSON_AddNumberToObject(d, "id", 0);
    cJSON_AddNumberToObject(d, "id_task", -1);
    cJSON_AddNumberToObject(d, "n_ctx", ctx->ctx_size);
    cJSON_AddBoolToObject(d, "speculative", false);
    cJSON_AddBoolToObject(d, "is_processing", false);
    api_json_put(d, "params", params_json(ctx, NULL, NULL));
    cJSON_AddNumberToObject(r, "n_ctx", ctx->ctx_size);
    cJSON_AddNumberToObject(r, "total_slots", ctx->parallel);
    cJSON_AddStringToObject(r, "model_path", ctx->model_path ? ctx->model_path : "");
    cJSON_AddStringToObject(r, "model_alias", ctx->model_id);
    const char *tmpl = chat_template_text(api_chat_template(ctx));
    cJSON_AddStringToObject(r, "chat_template", tmpl ? tmpl : "");
    cJSON *mod = cJSON_AddObjectToObject(r, "modalities");
    cJSON_AddBoolToObject(mod, "vision", false);
    cJSON_AddBoolToObject(mod, "audio", false);
    cJSON_AddStringToObject(r, "build_info", "llamaserve " LS_VERSION);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

char *api_slots_json(const api_ctx *ctx, const sched_slot_info *slots, int n) {
    (void)ctx;
    api_json_init();
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        const sched_slot_info *s = &slots[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", s->id);
        cJSON_AddNumberToObject(o, "id_task", s->busy ? (double)s->id_task : -1);
        cJSON_AddNumberToObject(o, "n_ctx", s->n_ctx);
        cJSON_AddBoolToObject(o, "speculative", false);
        cJSON_AddBoolToObject(o, "is_processing", s->busy);
        cJSON_AddNumberToObject(o, "n_past", s->n_past);
        cJSON *nt = cJSON_AddObjectToObject(o, "next_token");
        cJSON_AddBoolToObject(nt, "has_next_token", s->busy);
        cJSON_AddNumberToObject(nt, "n_decoded", s->n_decoded);
        api_json_append(arr, o);
    }
    char *out = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return out;
}

cJSON *api_token_pieces(const api_ctx *ctx, const int32_t *ids, int n) {
    cJSON *arr = cJSON_CreateArray();
    bool ok = arr != NULL;
    for (int i = 0; ok && i < n; i++) {
        char buf[8];
        size_t len;
        const char *p = tok_piece_bytes(ctx->m->tok, ids[i], buf, &len);
        cJSON *o = cJSON_CreateObject(), *piece = NULL;
        if (ls_utf8_valid(p, len) && !memchr(p, '\0', len)) {
            char *tmp = malloc(len + 1);
            if (tmp) {
                memcpy(tmp, p, len);
                tmp[len] = '\0';
                piece = cJSON_CreateString(tmp);
                free(tmp);
            }
        } else { /* llama.cpp's form for bytes that are not whole characters */
            piece = cJSON_CreateArray();
            for (size_t k = 0; piece && k < len; k++) {
                cJSON *b = cJSON_CreateNumber((unsigned char)p[k]);
                if (!b || !api_json_append(piece, b)) {
                    cJSON_Delete(piece);
                    piece = NULL;
                }
            }
        }
        ok = o && piece && cJSON_AddNumberToObject(o, "id", ids[i]) &&
             cJSON_AddItemToObject(o, "piece", piece) && cJSON_AddItemToArray(arr, o);
        if (!ok) {
            if (!o || !cJSON_GetObjectItemCaseSensitive(o, "piece")) cJSON_Delete(piece);
            cJSON_Delete(o);
        }
    }
    if (!ok) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}
