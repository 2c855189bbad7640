/* json_regex: a JSON Schema `pattern` to a GBNF expression over a JSON string's contents (see
 * json_regex.h). A recursive-descent parser of the supported subset that writes GBNF as it
 * goes; anything outside the subset stops it with the offset. Owns nothing after a call. */
#include "json_regex.h"
#include "strbuf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPEAT 256  /* the largest {n,m} bound */
#define MAX_RANGES 128  /* ranges in one class */
#define MAX_DEPTH 64    /* nested groups */


typedef struct {
    const char *s;
    size_t i, n; /* the pattern's body: s[i..n) */
    bool failed;
    char *err;
    size_t errlen;
} rx;

static bool fail(rx *r, size_t at, const char *what) {
    if (!r->failed && r->err && r->errlen)
        snprintf(r->err, r->errlen, "%s (offset %zu of the pattern)", what, at);
    r->failed = true;
    return false;
}

/* One UTF-8 character at s[*i] as a code point, advancing *i; -1 when malformed. */
static long utf8_at(const char *s, size_t n, size_t *i) {
    unsigned char c = (unsigned char)s[*i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || *i + (size_t)len > n) return -1;
    long cp = len == 1 ? c : c & (0x7f >> len);
    for (int k = 1; k < len; k++) {
        unsigned char d = (unsigned char)s[*i + (size_t)k];
        if ((d & 0xc0) != 0x80) return -1;
        cp = cp << 6 | (d & 0x3f);
    }
    *i += (size_t)len;
    return cp;
}

/* Code point cp as it appears in JSON text, as a GBNF literal: `"` and `\` escaped, the
 * control characters that have short escapes as them; other control characters fail. */
static bool put_char(strbuf *o, long cp) {
    switch (cp) {
    case '"': strbuf_add(o, "\"\\\\\\\"\""); return true;   /* JSON \" */
    case '\\': strbuf_add(o, "\"\\\\\\\\\""); return true;  /* JSON \\ */
    case '\n': strbuf_add(o, "\"\\\\n\""); return true;
    case '\t': strbuf_add(o, "\"\\\\t\""); return true;
    case '\r': strbuf_add(o, "\"\\\\r\""); return true;
    case '\f': strbuf_add(o, "\"\\\\f\""); return true;
    default: break;
    }
    if (cp < 0x20) return false;
    if (cp < 0x80 && cp != '"' && cp != '\\') strbuf_add(o, "\"%c\"", (int)cp);
    else strbuf_add(o, cp <= 0xffff ? "\"\\u%04lx\"" : "\"\\U%08lx\"", cp);
    return true;
}

/* A class bound, written so that the GBNF class parser reads it back whatever it is. */
static void put_class_char(strbuf *o, long cp) {
    if ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
        strbuf_add(o, "%c", (int)cp);
    else if (cp < 0x80) strbuf_add(o, "\\x%02lx", cp);
    else strbuf_add(o, cp <= 0xffff ? "\\u%04lx" : "\\U%08lx", cp);
}

typedef struct {
    long lo[MAX_RANGES], hi[MAX_RANGES];
    int n;
} ranges;

static bool add_range(rx *r, ranges *set, long lo, long hi) {
    if (set->n == MAX_RANGES) return fail(r, r->i, "a character class with too many ranges");
    set->lo[set->n] = lo;
    set->hi[set->n++] = hi;
    return true;
}

/* \d \w \s (or their upper-case negations, with *neg set) as ranges; false for another
 * letter. \s: the space and the escapable controls (\t \n \r \f), tighter than ECMA's. */
static bool class_escape(rx *r, char c, ranges *set, bool *neg) {
    *neg = c == 'D' || c == 'W' || c == 'S';
    switch (c) {
    case 'd': case 'D': return add_range(r, set, '0', '9');
    case 'w': case 'W':
        return add_range(r, set, 'a', 'z') && add_range(r, set, 'A', 'Z') &&
               add_range(r, set, '0', '9') && add_range(r, set, '_', '_');
    case 's': case 'S':
        return add_range(r, set, ' ', ' ') && add_range(r, set, '\t', '\n') &&
               add_range(r, set, '\f', '\r');
    default: return false;
    }
}

/* The escaped character after a backslash inside or outside a class: a code point, or -1
 * after failing. */
static long escaped_char(rx *r) {
    size_t at = r->i;
    if (r->i >= r->n) return fail(r, at, "a pattern may not end with '\\'"), -1;
    char c = r->s[r->i++];
    switch (c) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    default: break;
    }
    if (strchr("\\^$.|?*+()[]{}/-\"'", c)) return c;
    return fail(r, at - 1, "this escape is not supported in a pattern"), -1;
}

/* Writes a set of code points as GBNF: a class of the printable ones and, for `"`, `\` and
 * the escapable controls, their JSON escapes. neg: everything else (but never a control
 * character, `"` or `\`). */
static bool put_set(rx *r, strbuf *o, const ranges *set, bool neg) {
    if (neg) {
        strbuf_add(o, "[^");
        for (int k = 0; k < set->n; k++) {
            put_class_char(o, set->lo[k]);
            if (set->hi[k] != set->lo[k]) strbuf_add(o, "-"), put_class_char(o, set->hi[k]);
        }
        strbuf_add(o, "\\x22\\x5c\\x00-\\x1f]");
        return true;
    }
    int alts = 0;
    strbuf_add(o, "( ");
    static const long specials[] = {'"', '\\', '\n', '\t', '\r', '\f'};
    for (size_t k = 0; k < sizeof specials / sizeof *specials; k++)
        for (int j = 0; j < set->n; j++)
            if (specials[k] >= set->lo[j] && specials[k] <= set->hi[j]) {
                strbuf_add(o, "%s", alts++ ? " | " : "");
                put_char(o, specials[k]);
                break;
            }
    bool any = false;
    for (int k = 0; k < set->n; k++) { /* the printable part of each range */
        long lo = set->lo[k] < 0x20 ? 0x20 : set->lo[k], hi = set->hi[k];
        for (long a = lo; a <= hi;) { /* without '"' (0x22) and '\' (0x5c) */
            long b = hi;
            if (a <= '"' && '"' <= b) b = '"' - 1;
            else if (a <= '\\' && '\\' <= b) b = '\\' - 1;
            if (b >= a) {
                strbuf_add(o, any ? "" : alts++ ? " | [" : "[");
                any = true;
                put_class_char(o, a);
                if (b != a) strbuf_add(o, "-"), put_class_char(o, b);
            }
            if (b == hi) break;
            a = b + 2; /* past the character left out */
        }
    }
    if (any) strbuf_add(o, "]");
    strbuf_add(o, " )");
    return alts > 0 || fail(r, r->i, "a character class that matches nothing");
}

/* [...] from just past its '['. */
static bool parse_class(rx *r, strbuf *o) {
    ranges set = {.n = 0};
    bool neg = r->i < r->n && r->s[r->i] == '^';
    if (neg) r->i++;
    size_t open = r->i;
    while (r->i < r->n && (r->s[r->i] != ']' || r->i == open)) {
        long lo;
        if (r->s[r->i] == '\\') {
            r->i++;
            bool eneg;
            if (r->i < r->n && class_escape(r, r->s[r->i], &set, &eneg)) {
                if (eneg) return fail(r, r->i - 1, "\\D, \\W or \\S inside a class is not supported");
                r->i++;
                continue;
            }
            if (r->failed || (lo = escaped_char(r)) < 0) return false;
        } else if ((lo = utf8_at(r->s, r->n, &r->i)) < 0) {
            return fail(r, r->i, "the pattern is not valid UTF-8");
        }
        long hi = lo;
        if (r->i + 1 < r->n && r->s[r->i] == '-' && r->s[r->i + 1] != ']') {
            r->i++;
            if (r->s[r->i] == '\\') {
                r->i++;
                if ((hi = escaped_char(r)) < 0) return false;
            } else if ((hi = utf8_at(r->s, r->n, &r->i)) < 0) {
                return fail(r, r->i, "the pattern is not valid UTF-8");
            }
            if (hi < lo) return fail(r, r->i, "a class range out of order");
        }
        if (!add_range(r, &set, lo, hi)) return false;
    }
    if (r->i >= r->n) return fail(r, open - 1, "an unterminated character class");
    r->i++; /* ']' */
    return put_set(r, o, &set, neg);
}

static bool parse_alt(rx *r, strbuf *o, int depth, bool *top_bar);

/* One atom (a character, class, group or escape), written to o. */
static bool parse_atom(rx *r, strbuf *o, int depth) {
    size_t at = r->i;
    char c = r->s[r->i];
    if (c == '(') {
        r->i++;
        if (r->i + 1 < r->n && r->s[r->i] == '?' && r->s[r->i + 1] == ':') r->i += 2;
        else if (r->i < r->n && r->s[r->i] == '?')
            return fail(r, at, "lookaround and named groups are not supported");
        if (depth >= MAX_DEPTH) return fail(r, at, "groups nested too deep");
        strbuf_add(o, "( ");
        if (!parse_alt(r, o, depth + 1, NULL)) return false;
        if (r->i >= r->n || r->s[r->i] != ')') return fail(r, at, "an unclosed group");
        r->i++;
        strbuf_add(o, " )");
        return true;
    }
    if (c == '[') {
        r->i++;
        return parse_class(r, o);
    }
    if (c == '.') {
        r->i++;
        strbuf_add(o, "[^\\x22\\x5c\\x00-\\x1f]");
        return true;
    }
    if (c == '^' || c == '$')
        return fail(r, at, "'^' and '$' are supported at the ends of the pattern only");
    if (strchr("*+?{", c)) return fail(r, at, "a quantifier with nothing to repeat");
    if (c == ')') return fail(r, at, "an unmatched ')'");
    if (c == '\\') {
        r->i++;
        ranges set = {.n = 0};
        bool neg;
        if (r->i < r->n && class_escape(r, r->s[r->i], &set, &neg)) {
            r->i++;
            return put_set(r, o, &set, neg);
        }
        if (r->failed) return false;
        long cp = escaped_char(r);
        return cp >= 0 && put_char(o, cp);
    }
    long cp = utf8_at(r->s, r->n, &r->i);
    if (cp < 0) return fail(r, at, "the pattern is not valid UTF-8");
    return put_char(o, cp) || fail(r, at, "a control character in the pattern");
}

/* A quantifier after an atom, if any: 0 none, 1 written, -1 failed. */
static int parse_quantifier(rx *r, strbuf *o) {
    if (r->i >= r->n) return 0;
    char c = r->s[r->i];
    size_t at = r->i;
    if (c == '*' || c == '+' || c == '?') {
        r->i++;
        strbuf_add(o, "%c", c);
    } else if (c == '{') {
        char *end;
        long lo = strtol(r->s + r->i + 1, &end, 10), hi = lo;
        if (end == r->s + r->i + 1) return fail(r, at, "'{' must start {n}, {n,} or {n,m}"), -1;
        if (*end == ',') {
            char *e2;
            hi = strtol(end + 1, &e2, 10);
            if (e2 == end + 1) hi = -1;
            end = e2;
        }
        if (*end != '}' || (size_t)(end - r->s) >= r->n)
            return fail(r, at, "'{' must start {n}, {n,} or {n,m}"), -1;
        if (lo < 0 || lo > MAX_REPEAT || hi > MAX_REPEAT || (hi >= 0 && hi < lo))
            return fail(r, at, "a repetition bound out of range (0..256, n <= m)"), -1;
        r->i = (size_t)(end - r->s) + 1;
        if (hi < 0) strbuf_add(o, "{%ld,}", lo);
        else strbuf_add(o, "{%ld,%ld}", lo, hi);
    } else {
        return 0;
    }
    if (r->i < r->n && r->s[r->i] == '?') r->i++; /* lazy: the same strings */
    if (r->i < r->n && strchr("*+?{", r->s[r->i]))
        return fail(r, r->i, "a quantifier with nothing to repeat"), -1;
    return 1;
}

/* Atoms up to '|', ')' or the end. An empty sequence matches the empty string. */
static bool parse_seq(rx *r, strbuf *o, int depth) {
    int n = 0;
    while (r->i < r->n && r->s[r->i] != '|' && r->s[r->i] != ')') {
        strbuf atom = {0}, quant = {0};
        bool ok = parse_atom(r, &atom, depth);
        int q = ok ? parse_quantifier(r, &quant) : -1;
        if (q > 0) strbuf_add(o, "%s( %s )%s", n ? " " : "", atom.s ? atom.s : "", quant.s);
        else if (q == 0) strbuf_add(o, "%s%s", n ? " " : "", atom.s ? atom.s : "");
        if (atom.oom || quant.oom) o->oom = true;
        free(atom.s);
        free(quant.s);
        if (q < 0) return false;
        n++;
    }
    if (n == 0) strbuf_add(o, "\"\"");
    return true;
}

/* Sequences separated by '|'. *top_bar (when not NULL) says whether there was one. */
static bool parse_alt(rx *r, strbuf *o, int depth, bool *top_bar) {
    bool bar = false;
    strbuf_add(o, "( ");
    for (;;) {
        if (!parse_seq(r, o, depth)) return false;
        if (r->i >= r->n || r->s[r->i] != '|') break;
        r->i++;
        bar = true;
        strbuf_add(o, " | ");
    }
    strbuf_add(o, " )");
    if (top_bar) *top_bar = bar;
    return true;
}

char *json_regex_gbnf(const char *pattern, char *err, size_t errlen) {
    size_t n = strlen(pattern), i = 0;
    bool anchor_start = n > 0 && pattern[0] == '^', anchor_end = false;
    if (anchor_start) i = 1;
    if (n > i && pattern[n - 1] == '$') { /* unless the '$' is escaped: count backslashes */
        size_t k = n - 1, bs = 0;
        while (k > i && pattern[k - 1] == '\\') k--, bs++;
        if (bs % 2 == 0) anchor_end = true, n--;
    }
    rx r = {.s = pattern, .i = i, .n = n, .err = err, .errlen = errlen};
    strbuf o = {0};
    bool bar = false;
    if (!anchor_start) strbuf_add(&o, "char* ");
    bool ok = parse_alt(&r, &o, 0, &bar);
    if (ok && r.i < r.n) ok = fail(&r, r.i, "an unmatched ')'");
    if (ok && bar && (anchor_start || anchor_end))
        ok = fail(&r, 0, "with '|' at the top, anchors must wrap a group: ^(a|b)$");
    if (!anchor_end) strbuf_add(&o, " char*");
    if (ok && o.oom) {
        if (err && errlen) snprintf(err, errlen, "out of memory");
        ok = false;
    }
    if (!ok) {
        free(o.s);
        return NULL;
    }
    return o.s;
}
