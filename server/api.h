/* api: the OpenAI-compatible wire format. Turns request bodies into validated gen_requests
 * (api.c) and a job's results into response JSON and stream events (api_response.c), in
 * OpenAI's exact shapes (see shared/notes/wire-formats.md); the Responses API's requests and
 * answers are api_responses.c's, llama.cpp's native routes are api_native.c's, on the same
 * parsing.
 * No I/O and no threads of its own: http.c calls it; it reads a job only through a job_view
 * (scheduler.h: the caller's private copy), so it formats nothing under any lock. */
#ifndef LS_API_H
#define LS_API_H

#include "beam.h"
#include "chat.h"
#include "scheduler.h"
#include "tools.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

/* An error as OpenAI reports it: {"error":{"message","type","param","code"}}. */
typedef struct {
    int status;
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    const char *code; /* NULL or e.g. "context_length_exceeded" */
    char param[64];   /* "" for none */
    char message[512];
} api_error;

/* What every request needs to know of the server. Read-only, shared by all HTTP threads. */
typedef struct {
    const model *m;
    const char *model_id;  /* the served id (--alias) */
    int ctx_size;          /* KV positions per slot */
    int parallel;          /* slots: the largest n */
    int max_tokens_limit;  /* the largest max_tokens a request may ask */
    long long default_seed; /* -1: a fresh seed per request */
    chat_format chat_fmt;   /* the prompt format's family (stop tokens); the format itself */
    const chat_template *chat; /* when chat is NULL (tests) */
    const char *fingerprint;   /* system_fingerprint (fingerprint.h); NULL: none sent */
    const char *model_path;    /* the model file, for GET /props (NULL: "") */
} api_ctx;

/* best_of, the beams of a beam search: at most this many (and n <= best_of, so the n results
 * fit an array of this size) */
#define API_MAX_BEST_OF 16
_Static_assert(API_MAX_BEST_OF <= BEAM_MAX_WIDTH, "best_of must be a width beam_search takes");

typedef struct {
    bool chat;
    bool native;            /* llama.cpp's POST /completion (api_native.c) */
    bool return_tokens;     /* native: the generated ids in "tokens" */
    bool timings_per_token; /* llama.cpp's "timings" in the response and in every chunk */
    int n_predict;          /* native: n_predict as asked (-1: until the end or the context) */
    bool stream, include_usage, echo;
    int logprobs;         /* completions: -1 none, else alternatives 0..5; chat: -1 or 0..20 */
    char **echo_text;     /* (n_echo) each prompt's text, for echo; else NULL */
    int n_echo;
    int beam_width;       /* 0: sampling; else beam search with this many beams (best_of) */
    float length_penalty; /* beam score = logprob / length^length_penalty */
    bool responses;          /* POST /v1/responses: a chat call answered in its shapes */
    struct cJSON *resp_echo; /* responses: the request fields its answers repeat (owned) */
    bool embed;           /* POST /v1/embeddings: req.embed, one choice per input */
    bool embed_llama;     /* POST /embeddings: llama.cpp's own answer, [{index, embedding}] */
    bool base64;          /* embeddings: encoding_format "base64" (little-endian float32) */
    tools_req *tools;     /* chat: the tools whose calls the output is read for; NULL: none */
    gen_request req;
} api_call;

void api_call_free(api_call *c);

/* Parse and validate a body. 0, or -1 with *e always filled: status 400 naming what is wrong
 * with the request, or 503 "out of memory" (500 for a failure without a reason, never left
 * unset). Nothing is left allocated on failure. */
int api_parse_completion(const api_ctx *ctx, const char *body, size_t len, api_call *out,
                         api_error *e);
int api_parse_chat(const api_ctx *ctx, const char *body, size_t len, api_call *out, api_error *e);
/* POST /v1/responses, OpenAI's Responses API (its text subset), run as a chat call
 * (api_responses.c): api_response_json and api_stream_events then answer in its shapes.
 * Errors as api_parse_chat's, with the Responses API's field names in `param`. */
int api_parse_responses(const api_ctx *ctx, const char *body, size_t len, api_call *out,
                        api_error *e);
/* POST /v1/embeddings: {"input": a string, an array of strings, an array of ids or an array
 * of arrays of ids, "encoding_format"?: "float" | "base64", "model"?: ignored}. Strings get
 * BOS as completion prompts do; id arrays are taken as given. Each input is one choice
 * (1..SCHED_MAX_INPUTS), non-empty and at most ctx_size tokens; "dimensions" is refused.
 * llama: llama.cpp's POST /embeddings, which also takes "content" for "input" and answers in
 * its own shape, floats only (base64 is refused). Errors as api_parse_completion's. */
int api_parse_embeddings(const api_ctx *ctx, const char *body, size_t len, bool llama,
                         api_call *out, api_error *e);
/* POST /apply-template, as llama.cpp has it: {"messages": [...], "tools"?,
 * "add_generation_prompt"? (default true)} -> {"prompt": "..."}, the rendered text, without
 * generating. Errors as api_parse_chat's. */
int api_parse_apply_template(const api_ctx *ctx, const char *body, size_t len, char **json_out,
                             api_error *e);
/* ctx->chat, or the built-in format ctx->chat_fmt. */
const chat_template *api_chat_template(const api_ctx *ctx);
int api_parse_tokenize(const api_ctx *ctx, const char *body, size_t len, char **json_out,
                       api_error *e);
int api_parse_detokenize(const api_ctx *ctx, const char *body, size_t len, char **json_out,
                         api_error *e);

/* Routes cJSON's allocations through api.c, so that a parse that runs out of memory is told
 * from a body that is not JSON. Every api function calls it first; idempotent, thread-safe. */
void api_json_init(void);
/* How many of cJSON's allocations have failed on the calling thread so far. cJSON leaves out
 * an item it cannot allocate and says nothing (cJSON_Add* of a NULL item), so a writer's output
 * is whole only when this did not move while it ran. Thread-safe: per thread. */
unsigned long api_json_failures(void);

/* Error body; caller frees. NULL when memory runs out. */
char *api_error_json(const api_error *e);
void api_error_set(api_error *e, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The whole response of a finished job, as j shows it (job_view_sync'ed after the job
 * finished; non-streaming; an embedding job's list of embeddings when c->embed). Caller frees;
 * NULL when memory runs out. */
char *api_response_json(const api_ctx *ctx, const api_call *c, const job_view *j, const char *id,
                        long created);

/* Streaming: the state of one stream, and the next events. */
typedef struct {
    const api_ctx *ctx;
    const api_call *call;
    job_view *j; /* the stream's copy of its job's output (the caller syncs it) */
    const char *id;
    long created;
    size_t *sent_len;   /* (n) bytes of each choice's text already sent */
    int *sent_toks;     /* (n) tokens of each choice already sent (logprobs) */
    bool *sent_finish;  /* (n) */
    int *sent_calls;    /* (n) tool calls of each choice already sent */
    bool sent_role, sent_usage, sent_done, echoed;
    int seq; /* responses: the next event's sequence_number */
} api_stream;

/* -1 when out of memory (nothing to free). st->j views j, which must outlive st; the caller
 * brings it up to date with job_view_sync(st->j, ...) before each api_stream_events. */
int api_stream_init(api_stream *st, const api_ctx *ctx, const api_call *c, job *j,
                    const char *id, long created);
void api_stream_free(api_stream *st);
/* Appends to *buf (malloc'ed, grown as needed) the SSE events for everything new in st->j
 * since the last call, ending with the usage chunk and "data: [DONE]" once every choice has
 * finished. Takes no lock. Returns true when the stream is complete. */
bool api_stream_events(api_stream *st, char **buf, size_t *len, size_t *cap);

/* GET /v1/models body. Caller frees. */
char *api_models_json(const api_ctx *ctx, long created);

/* llama.cpp's "timings" object of job j (as last synced) at monotonic time now (a job that
 * runs is timed up to now): cache_n, prompt_n, prompt_ms, prompt_per_token_ms,
 * prompt_per_second, predicted_n, predicted_ms, predicted_per_token_ms, predicted_per_second,
 * over all of j's choices. NULL when memory runs out. */
cJSON *api_timings_json(const job_view *j, double now);

/* --- llama.cpp's native API (api_native.c) --- */

/* POST /completion (and /completions): llama.cpp's request fields (prompt as a string, ids or
 * a mixed list; n_predict, n_probs, return_tokens, logit_bias pairs, ...). A llama.cpp field
 * we do not implement, given a value other than its "off" value, is a 400 naming it. Errors as
 * api_parse_completion's. */
int api_parse_native(const api_ctx *ctx, const char *body, size_t len, api_call *out,
                     api_error *e);
/* The whole answer of a finished native job (content, tokens, stop_type, timings, ...). Caller
 * frees; NULL when memory runs out. */
char *api_native_json(const api_ctx *ctx, const api_call *c, const job_view *j);
/* The native stream's events ("data: {json}", one per new piece of output, the last with
 * "stop": true and the stats; no [DONE]). As api_stream_events, which calls it for native
 * calls. */
bool api_native_stream_events(api_stream *st, char **buf, size_t *len, size_t *cap);
/* GET /props: n_ctx, total_slots, chat_template, default_generation_settings, model_path,
 * model_alias, build_info. Caller frees; NULL when memory runs out. */
char *api_props_json(const api_ctx *ctx);
/* GET /slots: one object per slot of the snapshot (n of them). Caller frees. */
char *api_slots_json(const api_ctx *ctx, const sched_slot_info *slots, int n);
/* POST /tokenize's answer for with_pieces: [{"id","piece"}], piece a string, or its bytes
 * when they are not valid UTF-8. NULL when memory runs out. */
cJSON *api_token_pieces(const api_ctx *ctx, const int32_t *ids, int n);

#endif
