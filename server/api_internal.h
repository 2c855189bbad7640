/* api_internal: the helpers of api.c and api_response.c that api_native.c shares, so that
 * llama.cpp's native route validates sampling, stop strings and logit_bias exactly as the OpenAI
 * routes do. Only api*.c include it. Each returns 0, or -1 with *e filled (as api.h's parsers). */
#ifndef LS_API_INTERNAL_H
#define LS_API_INTERNAL_H

#include "api.h"

#include <stdint.h>

/* The body as a JSON object (UTF-8, no NUL, nothing after it); NULL with *e filled. Caller
 * frees with cJSON_Delete. */
cJSON *api_body_parse(const char *body, size_t len, api_error *e);
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
/* obj[key] = n bytes of s as a JSON string, a NUL byte written as U+FFFD (api_response.c). */
void api_text_add(cJSON *obj, const char *key, const char *s, size_t n);

#endif
