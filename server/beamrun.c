/* beamrun: one beam-search request at a time, on its own forward context (see beamrun.h).
 * Turns the engine's beam results into a finished job's choices: decoded text with stop strings
 * applied, generated-token counts and finish reasons. */
#include "beamrun.h"

#include "beam.h"
#include "common.h"
#include "forward.h"
#include "metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER; /* held for a whole search */

/* Decodes a beam's tokens as a stream would, and cuts at the first stop string. */
static void beam_text(const api_ctx *ctx, const gen_request *r, const beam_result *b, job *j,
                      int choice) {
    tok_stream ts;
    tok_stream_init(&ts, ctx->m->tok, r->n_prompt == 1);
    /* each token, and the flush, completes at most tok_stream_cap - 1 bytes */
    size_t piece = tok_stream_cap(ctx->m->tok), cap, len = 0;
    char *text = NULL;
    if (ls_mul_size((size_t)b->n_tokens + 1, piece, &cap) == 0) text = malloc(cap);
    if (!text) {
        job_finish_choice(j, choice, "", 0, b->n_tokens, FINISH_ERROR);
        return;
    }
    for (int i = 0; i < b->n_tokens; i++)
        len += tok_stream_feed(&ts, b->tokens[i], text + len, cap - len);
    len += tok_stream_flush(&ts, text + len, cap - len);
    finish_reason why = b->ended_eos ? FINISH_STOP : FINISH_LENGTH;
    for (int s = 0; s < r->n_stop; s++) {
        char *hit = memmem(text, len, r->stop[s], strlen(r->stop[s]));
        if (hit) {
            len = (size_t)(hit - text);
            why = FINISH_STOP;
        }
    }
    job_finish_choice(j, choice, text, len, b->n_tokens, why);
    free(text);
}

job *beamrun(const api_ctx *ctx, api_call *c, int threads, int (*gone)(void *), void *gone_ctx,
             int *status, char *err, size_t errlen) {
    job *j = NULL;
    pool *p = NULL;
    fwd_ctx *f = NULL;
    beam_result res[API_MAX_BEST_OF]; /* n_best = n <= best_of */
    int n_out = 0;
    if (pthread_mutex_trylock(&busy) != 0) {
        *status = 503;
        ls_fail(err, errlen, "a beam search is already running; try again later");
        gen_request_free(&c->req);
        return NULL;
    }
    metrics_beam_running(1);
    *status = 503;
    if (!(j = job_create_detached(&c->req))) {
        ls_fail(err, errlen, "out of memory");
        goto done;
    }
    const gen_request *r = &j->req;
    beam_params bp;
    beam_params_default(&bp);
    bp.width = c->beam_width;
    bp.n_best = r->n;
    bp.max_new_tokens = r->max_tokens > 0 ? r->max_tokens : 1;
    bp.length_penalty = c->length_penalty;
    bp.eos_id = r->ignore_eos ? -1 : tok_eos(ctx->m->tok);
    bp.should_stop = gone;
    bp.ctx = gone_ctx;
    if (!(p = pool_create(threads)) || !(f = fwd_create(ctx->m, FWD_STEP_ROWS, p, err, errlen))) {
        if (!p) ls_fail(err, errlen, "cannot start threads");
        goto fail;
    }
    if (beam_search(ctx->m, f, r->prompt, r->n_prompt, &bp, res, &n_out, err, errlen) != 0) {
        *status = gone && gone(gone_ctx) ? 499 : 400;
        goto fail;
    }
    for (int i = 0; i < n_out && i < r->n; i++) beam_text(ctx, r, &res[i], j, i);
    for (int i = n_out; i < r->n; i++) job_finish_choice(j, i, "", 0, 0, FINISH_LENGTH);
    beam_results_free(res, n_out);
    goto done;
fail:
    job_release(j);
    j = NULL;
done:
    fwd_free(f);
    pool_destroy(p);
    metrics_beam_running(-1);
    pthread_mutex_unlock(&busy);
    return j;
}
