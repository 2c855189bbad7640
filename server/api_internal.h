/* api_internal: what api.c, api_response.c, api_responses.c and api_native.c share, and
 * nothing else includes: body parsing, the common generation fields (so that llama.cpp's
 * native route validates sampling, stop strings and logit_bias exactly as the OpenAI routes
 * do), the chat parser on a parsed object, text and SSE writing, and the Responses API's
 * formatters. Same rules as api.h: no I/O, no threads; a job is read only through a job_view. Parsers return 0, or -1 with *e filled. */
#ifndef LS_API_INTERNAL_H
#define LS_API_INTERNAL_H

#include "api.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* The request body as a JSON object (caller deletes), or NULL with *e filled: 400 for a body
 * that is not one UTF-8 JSON object, 503 when memory runs out. */
cJSON *api_body_parse(const char *body, size_t len, api_error *e);
/* api_parse_chat on a body already parsed; o stays the caller's. */
int api_parse_chat_object(const api_ctx *ctx, const cJSON *o, api_call *out, api_error *e);
/* The fields every generation shares: sampling, stop, logit_bias, n, stream, max_tokens
 * (default_max when absent), grammar, timings_per_token. */
int api_common_parse(const api_ctx *ctx, const cJSON *o, api_call *c, int default_max,
                     api_error *e);
/* The prompt against the context: a prompt that leaves no room is a 400; max_tokens is cut to
 * the room left unless max_given (then asking past it is a 400). */
int api_context_check(const api_ctx *ctx, api_call *c, bool max_given, api_error *e);
/* Absent or null leaves *out as it is. */
int api_get_int(const cJSON *o, const char *k, double lo, double hi, long long *out, api_error *e);
int api_get_bool(const cJSON *o, const char *k, bool *out, api_error *e);
uint64_t api_fresh_seed(void);
/* A 503 "out of memory"; returns -1. */
int api_oom(api_error *e);

/* obj[key] = item and arr += item, taking item: when it cannot be added (memory ran out, or
 * obj/arr is NULL because making it failed) item is freed, as cJSON leaves it to the caller,
 * and the result is false. The writers' output then lacks it, which api_json_failures shows. */
bool api_json_put(cJSON *obj, const char *key, cJSON *item);
bool api_json_append(cJSON *arr, cJSON *item);
/* obj[key] = the n bytes at s as a JSON string, a NUL byte written as U+FFFD. Silently
 * nothing when memory runs out (the caller's print then fails or lacks the key). */
void api_text_add(cJSON *obj, const char *key, const char *s, size_t n);
/* Appends "event: NAME\n" (when event is not NULL) and "data: JSON\n\n" to *buf; takes
 * data. */
void api_sse_append(char **buf, size_t *len, size_t *cap, const char *event, cJSON *data);

/* The Responses API's answers (api_responses.c), for api_response_json and api_stream_events
 * when c->responses: the response object of a finished job (caller frees), and the stream's
 * next events (true once the stream is complete). */
char *api_responses_json(const api_ctx *ctx, const api_call *c, const job_view *j, const char *id,
                         long created);
bool api_responses_stream_events(api_stream *st, char **buf, size_t *len, size_t *cap);

#endif
