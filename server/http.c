/* http: routes, authentication, body limits and response writing over libmicrohttpd.
 *
 * Design: an event loop, never a thread per connection. An idle socket costs libmicrohttpd's
 * connection record, our conn_ctx and kernel buffers, never a thread.
 * Threads:
 *  - HTTP_LOOP_THREADS libmicrohttpd workers (MHD_USE_EPOLL_INTERNAL_THREAD with a thread pool).
 *    Each connection lives on one worker, which runs every callback for it: on_request,
 *    stream_reader, on_completed, on_connection. No callback ever waits: a request that needs
 *    the scheduler submits its job and suspends its connection (MHD_suspend_connection) until
 *    there is something to write.
 *  - The notifier (http_notifier_main; the waiting machinery lives in http_wait.c). The
 *    scheduler calls http_progress after every step and whenever it has ended jobs; the
 *    notifier then looks at every suspended request: it resumes (MHD_resume_connection) a
 *    stream whose job has new output and a whole response whose job has finished, and polls
 *    each suspended socket once, so a client that leaves is noticed within one decoding step.
 *    It also enforces the request deadline (--request-timeout): every connection that has not
 *    yet delivered a whole request sits, oldest first, in a FIFO, and the notifier shuts down
 *    the socket of any that is still there at its deadline; the worker then sees the end of the
 *    stream and closes it. The idle timeout (--timeout) is libmicrohttpd's own; suspended
 *    connections are exempt from it.
 * Who resumes whom: only the notifier (job progress, client gone, shutdown) and http_stop. A connection is suspended only by its own worker, and
 * only with h->mu held after checking that nothing it waits for has happened yet, so a wakeup
 * cannot be lost; r->suspended (under h->mu) says whether it is suspended, so a connection is
 * never resumed twice.
 * Gone or half-closed: a reset or a failed write is gone. An end of stream alone may be a
 * client that shut down its sending side and still reads (shutdown(SHUT_WR)), so it is probed
 * once: an SSE comment on a stream, an interim "100 Continue" on a waiting HTTP/1.1 request. A
 * client that really left answers the probe with a reset, seen at the next poll.
 * Lock order: h->mu, then libmicrohttpd's own locks (MHD_suspend/resume under h->mu). No job's
 * j->mu is taken under h->mu: the notifier reads a job's progress and done atomics. The
 * scheduler calls http_progress holding none of its locks. Nothing is formatted under any
 * lock: a worker copies its job's new output (job_view_sync) and formats the copy.
 * Owns: the daemon, per-connection and per-request contexts, the notifier thread. */
#include "http_internal.h"

#include "common.h"
#include "log.h"
#include "metrics.h"
#include "routes.h"
#include "webui.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#define CORS_MAX_AGE "7200" /* seconds a browser may reuse a preflight answer (Chromium's cap) */
#define HTTP_LOOP_THREADS 4 /* event-loop workers: a slow parse on one leaves three answering */
#define HTTP_MAX_CONNECTIONS 4096 /* open sockets at most; idle ones cost no thread */
/* libmicrohttpd's per-connection buffer (headers, read and write buffers). Above 32 KiB it is
 * mapped rather than malloc'ed, so an idle connection touches none of it: 1,100 open sockets
 * cost 0.98 KiB of resident memory each, against 4.6 KiB at the 32 KiB default. */
#define HTTP_CONN_POOL (64 * 1024)
#define FD_RESERVE 64 /* descriptors besides the connections: model, log, epoll, ... */

/* --- small helpers --- */

/* CORS headers of every response while cors_origin is set: "*" for any origin when the list
 * holds "*", else the request's own Origin when it is listed, with Vary: Origin so that a cache
 * never hands one origin's answer to another. */
static void add_cors(const req_ctx *r, struct MHD_Response *res) {
    if (!r->h->cfg.cors_origin[0]) return;
    if (r->cors == 2) {
        MHD_add_response_header(res, "Access-Control-Allow-Origin", "*");
        return;
    }
    MHD_add_response_header(res, "Vary", "Origin");
    if (r->cors == 1)
        MHD_add_response_header(res, "Access-Control-Allow-Origin",
                                MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin"));
}

/* Headers of every response: CORS, and Connection: close once the server drains. */
static void add_common(const req_ctx *r, struct MHD_Response *res) {
    add_cors(r, res);
    if (atomic_load(&r->h->draining)) MHD_add_response_header(res, "Connection", "close");
}

/* What a response whose body could not be formatted (out of memory) gets instead: static, so
 * that it needs no allocation; the same fields as api_error_json writes. */
static const char OOM_BODY[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                               "\"server_error\",\"param\":null,\"code\":null}}";

/* Queues status with body (taken: freed here) as type. A NULL body is a body that ran out of
 * memory while it was formatted, so whatever status was meant, the answer is 500 with
 * OOM_BODY: never a 200 with an empty body. */
static enum MHD_Result send_text(req_ctx *r, int status, const char *type, char *body,
                                 bool retry_after) {
    if (!body) {
        status = 500;
        type = "application/json";
        retry_after = false;
    }
    r->status = status;
    struct MHD_Response *res =
        body ? MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(sizeof OOM_BODY - 1, (void *)OOM_BODY,
                                               MHD_RESPMEM_PERSISTENT);
    if (!res) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(res, "Content-Type", type);
    add_common(r, res);
    if (retry_after) MHD_add_response_header(res, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(res, "WWW-Authenticate", "Bearer");
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)status, res);
    MHD_destroy_response(res);
    return rc;
}

/* A 200 with json, formatted during this on_request call (r->json_mark): when any of cJSON's
 * allocations failed meanwhile, an item is missing from it, so it is dropped for a 500. */
static enum MHD_Result send_json(req_ctx *r, int status, char *json) {
    if (json && api_json_failures() != r->json_mark) {
        free(json);
        json = NULL;
    }
    return send_text(r, status, "application/json", json, false);
}

static enum MHD_Result send_error(req_ctx *r, const api_error *e) {
    unsigned long mark = api_json_failures();
    char *json = api_error_json(e);
    if (json && api_json_failures() != mark) { /* a field is missing */
        free(json);
        json = NULL;
    }
    return send_text(r, e->status, "application/json", json, e->status == 503 || e->status == 429);
}

static enum MHD_Result fail(req_ctx *r, int status, const char *type, const char *code,
                            const char *fmt, const char *arg) {
    api_error e;
    api_error_set(&e, status, type, NULL, code, fmt, arg);
    return send_error(r, &e);
}

/* Compares given with the key in time that depends only on their lengths. */
static bool key_matches(const char *given, const char *key) {
    size_t gl = strlen(given), kl = strlen(key), n = gl > kl ? gl : kl;
    unsigned char diff = (unsigned char)(gl != kl);
    for (size_t i = 0; i < n; i++) {
        unsigned char a = i < gl ? (unsigned char)given[i] : 0;
        unsigned char b = i < kl ? (unsigned char)key[i] : 0;
        diff |= (unsigned char)(a ^ b);
    }
    return diff == 0;
}

/* The key as "Authorization: Bearer KEY", or as "X-Api-Key: KEY" (llama.cpp and Anthropic's
 * clients send that one). */
static bool authorized(const http_server *h, struct MHD_Connection *c) {
    if (!h->cfg.api_key[0]) return true;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *xkey = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key");
    bool ok = auth && !strncmp(auth, "Bearer ", 7) && key_matches(auth + 7, h->cfg.api_key);
    return ok || (xkey && key_matches(xkey, h->cfg.api_key));
}

static void make_id(http_server *h, const char *prefix, char *out, size_t cap) {
    static const char digits[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t x = atomic_fetch_add(&h->next_id, 1) * 0x9e3779b97f4a7c15ull ^ h->id_salt;
    size_t n = (size_t)snprintf(out, cap, "%s", prefix);
    for (int i = 0; i < 24 && n + 1 < cap; i++) {
        x ^= x >> 31;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        out[n++] = digits[x % (sizeof digits - 1)];
    }
    out[n] = '\0';
}

/* Request framing (RFC 9112 6.3): Transfer-Encoding together with Content-Length, or two
 * Content-Length values that differ, are how a request is smuggled past a proxy that reads the
 * framing the other way; so is a transfer coding we do not implement. */
typedef struct {
    int n_cl, n_te;
    bool cl_differ, te_unknown;
    char cl[32];
} framing;

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
    (void)kind;
    framing *f = cls;
    if (!value) value = "";
    while (*value == ' ' || *value == '\t')
        value++;
    if (!strcasecmp(key, "Content-Length")) {
        if (f->n_cl++ == 0)
            snprintf(f->cl, sizeof f->cl, "%s", value);
        else if (strcmp(f->cl, value) != 0)
            f->cl_differ = true;
    } else if (!strcasecmp(key, "Transfer-Encoding")) {
        f->n_te++;
        size_t n = strlen(value);
        while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
            n--;
        if (n != 7 || strncasecmp(value, "chunked", 7) != 0) f->te_unknown = true;
    }
    return MHD_YES;
}

/* 0 when the framing is sound; else answers 400 or 501 and returns the queue result + 1. */
static int check_framing(req_ctx *r, enum MHD_Result *rc) {
    framing f = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, framing_header, &f);
    const char *why = NULL;
    if (f.n_cl > 0 && f.n_te > 0)
        why = "Content-Length together with Transfer-Encoding";
    else if (f.cl_differ)
        why = "Content-Length headers that differ";
    else if (f.n_te > 1)
        why = "more than one Transfer-Encoding header";
    if (why) {
        *rc = fail(r, 400, "invalid_request_error", NULL, "ambiguous request framing: %s", why);
        return 1;
    }
    if (f.te_unknown) {
        *rc = fail(r, 501, "invalid_request_error", NULL, "%s",
                   "the only transfer coding accepted is chunked");
        return 1;
    }
    return 0;
}

/* --- generation --- */

static void record_job(req_ctx *r, job *j) {
    pthread_mutex_lock(&j->mu);
    r->prompt_tokens = j->req.n_prompt;
    r->completion_tokens = 0;
    for (int c = 0; c < j->req.n; c++)
        r->completion_tokens += j->choices[c].n_gen;
    if (j->t_admit > 0) r->t_queue = j->t_admit - j->t_submit;
    if (j->t_first > 0) r->t_first = j->t_first - j->t_submit;
    pthread_mutex_unlock(&j->mu);
}

/* Flags the notifier set, read on the worker. */
static void take_flags(req_ctx *r, bool *gone, bool *probe, bool *stopping) {
    http_server *h = r->h;
    pthread_mutex_lock(&h->mu);
    *gone = r->gone;
    *probe = r->probe_pending;
    r->probe_pending = false;
    *stopping = atomic_load(&h->stopping);
    pthread_mutex_unlock(&h->mu);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    req_ctx *r = cls;
    job *j = r->j;
    for (;;) {
        if (r->out_pos < r->out_len) {
            size_t n = r->out_len - r->out_pos < max ? r->out_len - r->out_pos : max;
            memcpy(buf, r->out + r->out_pos, n);
            r->out_pos += n;
            return (ssize_t)n;
        }
        r->out_len = r->out_pos = 0;
        if (r->st.sent_done) return MHD_CONTENT_READER_END_OF_STREAM;
        bool gone, probe, stopping;
        take_flags(r, &gone, &probe, &stopping);
        if (gone) {
            sched_cancel(r->h->s, j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (probe && max >= strlen(PROBE_SSE)) {
            memcpy(buf, PROBE_SSE, strlen(PROBE_SSE));
            return (ssize_t)strlen(PROBE_SSE);
        }
        unsigned long long mark; /* the job's progress as of the copy the events are made of */
        if (job_view_sync(r->st.j, &mark) != 0) { /* out of memory: never a shorter answer */
            sched_cancel(r->h->s, j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        bool done = api_stream_events(&r->st, &r->out, &r->out_len, &r->out_cap);
        if (done || r->out_len > 0) continue;
        if (stopping) {
            sched_cancel(r->h->s, j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (http_suspend_wait(r, W_STREAM, mark)) return 0; /* resumed when there is more */
    }
}

/* The whole answer of r's job, which has finished: a copy of its output formatted with no lock
 * held, or the error that ended it. */
static enum MHD_Result respond_finished(req_ctx *r) {
    job_view v;
    if (job_view_init(&v, r->j) != 0 || job_view_sync(&v, NULL) != 0) {
        job_view_free(&v);
        return fail(r, 503, "server_error", NULL, "%s", "out of memory");
    }
    bool failed = false;
    for (int c = 0; c < v.req.n; c++)
        failed = failed || v.choices[c].finish == FINISH_ERROR ||
                 v.choices[c].finish == FINISH_CANCEL;
    enum MHD_Result rc;
    if (failed) {
        api_error e;
        api_error_set(&e, 503, "server_error", NULL, NULL, "%s",
                      v.error[0] ? v.error : "the request was cancelled (server shutting down)");
        rc = send_error(r, &e);
    } else {
        rc = send_json(r, 200, api_response_json(r->h->ctx, &r->call, &v, r->id, r->created));
    }
    job_view_free(&v);
    return rc;
}

/* The answer of a job that has finished (or a stream of one that runs). */
static enum MHD_Result respond_job(req_ctx *r) {
    http_server *h = r->h;
    job *j = r->j;
    if (r->call.stream) {
        if (api_stream_init(&r->st, h->ctx, &r->call, j, r->id, r->created) != 0) {
            sched_cancel(h->s, j);
            return fail(r, 500, "server_error", NULL, "%s", "out of memory");
        }
        r->st_init = true;
        r->status = 200;
        struct MHD_Response *res =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
        if (!res) return MHD_NO;
        MHD_add_response_header(res, "Content-Type", "text/event-stream");
        MHD_add_response_header(res, "Cache-Control", "no-cache");
        add_common(r, res);
        enum MHD_Result rc = MHD_queue_response(r->conn, 200, res);
        MHD_destroy_response(res);
        return rc;
    }
    for (;;) {
        bool gone, probe, stopping;
        take_flags(r, &gone, &probe, &stopping);
        if (gone) {
            sched_cancel(h->s, j);
            return MHD_NO; /* on_completed counts 499 */
        }
        if (atomic_load_explicit(&j->done, memory_order_acquire)) break;
        if (stopping) {
            sched_cancel(h->s, j);
            return fail(r, 503, "server_error", NULL, "%s",
                        "the request was cancelled (server shutting down)");
        }
        if (http_suspend_wait(r, W_WHOLE, 0)) return MHD_YES; /* on_request again once resumed */
    }
    return respond_finished(r);
}

typedef int (*api_parser)(const api_ctx *, const char *, size_t, api_call *, api_error *);

/* Completions, chat, responses and llama.cpp's /completion: parse, then a job (a beam search
 * too: sched_beam.c) answered as parse made the call; ids are id_prefix and 24 random
 * characters. */
static enum MHD_Result run_generation(req_ctx *r, api_parser parse, const char *id_prefix) {
    http_server *h = r->h;
    api_error e;
    if (parse(h->ctx, r->body, r->body_len, &r->call, &e) != 0) return send_error(r, &e);
    r->prompt_tokens = r->call.req.n_prompt;
    make_id(h, id_prefix, r->id, sizeof r->id);
    r->created = (long)time(NULL);
    char err[LS_ERR_LEN];
    int status;
    r->j = sched_submit(h->s, &r->call.req, &status, err, sizeof err);
    if (!r->j) {
        /* api.c has already refused prompts that do not fit (context_length_exceeded): a beam
         * search's 400 here is more beams (best_of) than the server has slots */
        const char *param = status == 400 && r->call.beam_width > 0 ? "best_of" : NULL;
        api_error_set(&e, status, status == 503 ? "server_error" : "invalid_request_error",
                      param, NULL, "%s", err);
        return send_error(r, &e);
    }
    pthread_mutex_lock(&h->mu);
    h->n_gen++;
    r->counted = true;
    pthread_mutex_unlock(&h->mu);
    return respond_job(r);
}

/* An embedding request (llama: llama.cpp's /embeddings): its inputs run as one prefill-only
 * job (scheduler.h). */
static enum MHD_Result run_embeddings(req_ctx *r, bool llama) {
    http_server *h = r->h;
    api_error e;
    if (api_parse_embeddings(h->ctx, r->body, r->body_len, llama, &r->call, &e) != 0)
        return send_error(r, &e);
    r->prompt_tokens = r->call.req.n_prompt;
    char err[LS_ERR_LEN];
    int status;
    if (!(r->j = sched_submit(h->s, &r->call.req, &status, err, sizeof err))) {
        api_error_set(&e, status, status == 503 ? "server_error" : "invalid_request_error",
                      status == 503 ? NULL : "input", NULL, "%s", err);
        return send_error(r, &e);
    }
    pthread_mutex_lock(&h->mu);
    h->n_gen++;
    r->counted = true;
    pthread_mutex_unlock(&h->mu);
    return respond_job(r);
}

/* --- CORS --- */

/* Access-Control-Request-Headers as a browser sends it: header names (HTTP tokens) separated by
 * commas and blanks; anything else is not echoed. */
static bool header_list_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 1024) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~, ", *s)) return false;
    return true;
}

/* The answer to a preflight from an allowed origin: 204 with what the browser asked may be sent.
 * Authorization and Content-Type are always allowed; headers a client library adds of its own
 * (the OpenAI SDKs send x-stainless-*) are echoed from the request, or its real request would
 * be blocked. */
static enum MHD_Result send_preflight(req_ctx *r) {
    r->status = 204;
    struct MHD_Response *res =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!res) return MHD_NO;
    add_common(r, res);
    MHD_add_response_header(res, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const char *asked =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    char allow[1100] = "Authorization, Content-Type";
    if (asked && header_list_ok(asked))
        snprintf(allow + strlen(allow), sizeof allow - strlen(allow), ", %s", asked);
    MHD_add_response_header(res, "Access-Control-Allow-Headers", allow);
    MHD_add_response_header(res, "Access-Control-Max-Age", CORS_MAX_AGE);
    enum MHD_Result rc = MHD_queue_response(r->conn, 204, res);
    MHD_destroy_response(res);
    return rc;
}

/* --- routing --- */

typedef struct {
    const char *path, *method;
    int kind, pub; /* pub: PUB_* (routes.h) */
} route;

enum { R_HEALTH, R_MODELS, R_METRICS, R_COMPLETIONS, R_CHAT, R_NATIVE, R_TOKENIZE, R_DETOKENIZE,
       R_APPLY_TEMPLATE, R_PROPS, R_SLOTS, R_RESPONSES, R_EMBEDDINGS, R_EMBEDDINGS_LLAMA };
#define ROUTE_ROW(path, method, kind, pub) {path, method, kind, pub},
static const route routes[] = {HTTP_ROUTES(ROUTE_ROW)};

/* Whether rt is answered without the API key. */
static bool route_public(const http_server *h, const route *rt) {
    return rt->pub == PUB_ALWAYS || (rt->pub == PUB_MODELS && h->cfg.public_models);
}

#define KEY_HINT "missing or invalid API key (send 'Authorization: Bearer KEY' or 'X-Api-Key: KEY')"

/* GET /slots: a snapshot of every slot, or llama.cpp's 501 when --no-slots turned it off. */
static enum MHD_Result send_slots(req_ctx *r) {
    http_server *h = r->h;
    if (!h->cfg.slots)
        return fail(r, 501, "not_supported_error", NULL, "%s",
                    "This server does not support slots endpoint. Start it with `--slots`");
    sched_slot_info *info = calloc((size_t)h->ctx->parallel, sizeof *info);
    if (!info) return fail(r, 503, "server_error", NULL, "%s", "out of memory");
    int n = sched_get_slots(h->s, info, h->ctx->parallel), idle = 0;
    n = n < h->ctx->parallel ? n : h->ctx->parallel;
    for (int i = 0; i < n; i++) idle += !info[i].busy;
    /* llama.cpp's ?fail_on_no_slot (any value): 503 while every slot is busy, for balancers */
    if (!idle && MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "fail_on_no_slot")) {
        free(info);
        api_error e;
        api_error_set(&e, 503, "unavailable_error", NULL, NULL, "no slot available");
        return send_error(r, &e);
    }
    char *json = api_slots_json(h->ctx, info, n);
    free(info);
    return json ? send_json(r, 200, json) : fail(r, 503, "server_error", NULL, "%s", "out of memory");
}

static enum MHD_Result dispatch(req_ctx *r, const char *url, const char *method) {
    http_server *h = r->h;
    /* the chat page: static, so before the API key (the page asks for the key itself) */
    const webui_file *page = h->cfg.webui ? webui_find(url) : NULL;
    if (page) {
        r->route = page->path;
        if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
            return webui_respond(r->conn, page, atomic_load(&h->draining), &r->status);
        return fail(r, 405, "invalid_request_error", NULL, "%s is not allowed here", method);
    }
    const route *rt = NULL;
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) {
            path_known = true;
            r->route = routes[i].path;
            if (!strcmp(method, routes[i].method)) rt = &routes[i];
        }
    /* A preflight from an allowed origin, before the API key: browsers send preflights without
     * credentials. Any other OPTIONS request is routed as before (405). */
    if (r->cors && !strcmp(method, "OPTIONS") &&
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Access-Control-Request-Method"))
        return send_preflight(r);
    if (!path_known) return fail(r, 404, "invalid_request_error", NULL, "no route %s", url);
    if (!rt) {
        api_error e;
        api_error_set(&e, 405, "invalid_request_error", NULL, NULL, "%s is not allowed on %s",
                      method, url);
        return send_error(r, &e);
    }
    if (rt->kind == R_HEALTH) {
        if (!atomic_load(&h->ready) || atomic_load(&h->draining)) {
            api_error e;
            api_error_set(&e, 503, "unavailable_error", NULL, NULL,
                          atomic_load(&h->draining) ? "Shutting down" : "Loading model");
            return send_error(r, &e);
        }
        return send_json(r, 200, strdup("{\"status\":\"ok\"}"));
    }
    if (!route_public(h, rt) && !authorized(h, r->conn))
        return fail(r, 401, "authentication_error", "invalid_api_key", "%s", KEY_HINT);
    if (!atomic_load(&h->ready)) {
        api_error e;
        api_error_set(&e, 503, "unavailable_error", NULL, NULL, "Loading model");
        return send_error(r, &e);
    }
    if (r->too_large)
        return fail(r, 413, "invalid_request_error", NULL, "%s",
                    "the request body is larger than the server accepts (--max-body)");
    api_error e;
    char *json = NULL;
    switch (rt->kind) {
    case R_MODELS:
        return send_json(r, 200, api_models_json(h->ctx, (long)time(NULL)));
    case R_METRICS: {
        sched_stats st;
        sched_get_stats(h->s, &st);
        return send_text(
            r, 200, "text/plain; version=0.0.4",
            metrics_render(st.busy_slots, st.slots, st.queued, st.kv_tokens, st.kv_capacity),
            false);
    }
    case R_COMPLETIONS:
        return run_generation(r, api_parse_completion, "cmpl-");
    case R_CHAT:
        return run_generation(r, api_parse_chat, "chatcmpl-");
    case R_RESPONSES:
        return run_generation(r, api_parse_responses, "resp_");
    case R_NATIVE:
        return run_generation(r, api_parse_native, "cmpl-");
    case R_PROPS:
        json = api_props_json(h->ctx);
        return json ? send_json(r, 200, json)
                    : fail(r, 503, "server_error", NULL, "%s", "out of memory");
    case R_SLOTS:
        return send_slots(r);
    case R_EMBEDDINGS:
    case R_EMBEDDINGS_LLAMA:
        return run_embeddings(r, rt->kind == R_EMBEDDINGS_LLAMA);
    case R_TOKENIZE:
        if (api_parse_tokenize(h->ctx, r->body, r->body_len, &json, &e)) return send_error(r, &e);
        return send_json(r, 200, json);
    case R_DETOKENIZE:
        if (api_parse_detokenize(h->ctx, r->body, r->body_len, &json, &e)) return send_error(r, &e);
        return send_json(r, 200, json);
    case R_APPLY_TEMPLATE:
        if (api_parse_apply_template(h->ctx, r->body, r->body_len, &json, &e))
            return send_error(r, &e);
        return send_json(r, 200, json);
    }
    return MHD_NO;
}

/* Whether dispatch would ask this request for the API key: the same order as dispatch (the
 * chat page, a preflight, unknown paths, wrong methods and /health come before the key). */
static bool needs_key(const req_ctx *r, const char *url, const char *method) {
    const http_server *h = r->h;
    if (!h->cfg.api_key[0] || (h->cfg.webui && webui_find(url))) return false;
    if (r->cors && !strcmp(method, "OPTIONS") &&
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Access-Control-Request-Method"))
        return false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path) && !strcmp(method, routes[i].method))
            return !route_public(h, &routes[i]);
    return false;
}

/* The first call for a request, once its headers are in and before its body is read: the
 * framing, the API key and the declared size are checked here, so that a request refused for
 * any of them never has its body read (libmicrohttpd closes the connection after the answer). */
static enum MHD_Result on_headers(req_ctx *r, const char *url, const char *method) {
    http_server *h = r->h;
    enum MHD_Result rc;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) r->route = routes[i].path; /* as dispatch sets it */
    if (check_framing(r, &rc)) return rc;
    if (needs_key(r, url, method) && !authorized(h, r->conn))
        return fail(r, 401, "authentication_error", "invalid_api_key", "%s", KEY_HINT);
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)h->cfg.max_body) {
        r->too_large = true;
        return fail(r, 413, "invalid_request_error", NULL, "%s",
                    "the request body is larger than the server accepts (--max-body)");
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls) {
    http_server *h = cls;
    req_ctx *r = *con_cls;
    unsigned long json_mark = api_json_failures();
    if (r) r->json_mark = json_mark;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->json_mark = json_mark;
        r->h = h;
        r->conn = conn;
        r->route = "other";
        r->t_start = ls_now();
        r->http10 = version && !strcmp(version, "HTTP/1.0");
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->cc = ci ? ci->socket_context : NULL;
        const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
        r->cors =
            cfg_cors_match(h->cfg.cors_origin, origin ? origin : "", origin ? strlen(origin) : 0);
        *con_cls = r;
        enum MHD_Result rc = on_headers(r, url, method);
        if (r->status && r->cc) { /* answered already: no deadline for a body never read */
            pthread_mutex_lock(&h->mu);
            http_disarm_locked(h, r->cc);
            pthread_mutex_unlock(&h->mu);
        }
        return rc;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;
        if (!r->too_large && r->body_len + n <= (size_t)h->cfg.max_body) {
            char *nb = realloc(r->body, r->body_len + n + 1);
            if (!nb) return MHD_NO;
            r->body = nb;
            memcpy(r->body + r->body_len, upload_data, n);
            r->body_len += n;
            r->body[r->body_len] = '\0';
        } else {
            /* Over the limit part-way (a chunked upload has no Content-Length to check up
             * front). libmicrohttpd refuses a response queued in the middle of an upload,
             * which closed the connection without an answer; so the rest of the body is
             * discarded as it comes (memory stays bounded, --request-timeout bounds the time)
             * and dispatch answers 413 once the upload has ended. */
            r->too_large = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->dispatched) { /* resumed */
        if (r->wait == W_WHOLE) return respond_job(r);
        return MHD_NO; /* nothing else suspends in on_request */
    }
    if (r->status) return MHD_YES; /* already answered (413 during the upload) */
    r->dispatched = true;
    if (r->cc) { /* the whole request is in: its deadline no longer applies */
        pthread_mutex_lock(&h->mu);
        http_disarm_locked(h, r->cc);
        pthread_mutex_unlock(&h->mu);
    }
    return dispatch(r, url, method);
}

/* One line per request, after its last byte: the route, the status, tokens and latencies. */
static void log_request(const req_ctx *r, double total) {
    cJSON *f = cJSON_CreateObject();
    if (!f) return;
    cJSON_AddStringToObject(f, "route", r->route);
    cJSON_AddNumberToObject(f, "status", r->status);
    cJSON_AddNumberToObject(f, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(f, "completion_tokens", r->completion_tokens);
    /* to the 0.1 ms, so the numbers print short */
    cJSON_AddNumberToObject(f, "queue_s", round(r->t_queue * 1e4) / 1e4);
    cJSON_AddNumberToObject(f, "ttft_s", round(r->t_first * 1e4) / 1e4);
    cJSON_AddNumberToObject(f, "total_s", round(total * 1e4) / 1e4);
    log_fields(LOG_INFO, "request", f);
    cJSON_Delete(f);
}

/* The status a request is counted and logged with. A generation whose answer did not reach
 * its client in full is 499 (client closed request, as nginx counts it), whatever status was
 * queued; a request cut by its deadline is 408. */
static int final_status(const req_ctx *r, enum MHD_RequestTerminationCode toe, bool timed_out) {
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status) return r->status;
    if (toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN) return r->status ? r->status : 503;
    if (!r->dispatched && (timed_out || toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)) return 408;
    if (!r->status || r->counted) return 499;
    return r->status;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    http_server *h = cls;
    req_ctx *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    pthread_mutex_lock(&h->mu);
    bool timed_out = r->cc && r->cc->timed_out;
    if (r->suspended) http_wake_locked(h, r); /* never expected: unlink before r is freed */
    if (r->cc && !r->cc->timed_out) http_arm_locked(h, r->cc); /* the next request's */
    if (r->counted) h->n_gen--;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (r->j) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) sched_cancel(h->s, r->j);
        record_job(r, r->j);
    }
    r->status = final_status(r, toe, timed_out);
    double total = ls_now() - r->t_start;
    /* before the request counter, so a scrape that sees the request sees its duration; only
     * completions and chat have a job */
    if (r->j && r->status == 200) metrics_duration(total);
    metrics_request(r->route, r->status);
    if (h->cfg.log_requests) log_request(r, total);
    if (r->j) {
        if (r->st_init) api_stream_free(&r->st);
        job_release(r->j);
    }
    api_call_free(&r->call);
    free(r->body);
    free(r->out);
    free(r);
}

/* Connections from accept to close: each gets a conn_ctx and a request deadline. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    http_server *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_ctx *c = ci ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            if (ci) shutdown(ci->connect_fd, SHUT_RDWR); /* no deadline possible: refuse it */
            return;
        }
        c->fd = ci->connect_fd;
        *socket_context = c;
        pthread_mutex_lock(&h->mu);
        http_arm_locked(h, c);
        pthread_mutex_unlock(&h->mu);
        metrics_connections(1);
        return;
    }
    conn_ctx *c = *socket_context; /* MHD_CONNECTION_NOTIFY_CLOSED, before the socket closes */
    if (!c) return;
    *socket_context = NULL;
    pthread_mutex_lock(&h->mu);
    http_disarm_locked(h, c);
    pthread_mutex_unlock(&h->mu);
    free(c);
    metrics_connections(-1);
}

/* libmicrohttpd's own messages (a failed accept, a socket error), into our log. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    cJSON *f = cJSON_CreateObject();
    if (f) cJSON_AddStringToObject(f, "source", "libmicrohttpd");
    log_fields(LOG_WARN, msg, f);
    cJSON_Delete(f);
}

/* Raises RLIMIT_NOFILE's soft limit to what HTTP_MAX_CONNECTIONS needs (as far as the hard
 * limit allows) and returns the connection limit that fits under it. */
static unsigned fd_limit(unsigned long long *nofile) {
    struct rlimit rl;
    unsigned long long need = HTTP_MAX_CONNECTIONS + FD_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        *nofile = 0;
        return 256; /* unknown: a cautious guess */
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        struct rlimit nl = {want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &nl) == 0) rl.rlim_cur = want;
    }
    *nofile = rl.rlim_cur == RLIM_INFINITY ? need : rl.rlim_cur;
    if (*nofile >= need) return HTTP_MAX_CONNECTIONS;
    return *nofile > 2 * FD_RESERVE ? (unsigned)(*nofile - FD_RESERVE) : FD_RESERVE;
}

http_server *http_start(const cfg_server *cfg, char *err, size_t errlen) {
    http_server *h = calloc(1, sizeof *h);
    if (!h) {
        ls_fail(err, errlen, "out of memory");
        return NULL;
    }
    h->cfg = *cfg;
    /* a counter alone repeats in every process (replicas behind one balancer started in the
     * same second gave the same ids): salt it with random bits */
    if (getrandom(&h->id_salt, sizeof h->id_salt, 0) != (ssize_t)sizeof h->id_salt)
        h->id_salt = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() << 32;
    atomic_init(&h->ready, false);
    atomic_init(&h->draining, false);
    atomic_init(&h->stopping, false);
    if (ls_cond_init_monotonic(&h->cv) != 0) { /* ls_now's clock: a clock step is no wait */
        free(h);
        ls_fail(err, errlen, "cannot make a condition variable");
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    struct sockaddr_in6 a6 = {0};
    struct sockaddr_in a4 = {0};
    struct sockaddr *addr;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, cfg->host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)cfg->port);
        addr = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, cfg->host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)cfg->port);
        addr = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        ls_fail(err, errlen, "host '%s' is not an IPv4 or IPv6 address", cfg->host);
        goto fail;
    }
    h->max_conns = fd_limit(&h->nofile);
    if (pthread_create(&h->notifier, NULL, http_notifier_main, h) != 0) {
        ls_fail(err, errlen, "cannot start the notifier thread");
        goto fail;
    }
    h->notifier_started = true;
    /* one option per line */
    /* clang-format off */
    h->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h,
                            /* first, or libmicrohttpd prints the earlier options' errors itself */
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_SOCK_ADDR, addr,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_LOOP_THREADS,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout,
                            MHD_OPTION_CONNECTION_LIMIT, h->max_conns,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_POOL,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            MHD_OPTION_END);
    /* clang-format on */
    if (!h->d) {
        ls_fail(err, errlen, "cannot listen on %s:%d (address in use or not permitted)", cfg->host,
                cfg->port);
        goto fail;
    }
    return h;
fail:
    http_free(h);
    return NULL;
}

int http_port(const http_server *h) {
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : -1;
}

void http_limits(const http_server *h, unsigned long long *open_files, int *max_connections) {
    *open_files = h->nofile;
    *max_connections = (int)h->max_conns;
}

void http_set_ready(http_server *h, sched *s, const api_ctx *ctx) {
    h->s = s;
    h->ctx = ctx;
    atomic_store(&h->ready, true);
}

/* Not MHD_quiesce_daemon: with a thread pool on epoll, libmicrohttpd 0.9.75 removes the listening
 * socket from each worker's epoll set while the workers may remove it themselves, and aborts
 * the process when it loses that race ("Failed to remove listen FD from epoll set"; it did in
 * CI on SIGTERM). */
void http_drain(http_server *h) {
    atomic_store(&h->draining, true);
}

void http_stop(http_server *h) {
    if (!h || !h->d) return;
    pthread_mutex_lock(&h->mu);
    atomic_store(&h->stopping, true); /* from here on nothing suspends */
    while (h->waiting)
        http_wake_locked(h, h->waiting);
    /* Requests whose job has ended get a moment to write their last bytes. */
    double until = ls_now() + 5;
    while (h->n_gen > 0 && ls_now() < until) {
        struct timespec ts;
        http_timespec_at(&ts, until);
        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        while (h->waiting)
            http_wake_locked(h, h->waiting);
    }
    pthread_mutex_unlock(&h->mu);
    MHD_stop_daemon(h->d);
    h->d = NULL;
}

void http_free(http_server *h) {
    if (!h) return;
    http_stop(h);
    if (h->notifier_started) {
        pthread_mutex_lock(&h->mu);
        h->quit = true;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->notifier, NULL);
    }
    free(h->pfd);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}
