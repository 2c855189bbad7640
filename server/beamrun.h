/* beamrun: beam-search requests. They run outside the slot scheduler, on a thread http.c
 * starts for each search (the connection waits suspended), on a forward context and KV caches of their own, one search at a time
 * (a second concurrent one gets 503): engine/beam.c's search is a loop over whole steps that
 * cannot yet interleave with the scheduler's batches. A client that leaves ends its search at
 * the next step. The result is returned whole, or streamed
 * as one piece once the best beam is final. */
#ifndef LS_BEAMRUN_H
#define LS_BEAMRUN_H

#include "api.h"

/* Runs c's beam search (c->beam_width beams, the c->req.n best returned) on threads threads.
 * gone(gone_ctx) is polled once per step: non-zero (the client left) ends the search, status
 * 499. Takes c->req. Returns a finished detached job (caller releases it), or NULL with *status
 * (503 busy/out of memory, 400 bad parameters) and a message. */
job *beamrun(const api_ctx *ctx, api_call *c, int threads, int (*gone)(void *), void *gone_ctx,
             int *status, char *err, size_t errlen);

#endif
