/* chat_template: the prompt format serve uses: a model's own Jinja chat template (or one from
 * --chat-template-file) rendered by jinja.c, or one of chat.c's built-in formats. Also the
 * message shapes clients send (content parts, the developer role, tool messages), and the
 * prompt's token ids: special-token strings are parsed in template text only, never in what a
 * client wrote. Owns the parsed template; immutable after load, so any thread may render. */
#include "chat.h"

#include "common.h"
#include "jinja.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int id;
    const char *s;
    size_t n;
} special_piece;

struct chat_template {
    jinja_template *jinja;   /* NULL: the built-in format fmt */
    chat_format fmt;         /* built-in format, or the family guessed from the Jinja source */
    const char *source;      /* where it came from, for the startup summary */
    char *text;              /* the Jinja source (GET /props shows it, tools.c reads its tool
                              * syntax); NULL for a built-in format */
    char *bos, *eos;         /* the vocabulary's BOS/EOS pieces (template variables) */
    special_piece *specials; /* control and user-defined pieces, by first byte, longest first */
    int n_specials;
    int first[257]; /* specials[first[b]..first[b+1]) start with byte b */
};

static char *dup_n(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

static char *piece_text(const tokenizer *t, int id) {
    size_t n = 0;
    const char *p = id >= 0 ? tok_piece(t, id, &n) : "";
    return dup_n(p, n);
}

static int by_first_byte_then_length(const void *a, const void *b) {
    const special_piece *x = a, *y = b;
    unsigned char p = (unsigned char)x->s[0], q = (unsigned char)y->s[0];
    if (p != q) return p < q ? -1 : 1;
    return x->n < y->n ? 1 : x->n > y->n ? -1 : x->id - y->id;
}

/* The pieces a template's text may spell: control and user-defined tokens. */
static int collect_specials(chat_template *ct, const tokenizer *t) {
    int nv = tok_n_vocab(t), n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int id = 0; id < nv; id++) {
            int ty = tok_type(t, id);
            if (ty != TOK_CONTROL && ty != TOK_USER_DEFINED) continue;
            size_t len;
            const char *s = tok_piece(t, id, &len);
            if (len == 0) continue;
            if (pass == 1) ct->specials[n] = (special_piece){id, s, len};
            n++;
        }
        if (pass == 0) {
            ct->specials = calloc((size_t)(n ? n : 1), sizeof *ct->specials);
            if (!ct->specials) return -1;
            n = 0;
        }
    }
    qsort(ct->specials, (size_t)n, sizeof *ct->specials, by_first_byte_then_length);
    ct->n_specials = n;
    for (int b = 0, k = 0; b <= 256; b++) {
        while (k < n && (unsigned char)ct->specials[k].s[0] < b)
            k++;
        ct->first[b] = k;
    }
    return 0;
}

void chat_template_free(chat_template *ct) {
    if (!ct) return;
    jinja_free(ct->jinja);
    free(ct->text);
    free(ct->bos);
    free(ct->eos);
    free(ct->specials);
    free(ct);
}

static const char *const OVERRIDE_HINT =
    "; pass --chat-template NAME (llama2, chatml, zephyr, llama3) for a built-in format, or "
    "--chat-template-file PATH for a template of your own";

chat_template *chat_template_load(const model *m, chat_format setting, const char *file_src,
                                  size_t file_len, const char *file_name, char *err,
                                  size_t errlen) {
    chat_template *ct = calloc(1, sizeof *ct);
    if (!ct) {
        ls_fail(err, errlen, "out of memory loading the chat template");
        return NULL;
    }
    const tokenizer *t = m ? m->tok : NULL;
    if (t) {
        ct->bos = piece_text(t, tok_bos(t));
        ct->eos = piece_text(t, tok_eos(t));
        if (!ct->bos || !ct->eos || collect_specials(ct, t)) {
            ls_fail(err, errlen, "out of memory loading the chat template");
            goto fail;
        }
    }
    gguf_str s = {0};
    bool in_file = m && m->gguf &&
                   gguf_get_str(m->gguf, "tokenizer.chat_template", &s, NULL, 0) == 0 && s.len > 0;
    const char *src = NULL;
    size_t len = 0;
    if (file_src) {
        src = file_src;
        len = file_len;
        ct->source = "from --chat-template-file";
    } else if (setting != CHAT_AUTO) {
        ct->fmt = setting;
        ct->source = "from --chat-template";
        return ct;
    } else if (in_file) {
        src = s.s;
        len = (size_t)s.len;
        ct->source = "from the model file";
    } else {
        ct->fmt = CHAT_LLAMA2;
        ct->source = "fallback: the model file names none";
        return ct;
    }
    char jerr[256];
    ct->jinja = jinja_parse(src, len, jerr, sizeof jerr);
    if (!ct->jinja) {
        ls_fail(err, errlen, "the chat template %s%s cannot be used: %s%s",
                file_src ? "of " : "of the model file", file_src ? file_name : "", jerr,
                OVERRIDE_HINT);
        goto fail;
    }
    if (!(ct->text = dup_n(src, len))) {
        ls_fail(err, errlen, "out of memory for the chat template");
        goto fail;
    }
    ct->fmt = chat_format_detect(src, len);
    return ct;
fail:
    chat_template_free(ct);
    return NULL;
}

const chat_template *chat_template_builtin(chat_format f) {
    static const chat_template builtin[] = {
        [CHAT_AUTO] = {.fmt = CHAT_LLAMA2, .source = "built-in"},
        [CHAT_LLAMA2] = {.fmt = CHAT_LLAMA2, .source = "built-in"},
        [CHAT_CHATML] = {.fmt = CHAT_CHATML, .source = "built-in"},
        [CHAT_ZEPHYR] = {.fmt = CHAT_ZEPHYR, .source = "built-in"},
        [CHAT_LLAMA3] = {.fmt = CHAT_LLAMA3, .source = "built-in"},
    };
    return &builtin[(int)f >= 0 && f <= CHAT_LLAMA3 ? f : CHAT_LLAMA2];
}

const char *chat_template_name(const chat_template *ct) {
    return ct->jinja ? "jinja" : chat_format_name(ct->fmt);
}
const char *chat_template_source(const chat_template *ct) {
    return ct->source;
}
const char *chat_template_text(const chat_template *ct) {
    return ct->text;
}
chat_format chat_template_family(const chat_template *ct) {
    return ct->fmt;
}
bool chat_template_is_jinja(const chat_template *ct) {
    return ct->jinja != NULL;
}

/* ---- message shapes ---- */

static int bad(chat_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(chat_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}
#define OOM(e) bad(e, 503, NULL, "out of memory")

static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};

/* A deep copy, or NULL. cJSON 1.7.15's cJSON_Duplicate can return a copy that silently lacks
 * a part whose allocation failed: a copy that does not compare equal counts as a failure. */
/* Whether b has a node for every node of a, in the same places (a copy cut short by a failed
 * allocation does not). Not cJSON_Compare: it matches object members by key, so an object with a
 * duplicate key, which a client may send, never equals its own copy. */
static bool same_shape(const cJSON *a, const cJSON *b) {
    for (; a && b; a = a->next, b = b->next)
        if (a->type != b->type || !same_shape(a->child, b->child)) return false;
    return !a && !b;
}

static cJSON *dup(const cJSON *x) {
    cJSON *c = cJSON_Duplicate(x, true);
    if (c && (c->type != x->type || !same_shape(x->child, c->child))) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

/* One message as the template sees it: a copy with the developer role read as system and a
 * list of text parts joined into one string. */
static int normalize_one(const cJSON *m, int i, cJSON **out, chat_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d]", i);
    if (!cJSON_IsObject(m))
        return bad(e, 400, param, "%s must be an object with 'role' and 'content'", param);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    size_t r = 0;
    while (cJSON_IsString(role) && r < sizeof roles / sizeof roles[0] &&
           strcmp(role->valuestring, roles[r]) != 0)
        r++;
    if (!cJSON_IsString(role) || r == sizeof roles / sizeof roles[0])
        return bad(e, 400, param, "%s.role must be one of system, user, assistant, tool, developer",
                   param);
    cJSON *c = dup(m);
    if (!c) return OOM(e);
    /* developer -> system, in place: the shorter string fits where the longer one was, so
     * nothing is allocated (cJSON 1.7.15's replace functions lose a key silently when their
     * allocation fails) */
    if (r == 4) cJSON_SetValuestring(cJSON_GetObjectItemCaseSensitive(c, "role"), "system");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    if (calls && !cJSON_IsNull(calls) && (!cJSON_IsArray(calls) || r != 2)) {
        cJSON_Delete(c);
        return bad(e, 400, param, "%s.tool_calls must be an array, on an assistant message", param);
    }
    if (cJSON_IsString(content)) {
        if (!ls_utf8_valid(content->valuestring, strlen(content->valuestring))) {
            cJSON_Delete(c);
            return bad(e, 400, param, "%s.content is not valid UTF-8", param);
        }
    } else if (cJSON_IsArray(content)) {
        size_t total = 1;
        int k = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, content) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
            if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0) {
                cJSON_Delete(c);
                char pp[96];
                snprintf(pp, sizeof pp, "%s.content[%d]", param, k);
                if (cJSON_IsString(type))
                    return bad(e, 400, pp,
                               "%s: content part type '%.40s' is not supported (only 'text')", pp,
                               type->valuestring);
                return bad(e, 400, pp, "%s must be an object with a 'type'", pp);
            }
            if (!cJSON_IsString(text) ||
                !ls_utf8_valid(text->valuestring, strlen(text->valuestring))) {
                cJSON_Delete(c);
                char pp[96];
                snprintf(pp, sizeof pp, "%s.content[%d].text", param, k);
                return bad(e, 400, pp, "%s must be a UTF-8 string", pp);
            }
            total += strlen(text->valuestring) + 1;
            k++;
        }
        /* parts joined with a newline, as llama.cpp joins them for templates that take text;
         * the copy's content item becomes that string in place (no key to allocate) */
        char *joined = cJSON_malloc(total), *w = joined;
        if (!joined) goto oom;
        k = 0;
        cJSON_ArrayForEach(p, content) {
            const char *s = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
            if (k++) *w++ = '\n';
            size_t n = strlen(s);
            memcpy(w, s, n);
            w += n;
        }
        *w = '\0';
        cJSON *ci = cJSON_GetObjectItemCaseSensitive(c, "content");
        cJSON_Delete(ci->child);
        ci->child = NULL;
        ci->type = cJSON_String;
        ci->valuestring = joined;
    } else if (!cJSON_IsNull(content) || r != 2) {
        /* null content: an assistant message (e.g. one that only calls tools) */
        cJSON_Delete(c);
        return bad(e, 400, param, "%s.content must be a string or a list of text parts", param);
    }
    *out = c;
    return 0;
oom:
    cJSON_Delete(c);
    return OOM(e);
}

int chat_messages_normalize(const cJSON *messages, cJSON **out, chat_error *e) {
    *out = NULL;
    if (!cJSON_IsArray(messages))
        return bad(e, 400, "messages", "'messages' must be an array of messages");
    if (cJSON_GetArraySize(messages) == 0)
        return bad(e, 400, "messages", "'messages' must not be empty");
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return OOM(e);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        cJSON *c = NULL;
        if (normalize_one(m, i++, &c, e)) {
            cJSON_Delete(arr);
            return -1;
        }
        if (!cJSON_AddItemToArray(arr, c)) {
            cJSON_Delete(c);
            cJSON_Delete(arr);
            return OOM(e);
        }
    }
    *out = arr;
    return 0;
}

/* ---- rendering ---- */

/* Renders normalized messages with a Jinja template. */
static int render_jinja(const chat_template *ct, cJSON *msgs, const cJSON *tools, bool agp,
                        jinja_output *out, chat_error *e) {
    cJSON *data = cJSON_CreateObject(), *trusted = cJSON_CreateObject();
    int rc = -1;
    if (!data || !trusted) goto oom;
    /* the variables Hugging Face passes: messages, tools (None when absent), documents. msgs
     * is lent to data and taken back before data is deleted; a failed add leaves an item ours */
    cJSON *tl = tools && !cJSON_IsNull(tools) ? dup(tools) : cJSON_CreateNull();
    if (!tl || !cJSON_AddItemToObject(data, "tools", tl)) {
        cJSON_Delete(tl);
        goto oom;
    }
    if (!cJSON_AddItemToObject(data, "messages", msgs)) goto oom;
    if (!cJSON_AddNullToObject(data, "documents") ||
        !cJSON_AddBoolToObject(trusted, "add_generation_prompt", agp) ||
        !cJSON_AddStringToObject(trusted, "bos_token", ct->bos ? ct->bos : "") ||
        !cJSON_AddStringToObject(trusted, "eos_token", ct->eos ? ct->eos : ""))
        goto oom;
    char err[400];
    jinja_limits lim = jinja_default_limits();
    lim.max_output = 64u << 20; /* a prompt as long as any context; the body limit bounds it */
    int j = jinja_render(ct->jinja, data, trusted, &lim, out, err, sizeof err);
    if (j == JINJA_ENOMEM) goto oom;
    if (j == JINJA_ERAISE)
        bad(e, 400, "messages", "%s", err);
    else if (j)
        bad(e, 400, "messages", "the chat template failed on these messages: %s", err);
    else
        rc = 0;
    goto done;
oom:
    OOM(e);
done:
    if (data) cJSON_DetachItemFromObjectCaseSensitive(data, "messages");
    cJSON_Delete(data);
    cJSON_Delete(trusted);
    return rc;
}

/* The built-in formats take chat_message: content strings (null -> ""), no tool role. */
static chat_message *to_chat_messages(const cJSON *msgs, int *n, chat_error *e) {
    *n = cJSON_GetArraySize(msgs);
    chat_message *cm = calloc((size_t)*n, sizeof *cm);
    if (!cm) {
        OOM(e);
        return NULL;
    }
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const char *role = cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!strcmp(role, "tool")) {
            char param[64];
            snprintf(param, sizeof param, "messages[%d]", i);
            free(cm);
            bad(e, 400, param,
                "%s: the built-in chat formats have no tool role: this needs a model whose chat "
                "template handles tools",
                param);
            return NULL;
        }
        cm[i].role = role;
        cm[i].content = cJSON_IsString(c) ? c->valuestring : "";
        i++;
    }
    return cm;
}

int chat_apply(const chat_template *ct, const cJSON *messages, const cJSON *tools, bool agp,
               char **text, chat_error *e) {
    *text = NULL;
    cJSON *msgs;
    if (chat_messages_normalize(messages, &msgs, e)) return -1;
    int rc = -1;
    if (ct->jinja) {
        jinja_output out;
        if (render_jinja(ct, msgs, tools, agp, &out, e) == 0) {
            *text = out.text;
            free(out.segs);
            rc = 0;
        }
    } else {
        int n;
        chat_message *cm = to_chat_messages(msgs, &n, e);
        if (cm) {
            char err[LS_ERR_LEN];
            *text = chat_render(ct->fmt, cm, n, err, sizeof err);
            /* chat_render's only failures besides the request's: "out of memory ..." */
            rc = *text                                     ? 0
                 : strncmp(err, "out of memory", 13) == 0 ? OOM(e)
                                                          : bad(e, 400, "messages", "%s", err);
            free(cm);
        }
    }
    cJSON_Delete(msgs);
    return rc;
}

/* ---- tokens ---- */

typedef struct {
    int32_t *ids;
    int n, cap;
} idvec;

static int push_id(idvec *v, int32_t id) {
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 256;
        int32_t *p = realloc(v->ids, (size_t)cap * sizeof *p);
        if (!p) return -1;
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return 0;
}

/* Encodes a run of plain text (no special-token parsing: the tokenizer must read "<|eot_id|>"
 * in it as characters). This is the one place the prompt meets tok_encode. */
static int encode_plain(const tokenizer *t, const char *s, size_t n, idvec *v, chat_error *e) {
    if (n == 0) return 0;
    int got = tok_encode(t, s, n, false, NULL, 0);
    if (got == TOK_ENOMEM) return OOM(e);
    if (got < 0)
        return bad(e, 400, "messages",
                   "the prompt could not be tokenized (too long, or a "
                   "character with no piece)");
    while (v->cap - v->n < got) {
        int cap = v->cap ? v->cap * 2 : 256;
        while (cap - v->n < got)
            cap *= 2;
        int32_t *p = realloc(v->ids, (size_t)cap * sizeof *p);
        if (!p) return OOM(e);
        v->ids = p;
        v->cap = cap;
    }
    if (tok_encode(t, s, n, false, v->ids + v->n, got) != got) return OOM(e);
    v->n += got;
    return 0;
}

/* The longest special piece at s[0..n), or NULL. */
static const special_piece *special_at(const chat_template *ct, const char *s, size_t n) {
    unsigned char b = (unsigned char)s[0];
    for (int k = ct->first[b]; k < ct->first[b + 1]; k++) {
        const special_piece *p = &ct->specials[k];
        if (p->n <= n && memcmp(p->s, s, p->n) == 0) return p;
    }
    return NULL;
}

/* Token ids of a rendered prompt: template segments are scanned for special pieces, data
 * segments are plain text; the text between two special ids is encoded as one run, whichever
 * segments it spans (so that SentencePiece's dummy prefix goes where it went before). */
static int encode_segments(const chat_template *ct, const tokenizer *t, const jinja_output *out,
                           idvec *v, chat_error *e) {
    size_t run = 0; /* start of the pending plain-text run */
    for (int sidx = 0; sidx < out->n_segs; sidx++) {
        const jinja_segment *sg = &out->segs[sidx];
        if (!sg->from_template || ct->n_specials == 0) continue;
        size_t end = sg->start + sg->len;
        for (size_t i = sg->start; i < end; i++) {
            const special_piece *p = special_at(ct, out->text + i, end - i);
            if (!p) continue;
            if (encode_plain(t, out->text + run, i - run, v, e)) return -1;
            if (push_id(v, p->id)) return OOM(e);
            i += p->n - 1;
            run = i + 1;
        }
    }
    return encode_plain(t, out->text + run, out->len - run, v, e);
}

int chat_prompt_tokenize(const chat_template *ct, const tokenizer *t, const cJSON *messages,
                         const cJSON *tools, int32_t **ids, int *n, chat_error *e) {
    *ids = NULL;
    *n = 0;
    cJSON *msgs;
    if (chat_messages_normalize(messages, &msgs, e)) return -1;
    int rc = -1;
    idvec v = {0};
    if (ct->jinja) {
        jinja_output out;
        if (render_jinja(ct, msgs, tools, true, &out, e) == 0) {
            /* BOS: the template's own when it writes one, else the tokenizer's default */
            bool bos = tok_add_bos(t) && tok_bos(t) >= 0;
            if (bos && push_id(&v, tok_bos(t))) {
                OOM(e);
            } else if (encode_segments(ct, t, &out, &v, e) == 0) {
                if (bos && v.n > 1 && v.ids[1] == tok_bos(t)) {
                    memmove(v.ids, v.ids + 1, (size_t)(v.n - 1) * sizeof *v.ids);
                    v.n--;
                }
                rc = 0;
            }
            jinja_output_free(&out);
        }
    } else {
        int nm;
        chat_message *cm = to_chat_messages(msgs, &nm, e);
        if (cm) {
            /* room for the whole prompt: a byte never makes more than one token and a format
             * adds under 128 bytes per message */
            size_t cap = 128 * (size_t)(nm + 1);
            for (int k = 0; k < nm; k++)
                cap += strlen(cm[k].content);
            char err[LS_ERR_LEN];
            if (cap > INT32_MAX) {
                bad(e, 400, "messages", "'messages' is too long");
            } else if (!(v.ids = malloc(cap * sizeof *v.ids))) {
                OOM(e);
            } else {
                int got = chat_tokenize(t, ct->fmt, cm, nm, tok_add_bos(t), v.ids, (int)cap, err,
                                        sizeof err);
                if (got == CHAT_ENOMEM)
                    bad(e, 503, NULL, "%s", err);
                else if (got < 0)
                    bad(e, 400, "messages", "%s", err);
                else
                    v.n = got, rc = 0;
            }
            free(cm);
        }
    }
    cJSON_Delete(msgs);
    if (rc) {
        free(v.ids);
        return -1;
    }
    *ids = v.ids;
    *n = v.n;
    return 0;
}
