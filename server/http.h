/* http: the libmicrohttpd front end. Parses and routes requests, checks the API key, hands
 * generation to the scheduler and writes results back (JSON, or Server-Sent Events over chunked
 * HTTP). Never touches the model's tensors. Threads: a small pool of event-loop workers, a
 * notifier (see the top of http.c); http_* functions
 * are called from the main thread only, except http_progress (the scheduler thread). */
#ifndef LS_HTTP_H
#define LS_HTTP_H

#include "api.h"
#include "config.h"
#include "scheduler.h"

typedef struct http_server http_server;

/* Starts listening on cfg->host:cfg->port; until http_set_ready, /health answers 503 and every
 * other route 503 too. The cfg is copied. NULL with a message on failure. */
http_server *http_start(const cfg_server *cfg, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int http_port(const http_server *h);
/* From now on requests are served with this scheduler and context (both borrowed). */
void http_set_ready(http_server *h, sched *s, const api_ctx *ctx);
/* The drain before http_stop: /health answers 503 from now on, so that balancers route
 * elsewhere, and every answer closes its connection, so that a kept-alive client reconnects
 * elsewhere. The listening socket stays open: a request that still comes is answered (the
 * scheduler refuses new jobs with 503), never left waiting in the backlog. */
void http_drain(http_server *h);
/* RLIMIT_NOFILE's soft limit as raised at startup, and the connection limit under it. */
void http_limits(const http_server *h, unsigned long long *open_files, int *max_connections);
/* The scheduler's on_progress hook (sched_params): wakes the connections waiting on jobs.
 * Any thread; quick; callable from http_start until http_free. */
void http_progress(void *h);
/* Stops serving: resumes every waiting request, lets finished requests
 * write their last bytes (up to 5 s), then closes every connection. After it no request calls
 * the scheduler. Idempotent. */
void http_stop(http_server *h);
/* http_stop, then frees the server (after the scheduler that calls http_progress is gone). */
void http_free(http_server *h);

#endif
