/* sched_beam: a beam-search job's logic inside the scheduler (see sched_beam.h): the engine's
 * ranking (beam_step) over the rows the scheduler's shared steps produce, the movement of the
 * beams' KV caches between the job's slots, and the job's text. Owns the job's beam_state and
 * text buffers; touches no slot and takes no scheduler lock; job text goes through
 * scheduler.c's helpers (sched_job_append_all, job_finish_choice). */
#include "sched_beam.h"

#include "common.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sched_beam *sched_beam_create(const model *m, const gen_request *r, int ctx_size, char *err,
                              size_t errlen) {
    sched_beam *b = calloc(1, sizeof *b);
    if (!b) goto oom;
    gen_request_prompt(r, 0, &b->n_prompt, NULL);
    int room = ctx_size - b->n_prompt; /* a beam's last token is never fed */
    beam_params bp;
    beam_params_default(&bp);
    bp.width = r->beam_width;
    bp.n_best = r->n;
    bp.max_new_tokens = r->max_tokens < room ? r->max_tokens : room;
    if (bp.max_new_tokens < 1) bp.max_new_tokens = 1; /* max_tokens 0 never reaches a step */
    bp.length_penalty = r->length_penalty;
    bp.eos_id = r->ignore_eos ? -1 : tok_eos(m->tok);
    if (!(b->bs = beam_state_create(m, &bp, err, errlen))) goto fail;
    b->width = r->beam_width;
    b->n_live = 1; /* the prompt, in the first slot */
    b->piece_cap = tok_stream_cap(m->tok);
    /* as a slot's: after each token less than the longest stop string stays held */
    b->held_cap = SCHED_MAX_STOP_BYTES + b->piece_cap;
    b->held = malloc(b->held_cap);
    b->piece = malloc(b->piece_cap);
    if (!b->held || !b->piece) goto oom;
    /* the prompt's last token is BOS alone: the first piece's space is the dummy prefix */
    tok_stream_init(&b->ts, m->tok, b->n_prompt == 1);
    return b;
oom:
    ls_fail(err, errlen, "out of memory for a beam search");
fail:
    sched_beam_free(b);
    return NULL;
}

void sched_beam_free(sched_beam *b) {
    if (!b) return;
    beam_state_free(b->bs);
    free(b->held);
    free(b->piece);
    free(b);
}

static void set_error(job *j, const char *msg) {
    pthread_mutex_lock(&j->mu);
    snprintf(j->error, sizeof j->error, "%s", msg);
    pthread_mutex_unlock(&j->mu);
}

/* Decodes one certain token and releases to every choice what can no longer begin a stop
 * string. Returns 1 when a stop string is complete (the text before it is out), 0 to go on,
 * -1 when memory ran out. */
static int release_token(sched_beam *b, job *j, int32_t id) {
    size_t n = tok_stream_feed(&b->ts, id, b->piece, b->piece_cap), keep;
    assert(n < b->piece_cap && b->n_held + n <= b->held_cap);
    memcpy(b->held + b->n_held, b->piece, n);
    b->n_held += n;
    long cut = sched_find_stop(&j->req, b->held, b->n_held, &keep);
    size_t release = cut >= 0 ? (size_t)cut : b->n_held - keep;
    if (!sched_job_append_all(j, b->held, release)) return -1;
    if (cut >= 0) {
        b->n_held = 0;
        return 1;
    }
    memmove(b->held, b->held + release, b->n_held - release);
    b->n_held -= release;
    return 0;
}

/* Ends choice c with result res: the held text, then res's tokens past the certain prefix
 * (decoded from a copy of the stream's state), cut at the first stop string. */
static void finish_choice(sched_beam *b, job *j, int c, const beam_result *res) {
    assert(res->n_tokens >= b->n_streamed);
    tok_stream ts = b->ts;
    size_t cap = b->n_held + ((size_t)(res->n_tokens - b->n_streamed) + 1) * b->piece_cap, len;
    char *text = malloc(cap);
    if (!text) {
        set_error(j, "out of memory for the generated text");
        job_finish_choice(j, c, NULL, 0, res->n_tokens, FINISH_ERROR);
        return;
    }
    memcpy(text, b->held, b->n_held);
    len = b->n_held;
    for (int i = b->n_streamed; i < res->n_tokens; i++)
        len += tok_stream_feed(&ts, res->tokens[i], text + len, cap - len);
    len += tok_stream_flush(&ts, text + len, cap - len);
    finish_reason why = res->ended_eos ? FINISH_STOP : FINISH_LENGTH;
    size_t keep;
    long cut = sched_find_stop(&j->req, text, len, &keep);
    if (cut >= 0) {
        len = (size_t)cut;
        why = FINISH_STOP;
    }
    job_finish_choice(j, c, text, len, res->n_tokens, why);
    free(text);
}

/* The search has ended: every choice gets its hypothesis (n best, in result order); choices
 * beyond the hypotheses found (a vocabulary too small to fill n) end with what they have. */
static int finish_results(sched_beam *b, job *j) {
    beam_result res[BEAM_MAX_WIDTH];
    int n_out = 0;
    char err[LS_ERR_LEN];
    if (beam_results(b->bs, res, &n_out, err, sizeof err) != 0) {
        set_error(j, err);
        return -1;
    }
    for (int c = 0; c < j->req.n; c++) {
        if (c < n_out) finish_choice(b, j, c, &res[c]);
        else job_finish_choice(j, c, NULL, 0, b->n_streamed, FINISH_LENGTH);
    }
    beam_results_free(res, n_out);
    return 0;
}

int sched_beam_advance(sched_beam *b, job *j, beam_next *next) {
    assert(b->n_rows == b->n_live);
    int more = beam_step(b->bs, b->rows, next);
    b->n_rows = 0;
    if (!more) { /* each choice from the certain prefix on: its own tokens */
        b->n_live = 0;
        return finish_results(b, j);
    }
    const int32_t *tok;
    int n_final = beam_final(b->bs, &tok);
    for (; b->n_streamed < n_final; b->n_streamed++) {
        int rc = release_token(b, j, tok[b->n_streamed]);
        if (rc < 0) {
            set_error(j, "out of memory for the generated text");
            return -1;
        }
        if (rc > 0) { /* every result would be cut here */
            for (int c = 0; c < j->req.n; c++)
                job_finish_choice(j, c, NULL, 0, b->n_streamed + 1, FINISH_STOP);
            b->n_live = 0;
            return 0;
        }
    }
    b->n_live = next->n_live;
    b->n_tok++;
    return 1;
}

void sched_beam_abort(sched_beam *b, job *j, finish_reason why) {
    for (int c = 0; c < j->req.n; c++)
        job_finish_choice(j, c, NULL, 0, b->n_streamed, why);
    b->n_live = 0;
}

long long sched_beam_reorder(const beam_next *next, int width, sched_beam_seq *seq) {
    sched_beam_seq out[BEAM_MAX_WIDTH];
    bool taken[BEAM_MAX_WIDTH] = {0}; /* seq[i] went to a new beam */
    bool first[BEAM_MAX_WIDTH] = {0}; /* new beam j took its parent's own sequence */
    assert(next->n_live <= width);
    for (int j = 0; j < next->n_live; j++) {
        int p = next->parent[j];
        assert(p >= 0 && p < width);
        if (taken[p]) continue;
        out[j] = seq[p];
        taken[p] = first[j] = true;
    }
    long long bytes = 0;
    int spare = 0;
    for (int j = 0; j < width; j++) {
        if (j < next->n_live && first[j]) continue;
        while (taken[spare]) /* never a parent: each parent went to its first child */
            spare++;
        assert(spare < width);
        taken[spare] = true;
        out[j] = seq[spare++];
        if (j >= next->n_live) continue; /* no beam: the slot keeps what it holds */
        const sched_beam_seq *src = &seq[next->parent[j]];
        if (kv_copy(out[j].kv, src->kv) != 0) return -1;
        memcpy(out[j].hist, src->hist, (size_t)src->n_hist * sizeof *src->hist);
        out[j].n_hist = src->n_hist;
        bytes += 2LL * src->kv->n_layers * (long long)src->kv->n *
                 (long long)kv_row_bytes(src->kv->type, src->kv->kv_dim);
    }
    memcpy(seq, out, (size_t)width * sizeof *seq);
    return bytes;
}
