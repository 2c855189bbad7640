/* jinja_builtins: what templates call: the filters, the tests, the string/dict methods, the
 * global functions, and Python's str()/repr()/json.dumps of values. The name tables at the top
 * are what the parser accepts; a name outside them is an "unsupported" error at load time. */
#include "jinja_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const filter_names[] = {
    "abs",     "attr",    "capitalize", "count",  "d",      "default",    "dictsort",  "e",
    "escape",  "first",   "float",      "indent", "int",    "items",      "join",      "last",
    "length",  "list",    "lower",      "map",    "max",    "min",        "reject",    "rejectattr",
    "replace", "reverse", "round",      "safe",   "select", "selectattr", "sort",      "string",
    "sum",     "title",   "tojson",     "trim",   "unique", "upper",      "wordcount", NULL};
static const char *const test_names[] = {
    "boolean", "callable", "defined",   "divisibleby", "eq",      "equalto",  "even",   "false",
    "float",   "ge",       "gt",        "in",          "integer", "iterable", "le",     "lower",
    "lt",      "mapping",  "ne",        "none",        "number",  "odd",      "sameas", "sequence",
    "string",  "true",     "undefined", "upper",       "==",      "!=",       NULL};
static const char *const method_names[] = {
    "capitalize", "count", "endswith", "find",    "get",    "items",  "join",
    "keys",       "lower", "lstrip",   "replace", "rfind",  "rstrip", "split",
    "startswith", "strip", "title",    "upper",   "values", NULL};

static bool in_list(const char *const *l, const char *name) {
    for (; *l; l++)
        if (!strcmp(*l, name)) return true;
    return false;
}
bool jinja_known_filter(const char *name) {
    return in_list(filter_names, name);
}
bool jinja_known_test(const char *name) {
    return in_list(test_names, name);
}
bool jinja_known_method(const char *name) {
    return in_list(method_names, name);
}

/* ---- value basics ---- */

bool jv_is_num(jv v) {
    return v.k == JV_INT || v.k == JV_FLOAT || v.k == JV_BOOL;
}
double jv_num(jv v) {
    return v.k == JV_FLOAT ? v.f : v.k == JV_INT ? (double)v.i : v.k == JV_BOOL ? v.b : 0;
}

const char *jv_type_name(jv v) {
    static const char *const names[] = {"Undefined", "NoneType", "bool",    "int",
                                        "float",     "str",      "list",    "dict",
                                        "Namespace", "Macro",    "function"};
    return names[v.k];
}

bool jv_truthy(jv v) {
    switch (v.k) {
    case JV_UNDEF:
    case JV_NONE:
        return false;
    case JV_BOOL:
        return v.b;
    case JV_INT:
        return v.i != 0;
    case JV_FLOAT:
        return v.f != 0;
    case JV_STR:
        return v.str.n > 0;
    case JV_LIST:
        return v.list.n > 0;
    case JV_DICT:
        return v.dict->n > 0;
    default:
        return true;
    }
}

static bool eq_items(R *r, jv a, jv b) {
    if (a.k == JV_LIST) {
        if (a.list.n != b.list.n) return false;
        for (size_t i = 0; i < a.list.n; i++)
            if (!jv_eq(r, a.list.items[i], b.list.items[i])) return false;
        return true;
    }
    if (a.dict->n != b.dict->n) return false;
    for (size_t i = 0; i < a.dict->n; i++) {
        jv k = a.dict->keys[i];
        bool found = false;
        for (size_t j = 0; j < b.dict->n && !found; j++)
            if (jv_eq(r, k, b.dict->keys[j])) found = jv_eq(r, a.dict->vals[i], b.dict->vals[j]);
        if (!found) return false;
    }
    return true;
}

bool jv_eq(R *r, jv a, jv b) {
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.k != JV_FLOAT && b.k != JV_FLOAT)
            return (a.k == JV_BOOL ? a.b : a.i) == (b.k == JV_BOOL ? b.b : b.i);
        return jv_num(a) == jv_num(b);
    }
    if (a.k != b.k) return false;
    switch (a.k) {
    case JV_UNDEF:
    case JV_NONE:
        return true;
    case JV_STR:
        return a.str.n == b.str.n && !memcmp(a.str.s, b.str.s, a.str.n);
    case JV_LIST:
    case JV_DICT: {
        if (!jr_enter(r)) return false;
        bool eq = eq_items(r, a, b);
        jr_leave(r);
        return eq && !r->rc;
    }
    case JV_NS:
        return a.dict == b.dict;
    case JV_MACRO:
        return a.macro == b.macro;
    case JV_FUNC:
        return a.func == b.func;
    default:
        return false;
    }
}

int jv_cmp(R *r, jv a, jv b) {
    if (jv_is_num(a) && jv_is_num(b)) {
        double x = jv_num(a), y = jv_num(b);
        if (a.k != JV_FLOAT && b.k != JV_FLOAT) {
            int64_t p = a.k == JV_BOOL ? a.b : a.i, q = b.k == JV_BOOL ? b.b : b.i;
            return p < q ? -1 : p > q;
        }
        return x < y ? -1 : x > y;
    }
    if (a.k == JV_STR && b.k == JV_STR) {
        size_t n = a.str.n < b.str.n ? a.str.n : b.str.n;
        int c = memcmp(a.str.s, b.str.s, n);
        if (c) return c < 0 ? -1 : 1;
        return a.str.n < b.str.n ? -1 : a.str.n > b.str.n;
    }
    if (a.k == JV_LIST && b.k == JV_LIST) {
        if (!jr_enter(r)) return 2;
        int c = 0;
        for (size_t i = 0; i < a.list.n && i < b.list.n && !c; i++)
            c = jv_cmp(r, a.list.items[i], b.list.items[i]);
        jr_leave(r);
        if (c) return c;
        return a.list.n < b.list.n ? -1 : a.list.n > b.list.n;
    }
    jr_fail(r, JINJA_EFAIL, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a),
            jv_type_name(b));
    return 2;
}

/* Python's repr(float): the shortest digits that read back the same. */
static void float_repr(double x, char *out, size_t cap) {
    if (isnan(x)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(x)) {
        snprintf(out, cap, x < 0 ? "-inf" : "inf");
        return;
    }
    char buf[40];
    int p = 0;
    for (; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p, x);
        if (strtod(buf, NULL) == x) break;
    }
    /* buf: [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, exp;
    const char *s = buf;
    bool neg = *s == '-';
    if (neg) s++;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    digits[nd] = '\0';
    exp = atoi(s + 1);
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            o += (size_t)snprintf(out + o, cap - o, "0.");
            for (int i = 0; i < -exp - 1; i++)
                out[o++] = '0';
            o += (size_t)snprintf(out + o, cap - o, "%s", digits);
        } else {
            for (int i = 0; i <= exp || i < nd; i++) {
                if (i == exp + 1) out[o++] = '.';
                out[o++] = i < nd ? digits[i] : '0';
            }
            if (nd <= exp + 1) {
                out[o++] = '.';
                out[o++] = '0';
            }
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, (size_t)nd - 1);
            o += (size_t)nd - 1;
        }
        snprintf(out + o, cap - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static bool put(R *r, jbuf *b, const char *s) {
    return jbuf_put(r, b, s, NULL, strlen(s));
}

/* Appends v as Python's repr (quote: for strings) or str (!quote) writes it. */
static void write_py(R *r, jbuf *b, jv v, bool quote) {
    char num[48];
    switch (v.k) {
    case JV_UNDEF:
        if (quote) put(r, b, "Undefined");
        return;
    case JV_NONE:
        put(r, b, "None");
        return;
    case JV_BOOL:
        put(r, b, v.b ? "True" : "False");
        return;
    case JV_INT:
        snprintf(num, sizeof num, "%lld", (long long)v.i);
        put(r, b, num);
        return;
    case JV_FLOAT:
        float_repr(v.f, num, sizeof num);
        put(r, b, num);
        return;
    case JV_STR:
        if (!quote) {
            jbuf_put(r, b, v.str.s, v.str.u, v.str.n);
            return;
        } else {
            bool sq = memchr(v.str.s, '\'', v.str.n) != NULL;
            bool dq = memchr(v.str.s, '"', v.str.n) != NULL;
            char q = sq && !dq ? '"' : '\'';
            jbuf_put(r, b, &q, NULL, 1);
            for (size_t i = 0; i < v.str.n; i++) {
                unsigned char c = (unsigned char)v.str.s[i];
                const uint8_t *u = v.str.u ? v.str.u + i : NULL;
                if (c == '\\' || c == (unsigned char)q) {
                    char e[2] = {'\\', (char)c};
                    jbuf_put(r, b, e, NULL, 2);
                } else if (c == '\n')
                    put(r, b, "\\n");
                else if (c == '\r')
                    put(r, b, "\\r");
                else if (c == '\t')
                    put(r, b, "\\t");
                else if (c < 0x20 || c == 0x7f) {
                    snprintf(num, sizeof num, "\\x%02x", c);
                    put(r, b, num);
                } else
                    jbuf_put(r, b, (const char *)&v.str.s[i], u, 1);
            }
            jbuf_put(r, b, &q, NULL, 1);
            return;
        }
    case JV_LIST:
        if (!jr_enter(r)) return;
        put(r, b, "[");
        for (size_t i = 0; i < v.list.n && !r->rc; i++) {
            if (i) put(r, b, ", ");
            write_py(r, b, v.list.items[i], true);
        }
        put(r, b, "]");
        jr_leave(r);
        return;
    case JV_DICT:
    case JV_NS:
        if (!jr_enter(r)) return;
        put(r, b, v.k == JV_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < v.dict->n && !r->rc; i++) {
            if (i) put(r, b, ", ");
            write_py(r, b, v.dict->keys[i], true);
            put(r, b, ": ");
            write_py(r, b, v.dict->vals[i], true);
        }
        put(r, b, v.k == JV_NS ? "}>" : "}");
        jr_leave(r);
        return;
    default:
        put(r, b, v.k == JV_MACRO ? "<Macro>" : "<function>");
    }
}

jv jv_to_str(R *r, jv v) {
    if (v.k == JV_STR) return v;
    jbuf b = {0};
    write_py(r, &b, v, false);
    return jbuf_take(r, &b);
}

jv jv_repr(R *r, jv v) {
    jbuf b = {0};
    write_py(r, &b, v, true);
    return jbuf_take(r, &b);
}

/* ---- tojson ---- */

/* The order of d's keys sorted (NULL with r->rc set when they cannot be compared). */
static size_t *key_order(R *r, const jdict *d) {
    size_t *order = jr_alloc(r, d->n * sizeof *order);
    if (!order) return NULL;
    for (size_t i = 0; i < d->n; i++) /* insertion sort: dicts here are small */
        order[i] = i;
    for (size_t i = 1; i < d->n; i++)
        for (size_t j = i; j > 0 && jv_cmp(r, d->keys[order[j - 1]], d->keys[order[j]]) > 0; j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return order;
}

static void write_json(R *r, jbuf *b, jv v, int indent, int level, bool sort) {
    char num[48];
    switch (v.k) {
    case JV_UNDEF:
        jr_fail(r, JINJA_EFAIL, "Object of type Undefined is not JSON serializable");
        return;
    case JV_NONE:
        put(r, b, "null");
        return;
    case JV_BOOL:
        put(r, b, v.b ? "true" : "false");
        return;
    case JV_INT:
    case JV_FLOAT:
        if (v.k == JV_FLOAT && isnan(v.f))
            put(r, b, "NaN");
        else if (v.k == JV_FLOAT && isinf(v.f))
            put(r, b, v.f < 0 ? "-Infinity" : "Infinity");
        else
            write_py(r, b, v, false);
        return;
    case JV_STR:
        put(r, b, "\"");
        for (size_t i = 0; i < v.str.n; i++) {
            unsigned char c = (unsigned char)v.str.s[i];
            const uint8_t *u = v.str.u ? v.str.u + i : NULL;
            const char *e = c == '"'    ? "\\\""
                            : c == '\\' ? "\\\\"
                            : c == '\n' ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                            : c == '\b' ? "\\b"
                            : c == '\f' ? "\\f"
                                        : NULL;
            if (e) {
                jbuf_put(r, b, e, NULL, 2);
            } else if (c < 0x20) {
                snprintf(num, sizeof num, "\\u%04x", c);
                put(r, b, num);
            } else {
                jbuf_put(r, b, (const char *)&v.str.s[i], u, 1);
            }
        }
        put(r, b, "\"");
        return;
    case JV_LIST:
    case JV_DICT: {
        bool list = v.k == JV_LIST;
        size_t n = list ? v.list.n : v.dict->n;
        put(r, b, list ? "[" : "{");
        if (n == 0) {
            put(r, b, list ? "]" : "}");
            return;
        }
        size_t *order = !list && sort ? key_order(r, v.dict) : NULL;
        if (r->rc || !jr_enter(r)) return;
        for (size_t i = 0; i < n && !r->rc; i++) {
            if (i) put(r, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) {
                put(r, b, "\n");
                for (int k = 0; k < indent * (level + 1); k++)
                    put(r, b, " ");
            }
            if (list) {
                write_json(r, b, v.list.items[i], indent, level + 1, sort);
            } else {
                size_t k = order ? order[i] : i;
                jv key = v.dict->keys[k];
                if (key.k != JV_STR) key = jv_to_str(r, key);
                write_json(r, b, key, indent, level + 1, sort);
                put(r, b, ": ");
                write_json(r, b, v.dict->vals[k], indent, level + 1, sort);
            }
        }
        if (indent >= 0) {
            put(r, b, "\n");
            for (int k = 0; k < indent * level; k++)
                put(r, b, " ");
        }
        put(r, b, list ? "]" : "}");
        jr_leave(r);
        return;
    }
    default:
        jr_fail(r, JINJA_EFAIL, "Object of type %s is not JSON serializable", jv_type_name(v));
    }
}

jv jinja_tojson(R *r, jv v, int indent, bool sort_keys) {
    jbuf b = {0};
    write_json(r, &b, v, indent, 0, sort_keys);
    return jbuf_take(r, &b);
}

/* ---- helpers for the built-ins ---- */

/* The argument named kwname, or positional pos; *present says whether it was given. */
static jv arg(const jv *args, const char *const *kw, int n, int pos, const char *kwname,
              bool *present) {
    int p = 0;
    for (int i = 0; i < n; i++) {
        if (kw && kw[i]) {
            if (kwname && !strcmp(kw[i], kwname)) {
                if (present) *present = true;
                return args[i];
            }
        } else if (p++ == pos) {
            if (present) *present = true;
            return args[i];
        }
    }
    if (present) *present = false;
    return jr_undef(NULL);
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static jv substr(R *r, jv s, size_t a, size_t b) {
    return jr_str(r, s.str.s + a, s.str.u ? s.str.u + a : NULL, b - a);
}

/* str.strip family; which: 1 left, 2 right, 3 both; chars: a string or None/undefined for
 * whitespace. */
static jv strip(R *r, jv s, int which, jv chars) {
    size_t a = 0, b = s.str.n;
    bool ws = chars.k != JV_STR;
    if (!ws && utf8_count(chars.str.s, chars.str.n) != chars.str.n)
        return jr_fail(r, JINJA_EFAIL, "strip() with non-ASCII characters is not supported");
#define STRIPPABLE(c) (ws ? is_space(c) : memchr(chars.str.s, (c), chars.str.n) != NULL)
    if (which & 1)
        while (a < b && STRIPPABLE(s.str.s[a]))
            a++;
    if (which & 2)
        while (b > a && STRIPPABLE(s.str.s[b - 1]))
            b--;
#undef STRIPPABLE
    return substr(r, s, a, b);
}

static jv map_case(R *r, jv s, int mode) { /* 0 lower, 1 upper, 2 capitalize, 3 title */
    jv out = jr_str(r, s.str.s, s.str.u, s.str.n);
    if (r->rc) return out;
    char *p = (char *)out.str.s;
    bool start = true;
    for (size_t i = 0; i < s.str.n; i++) {
        char c = p[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool up = mode == 1 || ((mode == 2 && i == 0) || (mode == 3 && start));
        if (mode == 0 || (mode >= 2 && !up)) {
            if (c >= 'A' && c <= 'Z') p[i] = (char)(c + 32);
        } else if (up && c >= 'a' && c <= 'z') {
            p[i] = (char)(c - 32);
        }
        start = mode == 3 ? !alpha && !((unsigned char)c >= 0x80) : false;
    }
    return out;
}

static jv replace(R *r, jv s, jv old, jv new, int64_t count) {
    if (old.k != JV_STR || new.k != JV_STR)
        return jr_fail(r, JINJA_EFAIL, "replace() arguments must be strings");
    jbuf b = {0};
    size_t i = 0;
    int64_t done = 0;
    while (i <= s.str.n && !r->rc) {
        const char *hit = NULL;
        if (count < 0 || done < count) {
            if (old.str.n == 0)
                hit = s.str.s + i;
            else
                hit = memmem(s.str.s + i, s.str.n - i, old.str.s, old.str.n);
        }
        if (!hit) {
            jbuf_put(r, &b, s.str.s + i, s.str.u ? s.str.u + i : NULL, s.str.n - i);
            break;
        }
        size_t at = (size_t)(hit - s.str.s);
        jbuf_put(r, &b, s.str.s + i, s.str.u ? s.str.u + i : NULL, at - i);
        jbuf_put(r, &b, new.str.s, new.str.u, new.str.n);
        done++;
        if (old.str.n == 0) {
            if (at >= s.str.n) break;
            size_t e = at + utf8_offset(s.str.s + at, s.str.n - at, 1);
            jbuf_put(r, &b, s.str.s + at, s.str.u ? s.str.u + at : NULL, e - at);
            i = e;
            if (i == s.str.n) {
                if (count < 0 || done < count) jbuf_put(r, &b, new.str.s, new.str.u, new.str.n);
                break;
            }
        } else {
            i = at + old.str.n;
        }
    }
    if (r->rc) {
        free(b.s);
        free(b.u);
        return jr_undef(NULL);
    }
    return jbuf_take(r, &b);
}

static jv split(R *r, jv s, jv sep, int64_t maxsplit) {
    size_t cap = 8, n = 0;
    jv *items = jr_alloc(r, cap * sizeof *items);
    size_t i = 0;
    bool ws = sep.k != JV_STR;
    if (!ws && sep.str.n == 0) return jr_fail(r, JINJA_EFAIL, "split(): empty separator");
    for (;;) {
        if (!items) return jr_undef(NULL);
        if (ws)
            while (i < s.str.n && is_space(s.str.s[i]))
                i++;
        if (ws && i >= s.str.n) break;
        size_t e;
        if (maxsplit >= 0 && (int64_t)n >= maxsplit) {
            e = s.str.n;
            if (ws)
                while (e > i && is_space(s.str.s[e - 1]))
                    e--;
        } else if (ws) {
            e = i;
            while (e < s.str.n && !is_space(s.str.s[e]))
                e++;
        } else {
            const char *hit = memmem(s.str.s + i, s.str.n - i, sep.str.s, sep.str.n);
            e = hit ? (size_t)(hit - s.str.s) : s.str.n;
        }
        if (n == cap) {
            jv *ni = jr_alloc(r, cap * 2 * sizeof *ni);
            if (!ni) return jr_undef(NULL);
            memcpy(ni, items, n * sizeof *ni);
            items = ni;
            cap *= 2;
        }
        items[n++] = substr(r, s, i, e);
        if (e >= s.str.n) break;
        i = ws ? e : e + sep.str.n;
        if (!ws && i == s.str.n) { /* a trailing separator leaves an empty last part */
            if (n == cap) continue;
            items[n++] = jr_str(r, "", NULL, 0);
            break;
        }
    }
    return (jv){.k = JV_LIST, .list = {items, n}};
}

static jv join(R *r, jv seq, jv sep, const char *attr) {
    if (seq.k != JV_LIST) return jr_fail(r, JINJA_EFAIL, "join() needs a list");
    jbuf b = {0};
    for (size_t i = 0; i < seq.list.n && !r->rc; i++) {
        if (i && sep.k == JV_STR) jbuf_put(r, &b, sep.str.s, sep.str.u, sep.str.n);
        jv x = seq.list.items[i];
        if (attr && (x.k == JV_DICT || x.k == JV_NS)) {
            jv *y = jr_dict_get(x.dict, attr, strlen(attr));
            x = y ? *y : jr_undef(attr);
        }
        jv s = jv_to_str(r, x);
        if (!r->rc) jbuf_put(r, &b, s.str.s, s.str.u, s.str.n);
    }
    if (r->rc) {
        free(b.s);
        free(b.u);
        return jr_undef(NULL);
    }
    return jbuf_take(r, &b);
}

static jv items_of(R *r, jv d) {
    if (d.k == JV_UNDEF) return jr_list(r, 0);
    if (d.k != JV_DICT && d.k != JV_NS)
        return jr_fail(r, JINJA_EFAIL, "items() needs a mapping, not '%s'", jv_type_name(d));
    jv l = jr_list(r, d.dict->n);
    for (size_t i = 0; i < d.dict->n && !r->rc; i++) {
        jv pair = jr_list(r, 2);
        if (r->rc) break;
        pair.list.items[0] = d.dict->keys[i];
        pair.list.items[1] = d.dict->vals[i];
        l.list.items[i] = pair;
    }
    return l;
}

static jv as_list(R *r, jv v) {
    if (v.k == JV_LIST) return v;
    if (v.k == JV_DICT || v.k == JV_NS) {
        jv l = jr_list(r, v.dict->n);
        for (size_t i = 0; i < v.dict->n && !r->rc; i++)
            l.list.items[i] = v.dict->keys[i];
        return l;
    }
    if (v.k == JV_STR) {
        size_t k = utf8_count(v.str.s, v.str.n);
        jv l = jr_list(r, k);
        for (size_t i = 0, off = 0; i < k && !r->rc; i++) {
            size_t e = off + utf8_offset(v.str.s + off, v.str.n - off, 1);
            l.list.items[i] = substr(r, v, off, e);
            off = e;
        }
        return l;
    }
    if (v.k == JV_UNDEF) return jr_list(r, 0);
    return jr_fail(r, JINJA_EFAIL, "'%s' object is not iterable", jv_type_name(v));
}

static jv attr_of(R *r, jv x, jv name) {
    (void)r;
    if (name.k == JV_INT && x.k == JV_LIST)
        return name.i >= 0 && (size_t)name.i < x.list.n ? x.list.items[name.i] : jr_undef(NULL);
    if (name.k != JV_STR || (x.k != JV_DICT && x.k != JV_NS)) return jr_undef(NULL);
    /* a dotted path "a.b" walks nested dicts, as Jinja's attribute filters do */
    const char *s = name.str.s, *end = s + name.str.n;
    while (s < end) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        size_t n = dot ? (size_t)(dot - s) : (size_t)(end - s);
        if (x.k != JV_DICT && x.k != JV_NS) return jr_undef(NULL);
        jv *y = jr_dict_get(x.dict, s, n);
        if (!y) return jr_undef(NULL);
        x = *y;
        s += n + (dot != NULL);
    }
    return x;
}

/* select/reject/selectattr/rejectattr/map */
static jv select_items(R *r, const char *name, jv seq, const jv *args, const char *const *kw,
                       int n) {
    seq = as_list(r, seq);
    if (r->rc) return seq;
    bool by_attr = !strcmp(name, "selectattr") || !strcmp(name, "rejectattr");
    bool reject = name[0] == 'r';
    if (!strcmp(name, "map")) {
        bool has_attr;
        jv at = arg(args, kw, n, -1, "attribute", &has_attr);
        jv dflt = arg(args, kw, n, -1, "default", NULL);
        jv out = jr_list(r, seq.list.n);
        for (size_t i = 0; i < seq.list.n && !r->rc; i++) {
            if (has_attr) {
                jv v = attr_of(r, seq.list.items[i], at);
                out.list.items[i] = v.k == JV_UNDEF && dflt.k != JV_UNDEF ? dflt : v;
            } else {
                jv f = arg(args, kw, n, 0, NULL, NULL);
                if (f.k != JV_STR) return jr_fail(r, JINJA_EFAIL, "map() needs a filter name");
                if (!jinja_known_filter(f.str.s))
                    return jr_fail(r, JINJA_EFAIL, "unsupported Jinja filter '%s'", f.str.s);
                out.list.items[i] = jinja_filter(r, f.str.s, seq.list.items[i], args + 1,
                                                 kw ? kw + 1 : NULL, n - 1);
            }
        }
        return out;
    }
    int first = by_attr ? 1 : 0;
    jv test = arg(args, kw, n, first, NULL, NULL);
    jv out = jr_list(r, seq.list.n);
    size_t m = 0;
    for (size_t i = 0; i < seq.list.n && !r->rc; i++) {
        jv x = seq.list.items[i];
        if (by_attr) x = attr_of(r, x, arg(args, kw, n, 0, NULL, NULL));
        bool ok;
        if (test.k == JV_UNDEF) {
            ok = jv_truthy(x);
        } else {
            if (test.k != JV_STR || !jinja_known_test(test.str.s))
                return jr_fail(r, JINJA_EFAIL, "unsupported Jinja test '%s'",
                               test.k == JV_STR ? test.str.s : "?");
            ok = jinja_test(r, test.str.s, x, args + first + 1,
                            n - first - 1 > 0 ? n - first - 1 : 0)
                     .b;
        }
        if (ok != reject) out.list.items[m++] = seq.list.items[i];
    }
    out.list.n = m;
    return out;
}

static int cmp_ci(R *r, jv a, jv b, bool ci) {
    if (ci && a.k == JV_STR && b.k == JV_STR) {
        jv x = map_case(r, a, 0), y = map_case(r, b, 0);
        return jv_cmp(r, x, y);
    }
    return jv_cmp(r, a, b);
}

static jv sort_list(R *r, jv seq, bool reverse, bool ci, jv attribute) {
    seq = as_list(r, seq);
    jv out = jr_list(r, seq.list.n);
    if (r->rc) return out;
    if (seq.list.n) memcpy(out.list.items, seq.list.items, seq.list.n * sizeof(jv));
    for (size_t i = 1; i < out.list.n && !r->rc; i++) { /* a stable insertion sort */
        for (size_t j = i; j > 0 && !r->rc; j--) {
            jv a = out.list.items[j - 1], b = out.list.items[j];
            if (attribute.k != JV_UNDEF) {
                a = attr_of(r, a, attribute);
                b = attr_of(r, b, attribute);
            }
            int c = cmp_ci(r, a, b, ci);
            if (reverse ? c >= 0 : c <= 0) break;
            jv t = out.list.items[j];
            out.list.items[j] = out.list.items[j - 1];
            out.list.items[j - 1] = t;
        }
    }
    return out;
}

/* ---- filters ---- */

/* default(value, boolean=false): value when v is undefined (or falsy, with boolean). */
static jv filter_default(R *r, jv v, const jv *args, const char *const *kw, int n) {
    bool boolean = jv_truthy(arg(args, kw, n, 1, "boolean", NULL)), given;
    jv dflt = arg(args, kw, n, 0, "default_value", &given);
    if (v.k == JV_UNDEF || (boolean && !jv_truthy(v)))
        return given ? dflt : jr_str(r, "", NULL, 0);
    return v;
}

/* length: characters of a string, items of a list or dict, 0 for undefined. */
static jv filter_length(R *r, jv v) {
    switch (v.k) {
    case JV_STR:
        return jr_int((int64_t)utf8_count(v.str.s, v.str.n));
    case JV_LIST:
        return jr_int((int64_t)v.list.n);
    case JV_DICT:
    case JV_NS:
        return jr_int((int64_t)v.dict->n);
    case JV_UNDEF:
        return jr_int(0);
    default:
        return jr_fail(r, JINJA_EFAIL, "object of type '%s' has no len()", jv_type_name(v));
    }
}

/* reverse: a string backwards (by character) or a list's items in reverse order. */
static jv filter_reverse(R *r, jv v) {
    if (v.k == JV_STR) {
        jv l = as_list(r, v), out = jr_list(r, l.list.n);
        for (size_t i = 0; i < l.list.n && !r->rc; i++)
            out.list.items[i] = l.list.items[l.list.n - 1 - i];
        return join(r, out, jr_str(r, "", NULL, 0), NULL);
    }
    jv l = as_list(r, v), out = jr_list(r, l.list.n);
    for (size_t i = 0; i < l.list.n && !r->rc; i++)
        out.list.items[i] = l.list.items[l.list.n - 1 - i];
    return out;
}

/* unique: the items in order, each first occurrence only. */
static jv filter_unique(R *r, jv v) {
    jv l = as_list(r, v), out = jr_list(r, l.list.n);
    size_t m = 0;
    for (size_t i = 0; i < l.list.n && !r->rc; i++) {
        bool dup = false;
        for (size_t j = 0; j < m && !dup; j++)
            dup = jv_eq(r, out.list.items[j], l.list.items[i]);
        if (!dup) out.list.items[m++] = l.list.items[i];
    }
    out.list.n = m;
    return out;
}

/* min / max: the smallest or largest item (the first of equals); undefined when empty. */
static jv filter_min_max(R *r, const char *name, jv v) {
    jv l = as_list(r, v);
    if (r->rc || l.list.n == 0) return jr_undef(NULL);
    jv best = l.list.items[0];
    for (size_t i = 1; i < l.list.n && !r->rc; i++) {
        int c = jv_cmp(r, l.list.items[i], best);
        if (name[1] == 'i' ? c < 0 : c > 0) best = l.list.items[i];
    }
    return best;
}

/* sum(start=0): the items added, an int while every one is an int. */
static jv filter_sum(R *r, jv v, const jv *args, const char *const *kw, int n) {
    jv l = as_list(r, v), acc = arg(args, kw, n, 1, "start", NULL);
    if (acc.k == JV_UNDEF) acc = jr_int(0);
    for (size_t i = 0; i < l.list.n && !r->rc; i++)
        acc = (jv_is_num(acc) && jv_is_num(l.list.items[i]))
                  ? (acc.k == JV_FLOAT || l.list.items[i].k == JV_FLOAT
                         ? (jv){.k = JV_FLOAT, .f = jv_num(acc) + jv_num(l.list.items[i])}
                         : jr_int((int64_t)jv_num(acc) + (int64_t)jv_num(l.list.items[i])))
                  : jr_fail(r, JINJA_EFAIL, "sum() needs numbers");
    return acc;
}

/* int / float(default): v as a number (a string parsed as far as it goes), else a0. */
static jv filter_number(const char *name, jv v, jv a0) {
    double d = 0;
    bool ok = true;
    if (jv_is_num(v)) {
        d = jv_num(v);
    } else if (v.k == JV_STR) {
        char *end;
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)(v.str.n < 63 ? v.str.n : 63), v.str.s);
        d = strtod(buf, &end);
        ok = end != buf;
    } else {
        ok = false;
    }
    if (!ok) d = jv_num(a0);
    if (name[0] == 'i') return jr_int((int64_t)d);
    return (jv){.k = JV_FLOAT, .f = d};
}

/* indent(width=4, first=false, blank=false): every line but the first (and, with first, the
 * first too) after pad (width spaces, or the string width); blank lines only with blank. */
static jv filter_indent(R *r, jv s, const jv *args, const char *const *kw, int n) {
    jv w = arg(args, kw, n, 0, "width", NULL);
    bool first = jv_truthy(arg(args, kw, n, 1, "first", NULL));
    bool blank = jv_truthy(arg(args, kw, n, 2, "blank", NULL));
    jv pad = w;
    if (w.k != JV_STR) {
        int64_t k = w.k == JV_INT ? w.i : 4;
        if (k < 0 || k > 1024) k = 0;
        char sp[1025];
        memset(sp, ' ', (size_t)k);
        pad = jr_str(r, sp, NULL, (size_t)k);
    }
    jbuf b = {0};
    size_t i = 0;
    bool first_line = true;
    while (i < s.str.n && !r->rc) {
        size_t e = i;
        while (e < s.str.n && s.str.s[e] != '\n')
            e++;
        bool empty = e == i;
        if ((!first_line || first) && (blank || !empty))
            jbuf_put(r, &b, pad.str.s, pad.str.u, pad.str.n);
        jbuf_put(r, &b, s.str.s + i, s.str.u ? s.str.u + i : NULL, e - i + (e < s.str.n));
        first_line = false;
        i = e + 1;
    }
    return jbuf_take(r, &b);
}

jv jinja_filter(R *r, const char *name, jv v, const jv *args, const char *const *kw, int n) {
    jv a0 = arg(args, kw, n, 0, NULL, NULL);
    if (!strcmp(name, "default") || !strcmp(name, "d")) return filter_default(r, v, args, kw, n);
    if (!strcmp(name, "safe") || !strcmp(name, "e") || !strcmp(name, "escape")) {
        if (name[0] == 's') return v;
        return jr_fail(r, JINJA_EFAIL, "the escape filter is not supported (no autoescape)");
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) return filter_length(r, v);
    if (!strcmp(name, "tojson")) {
        jv ind = arg(args, kw, n, 1, "indent", NULL);
        jv sk = arg(args, kw, n, 4, "sort_keys", NULL);
        return jinja_tojson(r, v, ind.k == JV_INT ? (int)ind.i : -1, jv_truthy(sk));
    }
    if (!strcmp(name, "items")) return items_of(r, v);
    if (!strcmp(name, "list")) return as_list(r, v);
    if (!strcmp(name, "string")) return jv_to_str(r, v);
    if (!strcmp(name, "join")) {
        jv at = arg(args, kw, n, 1, "attribute", NULL);
        jv l = as_list(r, v);
        if (r->rc) return l;
        jv sep = a0.k == JV_UNDEF ? jr_str(r, "", NULL, 0) : jv_to_str(r, a0);
        return join(r, l, sep, at.k == JV_STR ? at.str.s : NULL);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jv l = as_list(r, v);
        if (r->rc || l.list.n == 0) return jr_undef(NULL);
        return l.list.items[name[0] == 'f' ? 0 : l.list.n - 1];
    }
    if (!strcmp(name, "reverse")) return filter_reverse(r, v);
    if (!strcmp(name, "select") || !strcmp(name, "reject") || !strcmp(name, "selectattr") ||
        !strcmp(name, "rejectattr") || !strcmp(name, "map"))
        return select_items(r, name, v, args, kw, n);
    if (!strcmp(name, "attr")) return attr_of(r, v, a0);
    if (!strcmp(name, "sort") || !strcmp(name, "dictsort")) {
        if (name[0] == 'd') {
            jv l = items_of(r, v);
            return sort_list(r, l, false, !arg(args, kw, n, 0, "case_sensitive", NULL).b,
                             jr_int(0));
        }
        bool cs = jv_truthy(arg(args, kw, n, 1, "case_sensitive", NULL));
        return sort_list(r, v, jv_truthy(arg(args, kw, n, 0, "reverse", NULL)), !cs,
                         arg(args, kw, n, 2, "attribute", NULL));
    }
    if (!strcmp(name, "unique")) return filter_unique(r, v);
    if (!strcmp(name, "min") || !strcmp(name, "max")) return filter_min_max(r, name, v);
    if (!strcmp(name, "sum")) return filter_sum(r, v, args, kw, n);
    if (!strcmp(name, "abs")) {
        if (v.k == JV_INT) return jr_int(v.i < 0 ? -v.i : v.i);
        if (v.k == JV_FLOAT) return (jv){.k = JV_FLOAT, .f = fabs(v.f)};
        return jr_fail(r, JINJA_EFAIL, "bad operand type for abs()");
    }
    if (!strcmp(name, "int") || !strcmp(name, "float")) return filter_number(name, v, a0);
    if (!strcmp(name, "round")) {
        int64_t prec = a0.k == JV_INT ? a0.i : 0;
        double p = pow(10, (double)prec), x = jv_num(v) * p;
        double rx = nearbyint(x);
        return (jv){.k = JV_FLOAT, .f = rx / p};
    }
    if (!strcmp(name, "wordcount")) {
        jv s = jv_to_str(r, v);
        return r->rc ? s : jr_int((int64_t)split(r, s, jr_none(), -1).list.n);
    }
    /* the rest work on strings */
    jv s = jv_to_str(r, v);
    if (r->rc) return s;
    if (!strcmp(name, "trim")) return strip(r, s, 3, a0);
    if (!strcmp(name, "upper")) return map_case(r, s, 1);
    if (!strcmp(name, "lower")) return map_case(r, s, 0);
    if (!strcmp(name, "capitalize")) return map_case(r, s, 2);
    if (!strcmp(name, "title")) return map_case(r, s, 3);
    if (!strcmp(name, "replace")) {
        jv c = arg(args, kw, n, 2, "count", NULL);
        return replace(r, s, jv_to_str(r, a0), jv_to_str(r, arg(args, kw, n, 1, "new", NULL)),
                       c.k == JV_INT ? c.i : -1);
    }
    if (!strcmp(name, "indent")) return filter_indent(r, s, args, kw, n);
    return jr_fail(r, JINJA_EFAIL, "unsupported Jinja filter '%s'", name);
}

/* ---- tests ---- */

jv jinja_test(R *r, const char *name, jv v, const jv *args, int n) {
    jv a = n > 0 ? args[0] : jr_undef(NULL);
    bool t;
    if (!strcmp(name, "defined"))
        t = v.k != JV_UNDEF;
    else if (!strcmp(name, "undefined"))
        t = v.k == JV_UNDEF;
    else if (!strcmp(name, "none"))
        t = v.k == JV_NONE;
    else if (!strcmp(name, "string"))
        t = v.k == JV_STR;
    else if (!strcmp(name, "number"))
        t = v.k == JV_INT || v.k == JV_FLOAT;
    else if (!strcmp(name, "integer"))
        t = v.k == JV_INT;
    else if (!strcmp(name, "float"))
        t = v.k == JV_FLOAT;
    else if (!strcmp(name, "boolean"))
        t = v.k == JV_BOOL;
    else if (!strcmp(name, "true"))
        t = v.k == JV_BOOL && v.b;
    else if (!strcmp(name, "false"))
        t = v.k == JV_BOOL && !v.b;
    else if (!strcmp(name, "mapping"))
        t = v.k == JV_DICT || v.k == JV_NS;
    else if (!strcmp(name, "iterable"))
        t = v.k == JV_LIST || v.k == JV_DICT || v.k == JV_STR || v.k == JV_NS;
    else if (!strcmp(name, "sequence"))
        t = v.k == JV_LIST || v.k == JV_DICT || v.k == JV_STR;
    else if (!strcmp(name, "callable"))
        t = v.k == JV_MACRO || v.k == JV_FUNC;
    else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "=="))
        t = jv_eq(r, v, a);
    else if (!strcmp(name, "ne") || !strcmp(name, "!="))
        t = !jv_eq(r, v, a);
    else if (!strcmp(name, "sameas"))
        t = v.k == a.k && (v.k == JV_NONE || v.k == JV_UNDEF || jv_eq(r, v, a));
    else if (!strcmp(name, "lt") || !strcmp(name, "le") || !strcmp(name, "gt") ||
             !strcmp(name, "ge")) {
        int c = jv_cmp(r, v, a);
        t = name[0] == 'l' ? (name[1] == 't' ? c < 0 : c <= 0) : (name[1] == 't' ? c > 0 : c >= 0);
    } else if (!strcmp(name, "in")) {
        jv l = a;
        t = false;
        if (l.k == JV_STR && v.k == JV_STR)
            t = v.str.n == 0 || memmem(l.str.s, l.str.n, v.str.s, v.str.n);
        else if (l.k == JV_LIST)
            for (size_t i = 0; i < l.list.n && !t; i++)
                t = jv_eq(r, l.list.items[i], v);
        else if (l.k == JV_DICT)
            t = jr_dict_get(l.dict, v.k == JV_STR ? v.str.s : "", v.k == JV_STR ? v.str.n : 0) &&
                v.k == JV_STR;
    } else if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (v.k != JV_INT && v.k != JV_BOOL)
            return jr_fail(r, JINJA_EFAIL, "test '%s' needs an integer", name);
        int64_t x = v.k == JV_BOOL ? v.b : v.i;
        if (name[0] == 'd') {
            if (a.k != JV_INT || a.i == 0)
                return jr_fail(r, JINJA_EFAIL, "divisibleby needs a non-zero integer");
            t = x % a.i == 0;
        } else {
            t = (x % 2 != 0) == (name[0] == 'o');
        }
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        t = false;
        if (v.k == JV_STR) {
            jv m = map_case(r, v, name[0] == 'l' ? 0 : 1);
            t = !r->rc && !memcmp(m.str.s, v.str.s, v.str.n);
        }
    } else {
        return jr_fail(r, JINJA_EFAIL, "unsupported Jinja test '%s'", name);
    }
    return jr_bool(t);
}

/* ---- methods ---- */

static bool affix(jv s, jv p, bool start) {
    if (p.k != JV_STR || p.str.n > s.str.n) return false;
    return !memcmp(start ? s.str.s : s.str.s + s.str.n - p.str.n, p.str.s, p.str.n);
}

jv jinja_method(R *r, jv self, const char *name, const jv *args, const char *const *kw, int n) {
    jv a0 = arg(args, kw, n, 0, NULL, NULL), a1 = arg(args, kw, n, 1, NULL, NULL);
    if (self.k == JV_DICT || self.k == JV_NS) {
        if (!strcmp(name, "items")) return items_of(r, self);
        if (!strcmp(name, "keys")) return as_list(r, self);
        if (!strcmp(name, "values")) {
            jv l = jr_list(r, self.dict->n);
            for (size_t i = 0; i < self.dict->n && !r->rc; i++)
                l.list.items[i] = self.dict->vals[i];
            return l;
        }
        if (!strcmp(name, "get")) {
            for (size_t i = 0; i < self.dict->n; i++)
                if (jv_eq(r, self.dict->keys[i], a0)) return self.dict->vals[i];
            return a1.k == JV_UNDEF ? jr_none() : a1;
        }
    } else if (self.k == JV_STR) {
        if (!strcmp(name, "strip")) return strip(r, self, 3, a0);
        if (!strcmp(name, "lstrip")) return strip(r, self, 1, a0);
        if (!strcmp(name, "rstrip")) return strip(r, self, 2, a0);
        if (!strcmp(name, "upper")) return map_case(r, self, 1);
        if (!strcmp(name, "lower")) return map_case(r, self, 0);
        if (!strcmp(name, "capitalize")) return map_case(r, self, 2);
        if (!strcmp(name, "title")) return map_case(r, self, 3);
        if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
            bool start = name[0] == 's', t = false;
            if (a0.k == JV_LIST)
                for (size_t i = 0; i < a0.list.n && !t; i++)
                    t = affix(self, a0.list.items[i], start);
            else if (a0.k == JV_STR)
                t = affix(self, a0, start);
            else
                return jr_fail(r, JINJA_EFAIL, "%s() needs a string", name);
            return jr_bool(t);
        }
        if (!strcmp(name, "split")) {
            jv ms = arg(args, kw, n, 1, "maxsplit", NULL);
            return split(r, self, arg(args, kw, n, 0, "sep", NULL), ms.k == JV_INT ? ms.i : -1);
        }
        if (!strcmp(name, "replace"))
            return replace(r, self, a0, a1,
                           arg(args, kw, n, 2, "count", NULL).k == JV_INT
                               ? arg(args, kw, n, 2, "count", NULL).i
                               : -1);
        if (!strcmp(name, "find") || !strcmp(name, "rfind") || !strcmp(name, "count")) {
            if (a0.k != JV_STR) return jr_fail(r, JINJA_EFAIL, "%s() needs a string", name);
            if (!strcmp(name, "count")) {
                int64_t c = 0;
                if (a0.str.n == 0) return jr_int((int64_t)utf8_count(self.str.s, self.str.n) + 1);
                for (const char *p = self.str.s, *e = self.str.s + self.str.n;
                     (p = memmem(p, (size_t)(e - p), a0.str.s, a0.str.n)); p += a0.str.n)
                    c++;
                return jr_int(c);
            }
            const char *hit = NULL;
            if (name[0] == 'f') {
                hit = memmem(self.str.s, self.str.n, a0.str.s, a0.str.n);
            } else {
                for (const char *p = self.str.s, *e = self.str.s + self.str.n;
                     (p = memmem(p, (size_t)(e - p), a0.str.s, a0.str.n)) && p <= e; p++) {
                    hit = p;
                    if (p == e) break;
                }
            }
            return jr_int(hit ? (int64_t)utf8_count(self.str.s, (size_t)(hit - self.str.s)) : -1);
        }
        if (!strcmp(name, "join")) return join(r, as_list(r, a0), self, NULL);
    }
    return jr_fail(r, JINJA_EFAIL, "'%s' object has no method '%s'", jv_type_name(self), name);
}

/* ---- global functions ---- */

jv jinja_func(R *r, int fn, const jv *args, const char *const *kw, int n) {
    switch (fn) {
    case FN_RAISE: {
        jv m = jv_to_str(r, arg(args, kw, n, 0, NULL, NULL));
        if (r->rc) return m;
        return jr_fail(r, JINJA_ERAISE, "%.*s", (int)(m.str.n > 400 ? 400 : m.str.n), m.str.s);
    }
    case FN_STRFTIME: {
        jv f = arg(args, kw, n, 0, NULL, NULL);
        if (f.k != JV_STR) return jr_fail(r, JINJA_EFAIL, "strftime_now() needs a format string");
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char buf[256];
        size_t k = strftime(buf, sizeof buf, f.str.s, &tm);
        return jr_str(r, buf, NULL, k);
    }
    case FN_RANGE: {
        int64_t a = 0, b, st = 1;
        int np = 0;
        int64_t v[3] = {0};
        for (int i = 0; i < n && np < 3; i++) {
            if (args[i].k != JV_INT) return jr_fail(r, JINJA_EFAIL, "range() needs integers");
            v[np++] = args[i].i;
        }
        if (np == 0) return jr_fail(r, JINJA_EFAIL, "range() needs an argument");
        if (np == 1)
            b = v[0];
        else {
            a = v[0];
            b = v[1];
            if (np == 3) st = v[2];
        }
        if (st == 0) return jr_fail(r, JINJA_EFAIL, "range() step must not be zero");
        /* the count in unsigned arithmetic: b - a overflows int64 for range(-2**62, 2**62) */
        const bool up = st > 0;
        const uint64_t ust = up ? (uint64_t)st : 0 - (uint64_t)st;
        const uint64_t span = up ? (b > a ? (uint64_t)b - (uint64_t)a : 0)
                                 : (a > b ? (uint64_t)a - (uint64_t)b : 0);
        const uint64_t ucnt = span ? (span - 1) / ust + 1 : 0;
        if (ucnt > (uint64_t)r->lim.max_iterations)
            return jr_fail(r, JINJA_ELIMIT, "range() of %llu items is over the iteration limit",
                           (unsigned long long)ucnt);
        const int64_t cnt = (int64_t)ucnt;
        jv l = jr_list(r, (size_t)cnt);
        for (int64_t i = 0; i < cnt && !r->rc; i++)
            l.list.items[i] = jr_int(a + i * st);
        return l;
    }
    case FN_NAMESPACE:
    case FN_DICT: {
        jv d = jr_dict(r);
        if (r->rc) return d;
        if (fn == FN_NAMESPACE) d.k = JV_NS;
        for (int i = 0; i < n && !r->rc; i++) {
            if (kw && kw[i]) {
                jr_dict_set(r, d.dict, jr_cstr(r, kw[i]), args[i]);
            } else if (args[i].k == JV_DICT) {
                for (size_t k = 0; k < args[i].dict->n; k++)
                    jr_dict_set(r, d.dict, args[i].dict->keys[k], args[i].dict->vals[k]);
            } else {
                return jr_fail(r, JINJA_EFAIL, "%s() takes keyword arguments",
                               fn == FN_DICT ? "dict" : "namespace");
            }
        }
        return d;
    }
    }
    return jr_fail(r, JINJA_EFAIL, "unknown function");
}
