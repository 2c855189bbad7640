/* http_internal: what http.c and http_wait.c share, and nothing else includes: the server and
 * the per-connection and per-request contexts, and the waiting machinery of http_wait.c (the
 * notifier, suspend and resume, request deadlines). See the top of http.c for the design. */
#ifndef LS_HTTP_INTERNAL_H
#define LS_HTTP_INTERNAL_H

#include "common.h"
#include "http.h"

#include <microhttpd.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define SAFETY_TICK_S 1.0 /* a missed wakeup costs at most this (none is expected) */
#define PROBE_HTTP "HTTP/1.1 100 Continue\r\n\r\n"
#define PROBE_SSE ":\n\n"

typedef struct req_ctx req_ctx;

/* One connection, from accept to close (libmicrohttpd's socket context). */
typedef struct conn_ctx {
    int fd;
    double deadline;              /* monotonic seconds by which the whole request must be in */
    bool armed;                   /* in the deadline FIFO (under h->mu) */
    bool timed_out;               /* the notifier shut it down at its deadline (under h->mu) */
    struct conn_ctx *prev, *next; /* deadline FIFO, oldest first (under h->mu) */
} conn_ctx;

enum { W_NONE, W_STREAM, W_WHOLE }; /* what a suspended request waits for */

struct http_server {
    struct MHD_Daemon *d;
    cfg_server cfg;
    atomic_bool ready;
    atomic_bool draining; /* http_drain was called: /health says 503, every answer closes */
    sched *s; /* set once by http_set_ready, before ready becomes true */
    const api_ctx *ctx;
    atomic_ullong next_id;
    uint64_t id_salt; /* random per process: ids never repeat across replicas */
    unsigned max_conns;        /* the connection limit after RLIMIT_NOFILE */
    unsigned long long nofile; /* RLIMIT_NOFILE's soft limit at startup */

    /* Lock order: mu, then libmicrohttpd's locks; never a job's j->mu (the top of http.c). */
    pthread_mutex_t mu;          /* guards everything below */
    pthread_cond_t cv;           /* the notifier waits here; http_stop waits here for requests */
    bool progress;               /* http_progress was called since the notifier last looked */
    bool quit;                   /* the notifier ends */
    atomic_bool stopping;        /* http_stop began: nothing suspends any more (written under mu) */
    int n_gen;                   /* open requests that hold a job */
    req_ctx *waiting;            /* suspended requests that wait on a job (W_STREAM, W_WHOLE) */
    conn_ctx *dl_head, *dl_tail; /* deadline FIFO */
    struct pollfd *pfd;          /* (pfd_cap) the notifier's poll set */
    size_t pfd_cap;
    pthread_t notifier;
    bool notifier_started;
};

struct req_ctx {
    http_server *h;
    conn_ctx *cc;
    const char *route; /* for metrics and the log line */
    char *body;        /* (body_len) bytes received, up to max_body */
    size_t body_len;
    bool too_large;
    bool http10;     /* an HTTP/1.0 client: no interim (1xx) responses */
    bool dispatched; /* the whole request has arrived and was routed */
    int status;
    unsigned long json_mark; /* api_json_failures() when this on_request call began */
    int prompt_tokens, completion_tokens;
    double t_start, t_queue, t_first; /* seconds: arrival, admission wait, first token */
    int cors; /* cfg_cors_match of the request's Origin: 0 none, 1 listed, 2 "*" */
    api_call call;
    job *j;
    long created;
    char id[40];
    struct MHD_Connection *conn;
    /* streaming state, owned by the worker */
    api_stream st;
    bool st_init;
    char *out; /* pending event bytes */
    size_t out_len, out_cap, out_pos;
    /* waiting: under h->mu */
    int wait; /* W_* */
    bool suspended;
    bool gone;               /* the client reset the connection or a probe failed */
    bool probed;             /* an end of stream was seen and probed */
    bool probe_pending;      /* a stream must write PROBE_SSE */
    unsigned long long seen; /* its job's progress (scheduler.h) when it suspended */
    req_ctx *wprev, *wnext;  /* h->waiting */
    bool counted; /* in h->n_gen */
};

/* --- http_wait.c: all "locked" functions are called with h->mu held --- */

/* Resumes a suspended request (no-op when it is not suspended). */
void http_wake_locked(http_server *h, req_ctx *r);
/* Suspends r's connection until what `wait` (W_STREAM: j->progress other than seen; W_WHOLE:
 * the job finished) happens, the client leaves, or shutdown; false, without suspending, when
 * one of them has already happened. Called on r's worker, without h->mu. */
bool http_suspend_wait(req_ctx *r, int wait, unsigned long long seen);
/* The request deadline FIFO: (re)arms c at now + request_timeout, or takes it out. */
void http_arm_locked(http_server *h, conn_ctx *c);
void http_disarm_locked(http_server *h, conn_ctx *c);
/* The notifier thread's body (arg: the http_server). */
void *http_notifier_main(void *arg);
/* *ts = monotonic time t (seconds), for timed waits on h->cv. */
void http_timespec_at(struct timespec *ts, double t);

#endif
