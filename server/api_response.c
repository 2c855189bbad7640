/* api_response: OpenAI-compatible responses (see api.h): the whole JSON answer of a finished
 * job, /v1/models, and the Server-Sent Events of a stream, in the exact shapes of
 * shared/notes/wire-formats.md. Reads a job only through a job_view (the caller's copy, read
 * without locks: nothing is formatted under a lock); no I/O. */
#include "api.h"

#include "api_internal.h"
#include "common.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- responses --- */

static const char *finish_name(finish_reason f) {
    switch (f) {
    case FINISH_STOP: return "stop";
    case FINISH_LENGTH: return "length";
    default: return NULL;
    }
}

/* A token's text for logprobs, its first `keep` bytes only (SIZE_MAX: all; a stop string cut
 * the rest); "bytes:\xNN" for a byte that is not a whole character. out holds
 * token_text_cap(t) bytes: a piece's whole text, or the 12 bytes of one such byte. */
static size_t token_text_cap(const tokenizer *t) {
    return tok_stream_cap(t) + 16;
}

static void token_text(const tokenizer *t, int id, size_t keep, char *out, size_t cap,
                       cJSON **bytes) {
    char buf[8];
    size_t n;
    const char *p = tok_piece_bytes(t, id, buf, &n);
    if (n > keep) n = keep;
    if (bytes) {
        *bytes = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++)
            api_json_append(*bytes, cJSON_CreateNumber((unsigned char)p[i]));
    }
    if (ls_utf8_valid(p, n)) {
        snprintf(out, cap, "%.*s", (int)n, p);
    } else {
        size_t o = 0;
        out[0] = '\0';
        for (size_t i = 0; i < n && o + 12 < cap; i++)
            o += (size_t)snprintf(out + o, cap - o, "bytes:\\x%02x", (unsigned char)p[i]);
    }
}

/* Where token i's text begins in its choice's text. */
static size_t tok_start(const choice_out *o, int i) {
    return i > 0 ? o->toks[i - 1].text_end : 0;
}

/* The end of the run of tokens from `from` on whose text lies in the choice's first len bytes
 * (its released text). Before the choice finishes a token counts once its text is there
 * whole. Once it has finished, every token counts unless a stop string cut the text; then
 * only those whose text begins before the cut (the last one's part before it, token_bytes).
 * So the joined tokens are the text, and the cut stop string has no logprobs. */
static int toks_within(const choice_out *o, int from, size_t len, bool finished) {
    if (finished && o->n_toks > 0 && o->toks[o->n_toks - 1].text_end <= len) return o->n_toks;
    int to = from;
    while (to < o->n_toks && tok_start(o, to) < len && (finished || o->toks[to].text_end <= len))
        to++;
    return to;
}

/* Bytes of token i's text inside the first len bytes of the text (SIZE_MAX: all of it). */
static size_t token_bytes(const choice_out *o, int i, size_t len) {
    return o->toks[i].text_end > len ? len - tok_start(o, i) : SIZE_MAX;
}

/* Logprobs of tokens [from, to) of one choice, in the completions (legacy) or chat shape; len:
 * the choice's text length (a cut token shows its part before it); base: where the choice's
 * text begins in the returned text (after an echoed prompt). */
static cJSON *logprobs_json(const api_ctx *ctx, const api_call *c, const choice_out *o, int from,
                            int to, size_t len, size_t base) {
    const tokenizer *t = ctx->m->tok;
    size_t cap = token_text_cap(t);
    char *txt = malloc(cap);
    if (!txt) return NULL;
    if (c->chat) {
        cJSON *lp = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(lp, "content");
        for (int i = from; i < to; i++) {
            const gen_token *g = &o->toks[i];
            cJSON *item = cJSON_CreateObject(), *bytes;
            token_text(t, g->id, token_bytes(o, i, len), txt, cap, &bytes);
            cJSON_AddStringToObject(item, "token", txt);
            cJSON_AddNumberToObject(item, "logprob", g->logprob);
            api_json_put(item, "bytes", bytes);
            cJSON *tops = cJSON_AddArrayToObject(item, "top_logprobs");
            for (int k = 0; k < g->n_top; k++) {
                cJSON *top = cJSON_CreateObject(), *tb;
                token_text(t, g->top_id[k], SIZE_MAX, txt, cap, &tb);
                cJSON_AddStringToObject(top, "token", txt);
                cJSON_AddNumberToObject(top, "logprob", g->top_logprob[k]);
                api_json_put(top, "bytes", tb);
                api_json_append(tops, top);
            }
            api_json_append(content, item);
        }
        free(txt);
        return lp;
    }
    cJSON *lp = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(lp, "tokens");
    cJSON *tlp = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(lp, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(lp, "text_offset");
    for (int i = from; i < to; i++) {
        const gen_token *g = &o->toks[i];
        token_text(t, g->id, token_bytes(o, i, len), txt, cap, NULL);
        api_json_append(toks, cJSON_CreateString(txt));
        api_json_append(tlp, cJSON_CreateNumber(g->logprob));
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < g->n_top; k++) {
            token_text(t, g->top_id[k], SIZE_MAX, txt, cap, NULL);
            if (!cJSON_GetObjectItemCaseSensitive(top, txt))
                cJSON_AddNumberToObject(top, txt, g->top_logprob[k]);
        }
        api_json_append(tops, top);
        api_json_append(offs, cJSON_CreateNumber((double)(base + tok_start(o, i))));
    }
    free(txt);
    return lp;
}

/* OpenAI's usage object. prompt_tokens counts each prompt once whatever n is; its
 * cached_tokens are, summed over the prompts, the prompt tokens every choice of that prompt
 * found in its slot's cache. */
static cJSON *usage_json(const job_view *j) {
    int gen = 0, cached = 0, least = 0;
    for (int c = 0; c < j->req.n; c++) {
        int len, k;
        gen_request_prompt(&j->req, c, &len, &k);
        if (k == 0) {
            cached += least;
            least = len;
        }
        gen += j->choices[c].n_gen;
        if (j->choices[c].n_cached < least) least = j->choices[c].n_cached;
    }
    cached += least;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", j->req.n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", gen);
    cJSON_AddNumberToObject(u, "total_tokens", j->req.n_prompt + gen);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", cached);
    return u;
}

static cJSON *envelope(const api_ctx *ctx, const api_call *c, const char *id, long created,
                       bool chunk) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", id);
    cJSON_AddStringToObject(r, "object", c->chat ? (chunk ? "chat.completion.chunk"
                                                          : "chat.completion")
                                                 : "text_completion");
    cJSON_AddNumberToObject(r, "created", (double)created);
    cJSON_AddStringToObject(r, "model", ctx->model_id);
    if (ctx->fingerprint) cJSON_AddStringToObject(r, "system_fingerprint", ctx->fingerprint);
    return r;
}

/* n bytes of text as a JSON string. A cJSON string ends at its first NUL, so a NUL byte the
 * model generated (the <0x00> byte piece) would silently drop the rest: it goes out as U+FFFD. */
static void add_text(cJSON *obj, const char *key, const char *s, size_t n) {
    size_t n_nul = 0, k = 0;
    for (size_t i = 0; i < n; i++) n_nul += s[i] == '\0';
    char *tmp = malloc(n + 2 * n_nul + 1);
    if (!tmp) return;
    for (size_t i = 0; i < n; i++) {
        if (s[i]) {
            tmp[k++] = s[i];
        } else {
            memcpy(tmp + k, "\xef\xbf\xbd", 3);
            k += 3;
        }
    }
    tmp[k] = '\0';
    cJSON_AddStringToObject(obj, key, tmp);
    free(tmp);
}

/* The echoed prompt before choice i's text (NULL: none). c->req is the job's now. */
static const char *echo_of(const api_call *c, const job_view *j, int i) {
    if (c->chat || !c->echo || !c->echo_text) return NULL;
    int np = j->req.n_prompts > 1 ? j->req.n_prompts : 1;
    return c->echo_text[i / (j->req.n / np)];
}

static size_t echo_len(const api_call *c, const job_view *j, int i) {
    const char *e = echo_of(c, j, i);
    return e ? strlen(e) : 0;
}

/* A rate: n per `ms` milliseconds, scaled to `unit` (1e3: per second); 0 for no time. */
static double per(double n, double ms, double unit) {
    return ms > 0 ? n * unit / ms : 0;
}

cJSON *api_timings_json(const job_view *j, double now) {
    int gen = 0, cached = j->req.n_prompt, drafted = 0, accepted = 0;
    for (int c = 0; c < j->req.n; c++) {
        gen += j->choices[c].n_gen;
        drafted += j->choices[c].n_drafted;
        accepted += j->choices[c].n_accepted;
        if (j->choices[c].n_cached < cached) cached = j->choices[c].n_cached;
    }
    /* the prompt: admission to the first token; the rest: first token to the end (or now) */
    double end = j->t_end > 0 && j->n_finished == j->req.n ? j->t_end : now;
    double prompt_ms = j->t_first > 0 && j->t_admit > 0 ? (j->t_first - j->t_admit) * 1e3 : 0;
    double predicted_ms = j->t_first > 0 && end > j->t_first ? (end - j->t_first) * 1e3 : 0;
    int prompt_n = j->req.n_prompt - cached;
    cJSON *t = cJSON_CreateObject();
    if (!t) return NULL;
    cJSON_AddNumberToObject(t, "cache_n", cached);
    cJSON_AddNumberToObject(t, "prompt_n", prompt_n);
    cJSON_AddNumberToObject(t, "prompt_ms", prompt_ms);
    cJSON_AddNumberToObject(t, "prompt_per_token_ms", per(prompt_ms, prompt_n, 1));
    cJSON_AddNumberToObject(t, "prompt_per_second", per(prompt_n, prompt_ms, 1e3));
    cJSON_AddNumberToObject(t, "predicted_n", gen);
    cJSON_AddNumberToObject(t, "predicted_ms", predicted_ms);
    cJSON_AddNumberToObject(t, "predicted_per_token_ms", per(predicted_ms, gen, 1));
    if (drafted > 0) { /* speculative decoding, as llama.cpp reports it */
        cJSON_AddNumberToObject(t, "draft_n", drafted);
        cJSON_AddNumberToObject(t, "draft_n_accepted", accepted);
    }
    if (!cJSON_AddNumberToObject(t, "predicted_per_second", per(gen, predicted_ms, 1e3))) {
        cJSON_Delete(t);
        return NULL;
    }
    return t;
}

/* "timings" on obj when the call asked for it (timings_per_token). */
static void add_timings(cJSON *obj, const api_call *c, const job_view *j) {
    if (c->timings_per_token) api_json_put(obj, "timings", api_timings_json(j, ls_now()));
}
static char *embeddings_json(const api_ctx *ctx, const api_call *c, const job_view *j);

/* --- tool calls (tools.h reads them; these put them in OpenAI's shapes) --- */

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", s[i])) return false;
    return true;
}

/* A choice's answer text when it made calls: the text before the calls and after them, right-
 * trimmed (caller frees; *n its length, 0 meaning content null). Without calls: all of it. */
static char *tool_content(const tools_parsed *p, const char *text, size_t len, size_t *n) {
    size_t nc = p->content_len, nt = len - p->tail_off;
    char *s = malloc(nc + nt + 1);
    if (!s) return NULL;
    memcpy(s, text, nc);
    memcpy(s + nc, text + p->tail_off, nt);
    *n = nc + nt;
    if (p->n_calls)
        while (*n && blank(s + *n - 1, 1)) (*n)--;
    s[*n] = '\0';
    return s;
}

/* {"id","type":"function","function":{"name","arguments"}}; with index (streams), the
 * arguments are "" here and follow in fragments. */
static cJSON *call_json(const api_call *c, const char *id, int i, int k, const tool_call *tc,
                        bool stream) {
    char call_id[32];
    tools_call_id(c->tools, id, i, k, call_id);
    cJSON *o = cJSON_CreateObject();
    if (stream) cJSON_AddNumberToObject(o, "index", k);
    cJSON_AddStringToObject(o, "id", call_id);
    cJSON_AddStringToObject(o, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(o, "function");
    cJSON_AddStringToObject(fn, "name", tc->name);
    cJSON_AddStringToObject(fn, "arguments", stream ? "" : tc->arguments);
    return o;
}

/* The message of a choice read for tool calls: content (null when the answer is only calls)
 * and tool_calls; *fr becomes "tool_calls" when the choice stopped after its calls. */
static void tool_message(const api_call *c, const char *id, int i, const choice_out *o,
                         cJSON *msg, const char **fr) {
    const char *text = o->text ? o->text : "";
    tools_parsed p;
    if (tools_scan(c->tools, text, o->len, true, &p)) { /* memory: the text as it is */
        memset(&p, 0, sizeof p);
        p.content_len = p.tail_off = o->len;
    }
    size_t n = 0;
    char *content = tool_content(&p, text, o->len, &n);
    if (p.n_calls && n == 0) cJSON_AddNullToObject(msg, "content");
    else add_text(msg, "content", content ? content : text, content ? n : o->len);
    free(content);
    if (p.n_calls) {
        cJSON *arr = cJSON_AddArrayToObject(msg, "tool_calls");
        for (int k = 0; k < p.n_calls; k++)
            api_json_append(arr, call_json(c, id, i, k, &p.calls[k], false));
        if (o->finish == FINISH_STOP) *fr = "tool_calls";
    }
    tools_parsed_free(&p);
}

char *api_response_json(const api_ctx *ctx, const api_call *c, const job_view *j, const char *id,
                        long created) {
    if (c->responses) return api_responses_json(ctx, c, j, id, created);
    api_json_init();
    if (c->native) return api_native_json(ctx, c, j);
    if (c->embed) return embeddings_json(ctx, c, j);
    cJSON *r = envelope(ctx, c, id, created, false);
    cJSON *choices = cJSON_AddArrayToObject(r, "choices");
    for (int i = 0; i < j->req.n; i++) {
        const choice_out *o = &j->choices[i];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", i);
        const char *fr = finish_name(o->finish);
        if (c->chat) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            if (tools_active(c->tools)) tool_message(c, id, i, o, msg, &fr);
            else add_text(msg, "content", o->text ? o->text : "", o->len);
        } else if (echo_of(c, j, i)) {
            const char *echo = echo_of(c, j, i);
            size_t pl = strlen(echo);
            char *both = malloc(pl + o->len + 1);
            if (both) {
                memcpy(both, echo, pl);
                memcpy(both + pl, o->text ? o->text : "", o->len);
                add_text(ch, "text", both, pl + o->len);
                free(both);
            }
        } else {
            add_text(ch, "text", o->text ? o->text : "", o->len);
        }
        if (c->logprobs >= 0)
            api_json_put(ch, "logprobs",
                         logprobs_json(ctx, c, o, 0, toks_within(o, 0, o->len, true), o->len,
                                       echo_len(c, j, i)));
        else cJSON_AddNullToObject(ch, "logprobs");
        if (fr) cJSON_AddStringToObject(ch, "finish_reason", fr);
        else cJSON_AddNullToObject(ch, "finish_reason");
        api_json_append(choices, ch);
    }
    api_json_put(r, "usage", usage_json(j));
    add_timings(r, c, j);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

char *api_models_json(const api_ctx *ctx, long created) {
    api_json_init();
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(r, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", ctx->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "llamaserve");
    cJSON *meta = cJSON_AddObjectToObject(m, "meta");
    cJSON_AddNumberToObject(meta, "n_ctx_train", ctx->m->cfg.ctx_len);
    cJSON_AddNumberToObject(meta, "n_ctx_slot", ctx->ctx_size);
    cJSON_AddNumberToObject(meta, "n_vocab", ctx->m->cfg.vocab_size);
    api_json_append(data, m);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* --- streaming --- */

int api_stream_init(api_stream *st, const api_ctx *ctx, const api_call *c, job *j,
                    const char *id, long created) {
    memset(st, 0, sizeof *st);
    st->ctx = ctx;
    st->call = c;
    st->id = id;
    st->created = created;
    int n = j->req.n;
    st->sent_len = calloc((size_t)n, sizeof *st->sent_len);
    st->sent_toks = calloc((size_t)n, sizeof *st->sent_toks);
    st->sent_finish = calloc((size_t)n, sizeof *st->sent_finish);
    st->sent_calls = calloc((size_t)n, sizeof *st->sent_calls);
    st->j = malloc(sizeof *st->j);
    if (st->j && job_view_init(st->j, j) != 0) {
        free(st->j);
        st->j = NULL;
    }
    if (st->sent_len && st->sent_toks && st->sent_finish && st->sent_calls && st->j) return 0;
    api_stream_free(st);
    return -1;
}

void api_stream_free(api_stream *st) {
    free(st->sent_len);
    free(st->sent_toks);
    free(st->sent_finish);
    free(st->sent_calls);
    if (st->j) job_view_free(st->j);
    free(st->j);
    memset(st, 0, sizeof *st);
}

static void emit(char **buf, size_t *len, size_t *cap, cJSON *event) {
    char *s = cJSON_PrintUnformatted(event);
    cJSON_Delete(event);
    if (!s) return;
    size_t n = strlen(s), need = *len + n + 9;
    if (need > *cap) {
        size_t nc = need * 2;
        char *nb = realloc(*buf, nc);
        if (!nb) {
            free(s);
            return;
        }
        *buf = nb;
        *cap = nc;
    }
    *len += (size_t)sprintf(*buf + *len, "data: %s\n\n", s);
    free(s);
}

static void emit_raw(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t nc = (*len + n + 1) * 2;
        char *nb = realloc(*buf, nc);
        if (!nb) return;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

/* One chunk for choice i carrying text (may be empty) and/or a finish reason. */
static cJSON *chunk(api_stream *st, int i, const char *text, size_t n, bool role,
                    const char *finish, cJSON *logprobs) {
    const api_call *c = st->call;
    cJSON *r = envelope(st->ctx, c, st->id, st->created, true);
    cJSON *choices = cJSON_AddArrayToObject(r, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", i);
    if (c->chat) {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (text) add_text(d, "content", text, n);
    } else {
        add_text(ch, "text", text ? text : "", text ? n : 0);
    }
    if (logprobs) api_json_put(ch, "logprobs", logprobs);
    else cJSON_AddNullToObject(ch, "logprobs");
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    api_json_append(choices, ch);
    if (c->include_usage) cJSON_AddNullToObject(r, "usage");
    add_timings(r, c, st->j);
    return r;
}

/* A chunk whose delta carries one tool call's header or a fragment of its arguments. */
static cJSON *tool_chunk(api_stream *st, int i, cJSON *call) {
    cJSON *ev = chunk(st, i, NULL, 0, false, NULL, NULL);
    cJSON *d = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "choices"), 0), "delta");
    cJSON *arr = cJSON_AddArrayToObject(d, "tool_calls");
    if (!cJSON_AddItemToArray(arr, call)) cJSON_Delete(call);
    return ev;
}

/* Each new complete call of choice i: a delta with index, id, type and name (arguments ""),
 * then its arguments in fragments of at most 24 bytes, cut between characters. */
static void stream_calls(api_stream *st, int i, const tools_parsed *p, char **buf, size_t *len,
                         size_t *cap) {
    for (int k = st->sent_calls[i]; k < p->n_calls; k++) {
        emit(buf, len, cap, tool_chunk(st, i, call_json(st->call, st->id, i, k, &p->calls[k],
                                                        true)));
        const char *a = p->calls[k].arguments;
        for (size_t off = 0, n = strlen(a); off < n;) {
            size_t m = n - off > 24 ? 24 : n - off;
            while (off + m < n && ((unsigned char)a[off + m] & 0xC0) == 0x80) m++;
            cJSON *frag = cJSON_CreateObject(), *fn;
            cJSON_AddNumberToObject(frag, "index", k);
            fn = cJSON_AddObjectToObject(frag, "function");
            char piece[32];
            snprintf(piece, sizeof piece, "%.*s", (int)m, a + off);
            cJSON_AddStringToObject(fn, "arguments", piece);
            emit(buf, len, cap, tool_chunk(st, i, frag));
            off += m;
        }
    }
    st->sent_calls[i] = p->n_calls;
}

/* The events of choice i when its text is read for tool calls: answer text as soon as it
 * cannot be part of a call (trailing blanks held back, as calls may follow), each call once
 * complete, and at the end the rest of the text and finish_reason "tool_calls" after calls.
 * Logprobs of such a choice come with its last chunk. */
static void stream_tool_choice(api_stream *st, int i, char **buf, size_t *len, size_t *cap) {
    const api_call *c = st->call;
    const choice_out *o = &st->j->choices[i];
    const char *text = o->text ? o->text : "";
    bool final = o->finish != FINISH_NONE;
    tools_parsed p;
    if (tools_scan(c->tools, text, o->len, final, &p)) {
        if (!final) return; /* memory: again at the next event */
        memset(&p, 0, sizeof p);
        p.content_len = p.tail_off = o->len;
    }
    size_t n = p.content_len;
    char *content = NULL;
    if (final) content = tool_content(&p, text, o->len, &n);
    else
        while (n > st->sent_len[i] && blank(text + n - 1, 1)) n--;
    const char *src = content ? content : text;
    if (n > st->sent_len[i]) {
        emit(buf, len, cap, chunk(st, i, src + st->sent_len[i], n - st->sent_len[i], false,
                                  NULL, NULL));
        st->sent_len[i] = n;
    }
    free(content);
    stream_calls(st, i, &p, buf, len, cap);
    if (final) {
        int to = toks_within(o, st->sent_toks[i], o->len, true);
        cJSON *lp = c->logprobs >= 0
                        ? logprobs_json(st->ctx, c, o, st->sent_toks[i], to, o->len, 0)
                        : NULL;
        const char *fr = p.n_calls && o->finish == FINISH_STOP ? "tool_calls"
                                                               : finish_name(o->finish);
        emit(buf, len, cap, chunk(st, i, NULL, 0, false, fr, lp));
        st->sent_toks[i] = to;
        st->sent_finish[i] = true;
    }
    tools_parsed_free(&p);
}

bool api_stream_events(api_stream *st, char **buf, size_t *len, size_t *cap) {
    api_json_init();
    const api_call *c = st->call;
    const job_view *j = st->j;
    if (c->responses) return api_responses_stream_events(st, buf, len, cap);
    if (c->native) return api_native_stream_events(st, buf, len, cap);
    if (st->sent_done) return true;
    if (c->chat && !st->sent_role) {
        for (int i = 0; i < j->req.n; i++) emit(buf, len, cap, chunk(st, i, "", 0, true, NULL, NULL));
        st->sent_role = true;
    }
    if (!c->chat && c->echo && c->echo_text && !st->echoed) {
        for (int i = 0; i < j->req.n; i++)
            emit(buf, len, cap, chunk(st, i, echo_of(c, j, i), echo_len(c, j, i), false, NULL,
                                      NULL));
        st->echoed = true;
    }
    for (int i = 0; i < j->req.n; i++) {
        const choice_out *o = &j->choices[i];
        if (st->sent_finish[i]) continue;
        if (o->finish == FINISH_ERROR || o->finish == FINISH_CANCEL) {
            api_error e;
            api_error_set(&e, 500, "server_error", NULL, NULL, "%s",
                          o->finish == FINISH_CANCEL ? "the request was cancelled (server shutting down)"
                                                     : j->error);
            char *s = api_error_json(&e);
            if (s) {
                emit_raw(buf, len, cap, "data: ");
                emit_raw(buf, len, cap, s);
                emit_raw(buf, len, cap, "\n\n");
                free(s);
            }
            st->sent_finish[i] = true;
            continue;
        }
        if (c->chat && tools_active(c->tools)) {
            stream_tool_choice(st, i, buf, len, cap);
            continue;
        }
        /* with logprobs, text goes out with the tokens it came from, once they are whole */
        bool finished = o->finish != FINISH_NONE;
        int to = c->logprobs >= 0 ? toks_within(o, st->sent_toks[i], o->len, finished) : 0;
        size_t text_to = o->len;
        if (c->logprobs >= 0 && !finished)
            text_to = to > 0 && o->toks[to - 1].text_end > st->sent_len[i]
                          ? o->toks[to - 1].text_end : st->sent_len[i];
        if (text_to > st->sent_len[i] || to > st->sent_toks[i]) {
            cJSON *lp = c->logprobs >= 0 ? logprobs_json(st->ctx, c, o, st->sent_toks[i], to,
                                                         o->len, echo_len(c, j, i))
                                         : NULL;
            /* o->text is still NULL when only logprobs are new (no byte of text yet) */
            emit(buf, len, cap, chunk(st, i, o->text ? o->text + st->sent_len[i] : NULL,
                                      text_to - st->sent_len[i], false, NULL, lp));
            st->sent_len[i] = text_to;
            st->sent_toks[i] = to;
        }
        if (finished) {
            emit(buf, len, cap, chunk(st, i, c->chat ? NULL : "", 0, false,
                                      finish_name(o->finish), NULL));
            st->sent_finish[i] = true;
        }
    }
    if (j->n_finished < j->req.n) return false;
    /* an error event ends the stream: no usage chunk and no [DONE] after it (a cancel at
     * shutdown is such an error too; a client would otherwise read [DONE] as success) */
    bool failed = false;
    for (int i = 0; i < j->req.n; i++)
        failed = failed || j->choices[i].finish == FINISH_ERROR ||
                 j->choices[i].finish == FINISH_CANCEL;
    if (c->include_usage && !st->sent_usage && !failed) {
        cJSON *r = envelope(st->ctx, c, st->id, st->created, true);
        cJSON_AddArrayToObject(r, "choices");
        api_json_put(r, "usage", usage_json(j));
        emit(buf, len, cap, r);
        st->sent_usage = true;
    }
    if (!failed) emit_raw(buf, len, cap, "data: [DONE]\n\n");
    st->sent_done = true;
    return true;
}

/* --- for api_responses.c --- */

void api_text_add(cJSON *obj, const char *key, const char *s, size_t n) {
    add_text(obj, key, s, n);
}

void api_sse_append(char **buf, size_t *len, size_t *cap, const char *event, cJSON *data) {
    if (event) {
        emit_raw(buf, len, cap, "event: ");
        emit_raw(buf, len, cap, event);
        emit_raw(buf, len, cap, "\n");
    }
    emit(buf, len, cap, data);
}

/* --- embeddings --- */

/* out (4 * ((n + 2) / 3) + 1 bytes) = the standard base64 of in (n bytes), NUL-terminated. */
static void base64(char *out, const unsigned char *in, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = i + 1 < n ? abc[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[o] = '\0';
}

/* One embedding (dim) as OpenAI sends it: a JSON array of numbers, each written with the 9
 * significant digits that give its float32 back exactly, or the base64 of its little-endian
 * float32 bytes. NULL when memory runs out. */
static cJSON *embedding_value(const float *v, int dim, bool b64) {
    unsigned char *bytes = malloc((size_t)dim * 4);
    char *text = malloc(b64 ? 4 * (((size_t)dim * 4 + 2) / 3) + 1 : (size_t)dim * 18 + 3);
    cJSON *out = NULL;
    if (!bytes || !text) goto done;
    if (b64) {
        for (int i = 0; i < dim; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            for (int k = 0; k < 4; k++)
                bytes[4 * i + k] = (unsigned char)(u >> 8 * k);
        }
        base64(text, bytes, (size_t)dim * 4);
        out = cJSON_CreateString(text);
    } else {
        size_t n = 0;
        text[n++] = '[';
        for (int i = 0; i < dim; i++) /* "-1.23456789e-38," is at most 16 bytes */
            n += (size_t)snprintf(text + n, 18, "%s%.9g", i ? "," : "", (double)v[i]);
        text[n++] = ']';
        text[n] = '\0';
        out = cJSON_CreateRaw(text);
    }
done:
    free(bytes);
    free(text);
    return out;
}

/* {"object":"list","data":[{"object":"embedding","index":i,"embedding":...}],"model",
 * "usage":{"prompt_tokens","total_tokens"}}, the inputs in request order; llama.cpp's
 * /embeddings: [{"index":i,"embedding":[[...]]}] (one pooled vector per input). */
static char *embeddings_json(const api_ctx *ctx, const api_call *c, const job_view *j) {
    const int dim = ctx->m->cfg.dim;
    const bool llama = c->embed_llama;
    cJSON *r = llama ? cJSON_CreateArray() : cJSON_CreateObject();
    bool ok = r && (llama || cJSON_AddStringToObject(r, "object", "list"));
    cJSON *data = !ok ? NULL : llama ? r : cJSON_AddArrayToObject(r, "data");
    ok = data != NULL;
    for (int i = 0; ok && i < j->req.n; i++) {
        cJSON *e = cJSON_CreateObject(), *v = embedding_value(j->choices[i].embd, dim, c->base64);
        cJSON *outer = llama ? cJSON_CreateArray() : NULL;
        ok = e && v && (!llama || outer) &&
             (llama || cJSON_AddStringToObject(e, "object", "embedding")) &&
             cJSON_AddNumberToObject(e, "index", i);
        if (ok && llama) {
            api_json_append(outer, v);
            v = outer, outer = NULL;
        }
        if (ok)
            api_json_put(e, "embedding", v);
        else
            cJSON_Delete(v);
        cJSON_Delete(outer);
        if (e) api_json_append(data, e);
    }
    int n_prompt = j->req.n_prompt;
    if (llama) {
        char *s = ok ? cJSON_PrintUnformatted(r) : NULL;
        cJSON_Delete(r);
        return s;
    }
    cJSON *u = ok ? cJSON_CreateObject() : NULL;
    ok = ok && u && cJSON_AddStringToObject(r, "model", ctx->model_id) &&
         cJSON_AddNumberToObject(u, "prompt_tokens", n_prompt) &&
         cJSON_AddNumberToObject(u, "total_tokens", n_prompt);
    if (u) api_json_put(r, "usage", u);
    char *s = ok ? cJSON_PrintUnformatted(r) : NULL;
    cJSON_Delete(r);
    return s;
}
