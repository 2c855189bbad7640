/* api_response: OpenAI-compatible responses (see api.h): the whole JSON answer of a finished
 * job, /v1/models, and the Server-Sent Events of a stream, in the exact shapes of
 * shared/notes/wire-formats.md. Reads a job only under job->mu (the callers hold it); no I/O. */
#include "api.h"

#include "common.h"

#include <cjson/cJSON.h>
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

/* A token's text for logprobs; "bytes:\xNN" for a byte that is not a whole character. out
 * holds token_text_cap(t) bytes: a piece's whole text, or the 12 bytes of one such byte. */
static size_t token_text_cap(const tokenizer *t) {
    return tok_stream_cap(t) + 16;
}

static void token_text(const tokenizer *t, int id, char *out, size_t cap, cJSON **bytes) {
    char buf[8];
    size_t n;
    const char *p = tok_piece_bytes(t, id, buf, &n);
    if (bytes) {
        *bytes = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(*bytes, cJSON_CreateNumber((unsigned char)p[i]));
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

/* Logprobs of tokens [from, to) of one choice, in the completions (legacy) or chat shape. */
static cJSON *logprobs_json(const api_ctx *ctx, const api_call *c, const choice_out *o, int from,
                            int to, size_t text_offset) {
    const tokenizer *t = ctx->m->tok;
    size_t cap = token_text_cap(t);
    char *txt = malloc(cap);
    if (!txt) return NULL;
    if (c->chat) {
        cJSON *lp = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(lp, "content");
        for (int i = from; i < to; i++) {
            const gen_token *g = &o->toks[i];
            cJSON *item = cJSON_CreateObject(), *bytes;
            token_text(t, g->id, txt, cap, &bytes);
            cJSON_AddStringToObject(item, "token", txt);
            cJSON_AddNumberToObject(item, "logprob", g->logprob);
            cJSON_AddItemToObject(item, "bytes", bytes);
            cJSON *tops = cJSON_AddArrayToObject(item, "top_logprobs");
            for (int k = 0; k < g->n_top; k++) {
                cJSON *top = cJSON_CreateObject(), *tb;
                token_text(t, g->top_id[k], txt, cap, &tb);
                cJSON_AddStringToObject(top, "token", txt);
                cJSON_AddNumberToObject(top, "logprob", g->top_logprob[k]);
                cJSON_AddItemToObject(top, "bytes", tb);
                cJSON_AddItemToArray(tops, top);
            }
            cJSON_AddItemToArray(content, item);
        }
        free(txt);
        return lp;
    }
    cJSON *lp = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(lp, "tokens");
    cJSON *tlp = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(lp, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(lp, "text_offset");
    size_t off = text_offset;
    for (int i = from; i < to; i++) {
        const gen_token *g = &o->toks[i];
        char buf[8];
        size_t n;
        tok_piece_bytes(t, g->id, buf, &n);
        token_text(t, g->id, txt, cap, NULL);
        cJSON_AddItemToArray(toks, cJSON_CreateString(txt));
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(g->logprob));
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < g->n_top; k++) {
            token_text(t, g->top_id[k], txt, cap, NULL);
            if (!cJSON_GetObjectItemCaseSensitive(top, txt))
                cJSON_AddNumberToObject(top, txt, g->top_logprob[k]);
        }
        cJSON_AddItemToArray(tops, top);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += n;
    }
    free(txt);
    return lp;
}

/* OpenAI's usage object. prompt_tokens counts the prompt once whatever n is; its
 * cached_tokens are the prompt tokens every choice found in its slot's cache. */
static cJSON *usage_json(const job *j) {
    int gen = 0, cached = j->req.n_prompt;
    for (int c = 0; c < j->req.n; c++) {
        gen += j->choices[c].n_gen;
        if (j->choices[c].n_cached < cached) cached = j->choices[c].n_cached;
    }
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
            cJSON_AddItemToArray(arr, call_json(c, id, i, k, &p.calls[k], false));
        if (o->finish == FINISH_STOP) *fr = "tool_calls";
    }
    tools_parsed_free(&p);
}

char *api_response_json(const api_ctx *ctx, const api_call *c, job *j, const char *id,
                        long created) {
    api_json_init();
    pthread_mutex_lock(&j->mu);
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
        } else if (c->echo && c->echo_text) {
            size_t pl = strlen(c->echo_text);
            char *both = malloc(pl + o->len + 1);
            if (both) {
                memcpy(both, c->echo_text, pl);
                memcpy(both + pl, o->text ? o->text : "", o->len);
                add_text(ch, "text", both, pl + o->len);
                free(both);
            }
        } else {
            add_text(ch, "text", o->text ? o->text : "", o->len);
        }
        if (c->logprobs >= 0)
            cJSON_AddItemToObject(ch, "logprobs", logprobs_json(ctx, c, o, 0, o->n_toks,
                                                                c->echo && c->echo_text
                                                                    ? strlen(c->echo_text)
                                                                    : 0));
        else cJSON_AddNullToObject(ch, "logprobs");
        if (fr) cJSON_AddStringToObject(ch, "finish_reason", fr);
        else cJSON_AddNullToObject(ch, "finish_reason");
        cJSON_AddItemToArray(choices, ch);
    }
    cJSON_AddItemToObject(r, "usage", usage_json(j));
    pthread_mutex_unlock(&j->mu);
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
    cJSON_AddItemToArray(data, m);
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
    st->j = j;
    st->id = id;
    st->created = created;
    int n = j->req.n;
    st->sent_len = calloc((size_t)n, sizeof *st->sent_len);
    st->sent_toks = calloc((size_t)n, sizeof *st->sent_toks);
    st->sent_finish = calloc((size_t)n, sizeof *st->sent_finish);
    st->sent_calls = calloc((size_t)n, sizeof *st->sent_calls);
    return st->sent_len && st->sent_toks && st->sent_finish && st->sent_calls ? 0 : -1;
}

void api_stream_free(api_stream *st) {
    free(st->sent_len);
    free(st->sent_toks);
    free(st->sent_finish);
    free(st->sent_calls);
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
    if (logprobs) cJSON_AddItemToObject(ch, "logprobs", logprobs);
    else cJSON_AddNullToObject(ch, "logprobs");
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    if (c->include_usage) cJSON_AddNullToObject(r, "usage");
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
        cJSON *lp = c->logprobs >= 0 ? logprobs_json(st->ctx, c, o, st->sent_toks[i], o->n_toks,
                                                     0)
                                     : NULL;
        const char *fr = p.n_calls && o->finish == FINISH_STOP ? "tool_calls"
                                                               : finish_name(o->finish);
        emit(buf, len, cap, chunk(st, i, NULL, 0, false, fr, lp));
        st->sent_toks[i] = o->n_toks;
        st->sent_finish[i] = true;
    }
    tools_parsed_free(&p);
}

bool api_stream_events(api_stream *st, char **buf, size_t *len, size_t *cap) {
    api_json_init();
    const api_call *c = st->call;
    job *j = st->j;
    if (st->sent_done) return true;
    if (c->chat && !st->sent_role) {
        for (int i = 0; i < j->req.n; i++) emit(buf, len, cap, chunk(st, i, "", 0, true, NULL, NULL));
        st->sent_role = true;
    }
    if (!c->chat && c->echo && c->echo_text && !st->echoed) {
        for (int i = 0; i < j->req.n; i++)
            emit(buf, len, cap, chunk(st, i, c->echo_text, strlen(c->echo_text), false, NULL,
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
        bool new_text = o->len > st->sent_len[i];
        bool new_toks = c->logprobs >= 0 && o->n_toks > st->sent_toks[i];
        if (new_text || (new_toks && o->finish == FINISH_NONE)) {
            cJSON *lp = c->logprobs >= 0 ? logprobs_json(st->ctx, c, o, st->sent_toks[i],
                                                         o->n_toks, st->sent_len[i])
                                         : NULL;
            /* o->text is still NULL when only logprobs are new (no byte of text yet) */
            emit(buf, len, cap, chunk(st, i, o->text ? o->text + st->sent_len[i] : NULL,
                                      o->len - st->sent_len[i], false, NULL, lp));
            st->sent_len[i] = o->len;
            st->sent_toks[i] = o->n_toks;
        }
        if (o->finish != FINISH_NONE) {
            cJSON *lp = c->logprobs >= 0 && o->n_toks > st->sent_toks[i]
                            ? logprobs_json(st->ctx, c, o, st->sent_toks[i], o->n_toks,
                                            st->sent_len[i])
                            : NULL;
            emit(buf, len, cap, chunk(st, i, c->chat ? NULL : "", 0, false,
                                      finish_name(o->finish), lp));
            st->sent_toks[i] = o->n_toks;
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
        cJSON_AddItemToObject(r, "usage", usage_json(j));
        emit(buf, len, cap, r);
        st->sent_usage = true;
    }
    if (!failed) emit_raw(buf, len, cap, "data: [DONE]\n\n");
    st->sent_done = true;
    return true;
}
