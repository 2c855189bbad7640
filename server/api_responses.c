/* api_responses: OpenAI's Responses API (POST /v1/responses), its text subset. A request is
 * translated into a chat request and parsed by api.c's chat parser, so it runs as any chat job;
 * the job's results come back as a response object or as the stream's semantic events.
 * Owns only a call's resp_echo. Stores nothing: `store` is accepted only as false (or absent),
 * and every field that needs a stored response, a tool, reasoning or non-text input is a 400
 * naming it; text.format's JSON outputs become chat's response_format. */
#include "api_internal.h"

#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A 400 naming the field; -1, so that `return BAD(...)` reads as one. */
#define BAD(param, ...)                                                                            \
    (api_error_set(e, 400, "invalid_request_error", param, NULL, __VA_ARGS__), -1)

static int oom(api_error *e) {
    api_error_set(e, 503, "server_error", NULL, NULL, "out of memory");
    return -1;
}

static bool given(const cJSON *v) {
    return v && !cJSON_IsNull(v);
}

/* --- the request --- */

/* The Responses API's fields that need what this server does not have (stored responses,
 * tools, reasoning): each accepted only at its "off" value. */
static int refuse_unsupported(const cJSON *o, api_error *e) {
    const cJSON *v;
    if (cJSON_IsTrue(v = cJSON_GetObjectItemCaseSensitive(o, "store")))
        return BAD("store", "'store': true is not supported: this server keeps no responses "
                            "(send false or leave it out)");
    if (given(v) && !cJSON_IsBool(v)) return BAD("store", "'store' must be a boolean");
    static const char *const stored[] = {"previous_response_id", "conversation", "prompt",
                                         "max_tool_calls"};
    for (size_t i = 0; i < sizeof stored / sizeof stored[0]; i++)
        if (given(cJSON_GetObjectItemCaseSensitive(o, stored[i])))
            return BAD(stored[i], "'%s' is not supported by this server", stored[i]);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "background")))
        return BAD("background", "'background': true is not supported by this server");
    v = cJSON_GetObjectItemCaseSensitive(o, "tools");
    if (given(v) && (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > 0))
        return BAD("tools", "'tools' is not supported by this server (text output only)");
    v = cJSON_GetObjectItemCaseSensitive(o, "tool_choice");
    if (given(v) && !(cJSON_IsString(v) &&
                      (!strcmp(v->valuestring, "auto") || !strcmp(v->valuestring, "none"))))
        return BAD("tool_choice", "'tool_choice' may only be \"auto\" or \"none\" (no tools)");
    v = cJSON_GetObjectItemCaseSensitive(o, "include");
    if (given(v) && (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > 0))
        return BAD("include", "'include' is not supported by this server");
    v = cJSON_GetObjectItemCaseSensitive(o, "truncation");
    if (given(v) && !(cJSON_IsString(v) && !strcmp(v->valuestring, "disabled")))
        return BAD("truncation", "'truncation' may only be \"disabled\" (a prompt that does not "
                                 "fit is refused)");
    v = cJSON_GetObjectItemCaseSensitive(o, "top_logprobs");
    if (given(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
        return BAD("top_logprobs", "'top_logprobs' is not supported on /v1/responses");
    v = cJSON_GetObjectItemCaseSensitive(o, "reasoning");
    if (given(v)) {
        const cJSON *it;
        if (!cJSON_IsObject(v)) return BAD("reasoning", "'reasoning' must be an object");
        cJSON_ArrayForEach(it, v) {
            if (given(it))
                return BAD("reasoning", "'reasoning' is not supported: this model does not reason");
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "text");
    if (given(v)) {
        const cJSON *it;
        if (!cJSON_IsObject(v)) return BAD("text", "'text' must be an object");
        cJSON_ArrayForEach(it, v) {
            if (given(it) && strcmp(it->string, "format") != 0)
                return BAD("text", "'text.%.40s' is not supported by this server", it->string);
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    if (given(v) && !cJSON_IsObject(v)) return BAD("metadata", "'metadata' must be an object");
    return 0;
}

/* One content part as a chat text part: input_text and output_text carry text; every other
 * type (input_image, input_file, refusal, ...) is refused by name. */
static int add_part(const cJSON *p, const char *param, cJSON *parts, api_error *e) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
    if (!cJSON_IsObject(p) || !cJSON_IsString(type))
        return BAD(param, "%s must be an object with a 'type'", param);
    if (strcmp(type->valuestring, "input_text") != 0 &&
        strcmp(type->valuestring, "output_text") != 0) {
        char tp[80];
        snprintf(tp, sizeof tp, "%s.type", param);
        return BAD(tp,
                   "%s: content type '%.40s' is not supported (only input_text and "
                   "output_text)",
                   param, type->valuestring);
    }
    if (!cJSON_IsString(text)) return BAD(param, "%s.text must be a string", param);
    cJSON *q = cJSON_CreateObject();
    if (!api_json_append(parts, q) || !api_json_put(q, "type", cJSON_CreateString("text")) ||
        !api_json_put(q, "text", cJSON_CreateString(text->valuestring)))
        return oom(e);
    return 0;
}

/* One input item (a message) appended to the chat messages. */
static int add_item(const cJSON *it, int i, cJSON *msgs, api_error *e) {
    char param[64];
    snprintf(param, sizeof param, "input[%d]", i);
    if (!cJSON_IsObject(it)) return BAD(param, "%s must be a message object", param);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
    if (given(type) && !(cJSON_IsString(type) && !strcmp(type->valuestring, "message"))) {
        snprintf(param, sizeof param, "input[%d].type", i);
        /* what the Vercel AI SDK sends for an earlier answer unless told store: false */
        if (cJSON_IsString(type) && !strcmp(type->valuestring, "item_reference"))
            return BAD(param,
                       "%s: 'item_reference' needs a stored response and this server "
                       "stores none: send the message itself (the Vercel AI SDK does "
                       "with providerOptions.openai.store = false)",
                       param);
        return BAD(param, "%s: input item type '%.40s' is not supported (only messages)", param,
                   cJSON_IsString(type) ? type->valuestring : "?");
    }
    static const char *const roles[] = {"user", "system", "developer", "assistant"};
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
    size_t r = 0;
    while (cJSON_IsString(role) && r < 4 && strcmp(role->valuestring, roles[r]) != 0)
        r++;
    if (!cJSON_IsString(role) || r == 4) {
        snprintf(param, sizeof param, "input[%d].role", i);
        return BAD(param, "%s must be one of user, system, developer, assistant", param);
    }
    cJSON *m = cJSON_CreateObject();
    if (!api_json_append(msgs, m) || !api_json_put(m, "role", cJSON_CreateString(roles[r])))
        return oom(e);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
    if (cJSON_IsString(content))
        return api_json_put(m, "content", cJSON_CreateString(content->valuestring)) ? 0 : oom(e);
    snprintf(param, sizeof param, "input[%d].content", i);
    if (!cJSON_IsArray(content))
        return BAD(param, "%s must be a string or a list of input_text parts", param);
    cJSON *parts = cJSON_CreateArray();
    if (!api_json_put(m, "content", parts)) return oom(e);
    int k = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, content) {
        snprintf(param, sizeof param, "input[%d].content[%d]", i, k++);
        if (add_part(p, param, parts, e)) return -1;
    }
    return 0;
}

/* text.format as chat's response_format: text (nothing to add), json_object, or json_schema
 * with its name, schema and strict one level up; the chat parser validates the schema. */
static int add_format(const cJSON *o, cJSON *q, api_error *e) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
    const cJSON *f = cJSON_IsObject(text) ? cJSON_GetObjectItemCaseSensitive(text, "format") : NULL;
    if (!given(f)) return 0;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "type");
    if (!cJSON_IsObject(f) || !cJSON_IsString(type) ||
        (strcmp(type->valuestring, "text") != 0 && strcmp(type->valuestring, "json_object") != 0 &&
         strcmp(type->valuestring, "json_schema") != 0))
        return BAD("text.format", "'text.format' must be an object with 'type' text, "
                                  "json_object or json_schema");
    if (!strcmp(type->valuestring, "text")) return 0;
    cJSON *rf = cJSON_CreateObject();
    if (!api_json_put(q, "response_format", rf) ||
        !api_json_put(rf, "type", cJSON_CreateString(type->valuestring)))
        return oom(e);
    if (!strcmp(type->valuestring, "json_object")) return 0;
    cJSON *js = cJSON_CreateObject();
    if (!api_json_put(rf, "json_schema", js)) return oom(e);
    static const char *const keys[] = {"name", "schema", "strict"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(f, keys[i]);
        if (given(v) && !api_json_put(js, keys[i], cJSON_Duplicate(v, true))) return oom(e);
    }
    return 0;
}

/* The chat request q for the Responses request o: the messages (instructions first as the
 * system message), max_output_tokens as max_tokens, and the sampling fields both share. */
static int to_chat(const api_ctx *ctx, const cJSON *o, cJSON *q, api_error *e) {
    /* the same name and meaning in both: validated by the chat parser (and the extensions
     * the chat route takes from llama.cpp: seed, top_k, min_p, stop) */
    static const char *const same[] = {"model", "temperature", "top_p", "stream",
                                       "seed",  "top_k",       "min_p", "stop"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, same[i]);
        if (given(v) && !api_json_put(q, same[i], cJSON_Duplicate(v, true))) return oom(e);
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "max_output_tokens");
    if (given(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1)
            return BAD("max_output_tokens", "'max_output_tokens' must be a positive integer");
        if (v->valuedouble > ctx->max_tokens_limit)
            return BAD("max_output_tokens",
                       "'max_output_tokens' is %.0f; this server allows at most %d", v->valuedouble,
                       ctx->max_tokens_limit);
        if (!api_json_put(q, "max_tokens", cJSON_CreateNumber(v->valuedouble))) return oom(e);
    }
    if (add_format(o, q, e)) return -1;
    cJSON *msgs = cJSON_CreateArray();
    if (!api_json_put(q, "messages", msgs)) return oom(e);
    v = cJSON_GetObjectItemCaseSensitive(o, "instructions");
    if (given(v)) {
        if (!cJSON_IsString(v)) return BAD("instructions", "'instructions' must be a string");
        cJSON *m = cJSON_CreateObject();
        if (!api_json_append(msgs, m) || !api_json_put(m, "role", cJSON_CreateString("system")) ||
            !api_json_put(m, "content", cJSON_CreateString(v->valuestring)))
            return oom(e);
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
    if (!given(in)) return BAD("input", "'input' is required");
    if (cJSON_IsString(in)) {
        cJSON *m = cJSON_CreateObject();
        if (!api_json_append(msgs, m) || !api_json_put(m, "role", cJSON_CreateString("user")) ||
            !api_json_put(m, "content", cJSON_CreateString(in->valuestring)))
            return oom(e);
        return 0;
    }
    if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) == 0)
        return BAD("input", "'input' must be a string or a non-empty list of messages");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, in) {
        if (add_item(it, i++, msgs, e)) return -1;
    }
    return 0;
}

/* The request fields every response object repeats, in OpenAI's shapes; NULL when memory runs
 * out. Fields this server does not support are repeated at their only accepted value. */
static cJSON *echo_fields(const cJSON *o) {
    cJSON *r = cJSON_CreateObject();
    const cJSON *v;
    bool ok = r != NULL;
#define ECHO(key, otherwise)                                                                       \
    (v = cJSON_GetObjectItemCaseSensitive(o, key),                                                 \
     api_json_put(r, key, given(v) ? cJSON_Duplicate(v, true) : (otherwise)))
    ok = ok && api_json_put(r, "background", cJSON_CreateFalse());
    ok = ok && ECHO("instructions", cJSON_CreateNull());
    ok = ok && ECHO("max_output_tokens", cJSON_CreateNull());
    ok = ok && api_json_put(r, "max_tool_calls", cJSON_CreateNull());
    ok = ok && ECHO("metadata", cJSON_CreateObject());
    ok = ok && ECHO("parallel_tool_calls", cJSON_CreateTrue());
    ok = ok && api_json_put(r, "previous_response_id", cJSON_CreateNull());
    cJSON *reasoning = ok ? cJSON_AddObjectToObject(r, "reasoning") : NULL;
    ok = reasoning && api_json_put(reasoning, "effort", cJSON_CreateNull()) &&
         api_json_put(reasoning, "summary", cJSON_CreateNull());
    ok = ok && api_json_put(r, "service_tier", cJSON_CreateString("default"));
    ok = ok && api_json_put(r, "store", cJSON_CreateFalse());
    ok = ok && ECHO("temperature", cJSON_CreateNumber(1));
    v = cJSON_GetObjectItemCaseSensitive(o, "text");
    v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "format") : NULL;
    cJSON *text = ok ? cJSON_AddObjectToObject(r, "text") : NULL;
    if (given(v)) {
        ok = text && api_json_put(text, "format", cJSON_Duplicate(v, true));
    } else {
        cJSON *format = text ? cJSON_AddObjectToObject(text, "format") : NULL;
        ok = format && api_json_put(format, "type", cJSON_CreateString("text"));
    }
    ok = ok && ECHO("tool_choice", cJSON_CreateString("auto"));
    ok = ok && api_json_put(r, "tools", cJSON_CreateArray());
    ok = ok && api_json_put(r, "top_logprobs", cJSON_CreateNumber(0));
    ok = ok && ECHO("top_p", cJSON_CreateNumber(1));
    ok = ok && api_json_put(r, "truncation", cJSON_CreateString("disabled"));
    ok = ok && ECHO("user", cJSON_CreateNull());
#undef ECHO
    if (ok) return r;
    cJSON_Delete(r);
    return NULL;
}

/* response_format[.json_schema][.rest] as text.format[.rest]: the Responses API flattens the
 * json_schema object into text.format. */
static void rename_format_param(api_error *e) {
    const char *rest = e->param + 15;
    if (!strncmp(rest, ".json_schema", 12)) rest += 12;
    char tail[sizeof e->param];
    snprintf(tail, sizeof tail, "%s", rest);
    snprintf(e->param, sizeof e->param, "text.format%.*s", (int)(sizeof e->param - 12), tail);
}

/* Chat's names for the fields the Responses API names otherwise. */
static void rename_param(api_error *e) {
    if (!strncmp(e->param, "messages", 8))
        snprintf(e->param, sizeof e->param, "input");
    else if (!strcmp(e->param, "max_tokens"))
        snprintf(e->param, sizeof e->param, "max_output_tokens");
    else if (!strncmp(e->param, "response_format", 15))
        rename_format_param(e);
}

int api_parse_responses(const api_ctx *ctx, const char *body, size_t len, api_call *c,
                        api_error *e) {
    memset(c, 0, sizeof *c);
    cJSON *o = api_body_parse(body, len, e);
    if (!o) return -1;
    int rc = -1;
    cJSON *q = cJSON_CreateObject();
    if (!q) {
        oom(e);
        goto done;
    }
    if (refuse_unsupported(o, e) || to_chat(ctx, o, q, e)) goto done;
    if (api_parse_chat_object(ctx, q, c, e)) {
        rename_param(e);
        goto done;
    }
    c->responses = true;
    if (!(c->resp_echo = echo_fields(o))) {
        api_call_free(c);
        oom(e);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(q);
    cJSON_Delete(o);
    return rc;
}

/* --- the answers --- */

/* The output message's id: the response's, "msg_" for "resp_". */
static void message_id(const char *resp_id, char *out, size_t cap) {
    snprintf(out, cap, "msg_%s", strncmp(resp_id, "resp_", 5) ? resp_id : resp_id + 5);
}

static cJSON *text_part(const char *s, size_t n) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "output_text");
    cJSON_AddArrayToObject(p, "annotations");
    cJSON_AddArrayToObject(p, "logprobs");
    api_text_add(p, "text", s ? s : "", s ? n : 0);
    return p;
}

/* The output message: in progress and empty, or the finished choice's text. */
static cJSON *message_item(const choice_out *o, const char *mid, bool done) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "message");
    cJSON_AddStringToObject(m, "id", mid);
    cJSON_AddStringToObject(m, "status",
                            !done                        ? "in_progress"
                            : o->finish == FINISH_LENGTH ? "incomplete"
                                                         : "completed");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON *content = cJSON_AddArrayToObject(m, "content");
    if (done) cJSON_AddItemToArray(content, text_part(o->text, o->len));
    return m;
}

static cJSON *usage_object(const job_view *j) {
    const choice_out *o = &j->choices[0];
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "input_tokens", j->req.n_prompt);
    cJSON *d = cJSON_AddObjectToObject(u, "input_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", o->n_cached);
    cJSON_AddNumberToObject(u, "output_tokens", o->n_gen);
    d = cJSON_AddObjectToObject(u, "output_tokens_details");
    cJSON_AddNumberToObject(d, "reasoning_tokens", 0);
    cJSON_AddNumberToObject(u, "total_tokens", j->req.n_prompt + o->n_gen);
    return u;
}

/* The response object: in progress (no output yet), or the finished job's: "completed", or
 * "incomplete" when the output was cut at max_output_tokens (or at the context's end). */
static cJSON *response_object(const api_ctx *ctx, const api_call *c, const job_view *j,
                              const char *id, long created, bool done) {
    const choice_out *o = &j->choices[0];
    bool cut = done && o->finish == FINISH_LENGTH;
    char mid[64];
    message_id(id, mid, sizeof mid);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", id);
    cJSON_AddStringToObject(r, "object", "response");
    cJSON_AddNumberToObject(r, "created_at", (double)created);
    cJSON_AddStringToObject(r, "status", !done ? "in_progress" : cut ? "incomplete" : "completed");
    cJSON_AddNullToObject(r, "error");
    if (cut)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(r, "incomplete_details"), "reason",
                                "max_output_tokens");
    else
        cJSON_AddNullToObject(r, "incomplete_details");
    cJSON_AddStringToObject(r, "model", ctx->model_id);
    cJSON *output = cJSON_AddArrayToObject(r, "output");
    if (done) cJSON_AddItemToArray(output, message_item(o, mid, true));
    const cJSON *it;
    cJSON_ArrayForEach(it, c->resp_echo) api_json_put(r, it->string, cJSON_Duplicate(it, true));
    if (done)
        cJSON_AddItemToObject(r, "usage", usage_object(j));
    else
        cJSON_AddNullToObject(r, "usage");
    return r;
}

char *api_responses_json(const api_ctx *ctx, const api_call *c, const job_view *j, const char *id,
                         long created) {
    api_json_init();
    cJSON *r = response_object(ctx, c, j, id, created, true);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* --- the stream: semantic events, each "event: TYPE" and a "data:" object with its type and
 * sequence_number; no [DONE] (the last event is response.completed or response.incomplete) */

static cJSON *event(api_stream *st, const char *type) {
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddNumberToObject(ev, "sequence_number", st->seq++);
    return ev;
}

/* The fields of an event about the output message's text part. */
static cJSON *text_event(api_stream *st, const char *type, const char *mid) {
    cJSON *ev = event(st, type);
    cJSON_AddStringToObject(ev, "item_id", mid);
    cJSON_AddNumberToObject(ev, "output_index", 0);
    cJSON_AddNumberToObject(ev, "content_index", 0);
    return ev;
}

static void send_event(char **buf, size_t *len, size_t *cap, cJSON *ev) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    api_sse_append(buf, len, cap, cJSON_IsString(type) ? type->valuestring : NULL, ev);
}

/* response.created and .in_progress, and the message and its text part opened. */
static void stream_open(api_stream *st, const char *mid, char **buf, size_t *len, size_t *cap) {
    static const char *const life[] = {"response.created", "response.in_progress"};
    for (int k = 0; k < 2; k++) {
        cJSON *ev = event(st, life[k]);
        cJSON_AddItemToObject(
            ev, "response", response_object(st->ctx, st->call, st->j, st->id, st->created, false));
        send_event(buf, len, cap, ev);
    }
    cJSON *ev = event(st, "response.output_item.added");
    cJSON_AddNumberToObject(ev, "output_index", 0);
    cJSON_AddItemToObject(ev, "item", message_item(&st->j->choices[0], mid, false));
    send_event(buf, len, cap, ev);
    ev = text_event(st, "response.content_part.added", mid);
    cJSON_AddItemToObject(ev, "part", text_part("", 0));
    send_event(buf, len, cap, ev);
}

/* The text, the part, the message and the response closed. */
static void stream_close(api_stream *st, const char *mid, char **buf, size_t *len, size_t *cap) {
    const choice_out *o = &st->j->choices[0];
    cJSON *ev = text_event(st, "response.output_text.done", mid);
    api_text_add(ev, "text", o->text ? o->text : "", o->len);
    cJSON_AddArrayToObject(ev, "logprobs");
    send_event(buf, len, cap, ev);
    ev = text_event(st, "response.content_part.done", mid);
    cJSON_AddItemToObject(ev, "part", text_part(o->text, o->len));
    send_event(buf, len, cap, ev);
    ev = event(st, "response.output_item.done");
    cJSON_AddNumberToObject(ev, "output_index", 0);
    cJSON_AddItemToObject(ev, "item", message_item(o, mid, true));
    send_event(buf, len, cap, ev);
    ev = event(st, o->finish == FINISH_LENGTH ? "response.incomplete" : "response.completed");
    cJSON_AddItemToObject(ev, "response",
                          response_object(st->ctx, st->call, st->j, st->id, st->created, true));
    send_event(buf, len, cap, ev);
}

bool api_responses_stream_events(api_stream *st, char **buf, size_t *len, size_t *cap) {
    api_json_init();
    const choice_out *o = &st->j->choices[0];
    if (st->sent_done) return true;
    char mid[64];
    message_id(st->id, mid, sizeof mid);
    if (!st->sent_role) {
        stream_open(st, mid, buf, len, cap);
        st->sent_role = true;
    }
    if (o->finish == FINISH_ERROR || o->finish == FINISH_CANCEL) {
        /* the error event ends the stream, as OpenAI's does */
        cJSON *ev = event(st, "error");
        cJSON_AddStringToObject(ev, "code", "server_error");
        cJSON_AddStringToObject(ev, "message",
                                o->finish == FINISH_CANCEL
                                    ? "the request was cancelled (server shutting "
                                      "down)"
                                    : st->j->error);
        cJSON_AddNullToObject(ev, "param");
        send_event(buf, len, cap, ev);
        st->sent_done = true;
        return true;
    }
    if (o->len > st->sent_len[0]) {
        cJSON *ev = text_event(st, "response.output_text.delta", mid);
        api_text_add(ev, "delta", o->text + st->sent_len[0], o->len - st->sent_len[0]);
        cJSON_AddArrayToObject(ev, "logprobs");
        send_event(buf, len, cap, ev);
        st->sent_len[0] = o->len;
    }
    if (o->finish == FINISH_NONE) return false;
    stream_close(st, mid, buf, len, cap);
    st->sent_done = true;
    return true;
}
