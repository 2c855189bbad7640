/* jinja_parse: template source -> syntax tree. A lexer that applies Jinja's whitespace rules
 * (trim_blocks, lstrip_blocks, {%- -%}, one trailing newline dropped, \r\n read as \n), then a
 * recursive-descent parser with Jinja's operator precedence. Everything it allocates lives in
 * one pool freed by jinja_free. Unsupported constructs are errors here, at load time. */
#include "jinja_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pool ---- */

typedef struct pool_block {
    struct pool_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} pool_block;

typedef struct {
    pool_block *head;
    bool oom;
} pool;

static void *pool_alloc(pool *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!p->head || p->head->used + n > p->head->cap) {
        size_t cap = n > 16384 ? n : 16384;
        pool_block *b = malloc(sizeof *b + cap);
        if (!b) {
            p->oom = true;
            return NULL;
        }
        b->next = p->head;
        b->used = 0;
        b->cap = cap;
        p->head = b;
    }
    void *r = p->head->data + p->head->used;
    p->head->used += n;
    memset(r, 0, n);
    return r;
}

static void pool_free(pool *p) {
    for (pool_block *b = p->head, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    p->head = NULL;
}

/* ---- tokens ---- */

typedef enum {
    T_TEXT,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STR,
    T_INT,
    T_FLOAT,
    T_OP,
    T_EOF
} tkind;

typedef struct {
    tkind k;
    int line;
    const char *s; /* T_TEXT, T_STR, T_NAME: NUL-terminated in the pool; T_OP: the operator */
    size_t n;
    int64_t i;
    double f;
} token;

typedef struct {
    pool *p;
    const char *src;
    size_t len, pos;
    int line;
    token *toks;
    int n, cap;
    char *err;
    size_t errlen;
    bool failed;
    /* parser */
    int at;
    int loop_depth, macro_depth;
    int nest; /* brackets, unary operators and blocks open: see nest_in */
    size_t lc_pos; /* line_at's cursor: src[0..lc_pos) holds lc_line - 1 newlines */
    int lc_line;
} P;

static void *fail(P *P, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *fail(P *P, int line, const char *fmt, ...) {
    if (P->failed) return NULL;
    P->failed = true;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (P->err && P->errlen) snprintf(P->err, P->errlen, "%s (line %d)", msg, line);
    return NULL;
}

static token *push(P *P, tkind k) {
    if (P->n == P->cap) {
        int cap = P->cap ? P->cap * 2 : 256;
        token *t = realloc(P->toks, (size_t)cap * sizeof *t);
        if (!t) return fail(P, P->line, "out of memory parsing the template");
        P->toks = t;
        P->cap = cap;
    }
    token *t = &P->toks[P->n++];
    memset(t, 0, sizeof *t);
    t->k = k;
    t->line = P->line;
    return t;
}

static char *pool_strndup(P *P, const char *s, size_t n) {
    char *r = pool_alloc(P->p, n + 1);
    if (!r) return fail(P, P->line, "out of memory parsing the template");
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
static bool is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* Adds template text s[0..n), with \r\n and \r read as \n. */
static void add_text(P *P, const char *s, size_t n) {
    if (n == 0) return;
    char *r = pool_alloc(P->p, n + 1);
    if (!r) {
        fail(P, P->line, "out of memory parsing the template");
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            r[m++] = '\n';
            if (i + 1 < n && s[i + 1] == '\n') i++;
        } else {
            r[m++] = s[i];
        }
    }
    r[m] = '\0';
    token *t = push(P, T_TEXT);
    if (!t) return;
    t->s = r;
    t->n = m;
}

static int count_lines(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == '\n';
    return k;
}

/* The line of src[pos]; positions only grow, so the count goes on from the last call. */
static int line_at(P *P, size_t pos) {
    if (pos < P->lc_pos) {
        P->lc_pos = 0;
        P->lc_line = 1;
    }
    P->lc_line += count_lines(P->src + P->lc_pos, pos - P->lc_pos);
    P->lc_pos = pos;
    return P->lc_line;
}

/* Reads a string literal at P->pos (a quote); Python escapes. */
static int lex_string(P *P) {
    char q = P->src[P->pos++];
    size_t start = P->pos;
    while (P->pos < P->len && P->src[P->pos] != q) {
        if (P->src[P->pos] == '\\') P->pos++;
        P->pos++;
    }
    if (P->pos >= P->len) return fail(P, P->line, "unterminated string literal"), -1;
    size_t end = P->pos++;
    char *r = pool_alloc(P->p, end - start + 1);
    if (!r) return fail(P, P->line, "out of memory parsing the template"), -1;
    size_t m = 0;
    for (size_t i = start; i < end; i++) {
        char c = P->src[i];
        if (c != '\\' || i + 1 >= end) {
            if (c == '\n') P->line++;
            r[m++] = c;
            continue;
        }
        char e = P->src[++i];
        switch (e) {
        case 'n':
            r[m++] = '\n';
            break;
        case 't':
            r[m++] = '\t';
            break;
        case 'r':
            r[m++] = '\r';
            break;
        case '0':
            r[m++] = '\0';
            break;
        case 'b':
            r[m++] = '\b';
            break;
        case 'f':
            r[m++] = '\f';
            break;
        case 'v':
            r[m++] = '\v';
            break;
        case 'a':
            r[m++] = '\a';
            break;
        case '\\':
        case '\'':
        case '"':
            r[m++] = e;
            break;
        case '\n':
            break; /* a line continuation */
        case 'x':
        case 'u':
        case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (i + (size_t)nd >= end) goto literal;
            unsigned long cp = 0;
            for (int d = 1; d <= nd; d++) {
                char h = P->src[i + (size_t)d];
                int v = is_digit(h)                          ? h - '0'
                        : (h | 32) >= 'a' && (h | 32) <= 'f' ? (h | 32) - 'a' + 10
                                                             : -1;
                if (v < 0) goto literal;
                cp = cp * 16 + (unsigned long)v;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) goto literal;
            i += (size_t)nd;
            if (cp < 0x80) {
                r[m++] = (char)cp;
            } else if (cp < 0x800) {
                r[m++] = (char)(0xC0 | cp >> 6);
                r[m++] = (char)(0x80 | (cp & 63));
            } else if (cp < 0x10000) {
                r[m++] = (char)(0xE0 | cp >> 12);
                r[m++] = (char)(0x80 | ((cp >> 6) & 63));
                r[m++] = (char)(0x80 | (cp & 63));
            } else {
                r[m++] = (char)(0xF0 | cp >> 18);
                r[m++] = (char)(0x80 | ((cp >> 12) & 63));
                r[m++] = (char)(0x80 | ((cp >> 6) & 63));
                r[m++] = (char)(0x80 | (cp & 63));
            }
            break;
        }
        default:
        literal: /* Python keeps an unknown escape as written */
            r[m++] = '\\';
            r[m++] = e;
        }
    }
    r[m] = '\0';
    token *t = push(P, T_STR);
    if (!t) return -1;
    t->s = r;
    t->n = m;
    return 0;
}

static const char *const ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                  "/",  "%",  "~",  "<",  ">",  "|",  ".", ",", ":",
                                  "(",  ")",  "[",  "]",  "{",  "}",  "="};

/* Lexes the inside of a tag up to its end delimiter (end: "}}" or "%}"); returns whether the
 * end carried '-' (strip the whitespace after). -1 on error. */
static int lex_tag(P *P, char endc) {
    int depth = 0;
    for (;;) {
        while (P->pos < P->len && is_ws(P->src[P->pos])) {
            if (P->src[P->pos] == '\n') P->line++;
            P->pos++;
        }
        if (P->pos >= P->len) return fail(P, P->line, "unterminated tag"), -1;
        const char *s = P->src + P->pos;
        size_t left = P->len - P->pos;
        if (depth == 0) {
            if (left >= 3 && s[0] == '-' && s[1] == endc && s[2] == '}') {
                P->pos += 3;
                return 1;
            }
            if (left >= 2 && s[0] == endc && s[1] == '}') {
                P->pos += 2;
                return 0;
            }
        }
        char c = s[0];
        if (c == '\'' || c == '"') {
            if (lex_string(P)) return -1;
            continue;
        }
        if (is_name_start(c)) {
            size_t n = 1;
            while (n < left && (is_name_start(s[n]) || is_digit(s[n])))
                n++;
            token *t = push(P, T_NAME);
            if (!t || !(t->s = pool_strndup(P, s, n))) return -1;
            t->n = n;
            P->pos += n;
            continue;
        }
        if (is_digit(c)) {
            size_t n = 0;
            bool fl = false;
            while (n < left && (is_digit(s[n]) || s[n] == '_'))
                n++;
            if (n + 1 < left && s[n] == '.' && is_digit(s[n + 1])) {
                fl = true;
                n++;
                while (n < left && is_digit(s[n]))
                    n++;
            }
            if (n < left && (s[n] == 'e' || s[n] == 'E')) {
                size_t k = n + 1;
                if (k < left && (s[k] == '+' || s[k] == '-')) k++;
                if (k < left && is_digit(s[k])) {
                    fl = true;
                    n = k;
                    while (n < left && is_digit(s[n]))
                        n++;
                }
            }
            char buf[64];
            size_t m = 0;
            for (size_t i = 0; i < n && m < sizeof buf - 1; i++)
                if (s[i] != '_') buf[m++] = s[i];
            buf[m] = '\0';
            token *t = push(P, fl ? T_FLOAT : T_INT);
            if (!t) return -1;
            if (fl)
                t->f = strtod(buf, NULL);
            else
                t->i = strtoll(buf, NULL, 10);
            P->pos += n;
            continue;
        }
        size_t k = 0;
        while (k < sizeof ops / sizeof ops[0] &&
               (strlen(ops[k]) > left || memcmp(s, ops[k], strlen(ops[k])) != 0))
            k++;
        if (k == sizeof ops / sizeof ops[0])
            return fail(P, P->line, "unexpected character '%c' in a tag", c), -1;
        if (c == '(' || c == '[' || c == '{') depth++;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
        token *t = push(P, T_OP);
        if (!t) return -1;
        t->s = ops[k];
        t->n = strlen(ops[k]);
        P->pos += t->n;
    }
}

/* Whether the block tag at src[at] (just after "{%" and its modifier) is the word w alone. */
static bool tag_is(const char *s, size_t left, const char *w) {
    size_t i = 0;
    while (i < left && is_ws(s[i]))
        i++;
    size_t n = strlen(w);
    if (left - i < n || strncmp(s + i, w, n) != 0) return false;
    i += n;
    while (i < left && is_ws(s[i]))
        i++;
    return i < left && (s[i] == '%' || s[i] == '-');
}

/* A {# comment #} whose body starts at P->pos (in the source's first len bytes): skipped,
 * with trim_blocks. 1 when it ends with -#}, 0 when not, -1 when it is unterminated. */
static int lex_comment(P *P, size_t len) {
    const char *src = P->src, *e = NULL;
    for (size_t i = P->pos; i + 1 < len; i++)
        if (src[i] == '#' && src[i + 1] == '}') {
            e = src + i;
            break;
        }
    if (!e) return fail(P, P->line, "unterminated comment"), -1;
    const bool strip_after = e > src + P->pos && e[-1] == '-';
    P->line += count_lines(src + P->pos, (size_t)(e - src) - P->pos);
    P->pos = (size_t)(e - src) + 2;
    if (!strip_after && P->pos < len && src[P->pos] == '\n') P->pos++; /* trim_blocks */
    return strip_after;
}

/* {% raw %}...{% endraw %}, the raw tag's body starting at P->pos: the text between,
 * untouched, as one text token. 1 when the end tag ends with -%}, 0 when not, -1 on an error.
 * The source need not be NUL-terminated (a GGUF string): searches stay within len. */
static int lex_raw(P *P, size_t len) {
    const char *src = P->src;
    const char *e = memmem(src + P->pos, len - P->pos, "%}", 2);
    if (!e) return fail(P, P->line, "unterminated raw tag"), -1;
    bool strip_in = e[-1] == '-';
    size_t body = (size_t)(e - src) + 2;
    size_t i = body, endtag = 0, endclose = 0;
    for (; i + 2 < len; i++) {
        if (src[i] == '{' && src[i + 1] == '%') {
            size_t j = i + 2 + (src[i + 2] == '-' || src[i + 2] == '+');
            if (tag_is(src + j, len - j, "endraw")) {
                endtag = i;
                const char *c = memmem(src + j, len - j, "%}", 2);
                endclose = c ? (size_t)(c - src) : 0;
                break;
            }
        }
    }
    if (!endclose) return fail(P, P->line, "{%% raw %%} without {%% endraw %%}"), -1;
    size_t ra = body, rb = endtag;
    if (strip_in) /* no trim_blocks after {% raw %}, as in jinja2 */
        while (ra < rb && is_ws(src[ra]))
            ra++;
    if (src[endtag + 2] == '-') {
        while (rb > ra && is_ws(src[rb - 1]))
            rb--;
    } else if (src[endtag + 2] != '+') {
        size_t l = rb;
        while (l > ra && (src[l - 1] == ' ' || src[l - 1] == '\t'))
            l--;
        if (l > ra && src[l - 1] == '\n') rb = l;
    }
    add_text(P, src + ra, rb - ra);
    P->line += count_lines(src + P->pos, endclose - P->pos);
    const bool strip_after = src[endclose - 1] == '-';
    P->pos = endclose + 2;
    if (!strip_after && P->pos < len && src[P->pos] == '\n') P->pos++;
    return strip_after;
}

static int lex(P *P) {
    const char *src = P->src;
    size_t len = P->len;
    if (len > 0 && src[len - 1] == '\n') len--; /* keep_trailing_newline=False */
    if (len > 0 && src[len - 1] == '\r') len--;
    P->len = len;
    bool line_starting = true, strip_next = false;
    while (P->pos <= len && !P->failed) {
        size_t start = P->pos;
        const char *open = NULL;
        for (size_t i = start; i + 1 < len; i++) {
            if (src[i] == '{' && (src[i + 1] == '{' || src[i + 1] == '%' || src[i + 1] == '#')) {
                open = src + i;
                break;
            }
        }
        size_t text_end = open ? (size_t)(open - src) : len;
        size_t a = start, b = text_end;
        if (strip_next)
            while (a < b && is_ws(src[a]))
                a++;
        char kind = open ? open[1] : 0;
        char mod = open && open + 2 < src + len ? open[2] : 0;
        if (open && mod == '-') {
            while (b > a && is_ws(src[b - 1]))
                b--;
        } else if (open && mod != '+' && kind != '{') { /* lstrip_blocks */
            size_t l = b;
            while (l > a && (src[l - 1] == ' ' || src[l - 1] == '\t'))
                l--;
            if ((l > a && src[l - 1] == '\n') || (l == a && (a > start || line_starting))) b = l;
        }
        P->line = line_at(P, a); /* tags and trimmed whitespace count too */
        add_text(P, src + a, b - a);
        P->line = line_at(P, text_end);
        if (!open) break;
        P->pos = text_end + 2 + (mod == '-' || mod == '+');
        int strip;
        if (kind == '#') {
            strip = lex_comment(P, len);
        } else if (kind == '%' && tag_is(src + P->pos, len - P->pos, "raw")) {
            strip = lex_raw(P, len);
        } else {
            if (!push(P, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN)) return -1;
            strip = lex_tag(P, kind == '{' ? '}' : '%');
            if (strip < 0) return -1;
            if (!push(P, kind == '{' ? T_VAR_END : T_BLOCK_END)) return -1;
            if (kind == '%' && strip != 1 && P->pos < len && src[P->pos] == '\n')
                P->pos++; /* trim_blocks */
        }
        if (strip < 0) return -1;
        const bool strip_after = strip == 1;
        strip_next = strip_after;
        line_starting = P->pos > 0 && src[P->pos - 1] == '\n';
        if (strip_after) {
            size_t q = P->pos;
            while (q < len && is_ws(src[q]))
                q++;
            if (q > P->pos) line_starting = src[q - 1] == '\n';
        }
    }
    return P->failed ? -1 : push(P, T_EOF) ? 0 : -1;
}

/* ---- parser ---- */

static token *peek(P *P) {
    return &P->toks[P->at];
}
static token *next(P *P) {
    token *t = &P->toks[P->at];
    if (t->k != T_EOF) P->at++;
    return t;
}
static bool is_op(token *t, const char *op) {
    return t->k == T_OP && strcmp(t->s, op) == 0;
}
static bool is_name(token *t, const char *w) {
    return t->k == T_NAME && strcmp(t->s, w) == 0;
}
static bool accept_op(P *P, const char *op) {
    if (!is_op(peek(P), op)) return false;
    next(P);
    return true;
}
static bool accept_name(P *P, const char *w) {
    if (!is_name(peek(P), w)) return false;
    next(P);
    return true;
}
static const char *describe(token *t) {
    switch (t->k) {
    case T_NAME:
    case T_OP:
        return t->s;
    case T_STR:
        return "a string";
    case T_INT:
    case T_FLOAT:
        return "a number";
    case T_VAR_END:
        return "}}";
    case T_BLOCK_END:
        return "%}";
    case T_EOF:
        return "the end of the template";
    default:
        return "text";
    }
}
static bool expect_op(P *P, const char *op) {
    if (accept_op(P, op)) return true;
    fail(P, peek(P)->line, "expected '%s', found '%s'", op, describe(peek(P)));
    return false;
}
static const char *expect_name(P *P) {
    token *t = next(P);
    if (t->k != T_NAME) return fail(P, t->line, "expected a name, found '%s'", describe(t));
    return t->s;
}

static jnode *mk(P *P, jnode_kind k, int line) {
    jnode *n = pool_alloc(P->p, sizeof *n);
    if (!n) return fail(P, line, "out of memory parsing the template");
    n->kind = k;
    n->line = line;
    return n;
}

/* A growable array of node pointers, copied into the pool when done. */
typedef struct {
    jnode **v;
    const char **kw;
    int n, cap;
} nvec;
static bool nv_push(P *P, nvec *v, jnode *x, const char *kw) {
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 8;
        jnode **nv = pool_alloc(P->p, (size_t)cap * sizeof *nv);
        const char **nk = pool_alloc(P->p, (size_t)cap * sizeof *nk);
        if (!nv || !nk) return fail(P, P->line, "out of memory parsing the template"), false;
        if (v->n) {
            memcpy(nv, v->v, (size_t)v->n * sizeof *nv);
            memcpy(nk, v->kw, (size_t)v->n * sizeof *nk);
        }
        v->v = nv;
        v->kw = nk;
        v->cap = cap;
    }
    v->v[v->n] = x;
    v->kw[v->n++] = kw;
    return true;
}

static jnode *expr(P *P);
static jnode *or_expr(P *P);

/* The parser's recursions (a bracketed or unary operand, a block, an elif) each enter a level:
 * past JINJA_MAX_NESTING the template is refused, so that the parser's stack and the tree the
 * renderer walks stay shallow. The caller of a true nest_in decrements P->nest afterwards. */
static bool nest_in(P *P, int line) {
    if (P->nest >= JINJA_MAX_NESTING) {
        fail(P, line, "expressions or blocks nested deeper than %d levels", JINJA_MAX_NESTING);
        return false;
    }
    P->nest++;
    return true;
}

static bool kw_any(const nvec *v) {
    for (int i = 0; i < v->n; i++)
        if (v->kw[i]) return true;
    return false;
}

/* ( args ) after the '(' was consumed: positional and name=value. */
static bool call_args(P *P, jnode *n) {
    nvec v = {0};
    while (!accept_op(P, ")")) {
        if (v.n && !expect_op(P, ",")) return false;
        if (accept_op(P, ")")) break;
        const char *kw = NULL;
        if (peek(P)->k == T_NAME && is_op(&P->toks[P->at + 1], "=")) {
            kw = next(P)->s;
            next(P);
        }
        jnode *a = expr(P);
        if (!a || !nv_push(P, &v, a, kw)) return false;
    }
    n->args = v.v;
    n->kw = kw_any(&v) ? v.kw : NULL;
    n->n_args = v.n;
    return true;
}

static jnode *primary(P *P) {
    token *t = next(P);
    jnode *n;
    switch (t->k) {
    case T_NAME:
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True") || !strcmp(t->s, "false") ||
            !strcmp(t->s, "False")) {
            if (!(n = mk(P, E_LIT, t->line))) return NULL;
            n->lit.k = JV_BOOL;
            n->lit.b = t->s[0] == 't' || t->s[0] == 'T';
            return n;
        }
        if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            if (!(n = mk(P, E_LIT, t->line))) return NULL;
            n->lit.k = JV_NONE;
            return n;
        }
        if (!(n = mk(P, E_NAME, t->line))) return NULL;
        n->name = t->s;
        return n;
    case T_STR: {
        /* adjacent literals concatenate, as in Python */
        size_t total = t->n;
        int k = P->at;
        while (P->toks[k].k == T_STR)
            total += P->toks[k++].n;
        char *s = pool_alloc(P->p, total + 1);
        if (!s || !(n = mk(P, E_LIT, t->line))) return fail(P, t->line, "out of memory");
        memcpy(s, t->s, t->n);
        size_t m = t->n;
        while (peek(P)->k == T_STR) {
            token *u = next(P);
            memcpy(s + m, u->s, u->n);
            m += u->n;
        }
        s[m] = '\0';
        n->lit.k = JV_STR;
        n->lit.str.s = s;
        n->lit.str.n = m;
        return n;
    }
    case T_INT:
    case T_FLOAT:
        if (!(n = mk(P, E_LIT, t->line))) return NULL;
        n->lit.k = t->k == T_INT ? JV_INT : JV_FLOAT;
        if (t->k == T_INT)
            n->lit.i = t->i;
        else
            n->lit.f = t->f;
        return n;
    case T_OP:
        if (is_op(t, "(")) {
            if (accept_op(P, ")")) return mk(P, E_TUPLE, t->line);
            jnode *e = expr(P);
            if (!e) return NULL;
            if (!is_op(peek(P), ",")) return expect_op(P, ")") ? e : NULL;
            nvec v = {0};
            if (!nv_push(P, &v, e, NULL)) return NULL;
            while (accept_op(P, ",")) {
                if (is_op(peek(P), ")")) break;
                if (!(e = expr(P)) || !nv_push(P, &v, e, NULL)) return NULL;
            }
            if (!expect_op(P, ")") || !(n = mk(P, E_TUPLE, t->line))) return NULL;
            n->args = v.v;
            n->n_args = v.n;
            return n;
        }
        if (is_op(t, "[") || is_op(t, "{")) {
            bool dict = is_op(t, "{");
            const char *close = dict ? "}" : "]";
            nvec v = {0};
            while (!accept_op(P, close)) {
                if (v.n && !expect_op(P, ",")) return NULL;
                if (accept_op(P, close)) break;
                jnode *e = expr(P);
                if (!e || !nv_push(P, &v, e, NULL)) return NULL;
                if (dict) {
                    if (!expect_op(P, ":") || !(e = expr(P)) || !nv_push(P, &v, e, NULL))
                        return NULL;
                }
            }
            if (!(n = mk(P, dict ? E_DICT : E_LIST, t->line))) return NULL;
            n->args = v.v;
            n->n_args = v.n;
            return n;
        }
        break;
    default:
        break;
    }
    return fail(P, t->line, "unexpected '%s' in an expression", describe(t));
}

static jnode *postfix(P *P, jnode *n) {
    while (n) {
        token *t = peek(P);
        if (is_op(t, ".")) {
            next(P);
            token *a = next(P);
            jnode *m = mk(P, E_ATTR, t->line);
            if (!m) return NULL;
            m->a = n;
            if (a->k == T_NAME) {
                m->name = a->s;
            } else if (a->k == T_INT) { /* x.0 is x[0] */
                m->kind = E_ITEM;
                if (!(m->b = mk(P, E_LIT, t->line))) return NULL;
                m->b->lit.k = JV_INT;
                m->b->lit.i = a->i;
            } else {
                return fail(P, t->line, "expected an attribute name after '.'");
            }
            if (m->kind == E_ATTR && is_op(peek(P), "(") && !jinja_known_method(m->name))
                return fail(P, t->line, "unsupported method '%s()'", m->name);
            n = m;
        } else if (is_op(t, "[")) {
            next(P);
            jnode *parts[3] = {0};
            bool slice = false;
            for (int k = 0; k < 3; k++) {
                if (!is_op(peek(P), ":") && !is_op(peek(P), "]"))
                    if (!(parts[k] = expr(P))) return NULL;
                if (k < 2 && accept_op(P, ":"))
                    slice = true;
                else
                    break;
            }
            if (!expect_op(P, "]")) return NULL;
            jnode *m = mk(P, slice ? E_SLICE : E_ITEM, t->line);
            if (!m) return NULL;
            m->a = n;
            m->b = parts[0];
            m->c = parts[1];
            m->d = parts[2];
            if (!slice && !m->b) return fail(P, t->line, "empty subscript");
            n = m;
        } else if (is_op(t, "(")) {
            next(P);
            jnode *m = mk(P, E_CALL, t->line);
            if (!m) return NULL;
            m->a = n;
            if (!call_args(P, m)) return NULL;
            n = m;
        } else {
            break;
        }
    }
    return n;
}

static jnode *unary(P *P);

/* filters and tests after a unary operand: x | f(args) | g, x is [not] t(args) */
static jnode *filters(P *P, jnode *n) {
    while (n) {
        token *t = peek(P);
        if (is_op(t, "|")) {
            next(P);
            const char *name = expect_name(P);
            if (!name) return NULL;
            if (!jinja_known_filter(name))
                return fail(P, t->line, "unsupported Jinja filter '%s'", name);
            jnode *m = mk(P, E_FILTER, t->line);
            if (!m) return NULL;
            m->a = n;
            m->name = name;
            if (accept_op(P, "(") && !call_args(P, m)) return NULL;
            n = m;
        } else if (is_name(t, "is")) {
            next(P);
            jnode *m = mk(P, E_TEST, t->line);
            if (!m) return NULL;
            m->op = accept_name(P, "not");
            token *nt = next(P);
            const char *name = nt->k == T_NAME ? nt->s : NULL;
            if (!name) return fail(P, nt->line, "expected a test name after 'is'");
            if (!jinja_known_test(name))
                return fail(P, t->line, "unsupported Jinja test '%s'", name);
            m->a = n;
            m->name = name;
            token *u = peek(P);
            if (accept_op(P, "(")) {
                if (!call_args(P, m)) return NULL;
            } else if (u->k == T_STR || u->k == T_INT || u->k == T_FLOAT ||
                       (u->k == T_NAME && !is_name(u, "and") && !is_name(u, "or") &&
                        !is_name(u, "else") && !is_name(u, "if") && !is_name(u, "is") &&
                        !is_name(u, "in") && !is_name(u, "not"))) {
                jnode *arg = postfix(P, primary(P)); /* `is sameas false` */
                if (!arg) return NULL;
                m->args = pool_alloc(P->p, sizeof *m->args);
                if (!m->args) return fail(P, t->line, "out of memory");
                m->args[0] = arg;
                m->n_args = 1;
            }
            n = m;
        } else {
            break;
        }
    }
    return n;
}

static jnode *unary(P *P) {
    token *t = peek(P);
    if (!nest_in(P, t->line)) return NULL;
    jnode *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        n = mk(P, is_op(t, "-") ? E_NEG : E_POS, t->line);
        if (n && !(n->a = unary(P))) n = NULL;
    } else {
        n = filters(P, postfix(P, primary(P)));
    }
    P->nest--;
    return n;
}

static jnode *bin(P *P, int op, jnode *a, jnode *b, int line) {
    if (!a || !b) return NULL;
    jnode *n = mk(P, E_BIN, line);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *power(P *P) {
    jnode *n = unary(P);
    while (n && is_op(peek(P), "**")) {
        int line = next(P)->line;
        n = bin(P, BIN_POW, n, unary(P), line);
    }
    return n;
}

static jnode *math2(P *P) {
    jnode *n = power(P);
    for (;;) {
        token *t = peek(P);
        int op = is_op(t, "*")    ? BIN_MUL
                 : is_op(t, "/")  ? BIN_DIV
                 : is_op(t, "//") ? BIN_FLOORDIV
                 : is_op(t, "%")  ? BIN_MOD
                                  : 0;
        if (!n || !op) return n;
        next(P);
        n = bin(P, op, n, power(P), t->line);
    }
}

static jnode *concat(P *P) {
    jnode *n = math2(P);
    while (n && is_op(peek(P), "~")) {
        int line = next(P)->line;
        n = bin(P, BIN_CONCAT, n, math2(P), line);
    }
    return n;
}

static jnode *math1(P *P) {
    jnode *n = concat(P);
    for (;;) {
        token *t = peek(P);
        int op = is_op(t, "+") ? BIN_ADD : is_op(t, "-") ? BIN_SUB : 0;
        if (!n || !op) return n;
        next(P);
        n = bin(P, op, n, concat(P), t->line);
    }
}

static jnode *compare(P *P) {
    jnode *n = math1(P), *last = NULL; /* last: the right operand of the previous comparison */
    for (;;) {
        token *t = peek(P);
        int op = is_op(t, "==")     ? BIN_EQ
                 : is_op(t, "!=")   ? BIN_NE
                 : is_op(t, "<")    ? BIN_LT
                 : is_op(t, "<=")   ? BIN_LE
                 : is_op(t, ">")    ? BIN_GT
                 : is_op(t, ">=")   ? BIN_GE
                 : is_name(t, "in") ? BIN_IN
                                    : 0;
        if (!op && is_name(t, "not") && is_name(&P->toks[P->at + 1], "in")) {
            next(P);
            op = BIN_NOTIN;
        }
        if (!n || !op) return n;
        next(P);
        jnode *rhs = math1(P);
        if (!last) {
            n = bin(P, op, n, rhs, t->line);
        } else { /* a < b < c is (a < b) and (b < c), as in Python (b evaluated twice) */
            jnode *m = mk(P, E_AND, t->line);
            if (!m || !(m->b = bin(P, op, last, rhs, t->line))) return NULL;
            m->a = n;
            n = m;
        }
        last = rhs;
    }
}

static jnode *not_expr(P *P) {
    token *t = peek(P);
    if (!is_name(t, "not")) return compare(P);
    if (!nest_in(P, t->line)) return NULL;
    next(P);
    jnode *n = mk(P, E_NOT, t->line);
    if (n && !(n->a = not_expr(P))) n = NULL;
    P->nest--;
    return n;
}

static jnode *and_expr(P *P) {
    jnode *n = not_expr(P);
    while (n && is_name(peek(P), "and")) {
        int line = next(P)->line;
        jnode *m = mk(P, E_AND, line);
        if (!m) return NULL;
        m->a = n;
        if (!(m->b = not_expr(P))) return NULL;
        n = m;
    }
    return n;
}

static jnode *or_expr(P *P) {
    jnode *n = and_expr(P);
    while (n && is_name(peek(P), "or")) {
        int line = next(P)->line;
        jnode *m = mk(P, E_OR, line);
        if (!m) return NULL;
        m->a = n;
        if (!(m->b = and_expr(P))) return NULL;
        n = m;
    }
    return n;
}

static jnode *expr(P *P) {
    jnode *n = or_expr(P);
    while (n && is_name(peek(P), "if")) {
        int line = next(P)->line;
        jnode *m = mk(P, E_COND, line);
        if (!m) return NULL;
        m->b = n;
        if (!(m->a = or_expr(P))) return NULL;
        if (accept_name(P, "else") && !(m->c = expr(P))) return NULL;
        n = m;
    }
    return n;
}

/* An expression, or a bare tuple `a, b` (for {% set a, b = ... %} values). */
static jnode *tuple_or_expr(P *P) {
    jnode *e = expr(P);
    if (!e || !is_op(peek(P), ",")) return e;
    nvec v = {0};
    if (!nv_push(P, &v, e, NULL)) return NULL;
    while (accept_op(P, ",")) {
        if (!(e = expr(P)) || !nv_push(P, &v, e, NULL)) return NULL;
    }
    jnode *n = mk(P, E_TUPLE, e->line);
    if (!n) return NULL;
    n->args = v.v;
    n->n_args = v.n;
    return n;
}

/* ---- statements ---- */

/* Parses statements until a block tag whose keyword is one of ends (NULL-terminated list),
 * which it leaves unconsumed after BLOCK_BEGIN; or until EOF when ends is NULL. */
static bool body(P *P, const char *const *ends, nvec *out, const char **ended);

static bool end_tag(P *P) {
    if (peek(P)->k == T_BLOCK_END) {
        next(P);
        return true;
    }
    fail(P, peek(P)->line, "expected '%%}', found '%s'", describe(peek(P)));
    return false;
}

static bool names_list(P *P, jnode *n) {
    nvec v = {0};
    bool paren = accept_op(P, "(");
    do {
        const char *name = expect_name(P);
        if (!name) return false;
        jnode *x = mk(P, E_NAME, P->line);
        if (!x) return false;
        x->name = name;
        if (!nv_push(P, &v, x, NULL)) return false;
    } while (accept_op(P, ","));
    if (paren && !expect_op(P, ")")) return false;
    n->names = pool_alloc(P->p, (size_t)v.n * sizeof *n->names);
    if (!n->names) return fail(P, P->line, "out of memory"), false;
    for (int i = 0; i < v.n; i++)
        n->names[i] = v.v[i]->name;
    n->n_names = v.n;
    return true;
}

static bool set_bodies(jnode *n, nvec *b, nvec *e) {
    n->body = b->v;
    n->n_body = b->n;
    if (e) {
        n->els = e->v;
        n->n_els = e->n;
    }
    return true;
}

static jnode *stmt_if(P *P, int line) {
    jnode *n = mk(P, N_IF, line);
    if (!n || !(n->a = expr(P)) || !end_tag(P)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    nvec b = {0}, e = {0};
    const char *ended;
    if (!body(P, ends, &b, &ended)) return NULL;
    set_bodies(n, &b, NULL);
    if (!strcmp(ended, "elif")) {
        int eline = peek(P)->line;
        if (!nest_in(P, eline)) return NULL;
        jnode *m = stmt_if(P, eline); /* consumes through endif */
        P->nest--;
        if (!m || !nv_push(P, &e, m, NULL)) return NULL;
        set_bodies(n, &b, &e);
        return n;
    }
    if (!strcmp(ended, "else")) {
        static const char *const ends2[] = {"endif", NULL};
        if (!end_tag(P) || !body(P, ends2, &e, &ended)) return NULL;
        set_bodies(n, &b, &e);
    }
    return end_tag(P) ? n : NULL;
}

static jnode *stmt_for(P *P, int line) {
    jnode *n = mk(P, N_FOR, line);
    if (!n || !names_list(P, n)) return NULL;
    if (!accept_name(P, "in")) return fail(P, line, "expected 'in' in a for tag");
    if (!(n->a = or_expr(P))) return NULL; /* `if` here is the loop filter */
    if (accept_name(P, "if") && !(n->b = expr(P))) return NULL;
    if (accept_name(P, "recursive"))
        return fail(P, line, "unsupported Jinja construct 'recursive' loop");
    if (!end_tag(P)) return NULL;
    static const char *const ends[] = {"else", "endfor", NULL};
    nvec b = {0}, e = {0};
    const char *ended;
    P->loop_depth++;
    if (!body(P, ends, &b, &ended)) return NULL;
    P->loop_depth--;
    if (!strcmp(ended, "else")) {
        static const char *const ends2[] = {"endfor", NULL};
        if (!end_tag(P) || !body(P, ends2, &e, &ended)) return NULL;
    }
    set_bodies(n, &b, &e);
    return end_tag(P) ? n : NULL;
}

static jnode *stmt_set(P *P, int line) {
    jnode *n = mk(P, N_SET, line);
    if (!n) return NULL;
    const char *name = expect_name(P);
    if (!name) return NULL;
    n->name = name;
    if (accept_op(P, ".")) {
        if (!(n->attr = expect_name(P))) return NULL;
    } else if (is_op(peek(P), ",")) {
        P->at--;
        if (!names_list(P, n)) return NULL;
        n->name = NULL;
    }
    if (accept_op(P, "=")) {
        if (!(n->a = tuple_or_expr(P))) return NULL;
        return end_tag(P) ? n : NULL;
    }
    if (n->attr || !n->name) return fail(P, line, "expected '=' in a set tag");
    if (is_op(peek(P), "|"))
        return fail(P, line, "unsupported Jinja construct 'filtered set block'");
    n->kind = N_SETBLOCK;
    if (!end_tag(P)) return NULL;
    static const char *const ends[] = {"endset", NULL};
    nvec b = {0};
    const char *ended;
    if (!body(P, ends, &b, &ended)) return NULL;
    set_bodies(n, &b, NULL);
    return end_tag(P) ? n : NULL;
}

static jnode *stmt_macro(P *P, int line) {
    jnode *n = mk(P, N_MACRO, line);
    if (!n || !(n->name = expect_name(P)) || !expect_op(P, "(")) return NULL;
    nvec names = {0}, defs = {0};
    while (!accept_op(P, ")")) {
        if (names.n && !expect_op(P, ",")) return NULL;
        const char *pn = expect_name(P);
        if (!pn) return NULL;
        jnode *x = mk(P, E_NAME, line), *d = NULL;
        if (!x) return NULL;
        x->name = pn;
        if (accept_op(P, "=") && !(d = expr(P))) return NULL;
        if (!nv_push(P, &names, x, NULL) || !nv_push(P, &defs, d, NULL)) return NULL;
    }
    n->names = pool_alloc(P->p, (size_t)(names.n + 1) * sizeof *n->names);
    if (!n->names) return fail(P, line, "out of memory");
    for (int i = 0; i < names.n; i++)
        n->names[i] = names.v[i]->name;
    n->n_names = names.n;
    n->args = defs.v;
    n->n_args = defs.n;
    if (!end_tag(P)) return NULL;
    static const char *const ends[] = {"endmacro", NULL};
    nvec b = {0};
    const char *ended;
    int saved = P->loop_depth;
    P->loop_depth = 0;
    P->macro_depth++;
    if (!body(P, ends, &b, &ended)) return NULL;
    P->macro_depth--;
    P->loop_depth = saved;
    set_bodies(n, &b, NULL);
    return end_tag(P) ? n : NULL;
}

static jnode *statement_kind(P *P) {
    token *t = next(P);
    if (t->k != T_NAME) return fail(P, t->line, "expected a tag name, found '%s'", describe(t));
    const char *w = t->s;
    if (!strcmp(w, "if")) return stmt_if(P, t->line);
    if (!strcmp(w, "for")) return stmt_for(P, t->line);
    if (!strcmp(w, "set")) return stmt_set(P, t->line);
    if (!strcmp(w, "macro")) return stmt_macro(P, t->line);
    if (!strcmp(w, "break") || !strcmp(w, "continue")) {
        if (P->loop_depth == 0) return fail(P, t->line, "'%s' outside a for loop", w);
        jnode *n = mk(P, w[0] == 'b' ? N_BREAK : N_CONTINUE, t->line);
        return n && end_tag(P) ? n : NULL;
    }
    if (!strcmp(w, "generation")) { /* Hugging Face's assistant-mask tag: renders its body */
        jnode *n = mk(P, N_BLOCK, t->line);
        static const char *const ends[] = {"endgeneration", NULL};
        nvec b = {0};
        const char *ended;
        if (!n || !end_tag(P) || !body(P, ends, &b, &ended)) return NULL;
        set_bodies(n, &b, NULL);
        return end_tag(P) ? n : NULL;
    }
    return fail(P, t->line, "unsupported Jinja construct '{%% %s %%}'", w);
}

static jnode *statement(P *P) {
    if (!nest_in(P, peek(P)->line)) return NULL;
    jnode *n = statement_kind(P);
    P->nest--;
    return n;
}

static bool body(P *P, const char *const *ends, nvec *out, const char **ended) {
    for (;;) {
        token *t = next(P);
        jnode *n = NULL;
        switch (t->k) {
        case T_EOF:
            if (!ends) return true;
            int k = 0;
            while (ends[k + 1])
                k++;
            fail(P, t->line, "missing {%% %s %%}", ends[k]);
            return false;
        case T_TEXT:
            if (!(n = mk(P, N_TEXT, t->line))) return false;
            n->lit.k = JV_STR;
            n->lit.str.s = t->s;
            n->lit.str.n = t->n;
            break;
        case T_VAR_BEGIN:
            if (!(n = mk(P, N_OUTPUT, t->line)) || !(n->a = tuple_or_expr(P))) return false;
            if (next(P)->k != T_VAR_END) {
                fail(P, t->line, "expected '}}' after an expression");
                return false;
            }
            break;
        case T_BLOCK_BEGIN: {
            token *w = peek(P);
            for (int k = 0; ends && ends[k]; k++) {
                if (is_name(w, ends[k])) {
                    next(P);
                    *ended = ends[k];
                    return true;
                }
            }
            if (w->k == T_NAME &&
                (!strncmp(w->s, "end", 3) || !strcmp(w->s, "else") || !strcmp(w->s, "elif"))) {
                fail(P, w->line, "unexpected {%% %s %%}", w->s);
                return false;
            }
            if (!(n = statement(P))) return false;
            break;
        }
        default:
            fail(P, t->line, "unexpected '%s'", describe(t));
            return false;
        }
        if (!nv_push(P, out, n, NULL)) return false;
    }
}

jinja_template *jinja_parse(const char *src, size_t len, char *err, size_t errlen) {
    pool p = {0};
    P st = {.p = &p, .src = src, .len = len, .line = 1, .err = err, .errlen = errlen, .lc_line = 1};
    jinja_template *t = NULL;
    if (!src) {
        snprintf(err, errlen, "no template");
        return NULL;
    }
    if (lex(&st) == 0) {
        nvec b = {0};
        if (body(&st, NULL, &b, NULL)) {
            t = pool_alloc(&p, sizeof *t);
            if (t) {
                t->body = b.v;
                t->n_body = b.n;
                t->pool = NULL;
            } else {
                fail(&st, 1, "out of memory parsing the template");
            }
        }
    }
    free(st.toks);
    if (!t) {
        pool_free(&p);
        return NULL;
    }
    /* the pool holds t itself: keep its head in a separate allocation */
    pool *keep = malloc(sizeof *keep);
    if (!keep) {
        pool_free(&p);
        snprintf(err, errlen, "out of memory parsing the template");
        return NULL;
    }
    *keep = p;
    t->pool = keep;
    return t;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    pool *p = t->pool;
    pool_free(p);
    free(p);
}
