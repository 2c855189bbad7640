/* http: the libmicrohttpd front end. Parses and routes requests, checks the API key, hands
 * generation to the scheduler and writes results back (JSON, or Server-Sent Events over chunked
 * HTTP). Never touches the model's tensors. Threads: one per connection (see http.c for why);
 * http_* functions are called from the main thread only. */
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
/* Stops accepting new connections; open ones are served until http_stop. */
void http_quiesce(http_server *h);
/* Closes every connection (their threads end) and frees the server. */
void http_stop(http_server *h);

#endif
