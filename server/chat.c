/* chat: renders chat messages in a model's chat format, as text or straight into token ids.
 * One renderer per format writes into a sink that either spells special tokens out (text) or
 * turns them into ids (tokens), so the text and the ids can never disagree. Owns only the
 * buffers of one call; never exits; never parses message content for special strings. */
#include "chat.h"

#include "common.h"

#include <stdlib.h>
#include <string.h>

/* ---- names and detection ---- */

static const char *const format_names[] = {
    [CHAT_AUTO] = "auto",     [CHAT_LLAMA2] = "llama2", [CHAT_CHATML] = "chatml",
    [CHAT_ZEPHYR] = "zephyr", [CHAT_LLAMA3] = "llama3",
};
#define N_FORMATS (int)(sizeof format_names / sizeof format_names[0])

int chat_format_from_name(const char *name, chat_format *out, char *err, size_t errlen) {
    for (int f = 0; name && f < N_FORMATS; f++) {
        if (strcmp(name, format_names[f]) == 0) {
            *out = (chat_format)f;
            return 0;
        }
    }
    return ls_fail(err, errlen,
                   "unknown chat template '%s' (known: auto, llama2, chatml, "
                   "zephyr, llama3)",
                   name ? name : "(null)");
}

const char *chat_format_name(chat_format f) {
    return (int)f >= 0 && (int)f < N_FORMATS ? format_names[f] : "?";
}

static bool contains(const char *s, size_t len, const char *needle) {
    return memmem(s, len, needle, strlen(needle)) != NULL;
}

/* CHAT_AUTO when nothing is recognised. */
static chat_format guess(const char *jinja, size_t len) {
    if (!jinja) return CHAT_AUTO;
    if (contains(jinja, len, "<|start_header_id|>")) return CHAT_LLAMA3;
    if (contains(jinja, len, "<|im_start|>")) return CHAT_CHATML;
    if (contains(jinja, len, "<|user|>")) return CHAT_ZEPHYR;
    if (contains(jinja, len, "[INST]")) return CHAT_LLAMA2;
    return CHAT_AUTO;
}

chat_format chat_format_detect(const char *jinja, size_t len) {
    chat_format f = guess(jinja, len);
    return f == CHAT_AUTO ? CHAT_LLAMA2 : f;
}

chat_format chat_format_for_model(const model *m, chat_format setting, bool *detected) {
    chat_format f = CHAT_AUTO;
    if (m && m->gguf) {
        gguf_str s;
        if (gguf_get_str(m->gguf, "tokenizer.chat_template", &s, NULL, 0) == 0)
            f = guess(s.s, (size_t)s.len);
    }
    if (detected) *detected = f != CHAT_AUTO;
    if (setting != CHAT_AUTO) return setting;
    return f == CHAT_AUTO ? CHAT_LLAMA2 : f;
}

/* ---- special tokens ---- */

typedef enum {
    /* the tokenizer's own BOS and EOS */
    SP_BOS,
    SP_EOS,
    /* ChatML */
    SP_IM_START,
    SP_IM_END,
    /* Zephyr (plain text in most vocabularies) */
    SP_Z_SYSTEM,
    SP_Z_USER,
    SP_Z_ASSISTANT,
    /* Llama-3 */
    SP_START_HEADER,
    SP_END_HEADER,
    SP_EOT,
} special;

static const char *const special_text[] = {
    [SP_BOS] = "<s>",
    [SP_EOS] = "</s>",
    [SP_IM_START] = "<|im_start|>",
    [SP_IM_END] = "<|im_end|>",
    [SP_Z_SYSTEM] = "<|system|>",
    [SP_Z_USER] = "<|user|>",
    [SP_Z_ASSISTANT] = "<|assistant|>",
    [SP_START_HEADER] = "<|start_header_id|>",
    [SP_END_HEADER] = "<|end_header_id|>",
    [SP_EOT] = "<|eot_id|>",
};

/* The id special stands for in t, or -1 when t has no such piece (then it is text). */
static int special_id(const tokenizer *t, special sp) {
    if (sp == SP_BOS) return tok_bos(t);
    if (sp == SP_EOS) return tok_eos(t);
    const char *s = special_text[sp];
    return tok_piece_id(t, s, strlen(s));
}

/* ---- the sink: text, or ids ---- */

typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

typedef struct {
    strbuf text;        /* text mode: the whole prompt; token mode: the pending run of text */
    const tokenizer *t; /* NULL: text mode */
    int32_t *ids;       /* token mode: (cap) output */
    int cap;
    long n; /* ids the prompt needs so far (may exceed cap: counted, not written) */
    bool encode_failed;
} sink;

static void put_text(sink *k, const char *s, size_t n) {
    sb_put(&k->text, s, n);
}
static void put_str(sink *k, const char *s) {
    put_text(k, s, strlen(s));
}

/* Encodes the pending text run (token mode). */
static void flush_text(sink *k) {
    if (!k->t || k->text.len == 0 || k->text.oom || k->encode_failed) return;
    bool room = k->n < k->cap;
    int got = tok_encode(k->t, k->text.s, k->text.len, false, room ? k->ids + k->n : NULL,
                         room ? k->cap - (int)k->n : 0);
    if (got == TOK_ENOMEM)
        k->text.oom = true;
    else if (got < 0)
        k->encode_failed = true;
    else
        k->n += got;
    k->text.len = 0;
}

static void put_special(sink *k, special sp) {
    int id = k->t ? special_id(k->t, sp) : -1;
    if (id < 0) {
        put_str(k, special_text[sp]);
        return;
    }
    flush_text(k);
    if (k->n < k->cap) k->ids[k->n] = id;
    k->n++;
}

/* ---- validation and the formats ---- */

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role;
static const char *const role_names[] = {"system", "user", "assistant"};

/* Checks every message; fills roles (n). */
static int validate(const chat_message *msgs, int n, role *roles, char *err, size_t errlen) {
    if (!msgs || n <= 0) return ls_fail(err, errlen, "messages must not be empty");
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r) return ls_fail(err, errlen, "messages[%d]: role is missing", i);
        int k = 0;
        while (k < 3 && strcmp(r, role_names[k]) != 0)
            k++;
        if (k == 3)
            return ls_fail(err, errlen,
                           "messages[%d]: unknown role '%.64s' (expected system, "
                           "user or assistant)",
                           i, r);
        roles[i] = (role)k;
        if (!msgs[i].content && roles[i] != ROLE_ASSISTANT)
            return ls_fail(err, errlen, "messages[%d]: content must be a string", i);
    }
    return 0;
}

static const char *content_of(const chat_message *m) {
    return m->content ? m->content : "";
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* s[0..n) without leading and trailing ASCII whitespace (Python's str.strip, ASCII only). */
static void put_stripped(sink *k, const char *s, size_t n) {
    while (n > 0 && is_space(s[0]))
        s++, n--;
    while (n > 0 && is_space(s[n - 1]))
        n--;
    put_text(k, s, n);
}

static int render_llama2(sink *k, const chat_message *msgs, const role *roles, int n, char *err,
                         size_t errlen) {
    int i = 0;
    const char *sys = NULL;
    if (roles[0] == ROLE_SYSTEM) sys = content_of(&msgs[i++]);
    if (i == n)
        return ls_fail(err, errlen,
                       "messages: the llama2 chat format needs a user message "
                       "after the system message");
    strbuf first = {0}; /* the system prompt merged into the first user message */
    for (int turn = 0; i < n; i++, turn++) {
        role want = turn % 2 == 0 ? ROLE_USER : ROLE_ASSISTANT;
        if (roles[i] != want) {
            free(first.s);
            if (roles[i] == ROLE_SYSTEM)
                return ls_fail(err, errlen,
                               "messages[%d]: in the llama2 chat format a system "
                               "message may only come first",
                               i);
            return ls_fail(err, errlen,
                           "messages[%d]: role '%s' out of turn: the llama2 chat "
                           "format needs user and assistant messages alternating, starting "
                           "with user",
                           i, role_names[roles[i]]);
        }
        const char *c = content_of(&msgs[i]);
        if (want == ROLE_USER) {
            if (turn > 0) put_special(k, SP_BOS); /* after the previous reply's EOS */
            put_str(k, "[INST] ");
            if (sys && turn == 0) {
                /* Meta strips the merged text as a whole, system block included. */
                sb_put(&first, "<<SYS>>\n", 8);
                sb_put(&first, sys, strlen(sys));
                sb_put(&first, "\n<</SYS>>\n\n", 11);
                sb_put(&first, c, strlen(c));
                if (first.oom)
                    k->text.oom = true;
                else
                    put_stripped(k, first.s, first.len);
                free(first.s);
                first = (strbuf){0};
            } else {
                put_stripped(k, c, strlen(c));
            }
            put_str(k, " [/INST]");
        } else {
            put_str(k, " ");
            put_stripped(k, c, strlen(c));
            put_str(k, " ");
            put_special(k, SP_EOS);
        }
    }
    if (roles[n - 1] != ROLE_USER)
        return ls_fail(err, errlen,
                       "messages[%d]: the llama2 chat format needs the "
                       "conversation to end with a user message",
                       n - 1);
    return 0;
}

static void render_chatml(sink *k, const chat_message *msgs, const role *roles, int n) {
    for (int i = 0; i < n; i++) {
        put_special(k, SP_IM_START);
        put_str(k, role_names[roles[i]]);
        put_str(k, "\n");
        put_str(k, content_of(&msgs[i]));
        put_special(k, SP_IM_END);
        put_str(k, "\n");
    }
    put_special(k, SP_IM_START);
    put_str(k, "assistant\n");
}

static void render_zephyr(sink *k, const chat_message *msgs, const role *roles, int n) {
    static const special tag[] = {SP_Z_SYSTEM, SP_Z_USER, SP_Z_ASSISTANT};
    for (int i = 0; i < n; i++) {
        put_special(k, tag[roles[i]]);
        put_str(k, "\n");
        put_str(k, content_of(&msgs[i]));
        put_special(k, SP_EOS);
        put_str(k, "\n");
    }
    put_special(k, SP_Z_ASSISTANT);
    put_str(k, "\n");
}

static void render_llama3(sink *k, const chat_message *msgs, const role *roles, int n) {
    for (int i = 0; i < n; i++) {
        put_special(k, SP_START_HEADER);
        put_str(k, role_names[roles[i]]);
        put_special(k, SP_END_HEADER);
        put_str(k, "\n\n");
        const char *c = content_of(&msgs[i]);
        put_stripped(k, c, strlen(c));
        put_special(k, SP_EOT);
    }
    put_special(k, SP_START_HEADER);
    put_str(k, "assistant");
    put_special(k, SP_END_HEADER);
    put_str(k, "\n\n");
}

/* Renders into k; -1 with a message on a validation error or when memory runs out. */
static int render(sink *k, chat_format f, const chat_message *msgs, int n, char *err,
                  size_t errlen) {
    if ((int)f < 0 || (int)f >= N_FORMATS)
        return ls_fail(err, errlen, "unknown chat format %d", (int)f);
    if (!msgs || n <= 0) return ls_fail(err, errlen, "messages must not be empty");
    role *roles = malloc((size_t)n * sizeof *roles);
    if (!roles) {
        ls_fail(err, errlen, "out of memory rendering %d chat messages", n);
        return CHAT_ENOMEM;
    }
    int rc = validate(msgs, n, roles, err, errlen);
    if (rc == 0) {
        switch (f) {
        case CHAT_AUTO:
        case CHAT_LLAMA2:
            rc = render_llama2(k, msgs, roles, n, err, errlen);
            break;
        case CHAT_CHATML:
            render_chatml(k, msgs, roles, n);
            break;
        case CHAT_ZEPHYR:
            render_zephyr(k, msgs, roles, n);
            break;
        case CHAT_LLAMA3:
            render_llama3(k, msgs, roles, n);
            break;
        }
    }
    free(roles);
    if (rc == 0 && k->text.oom) {
        ls_fail(err, errlen, "out of memory rendering the prompt");
        rc = CHAT_ENOMEM;
    }
    return rc;
}

char *chat_render(chat_format f, const chat_message *msgs, int n, char *err, size_t errlen) {
    sink k = {0};
    put_text(&k, "", 0); /* an empty prompt is still a string */
    if (render(&k, f, msgs, n, err, errlen) < 0) {
        free(k.text.s);
        return NULL;
    }
    return k.text.s;
}

int chat_tokenize(const tokenizer *t, chat_format f, const chat_message *msgs, int n, bool add_bos,
                  int32_t *ids, int cap, char *err, size_t errlen) {
    if (!t) return ls_fail(err, errlen, "chat_tokenize: the model has no tokenizer");
    if (cap < 0 || (cap > 0 && !ids)) return ls_fail(err, errlen, "chat_tokenize: bad buffer");
    sink k = {.t = t, .ids = ids, .cap = cap};
    if (add_bos && tok_bos(t) >= 0) {
        if (k.n < cap) ids[k.n] = tok_bos(t);
        k.n++;
    }
    int rc = render(&k, f, msgs, n, err, errlen);
    if (rc == 0) flush_text(&k);
    if (rc == 0 && k.text.oom) {
        ls_fail(err, errlen, "out of memory tokenizing the prompt");
        rc = CHAT_ENOMEM;
    }
    if (rc == 0 && k.encode_failed)
        rc = ls_fail(err, errlen,
                     "the prompt could not be tokenized (too long, or a "
                     "character with no piece)");
    if (rc == 0 && k.n > cap)
        rc = ls_fail(err, errlen, "the prompt is %ld tokens, more than the %d allowed", k.n, cap);
    free(k.text.s);
    return rc == CHAT_ENOMEM ? CHAT_ENOMEM : rc < 0 ? -1 : (int)k.n;
}

/* ---- generation ---- */

static special end_of_turn(chat_format f) {
    switch (f) {
    case CHAT_CHATML:
        return SP_IM_END;
    case CHAT_LLAMA3:
        return SP_EOT;
    default:
        return SP_EOS;
    }
}

int chat_stop_ids(const tokenizer *t, chat_format f, int32_t *ids, int cap) {
    int n = 0;
    int eos = tok_eos(t), eot = special_id(t, end_of_turn(f));
    if (eos >= 0 && n < cap) ids[n++] = eos;
    if (eot >= 0 && eot != eos && n < cap) ids[n++] = eot;
    return n;
}

const char *chat_stop_text(chat_format f) {
    return special_text[end_of_turn(f)];
}
