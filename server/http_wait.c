/* http_wait: the connections that wait on the scheduler, and the request deadlines. The
 * notifier thread resumes suspended connections when their job has news or their client has
 * gone (polling every suspended socket once per decoding step), and shuts down sockets whose
 * request did not arrive in time. Design, threads and lock order: the top of http.c. */
#include "http_internal.h"

#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* --- waiting for the scheduler --- */

/* Whether what r waits for has happened since it recorded r->seen: the job's atomics, so the
 * notifier takes no job's lock under h->mu. Called with h->mu held. */
static bool has_news(req_ctx *r) {
    if (r->wait == W_WHOLE) return atomic_load_explicit(&r->j->done, memory_order_acquire);
    return atomic_load_explicit(&r->j->progress, memory_order_acquire) != r->seen;
}

/* Resumes a suspended request. Called with h->mu held. */
void http_wake_locked(http_server *h, req_ctx *r) {
    if (!r->suspended) return;
    if (r->wait == W_STREAM || r->wait == W_WHOLE) {
        if (r->wprev)
            r->wprev->wnext = r->wnext;
        else
            h->waiting = r->wnext;
        if (r->wnext) r->wnext->wprev = r->wprev;
        r->wprev = r->wnext = NULL;
    }
    r->suspended = false;
    MHD_resume_connection(r->conn);
}

/* Suspends r's connection until its job has news (see has_news; seen is the job's mark the
 * caller has already answered), the client leaves, or shutdown. False, without suspending, when
 * one of those has already happened: the caller looks again. Called on r's worker. */
bool http_suspend_wait(req_ctx *r, int wait, unsigned long long seen) {
    http_server *h = r->h;
    pthread_mutex_lock(&h->mu);
    r->wait = wait;
    r->seen = seen;
    bool now = atomic_load(&h->stopping) || r->gone || r->probe_pending || has_news(r);
    if (!now) {
        MHD_suspend_connection(r->conn);
        r->suspended = true;
        r->wprev = NULL;
        r->wnext = h->waiting;
        if (h->waiting) h->waiting->wprev = r;
        h->waiting = r;
    }
    pthread_mutex_unlock(&h->mu);
    return !now;
}

/* The notifier's look at every waiting request: resume those whose job has news or whose
 * client has gone, probe those that half-closed. Called with h->mu held. */
static void scan_waiting(http_server *h) {
    size_t n = 0;
    for (req_ctx *r = h->waiting; r; r = r->wnext)
        n++;
    if (n > h->pfd_cap) {
        struct pollfd *np = realloc(h->pfd, n * 2 * sizeof *np);
        if (!np) return; /* the safety tick tries again */
        h->pfd = np;
        h->pfd_cap = n * 2;
    }
    size_t i = 0;
    for (req_ctx *r = h->waiting; r; r = r->wnext)
        h->pfd[i++] = (struct pollfd){.fd = r->cc ? r->cc->fd : -1, .events = POLLRDHUP};
    if (n > 0 && poll(h->pfd, n, 0) < 0) return;
    i = 0;
    for (req_ctx *r = h->waiting, *next; r; r = next, i++) {
        next = r->wnext;
        short ev = h->pfd[i].revents;
        if (ev & (POLLERR | POLLHUP | POLLNVAL)) {
            r->gone = true;
        } else if ((ev & POLLRDHUP) && !r->probed) {
            r->probed = true;
            if (r->wait == W_STREAM)
                r->probe_pending = true;
            else if (!r->http10 && send(r->cc->fd, PROBE_HTTP, strlen(PROBE_HTTP),
                                        MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                r->gone = true;
        }
        if (r->gone || r->probe_pending || has_news(r)) http_wake_locked(h, r);
    }
}

/* Shuts down the socket of every connection whose request has not arrived by its deadline;
 * its worker then reads the end of the stream and closes it. Called with h->mu held. */
static void sweep_deadlines(http_server *h, double now) {
    while (h->dl_head && h->dl_head->deadline <= now) {
        conn_ctx *c = h->dl_head;
        h->dl_head = c->next;
        if (h->dl_head)
            h->dl_head->prev = NULL;
        else
            h->dl_tail = NULL;
        c->prev = c->next = NULL;
        c->armed = false;
        c->timed_out = true;
        shutdown(c->fd, SHUT_RDWR);
    }
}

/* The deadline FIFO: every entry has the same timeout, so appending keeps it sorted.
 * Called with h->mu held. */
void http_disarm_locked(http_server *h, conn_ctx *c) {
    if (!c->armed) return;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->dl_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        h->dl_tail = c->prev;
    c->prev = c->next = NULL;
    c->armed = false;
}

void http_arm_locked(http_server *h, conn_ctx *c) {
    http_disarm_locked(h, c);
    c->deadline = ls_now() + h->cfg.request_timeout; /* under mu: the FIFO stays sorted */
    c->armed = true;
    c->prev = h->dl_tail;
    if (h->dl_tail)
        h->dl_tail->next = c;
    else
        h->dl_head = c;
    h->dl_tail = c;
    if (c == h->dl_head) pthread_cond_signal(&h->cv); /* the notifier's next wakeup moved */
}

void http_timespec_at(struct timespec *ts, double t) {
    ts->tv_sec = (time_t)t;
    ts->tv_nsec = (long)((t - (double)ts->tv_sec) * 1e9);
    if (ts->tv_nsec >= 1000000000L) ts->tv_sec++, ts->tv_nsec -= 1000000000L;
}

void *http_notifier_main(void *arg) {
    http_server *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->quit) {
        if (!h->progress) {
            double wake = h->dl_head ? h->dl_head->deadline : INFINITY;
            if (h->waiting && ls_now() + SAFETY_TICK_S < wake) wake = ls_now() + SAFETY_TICK_S;
            if (isinf(wake)) {
                pthread_cond_wait(&h->cv, &h->mu);
            } else {
                struct timespec ts;
                http_timespec_at(&ts, wake);
                pthread_cond_timedwait(&h->cv, &h->mu, &ts); /* CLOCK_MONOTONIC (http_start) */
            }
        }
        h->progress = false;
        sweep_deadlines(h, ls_now());
        scan_waiting(h);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

void http_progress(void *arg) {
    http_server *h = arg;
    pthread_mutex_lock(&h->mu);
    h->progress = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}
