/* grammar_parse: GBNF text to the rule table of grammar_internal.h (see grammar.h for the
 * syntax accepted and the errors). Groups and repetitions become rules of their own: x* is
 * star ::= x star | (), x{m,n} is m copies then nested optionals. Left recursion is refused
 * here, so the matcher's expansion always terminates. */
#include "grammar_internal.h"

#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool gram_grow(void **p, int *cap, int need, size_t size) {
    if (need <= *cap) return true;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * size);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

/* --------------------------------------------------------------------------- parser */

typedef struct {
    g_elem *e;
    int n, cap;
} seq;

typedef struct {
    const char *s;
    size_t n, pos;
    gram_rules *g;
    char *err;
    size_t errlen;
    bool failed;
    int depth; /* groups open */
    /* the named rules by name: open addressing, rule index + 1 per slot (0: empty), a power of
     * two at least twice the names (a linear search made 90,000 rules take a minute) */
    int *names;
    int names_cap, n_names;
} parser;

static void fail_at(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail_at(parser *p, size_t pos, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = true;
    if (!p->err || !p->errlen) return;
    int line = 1, col = 1;
    for (size_t i = 0; i < pos && i < p->n; i++) {
        if (p->s[i] == '\n') line++, col = 1;
        else col++;
    }
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "grammar: %s at line %d, column %d (offset %zu)", msg, line, col,
             pos);
}

static bool is_name_char(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

static int peek(const parser *p, size_t off) {
    return p->pos + off < p->n ? (unsigned char)p->s[p->pos + off] : -1;
}

/* Skips blanks, newlines and # comments. GBNF ends a rule at a newline; here a rule ends where
 * the next `name ::=` begins, which accepts every grammar GBNF accepts. */
static void skip_space(parser *p) {
    while (p->pos < p->n) {
        int c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            p->pos++;
        } else if (c == '#') {
            while (p->pos < p->n && p->s[p->pos] != '\n') p->pos++;
        } else {
            break;
        }
    }
}

static size_t name_len_at(const parser *p, size_t at) {
    size_t k = 0;
    while (at + k < p->n && is_name_char((unsigned char)p->s[at + k])) k++;
    return k;
}

/* Whether `name ::=` starts at the current position. */
static bool at_rule_start(const parser *p) {
    size_t k = name_len_at(p, p->pos);
    if (!k) return false;
    size_t i = p->pos + k;
    while (i < p->n && (p->s[i] == ' ' || p->s[i] == '\t')) i++;
    return i + 3 <= p->n && memcmp(p->s + i, "::=", 3) == 0;
}

/* The slot of names where rule `name` is, or the empty slot where it would go. */
static int *name_slot(parser *p, const char *name, size_t len) {
    const size_t mask = (size_t)p->names_cap - 1;
    for (size_t i = ls_hash_bytes(name, len) & mask;; i = (i + 1) & mask) {
        int *slot = &p->names[i];
        if (*slot == 0) return slot;
        const char *other = p->g->rules[*slot - 1].name;
        if (strlen(other) == len && memcmp(other, name, len) == 0) return slot;
    }
}

/* Room in names for one more: doubles it (and rehashes) when it would be half full. */
static bool names_reserve(parser *p) {
    if (2 * (p->n_names + 1) <= p->names_cap) return true;
    int cap = p->names_cap ? 2 * p->names_cap : 64;
    int *old = p->names, old_cap = p->names_cap;
    if (!(p->names = calloc((size_t)cap, sizeof *p->names))) {
        p->names = old;
        return false;
    }
    p->names_cap = cap;
    for (int i = 0; i < old_cap; i++) {
        if (!old[i]) continue;
        const char *name = p->g->rules[old[i] - 1].name;
        *name_slot(p, name, strlen(name)) = old[i];
    }
    free(old);
    return true;
}

/* The rule named name (len bytes), made (undefined, first used at pos) when new; name NULL: a
 * new unnamed rule (a group or repetition). -1 when memory is short. */
static int rule_find(parser *p, const char *name, size_t len, size_t pos) {
    gram_rules *g = p->g;
    int *slot = NULL;
    if (name) {
        if (!names_reserve(p)) goto oom;
        slot = name_slot(p, name, len);
        if (*slot) return *slot - 1;
    }
    if (!gram_grow((void **)&g->rules, &g->cap_rules, g->n_rules + 1, sizeof *g->rules)) goto oom;
    g_rule *r = &g->rules[g->n_rules];
    memset(r, 0, sizeof *r);
    if (name) {
        r->name = malloc(len + 1);
        if (!r->name) goto oom;
        memcpy(r->name, name, len);
        r->name[len] = 0;
        *slot = g->n_rules + 1;
        p->n_names++;
    }
    r->pos = pos;
    return g->n_rules++;
oom:
    fail_at(p, pos, "out of memory");
    return -1;
}

static int rule_new_synthetic(parser *p, size_t pos) { return rule_find(p, NULL, 0, pos); }

static bool seq_push(parser *p, seq *s, g_elem e) {
    if (!gram_grow((void **)&s->e, &s->cap, s->n + 1, sizeof *s->e)) {
        fail_at(p, p->pos, "out of memory");
        return false;
    }
    s->e[s->n++] = e;
    return true;
}

/* Stores the alternatives alts[0..n) (each closed here by E_END) as rule r's definition. */
static bool rule_define(parser *p, int r, seq *alts, int n) {
    gram_rules *g = p->g;
    int total = 0;
    for (int i = 0; i < n; i++) total += alts[i].n + 1;
    if (g->n_el + total > GRAM_MAX_ELEMS) {
        fail_at(p, p->pos, "grammar too large (over %d elements)", GRAM_MAX_ELEMS);
        return false;
    }
    if (!gram_grow((void **)&g->el, &g->cap_el, g->n_el + total, sizeof *g->el) ||
        !gram_grow((void **)&g->alt, &g->cap_alt, g->n_alt + n, sizeof *g->alt)) {
        fail_at(p, p->pos, "out of memory");
        return false;
    }
    g->rules[r].alt0 = g->n_alt;
    g->rules[r].n_alt = n;
    g->rules[r].defined = true;
    for (int i = 0; i < n; i++) {
        g->alt[g->n_alt++] = g->n_el;
        if (alts[i].n) memcpy(g->el + g->n_el, alts[i].e, (size_t)alts[i].n * sizeof *g->el);
        g->n_el += alts[i].n;
        g->el[g->n_el++] = (g_elem){.type = E_END};
    }
    return true;
}

/* Adds a class of ranges (pairs, n of them) and returns its element. */
static bool add_class(parser *p, uint32_t *pairs, int n, bool negate, g_elem *out) {
    /* sort by lo (insertion: classes are short), merge overlapping and adjacent ranges */
    for (int i = 1; i < n; i++) {
        uint32_t lo = pairs[2 * i], hi = pairs[2 * i + 1];
        int j = i;
        while (j > 0 && pairs[2 * (j - 1)] > lo) {
            pairs[2 * j] = pairs[2 * (j - 1)];
            pairs[2 * j + 1] = pairs[2 * (j - 1) + 1];
            j--;
        }
        pairs[2 * j] = lo;
        pairs[2 * j + 1] = hi;
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m > 0 && pairs[2 * i] <= pairs[2 * (m - 1) + 1] + 1) {
            if (pairs[2 * i + 1] > pairs[2 * (m - 1) + 1]) pairs[2 * (m - 1) + 1] = pairs[2 * i + 1];
        } else {
            pairs[2 * m] = pairs[2 * i];
            pairs[2 * m + 1] = pairs[2 * i + 1];
            m++;
        }
    }
    gram_rules *g = p->g;
    if (!gram_grow((void **)&g->rng, &g->cap_rng, g->n_rng + m + 1, 2 * sizeof *g->rng)) {
        fail_at(p, p->pos, "out of memory");
        return false;
    }
    int start = g->n_rng;
    if (!negate) {
        for (int i = 0; i < m; i++) {
            g->rng[2 * g->n_rng] = pairs[2 * i];
            g->rng[2 * g->n_rng + 1] = pairs[2 * i + 1];
            g->n_rng++;
        }
    } else { /* the complement within [0, CP_MAX]: at most m + 1 ranges */
        uint32_t next = 0;
        for (int i = 0; i < m; i++) {
            if (pairs[2 * i] > next) {
                g->rng[2 * g->n_rng] = next;
                g->rng[2 * g->n_rng + 1] = pairs[2 * i] - 1;
                g->n_rng++;
            }
            next = pairs[2 * i + 1] + 1;
        }
        if (next <= CP_MAX) {
            g->rng[2 * g->n_rng] = next;
            g->rng[2 * g->n_rng + 1] = CP_MAX;
            g->n_rng++;
        }
    }
    *out = (g_elem){.type = E_CHAR, .a = start, .n = g->n_rng - start};
    return true;
}

/* Decodes one UTF-8 character of the grammar text; -1 (and an error) when invalid. */
static long read_utf8(parser *p) {
    int c = peek(p, 0);
    if (c < 0x80) {
        p->pos++;
        return c;
    }
    int need = c >= 0xF0 && c <= 0xF4 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 && c < 0xE0 ? 1 : -1;
    if (need < 0 || c > 0xF4) goto bad;
    long v = c & (0x3F >> need);
    for (int i = 1; i <= need; i++) {
        int b = peek(p, (size_t)i);
        if (b < 0 || (b & 0xC0) != 0x80) goto bad;
        v = (v << 6) | (b & 0x3F);
    }
    p->pos += (size_t)need + 1;
    return v;
bad:
    fail_at(p, p->pos, "invalid UTF-8 in the grammar");
    return -1;
}

static long read_hex(parser *p, int digits) {
    long v = 0;
    for (int i = 0; i < digits; i++) {
        int c = peek(p, 0);
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) {
            fail_at(p, p->pos, "expected %d hex digits", digits);
            return -1;
        }
        v = v * 16 + d;
        p->pos++;
    }
    if (v > (long)CP_MAX) {
        fail_at(p, p->pos, "code point beyond U+10FFFF");
        return -1;
    }
    return v;
}

/* One character of a literal or class, escapes resolved; -1 on error. */
static long read_char(parser *p) {
    if (p->pos >= p->n) {
        fail_at(p, p->pos, "unexpected end of grammar");
        return -1;
    }
    if (p->s[p->pos] != '\\') return read_utf8(p);
    size_t at = p->pos;
    p->pos++;
    int c = peek(p, 0);
    p->pos++;
    switch (c) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case '0': return 0;
    case 'x': return read_hex(p, 2);
    case 'u': return read_hex(p, 4);
    case 'U': return read_hex(p, 8);
    case '\\': case '"': case '[': case ']': case '-': case '^': case '/': case '\'':
        return c;
    default:
        fail_at(p, at, "unknown escape '\\%c'", c > 32 && c < 127 ? c : '?');
        return -1;
    }
}

static int parse_alternates(parser *p, int rule, bool nested);

/* Wraps a run of elements into a rule of its own when a postfix operator needs one element. */
static bool as_one_elem(parser *p, seq *atom, size_t pos, g_elem *out) {
    if (atom->n == 1) {
        *out = atom->e[0];
        return true;
    }
    int r = rule_new_synthetic(p, pos);
    if (r < 0 || !rule_define(p, r, atom, 1)) return false;
    *out = (g_elem){.type = E_REF, .a = r};
    return true;
}

/* x repeated min..max times (max < 0: unbounded) appended to s. */
static bool add_repeat(parser *p, seq *s, g_elem x, long min, long max, size_t pos) {
    for (long i = 0; i < min; i++)
        if (!seq_push(p, s, x)) return false;
    if (max < 0) { /* star ::= x star | () */
        int r = rule_new_synthetic(p, pos);
        if (r < 0) return false;
        g_elem ref = {.type = E_REF, .a = r};
        seq alts[2] = {{0}, {0}};
        bool ok = seq_push(p, &alts[0], x) && seq_push(p, &alts[0], ref) &&
                  rule_define(p, r, alts, 2);
        free(alts[0].e);
        return ok && seq_push(p, s, ref);
    }
    /* opt_1 ::= x | (); opt_k ::= x opt_{k-1} | () */
    g_elem inner = {0};
    bool have_inner = false;
    for (long k = 1; k <= max - min; k++) {
        int r = rule_new_synthetic(p, pos);
        if (r < 0) return false;
        seq alts[2] = {{0}, {0}};
        bool ok = seq_push(p, &alts[0], x) && (!have_inner || seq_push(p, &alts[0], inner)) &&
                  rule_define(p, r, alts, 2);
        free(alts[0].e);
        if (!ok) return false;
        inner = (g_elem){.type = E_REF, .a = r};
        have_inner = true;
    }
    return !have_inner || seq_push(p, s, inner);
}

static long read_uint(parser *p) {
    long v = 0;
    int c = peek(p, 0);
    if (c < '0' || c > '9') return -1;
    while ((c = peek(p, 0)) >= '0' && c <= '9') {
        if (v > GRAM_MAX_REPEAT) v = GRAM_MAX_REPEAT + 1;
        else v = v * 10 + (c - '0');
        p->pos++;
    }
    return v;
}

/* A "..." literal, p->pos at its opening quote: one single-character class per character
 * into atom (none for ""). */
static bool parse_literal(parser *p, size_t start, seq *atom) {
    p->pos++;
    while (p->pos < p->n && p->s[p->pos] != '"') {
        long ch = read_char(p);
        g_elem e;
        uint32_t pr[2] = {(uint32_t)ch, (uint32_t)ch};
        if (ch < 0 || !add_class(p, pr, 1, false, &e) || !seq_push(p, atom, e)) return false;
    }
    if (p->pos >= p->n) {
        fail_at(p, start, "unterminated string literal");
        return false;
    }
    p->pos++;
    return true;
}

/* A [...] or [^...] class, p->pos at its '[': one element into atom. */
static bool parse_class(parser *p, size_t start, seq *atom) {
    p->pos++;
    bool neg = peek(p, 0) == '^';
    if (neg) p->pos++;
    uint32_t *pairs = NULL;
    int n = 0, cap = 0;
    while (p->pos < p->n && p->s[p->pos] != ']') {
        long lo = read_char(p), hi = lo;
        if (lo >= 0 && peek(p, 0) == '-' && peek(p, 1) != ']' && peek(p, 1) >= 0) {
            p->pos++;
            hi = read_char(p);
            if (hi >= 0 && hi < lo) fail_at(p, start, "character range out of order");
        }
        if (p->failed || !gram_grow((void **)&pairs, &cap, n + 1, 2 * sizeof *pairs)) {
            if (!p->failed) fail_at(p, p->pos, "out of memory");
            free(pairs);
            return false;
        }
        pairs[2 * n] = (uint32_t)lo;
        pairs[2 * n + 1] = (uint32_t)hi;
        n++;
    }
    if (p->pos >= p->n) {
        free(pairs);
        fail_at(p, start, "unterminated character class");
        return false;
    }
    p->pos++;
    g_elem e;
    bool ok = add_class(p, pairs ? pairs : (uint32_t[2]){0, 0}, n, neg, &e);
    free(pairs);
    return ok && seq_push(p, atom, e);
}

/* The postfix operator after an atom (*, +, ?, {m}, {m,} or {m,n}) into *min and *max (-1: no
 * upper bound); 1 and 1 when there is none. */
static bool parse_repeat(parser *p, long *min, long *max) {
    int c = peek(p, 0);
    *min = 1, *max = 1;
    if (c == '*') *min = 0, *max = -1;
    else if (c == '+') *min = 1, *max = -1;
    else if (c == '?') *min = 0, *max = 1;
    if (c == '*' || c == '+' || c == '?') {
        p->pos++;
        return true;
    }
    if (c != '{') return true;
    size_t bpos = p->pos;
    p->pos++;
    skip_space(p);
    *min = read_uint(p);
    skip_space(p);
    *max = *min;
    if (peek(p, 0) == ',') {
        p->pos++;
        skip_space(p);
        *max = peek(p, 0) == '}' ? -1 : read_uint(p);
        if (*max == -1 && peek(p, 0) != '}') *min = -1;
        skip_space(p);
    }
    if (*min < 0 || peek(p, 0) != '}') {
        fail_at(p, bpos, "malformed repetition {m}, {m,} or {m,n}");
        return false;
    }
    p->pos++;
    if (*min > GRAM_MAX_REPEAT || *max > GRAM_MAX_REPEAT) {
        fail_at(p, bpos, "repetition bound over %d", GRAM_MAX_REPEAT);
        return false;
    }
    if (*max >= 0 && *max < *min) {
        fail_at(p, bpos, "repetition {%ld,%ld} has max below min", *min, *max);
        return false;
    }
    return true;
}

/* One atom (literal, class, '.', group or rule name) with its postfix operator, into s. */
static bool parse_item(parser *p, seq *s) {
    size_t start = p->pos;
    int c = peek(p, 0);
    seq atom = {0};
    if (c == '"') {
        if (!parse_literal(p, start, &atom)) goto fail;
        if (atom.n == 0) { /* "" matches the empty string: nothing to add */
            skip_space(p);
            free(atom.e);
            return true;
        }
    } else if (c == '[') {
        if (!parse_class(p, start, &atom)) goto fail;
    } else if (c == '.') {
        p->pos++;
        g_elem e;
        uint32_t pr[2] = {0, CP_MAX};
        if (!add_class(p, pr, 1, false, &e) || !seq_push(p, &atom, e)) goto fail;
    } else if (c == '(') {
        if (p->depth >= GRAM_MAX_NESTING) {
            fail_at(p, start, "groups nested deeper than %d", GRAM_MAX_NESTING);
            goto fail;
        }
        p->pos++;
        int r = rule_new_synthetic(p, start);
        p->depth++;
        int rc = r < 0 ? -1 : parse_alternates(p, r, true);
        p->depth--;
        if (rc < 0) goto fail;
        if (peek(p, 0) != ')') {
            fail_at(p, p->pos, "expected ')' to close the group opened at offset %zu", start);
            goto fail;
        }
        p->pos++;
        if (!seq_push(p, &atom, (g_elem){.type = E_REF, .a = r})) goto fail;
    } else if (c >= 0 && is_name_char(c)) {
        size_t k = name_len_at(p, p->pos);
        int r = rule_find(p, p->s + p->pos, k, p->pos);
        p->pos += k;
        if (r < 0 || !seq_push(p, &atom, (g_elem){.type = E_REF, .a = r})) goto fail;
    } else {
        fail_at(p, p->pos, c < 0 ? "unexpected end of grammar" : "unexpected character '%c'",
                c >= 32 && c < 127 ? c : '?');
        goto fail;
    }
    skip_space(p);
    long min, max;
    if (!parse_repeat(p, &min, &max)) goto fail;
    if (min == 1 && max == 1) {
        for (int i = 0; i < atom.n; i++)
            if (!seq_push(p, s, atom.e[i])) goto fail;
    } else {
        g_elem x;
        if (!as_one_elem(p, &atom, start, &x) || !add_repeat(p, s, x, min, max, start))
            goto fail;
    }
    skip_space(p);
    free(atom.e);
    return true;
fail:
    free(atom.e);
    return false;
}

/* alternates ::= sequence ('|' sequence)*, defining rule. Stops at ')' (nested), at the next
 * `name ::=` or at the end. */
static int parse_alternates(parser *p, int rule, bool nested) {
    seq *alts = NULL;
    int n = 0, cap = 0, rc = -1;
    skip_space(p);
    for (;;) {
        if (!gram_grow((void **)&alts, &cap, n + 1, sizeof *alts)) {
            fail_at(p, p->pos, "out of memory");
            goto out;
        }
        memset(&alts[n], 0, sizeof alts[n]);
        n++;
        for (;;) {
            int c = peek(p, 0);
            if (c < 0 || c == '|' || c == ')' || (!nested && at_rule_start(p))) break;
            if (!parse_item(p, &alts[n - 1])) goto out;
        }
        if (peek(p, 0) != '|') break;
        p->pos++;
        skip_space(p);
    }
    if (!nested && peek(p, 0) == ')') {
        fail_at(p, p->pos, "unmatched ')'");
        goto out;
    }
    if (rule_define(p, rule, alts, n)) rc = 0;
out:
    for (int i = 0; i < n; i++) free(alts[i].e);
    free(alts);
    return rc;
}

/* nullable[r]: rule r can match the empty string. */
static void compute_nullable(const gram_rules *g, bool *nullable) {
    memset(nullable, 0, (size_t)g->n_rules * sizeof *nullable);
    for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < g->n_rules; r++) {
            if (nullable[r]) continue;
            for (int a = 0; a < g->rules[r].n_alt && !nullable[r]; a++) {
                const g_elem *e = &g->el[g->alt[g->rules[r].alt0 + a]];
                while (e->type == E_REF && nullable[e->a]) e++;
                if (e->type == E_END) nullable[r] = changed = true;
            }
        }
    }
}

/* Depth-first search from rule r0 for a rule that can reach itself without consuming input:
 * its index, or -1. color[r]: 0 unseen, 1 on the search path, 2 done. Iterative, with stk (room
 * for every rule) holding the path, since a grammar may chain 100,000 rules. */
typedef struct {
    int rule, alt, elem; /* where the walk of this rule stands */
} dfs_at;

static int left_cycle(const gram_rules *g, const bool *nullable, int r0, char *color,
                      dfs_at *stk) {
    int n = 0;
    stk[n++] = (dfs_at){r0, 0, 0};
    color[r0] = 1;
    while (n > 0) {
        dfs_at *f = &stk[n - 1];
        const g_rule *rule = &g->rules[f->rule];
        if (f->alt == rule->n_alt) { /* every alternative walked */
            color[f->rule] = 2;
            n--;
            continue;
        }
        const g_elem *e = &g->el[g->alt[rule->alt0 + f->alt] + f->elem];
        if (e->type != E_REF) { /* consumes input (or ends): the next alternative */
            f->alt++, f->elem = 0;
            continue;
        }
        if (color[e->a] == 1) return e->a;
        if (color[e->a] == 0) { /* walk it first; then this element again, as done */
            color[e->a] = 1;
            stk[n++] = (dfs_at){e->a, 0, 0};
            continue;
        }
        if (nullable[e->a]) f->elem++; /* past an empty match: the next element leads too */
        else f->alt++, f->elem = 0;
    }
    return -1;
}

gram_rules *gram_parse(const char *text, size_t len, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    gram_rules *g = calloc(1, sizeof *g);
    parser p = {.s = text, .n = text ? len : 0, .g = g, .err = err, .errlen = errlen};
    bool *nullable = NULL;
    char *color = NULL;
    dfs_at *stk = NULL;
    if (!g) {
        fail_at(&p, 0, "out of memory");
        return NULL;
    }
    skip_space(&p);
    while (!p.failed && p.pos < p.n) {
        size_t start = p.pos;
        size_t k = name_len_at(&p, p.pos);
        if (!k || !at_rule_start(&p)) {
            fail_at(&p, p.pos, "expected a rule definition 'name ::= ...'");
            break;
        }
        int r = rule_find(&p, p.s + p.pos, k, p.pos);
        if (r < 0) break;
        if (g->rules[r].defined) {
            fail_at(&p, start, "rule '%s' is defined twice", g->rules[r].name);
            break;
        }
        g->rules[r].pos = start;
        p.pos += k;
        while (p.s[p.pos] != ':') p.pos++;
        p.pos += 3;
        if (parse_alternates(&p, r, false) < 0) break;
    }
    if (p.failed) goto fail;
    for (int r = 0; r < g->n_rules; r++)
        if (!g->rules[r].defined) {
            fail_at(&p, g->rules[r].pos, "rule '%s' is used but never defined", g->rules[r].name);
            goto fail;
        }
    g->root = -1;
    for (int r = 0; r < g->n_rules; r++)
        if (g->rules[r].name && strcmp(g->rules[r].name, "root") == 0) g->root = r;
    if (g->root < 0) {
        fail_at(&p, p.n, "no 'root' rule");
        goto fail;
    }
    nullable = malloc((size_t)g->n_rules * sizeof *nullable);
    color = calloc((size_t)g->n_rules, 1);
    stk = malloc((size_t)g->n_rules * sizeof *stk);
    if (!nullable || !color || !stk) {
        fail_at(&p, 0, "out of memory");
        goto fail;
    }
    compute_nullable(g, nullable);
    for (int r = 0; r < g->n_rules; r++) {
        if (color[r]) continue;
        int c = left_cycle(g, nullable, r, color, stk);
        if (c >= 0) {
            if (g->rules[c].name)
                fail_at(&p, g->rules[c].pos, "rule '%s' is left-recursive", g->rules[c].name);
            else
                fail_at(&p, g->rules[c].pos,
                        "a repetition of something that may be empty (or left recursion)");
            goto fail;
        }
    }
    /* the start, expanded as the matcher will: nothing left means it nests too deep */
    gram_state *st = gram_state_create(g, NULL);
    if (!st) fail_at(&p, 0, "out of memory");
    else if (gram_state_n_stacks(st) == 0)
        fail_at(&p, g->rules[g->root].pos,
                "the grammar nests deeper than %d elements before its first character",
                GRAM_MAX_STACK);
    gram_state_free(st);
    if (p.failed) goto fail;
    free(nullable);
    free(color);
    free(stk);
    free(p.names);
    return g;
fail:
    free(nullable);
    free(color);
    free(stk);
    free(p.names);
    gram_rules_free(g);
    return NULL;
}

void gram_rules_free(gram_rules *g) {
    if (!g) return;
    for (int i = 0; i < g->n_rules; i++) free(g->rules[i].name);
    free(g->rules);
    free(g->el);
    free(g->rng);
    free(g->alt);
    free(g);
}

int gram_rules_count(const gram_rules *g) { return g ? g->n_rules : 0; }
