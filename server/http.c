/* http: routes, authentication, body limits and response writing over libmicrohttpd.
 *
 * Why a thread per connection: a streaming response waits for tokens that the scheduler
 * produces at its own pace. With one thread per connection, that wait is a plain condition
 * variable wait in the content-reader callback, and the same thread can notice the client going
 * away (poll for POLLRDHUP on the socket) between waits, so a disconnect cancels its request
 * within one decoding step, whether it is queued or streaming. The number of connections, and so
 * of threads, is capped (slots + queue + a margin), and idle connections time out.
 * Owns: the daemon, per-request contexts. Reads the scheduler's jobs under job->mu only. */
#include "http.h"

#include "beamrun.h"
#include "common.h"
#include "log.h"
#include "metrics.h"
#include "webui.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

#define WAIT_SLICE_MS 50 /* how often a waiting connection checks that its client is still there */
#define CORS_MAX_AGE "7200" /* seconds a browser may reuse a preflight answer (Chromium's cap) */

struct http_server {
    struct MHD_Daemon *d;
    cfg_server cfg;
    atomic_bool ready;
    sched *s;               /* set once by http_set_ready, before ready becomes true */
    const api_ctx *ctx;
    atomic_ullong next_id;
};

typedef struct {
    http_server *h;
    const char *route;      /* for metrics and the log line */
    char *body;             /* (body_len) bytes received, up to max_body */
    size_t body_len;
    bool too_large;
    int status;
    int prompt_tokens, completion_tokens;
    double t_start, t_queue, t_first; /* seconds: arrival, admission wait, first token */
    int cors;               /* cfg_cors_match of the request's Origin: 0 none, 1 listed, 2 "*" */
    /* streaming state, owned by the content reader */
    api_call call;
    job *j;
    api_stream st;
    char *out;              /* pending event bytes */
    size_t out_len, out_cap, out_pos;
    char id[40];
    struct MHD_Connection *conn;
} req_ctx;

/* --- small helpers --- */

static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* client_gone for beamrun's per-step poll. */
static int beam_client_gone(void *conn) { return client_gone(conn); }

/* Waits for a change in j (or a timeout slice). Called with j->mu held; j->cv runs on the
 * monotonic clock (scheduler.c). */
static void wait_slice(job *j) {
    ls_cond_wait_ms(&j->cv, &j->mu, WAIT_SLICE_MS);
}

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

static enum MHD_Result send_text(req_ctx *r, int status, const char *type, char *body,
                                 bool retry_after) {
    r->status = status;
    struct MHD_Response *res = MHD_create_response_from_buffer(
        body ? strlen(body) : 0, body ? body : (void *)"", body ? MHD_RESPMEM_MUST_FREE
                                                                : MHD_RESPMEM_PERSISTENT);
    if (!res) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(res, "Content-Type", type);
    add_cors(r, res);
    if (retry_after) MHD_add_response_header(res, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(res, "WWW-Authenticate", "Bearer");
    enum MHD_Result rc = MHD_queue_response(r->conn, (unsigned)status, res);
    MHD_destroy_response(res);
    return rc;
}

static enum MHD_Result send_json(req_ctx *r, int status, char *json) {
    return send_text(r, status, "application/json", json, false);
}

static enum MHD_Result send_error(req_ctx *r, const api_error *e) {
    return send_text(r, e->status, "application/json", api_error_json(e),
                     e->status == 503 || e->status == 429);
}

static enum MHD_Result fail(req_ctx *r, int status, const char *type, const char *code,
                            const char *fmt, const char *arg) {
    api_error e;
    api_error_set(&e, status, type, NULL, code, fmt, arg);
    return send_error(r, &e);
}

/* Compares the Authorization header with the key in time that depends only on their lengths. */
static bool authorized(const http_server *h, struct MHD_Connection *c) {
    if (!h->cfg.api_key[0]) return true;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7) != 0) return false;
    const char *given = auth + 7, *key = h->cfg.api_key;
    size_t gl = strlen(given), kl = strlen(key), n = gl > kl ? gl : kl;
    unsigned char diff = (unsigned char)(gl != kl);
    for (size_t i = 0; i < n; i++) {
        unsigned char a = i < gl ? (unsigned char)given[i] : 0;
        unsigned char b = i < kl ? (unsigned char)key[i] : 0;
        diff |= (unsigned char)(a ^ b);
    }
    return diff == 0;
}

static void make_id(http_server *h, const char *prefix, char *out, size_t cap) {
    static const char digits[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t x = atomic_fetch_add(&h->next_id, 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
    size_t n = (size_t)snprintf(out, cap, "%s", prefix);
    for (int i = 0; i < 24 && n + 1 < cap; i++) {
        x ^= x >> 31;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        out[n++] = digits[x % (sizeof digits - 1)];
    }
    out[n] = '\0';
}

/* --- generation --- */

static void record_job(req_ctx *r, job *j) {
    pthread_mutex_lock(&j->mu);
    r->prompt_tokens = j->req.n_prompt;
    r->completion_tokens = 0;
    for (int c = 0; c < j->req.n; c++) r->completion_tokens += j->choices[c].n_gen;
    if (j->t_admit > 0) r->t_queue = j->t_admit - j->t_submit;
    if (j->t_first > 0) r->t_first = j->t_first - j->t_submit;
    pthread_mutex_unlock(&j->mu);
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
        pthread_mutex_lock(&j->mu);
        bool done = api_stream_events(&r->st, &r->out, &r->out_len, &r->out_cap);
        while (!done && r->out_len == 0) {
            wait_slice(j);
            if (client_gone(r->conn)) {
                pthread_mutex_unlock(&j->mu);
                sched_cancel(r->h->s, j);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            done = api_stream_events(&r->st, &r->out, &r->out_len, &r->out_cap);
        }
        pthread_mutex_unlock(&j->mu);
    }
}

static enum MHD_Result run_generation(req_ctx *r, bool chat) {
    http_server *h = r->h;
    api_error e;
    if ((chat ? api_parse_chat : api_parse_completion)(h->ctx, r->body, r->body_len, &r->call,
                                                       &e) != 0)
        return send_error(r, &e);
    r->prompt_tokens = r->call.req.n_prompt;
    char err[LS_ERR_LEN];
    int status;
    if (r->call.beam_width > 0)
        r->j = beamrun(h->ctx, &r->call, h->cfg.threads, beam_client_gone, r->conn, &status,
                       err, sizeof err);
    else
        r->j = sched_submit(h->s, &r->call.req, &status, err, sizeof err);
    if (!r->j) {
        if (status == 499) return MHD_NO; /* the client left during its beam search */
        /* api.c has already refused prompts that do not fit (context_length_exceeded) */
        api_error_set(&e, status, status == 503 ? "server_error" : "invalid_request_error", NULL,
                      NULL, "%s", err);
        return send_error(r, &e);
    }
    make_id(h, chat ? "chatcmpl-" : "cmpl-", r->id, sizeof r->id);
    long created = (long)time(NULL);
    if (r->call.stream) {
        if (api_stream_init(&r->st, h->ctx, &r->call, r->j, r->id, created) != 0) {
            sched_cancel(h->s, r->j);
            return fail(r, 500, "server_error", NULL, "%s", "out of memory");
        }
        r->status = 200;
        struct MHD_Response *res =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
        if (!res) return MHD_NO;
        MHD_add_response_header(res, "Content-Type", "text/event-stream");
        MHD_add_response_header(res, "Cache-Control", "no-cache");
        add_cors(r, res);
        enum MHD_Result rc = MHD_queue_response(r->conn, 200, res);
        MHD_destroy_response(res);
        return rc;
    }
    /* whole response: wait for the job, watching for the client to leave */
    job *j = r->j;
    pthread_mutex_lock(&j->mu);
    while (j->n_finished < j->req.n) {
        wait_slice(j);
        if (client_gone(r->conn)) {
            pthread_mutex_unlock(&j->mu);
            sched_cancel(h->s, j);
            return MHD_NO;
        }
    }
    bool failed = false;
    for (int c = 0; c < j->req.n; c++)
        failed = failed || j->choices[c].finish == FINISH_ERROR ||
                 j->choices[c].finish == FINISH_CANCEL;
    pthread_mutex_unlock(&j->mu);
    if (failed) {
        api_error_set(&e, 503, "server_error", NULL, NULL, "%s",
                      j->error[0] ? j->error : "the request was cancelled (server shutting down)");
        return send_error(r, &e);
    }
    return send_json(r, 200, api_response_json(h->ctx, &r->call, j, r->id, created));
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
    add_cors(r, res);
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
    int kind;
} route;

enum { R_HEALTH, R_MODELS, R_METRICS, R_COMPLETIONS, R_CHAT, R_TOKENIZE, R_DETOKENIZE };
static const route routes[] = {
    {"/health", "GET", R_HEALTH},
    {"/v1/models", "GET", R_MODELS},
    {"/metrics", "GET", R_METRICS},
    {"/v1/completions", "POST", R_COMPLETIONS},
    {"/v1/chat/completions", "POST", R_CHAT},
    {"/tokenize", "POST", R_TOKENIZE},
    {"/detokenize", "POST", R_DETOKENIZE},
};

static enum MHD_Result dispatch(req_ctx *r, const char *url, const char *method) {
    http_server *h = r->h;
    /* the chat page: static, so before the API key (the page asks for the key itself) */
    const webui_file *page = h->cfg.webui ? webui_find(url) : NULL;
    if (page) {
        r->route = page->path;
        if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
            return webui_respond(r->conn, page, &r->status);
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
        if (!atomic_load(&h->ready)) {
            api_error e;
            api_error_set(&e, 503, "unavailable_error", NULL, NULL, "Loading model");
            return send_error(r, &e);
        }
        return send_json(r, 200, strdup("{\"status\":\"ok\"}"));
    }
    if (!authorized(h, r->conn))
        return fail(r, 401, "authentication_error", "invalid_api_key", "%s",
                    "missing or invalid API key (send 'Authorization: Bearer KEY')");
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
    case R_MODELS: return send_json(r, 200, api_models_json(h->ctx, (long)time(NULL)));
    case R_METRICS: {
        sched_stats st;
        sched_get_stats(h->s, &st);
        return send_text(r, 200, "text/plain; version=0.0.4",
                         metrics_render(st.busy_slots, st.slots, st.queued, st.kv_tokens,
                                        st.kv_capacity),
                         false);
    }
    case R_COMPLETIONS: return run_generation(r, false);
    case R_CHAT: return run_generation(r, true);
    case R_TOKENIZE:
        if (api_parse_tokenize(h->ctx, r->body, r->body_len, &json, &e)) return send_error(r, &e);
        return send_json(r, 200, json);
    case R_DETOKENIZE:
        if (api_parse_detokenize(h->ctx, r->body, r->body_len, &json, &e))
            return send_error(r, &e);
        return send_json(r, 200, json);
    }
    return MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    http_server *h = cls;
    req_ctx *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->h = h;
        r->conn = conn;
        r->route = "other";
        r->t_start = ls_now();
        const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
        r->cors = cfg_cors_match(h->cfg.cors_origin, origin ? origin : "",
                                 origin ? strlen(origin) : 0);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)h->cfg.max_body) {
            r->too_large = true;
            return fail(r, 413, "invalid_request_error", NULL, "%s",
                        "the request body is larger than the server accepts (--max-body)");
        }
        return MHD_YES;
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
             * discarded as it comes (memory stays bounded, --timeout bounds the time) and
             * dispatch answers 413 once the upload has ended. */
            r->too_large = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->status) return MHD_YES; /* already answered (413 during the upload) */
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

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    http_server *h = cls;
    req_ctx *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    if (r->j) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) sched_cancel(h->s, r->j);
        record_job(r, r->j);
    }
    if (!r->status) r->status = 499; /* the client left before an answer */
    double total = ls_now() - r->t_start;
    /* before the request counter, so a scrape that sees the request sees its duration; only
     * completions and chat have a job */
    if (r->j && r->status == 200) metrics_duration(total);
    metrics_request(r->route, r->status);
    if (h->cfg.log_requests) log_request(r, total);
    if (r->j) {
        api_stream_free(&r->st);
        job_release(r->j);
    }
    api_call_free(&r->call);
    free(r->body);
    free(r->out);
    free(r);
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

http_server *http_start(const cfg_server *cfg, char *err, size_t errlen) {
    http_server *h = calloc(1, sizeof *h);
    if (!h) {
        ls_fail(err, errlen, "out of memory");
        return NULL;
    }
    h->cfg = *cfg;
    atomic_init(&h->ready, false);
    struct sockaddr_in6 a6 = {0};
    struct sockaddr_in a4 = {0};
    struct sockaddr *addr;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG;
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
        free(h);
        ls_fail(err, errlen, "host '%s' is not an IPv4 or IPv6 address", cfg->host);
        return NULL;
    }
    unsigned limit = (unsigned)(cfg->parallel + cfg->max_queue + 64);
    h->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, h,
                            /* first, or libmicrohttpd prints the earlier options' errors itself */
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_SOCK_ADDR, addr,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout,
                            MHD_OPTION_CONNECTION_LIMIT, limit,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_END);
    if (!h->d) {
        free(h);
        ls_fail(err, errlen, "cannot listen on %s:%d (address in use or not permitted)",
                cfg->host, cfg->port);
        return NULL;
    }
    return h;
}

int http_port(const http_server *h) {
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : -1;
}

void http_set_ready(http_server *h, sched *s, const api_ctx *ctx) {
    h->s = s;
    h->ctx = ctx;
    atomic_store(&h->ready, true);
}

void http_quiesce(http_server *h) {
    MHD_socket fd = MHD_quiesce_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_stop(http_server *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    free(h);
}
