/* jinja_eval: runs a parsed template. Values live in an arena that the render frees at once; the
 * arena, the output, the loop iterations and the macro depth are all bounded by the caller's
 * jinja_limits, and the renderer's recursion by JINJA_MAX_RECURSION. Python's semantics where
 * templates can tell the difference (str() of values, truthiness, floored division, negative
 * indices, undefined attributes). */
#include "jinja_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

jinja_limits jinja_default_limits(void) {
    return (jinja_limits){
        .max_output = 1u << 20, .max_memory = 64u << 20, .max_iterations = 100000, .max_depth = 32};
}

jv jr_fail(R *r, int code, const char *fmt, ...) {
    if (!r->rc) {
        r->rc = code;
        if (r->err && r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err, r->errlen, fmt, ap);
            va_end(ap);
        }
    }
    return jr_undef(NULL);
}

bool jr_enter(R *r) {
    if (r->rc) return false;
    if (r->nest >= JINJA_MAX_RECURSION) {
        jr_fail(r, JINJA_ELIMIT, "the template nests deeper than %d levels", JINJA_MAX_RECURSION);
        return false;
    }
    r->nest++;
    return true;
}

void jr_leave(R *r) {
    r->nest--;
}

void *jr_alloc(R *r, size_t n) {
    if (r->rc) return NULL;
    n = (n + 15) & ~(size_t)15;
    arena_block *b = r->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (r->used + cap > r->lim.max_memory) {
            jr_fail(r, JINJA_ELIMIT, "the template used more than %zu bytes of memory",
                    r->lim.max_memory);
            return NULL;
        }
        b = malloc(sizeof *b + cap);
        if (!b) {
            jr_fail(r, JINJA_ENOMEM, "out of memory rendering the template");
            return NULL;
        }
        b->next = r->arena;
        b->used = 0;
        b->cap = cap;
        r->arena = b;
        r->used += cap;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

jv jr_undef(const char *name) {
    return (jv){.k = JV_UNDEF, .undef_name = name};
}
jv jr_none(void) {
    return (jv){.k = JV_NONE};
}
jv jr_bool(bool b) {
    return (jv){.k = JV_BOOL, .b = b};
}
jv jr_int(int64_t i) {
    return (jv){.k = JV_INT, .i = i};
}

jv jr_str(R *r, const char *s, const uint8_t *u, size_t n) {
    char *c = jr_alloc(r, n + 1);
    if (!c) return jr_undef(NULL);
    if (n) memcpy(c, s, n);
    uint8_t *cu = NULL;
    if (u) {
        bool any = false;
        for (size_t i = 0; i < n && !any; i++)
            any = u[i];
        if (any) {
            if (!(cu = jr_alloc(r, n))) return jr_undef(NULL);
            memcpy(cu, u, n);
        }
    }
    return (jv){.k = JV_STR, .str = {c, cu, n}};
}

jv jr_cstr(R *r, const char *s) {
    return jr_str(r, s, NULL, strlen(s));
}

jv jr_list(R *r, size_t n) {
    jv *items = n ? jr_alloc(r, n * sizeof *items) : NULL;
    if (n && !items) return jr_undef(NULL);
    return (jv){.k = JV_LIST, .list = {items, n}};
}

jv jr_dict(R *r) {
    jdict *d = jr_alloc(r, sizeof *d);
    if (!d) return jr_undef(NULL);
    return (jv){.k = JV_DICT, .dict = d};
}

jv *jr_dict_get(const jdict *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].k == JV_STR && d->keys[i].str.n == n && !memcmp(d->keys[i].str.s, key, n))
            return &d->vals[i];
    return NULL;
}

bool jr_dict_set(R *r, jdict *d, jv key, jv val) {
    for (size_t i = 0; i < d->n; i++) {
        if (jv_eq(r, d->keys[i], key)) {
            d->vals[i] = val;
            return true;
        }
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        jv *k = jr_alloc(r, cap * sizeof *k), *v = jr_alloc(r, cap * sizeof *v);
        if (!k || !v) return false;
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof *k);
            memcpy(v, d->vals, d->n * sizeof *v);
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = val;
    return true;
}

/* ---- output buffers ---- */

bool jbuf_put(R *r, jbuf *b, const char *s, const uint8_t *u, size_t n) {
    if (r->rc) return false;
    if (b->n + n > r->lim.max_output) {
        jr_fail(r, JINJA_ELIMIT, "the rendered template is longer than %zu bytes",
                r->lim.max_output);
        return false;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (ns) b->s = ns;
        uint8_t *nu = ns ? realloc(b->u, cap) : NULL;
        if (nu) b->u = nu;
        if (!ns || !nu) {
            jr_fail(r, JINJA_ENOMEM, "out of memory rendering the template");
            return false;
        }
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    if (u)
        memcpy(b->u + b->n, u, n);
    else
        memset(b->u + b->n, 0, n);
    b->n += n;
    b->s[b->n] = '\0';
    return true;
}

jv jbuf_take(R *r, jbuf *b) {
    jv v = jr_str(r, b->s ? b->s : "", b->u, b->n);
    free(b->s);
    free(b->u);
    *b = (jbuf){0};
    return v;
}

/* ---- UTF-8 ---- */

size_t utf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

size_t utf8_offset(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (i < n && k > 0) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        k--;
    }
    return i;
}

/* ---- variables ---- */

static jv lookup(R *r, frame *f, const char *name) {
    size_t n = strlen(name);
    for (; f; f = f->parent) {
        jv *v = jr_dict_get(&f->vars, name, n);
        if (v) return *v;
    }
    (void)r;
    return jr_undef(name);
}

static bool assign(R *r, frame *f, const char *name, jv v) {
    jv key = {.k = JV_STR, .str = {name, NULL, strlen(name)}};
    return jr_dict_set(r, &f->vars, key, v);
}

/* ---- expressions ---- */

static jv ev(R *r, frame *f, const jnode *n);
static void exec_body(R *r, frame *f, jnode *const *body, int n);

static jv undefined_error(R *r, jv v) {
    if (v.undef_name) return jr_fail(r, JINJA_EFAIL, "'%s' is undefined", v.undef_name);
    return jr_fail(r, JINJA_EFAIL, "a value is undefined");
}

static jv getattr_(R *r, jv obj, const char *name) {
    if (obj.k == JV_UNDEF) return undefined_error(r, obj);
    if (obj.k == JV_DICT || obj.k == JV_NS) {
        jv *v = jr_dict_get(obj.dict, name, strlen(name));
        if (v) return *v;
    }
    return jr_undef(name);
}

static int64_t py_index(int64_t i, size_t n) {
    return i < 0 ? i + (int64_t)n : i;
}

static jv getitem(R *r, jv obj, jv key) {
    if (obj.k == JV_UNDEF) return undefined_error(r, obj);
    if (obj.k == JV_DICT || obj.k == JV_NS) {
        for (size_t i = 0; i < obj.dict->n; i++)
            if (jv_eq(r, obj.dict->keys[i], key)) return obj.dict->vals[i];
        return jr_undef(key.k == JV_STR ? key.str.s : NULL);
    }
    if ((obj.k == JV_LIST || obj.k == JV_STR) && (key.k == JV_INT || key.k == JV_BOOL)) {
        int64_t k = key.k == JV_BOOL ? key.b : key.i;
        if (obj.k == JV_LIST) {
            k = py_index(k, obj.list.n);
            if (k < 0 || (size_t)k >= obj.list.n) return jr_undef(NULL);
            return obj.list.items[k];
        }
        size_t cps = utf8_count(obj.str.s, obj.str.n);
        k = py_index(k, cps);
        if (k < 0 || (size_t)k >= cps) return jr_undef(NULL);
        size_t a = utf8_offset(obj.str.s, obj.str.n, (size_t)k);
        size_t b = utf8_offset(obj.str.s, obj.str.n, (size_t)k + 1);
        return jr_str(r, obj.str.s + a, obj.str.u ? obj.str.u + a : NULL, b - a);
    }
    if (key.k == JV_STR) return getattr_(r, obj, key.str.s);
    return jr_undef(NULL);
}

/* Python's slice indices for a sequence of length n. */
static void slice_bounds(int64_t n, jv lo, jv hi, int64_t step, int64_t *start, int64_t *stop) {
    int64_t dflt_lo = step > 0 ? 0 : n - 1, dflt_hi = step > 0 ? n : -1;
    int64_t v[2] = {dflt_lo, dflt_hi};
    jv in[2] = {lo, hi};
    for (int k = 0; k < 2; k++) {
        if (in[k].k != JV_INT) continue;
        int64_t x = in[k].i;
        if (x < 0) x += n;
        if (step > 0)
            x = x < 0 ? 0 : x > n ? n : x;
        else
            x = x < -1 ? -1 : x > n - 1 ? n - 1 : x;
        v[k] = x;
    }
    *start = v[0];
    *stop = v[1];
}

static jv slice(R *r, jv obj, jv lo, jv hi, jv st) {
    int64_t step = st.k == JV_INT ? st.i : 1;
    if (step == 0) return jr_fail(r, JINJA_EFAIL, "slice step cannot be zero");
    for (int k = 0; k < 3; k++) {
        jv x = k == 0 ? lo : k == 1 ? hi : st;
        if (x.k != JV_INT && x.k != JV_NONE && x.k != JV_UNDEF)
            return jr_fail(r, JINJA_EFAIL, "slice indices must be integers");
    }
    if (obj.k == JV_UNDEF) return undefined_error(r, obj);
    if (obj.k == JV_LIST) {
        int64_t a, b, n = (int64_t)obj.list.n, cnt = 0;
        slice_bounds(n, lo, hi, step, &a, &b);
        for (int64_t i = a; step > 0 ? i < b : i > b; i += step)
            cnt++;
        jv out = jr_list(r, (size_t)cnt);
        if (r->rc) return out;
        size_t m = 0;
        for (int64_t i = a; step > 0 ? i < b : i > b; i += step)
            out.list.items[m++] = obj.list.items[i];
        return out;
    }
    if (obj.k == JV_STR) {
        int64_t a, b, n = (int64_t)utf8_count(obj.str.s, obj.str.n);
        slice_bounds(n, lo, hi, step, &a, &b);
        if (step == 1) {
            if (b <= a) return jr_str(r, "", NULL, 0);
            size_t x = utf8_offset(obj.str.s, obj.str.n, (size_t)a);
            size_t y = utf8_offset(obj.str.s, obj.str.n, (size_t)b);
            return jr_str(r, obj.str.s + x, obj.str.u ? obj.str.u + x : NULL, y - x);
        }
        jbuf buf = {0};
        for (int64_t i = a; step > 0 ? i < b : i > b; i += step) {
            size_t x = utf8_offset(obj.str.s, obj.str.n, (size_t)i);
            size_t y = utf8_offset(obj.str.s + x, obj.str.n - x, 1) + x;
            if (!jbuf_put(r, &buf, obj.str.s + x, obj.str.u ? obj.str.u + x : NULL, y - x)) break;
        }
        return jbuf_take(r, &buf);
    }
    return jr_fail(r, JINJA_EFAIL, "'%s' object is not subscriptable", jv_type_name(obj));
}

static jv concat_str(R *r, jv a, jv b) {
    size_t n = a.str.n + b.str.n;
    char *s = jr_alloc(r, n + 1);
    uint8_t *u = (a.str.u || b.str.u) ? jr_alloc(r, n) : NULL;
    if (!s || ((a.str.u || b.str.u) && !u)) return jr_undef(NULL);
    memcpy(s, a.str.s, a.str.n);
    memcpy(s + a.str.n, b.str.s, b.str.n);
    if (u) {
        if (a.str.u) memcpy(u, a.str.u, a.str.n);
        if (b.str.u) memcpy(u + a.str.n, b.str.u, b.str.n);
    }
    return (jv){.k = JV_STR, .str = {s, u, n}};
}

static jv repeat(R *r, jv s, int64_t times) {
    if (times <= 0) return s.k == JV_STR ? jr_str(r, "", NULL, 0) : jr_list(r, 0);
    size_t unit = s.k == JV_STR ? s.str.n : s.list.n * sizeof(jv);
    if (unit && (uint64_t)times > r->lim.max_memory / unit)
        return jr_fail(r, JINJA_ELIMIT, "a repetition is larger than the memory limit");
    if (s.k == JV_STR) {
        jbuf b = {0};
        for (int64_t i = 0; i < times; i++)
            if (!jbuf_put(r, &b, s.str.s, s.str.u, s.str.n)) break;
        return jbuf_take(r, &b);
    }
    jv out = jr_list(r, s.list.n * (size_t)times);
    for (int64_t i = 0; !r->rc && i < times; i++)
        memcpy(out.list.items + (size_t)i * s.list.n, s.list.items, s.list.n * sizeof(jv));
    return out;
}

static jv arith(R *r, int op, jv a, jv b) {
    if (a.k == JV_UNDEF) return undefined_error(r, a);
    if (b.k == JV_UNDEF) return undefined_error(r, b);
    if (op == BIN_ADD && a.k == JV_STR && b.k == JV_STR) return concat_str(r, a, b);
    if (op == BIN_ADD && a.k == JV_LIST && b.k == JV_LIST) {
        jv out = jr_list(r, a.list.n + b.list.n);
        if (r->rc) return out;
        if (a.list.n) memcpy(out.list.items, a.list.items, a.list.n * sizeof(jv));
        if (b.list.n) memcpy(out.list.items + a.list.n, b.list.items, b.list.n * sizeof(jv));
        return out;
    }
    if (op == BIN_MUL && (a.k == JV_STR || a.k == JV_LIST) && b.k == JV_INT)
        return repeat(r, a, b.i);
    if (op == BIN_MUL && (b.k == JV_STR || b.k == JV_LIST) && a.k == JV_INT)
        return repeat(r, b, a.i);
    if (!jv_is_num(a) || !jv_is_num(b))
        return jr_fail(r, JINJA_EFAIL,
                       "unsupported operand types for an arithmetic operator: "
                       "'%s' and '%s'",
                       jv_type_name(a), jv_type_name(b));
    bool ints = a.k != JV_FLOAT && b.k != JV_FLOAT;
    if (ints && op != BIN_DIV && op != BIN_POW) {
        int64_t x = a.k == JV_BOOL ? a.b : a.i, y = b.k == JV_BOOL ? b.b : b.i, z;
        switch (op) {
        case BIN_ADD:
            if (__builtin_add_overflow(x, y, &z)) break;
            return jr_int(z);
        case BIN_SUB:
            if (__builtin_sub_overflow(x, y, &z)) break;
            return jr_int(z);
        case BIN_MUL:
            if (__builtin_mul_overflow(x, y, &z)) break;
            return jr_int(z);
        case BIN_FLOORDIV:
        case BIN_MOD: {
            if (y == 0) return jr_fail(r, JINJA_EFAIL, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) break;
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) {
                q--;
                m += y;
            }
            return jr_int(op == BIN_MOD ? m : q);
        }
        }
        return jr_fail(r, JINJA_EFAIL, "integer overflow");
    }
    double x = jv_num(a), y = jv_num(b);
    switch (op) {
    case BIN_ADD:
        return (jv){.k = JV_FLOAT, .f = x + y};
    case BIN_SUB:
        return (jv){.k = JV_FLOAT, .f = x - y};
    case BIN_MUL:
        return (jv){.k = JV_FLOAT, .f = x * y};
    case BIN_POW:
        if (ints && y >= 0 && y < 64) {
            double p = pow(x, y);
            if (fabs(p) < 9e18) return jr_int((int64_t)p);
        }
        return (jv){.k = JV_FLOAT, .f = pow(x, y)};
    default:
        if (y == 0) return jr_fail(r, JINJA_EFAIL, "division by zero");
        if (op == BIN_DIV) return (jv){.k = JV_FLOAT, .f = x / y};
        double q = floor(x / y);
        return (jv){.k = JV_FLOAT, .f = op == BIN_FLOORDIV ? q : x - q * y};
    }
}

static bool contains(R *r, jv hay, jv needle) {
    if (hay.k == JV_STR) {
        if (needle.k != JV_STR) {
            jr_fail(r, JINJA_EFAIL, "'in <string>' requires a string on the left");
            return false;
        }
        if (needle.str.n == 0) return true;
        return memmem(hay.str.s, hay.str.n, needle.str.s, needle.str.n) != NULL;
    }
    if (hay.k == JV_LIST) {
        for (size_t i = 0; i < hay.list.n; i++)
            if (jv_eq(r, hay.list.items[i], needle)) return true;
        return false;
    }
    if (hay.k == JV_DICT || hay.k == JV_NS) {
        for (size_t i = 0; i < hay.dict->n; i++)
            if (jv_eq(r, hay.dict->keys[i], needle)) return true;
        return false;
    }
    if (hay.k == JV_UNDEF) return false;
    jr_fail(r, JINJA_EFAIL, "argument of type '%s' is not iterable", jv_type_name(hay));
    return false;
}

static jv binary(R *r, int op, jv a, jv b) {
    switch (op) {
    case BIN_CONCAT: {
        jv x = jv_to_str(r, a), y = jv_to_str(r, b);
        return r->rc ? x : concat_str(r, x, y);
    }
    case BIN_EQ:
        return jr_bool(jv_eq(r, a, b));
    case BIN_NE:
        return jr_bool(!jv_eq(r, a, b));
    case BIN_LT:
    case BIN_LE:
    case BIN_GT:
    case BIN_GE: {
        int c = jv_cmp(r, a, b);
        if (r->rc) return jr_undef(NULL);
        return jr_bool(op == BIN_LT   ? c < 0
                       : op == BIN_LE ? c <= 0
                       : op == BIN_GT ? c > 0
                                      : c >= 0);
    }
    case BIN_IN:
        return jr_bool(contains(r, b, a));
    case BIN_NOTIN:
        return jr_bool(!contains(r, b, a));
    default:
        return arith(r, op, a, b);
    }
}

/* Evaluates a call's arguments into a fresh array. */
static jv *eval_args(R *r, frame *f, const jnode *n, int extra) {
    jv *a = jr_alloc(r, (size_t)(n->n_args + extra + 1) * sizeof *a);
    for (int i = 0; a && i < n->n_args && !r->rc; i++)
        a[i + extra] = ev(r, f, n->args[i]);
    return r->rc ? NULL : a;
}

static jv call_macro(R *r, const jnode *m, const jv *args, const char *const *kw, int n) {
    if (r->depth >= r->lim.max_depth)
        return jr_fail(r, JINJA_ELIMIT, "macro calls nested deeper than %d", r->lim.max_depth);
    frame fr = {.parent = r->globals};
    int pos = 0;
    for (int i = 0; i < n; i++) {
        int k = -1;
        if (kw && kw[i]) {
            for (int p = 0; p < m->n_names; p++)
                if (!strcmp(m->names[p], kw[i])) k = p;
            if (k < 0)
                return jr_fail(r, JINJA_EFAIL, "macro '%s' takes no keyword argument '%s'", m->name,
                               kw[i]);
        } else {
            k = pos++;
            if (k >= m->n_names)
                return jr_fail(r, JINJA_EFAIL, "macro '%s' takes %d arguments", m->name,
                               m->n_names);
        }
        if (!assign(r, &fr, m->names[k], args[i])) return jr_undef(NULL);
    }
    for (int p = 0; p < m->n_names; p++) {
        if (jr_dict_get(&fr.vars, m->names[p], strlen(m->names[p]))) continue;
        jv d = m->args[p] ? ev(r, &fr, m->args[p]) : jr_undef(m->names[p]);
        if (r->rc || !assign(r, &fr, m->names[p], d)) return jr_undef(NULL);
    }
    jbuf buf = {0}, *saved = r->out;
    r->out = &buf;
    r->depth++;
    exec_body(r, &fr, m->body, m->n_body);
    r->depth--;
    r->out = saved;
    jv v = jbuf_take(r, &buf);
    return v;
}

static jv call(R *r, frame *f, const jnode *n) {
    const jnode *c = n->a;
    if (c->kind == E_ATTR) {
        jv self = ev(r, f, c->a);
        if (r->rc) return self;
        if (self.k == JV_STR || self.k == JV_LIST || self.k == JV_DICT || self.k == JV_NS) {
            jv *a = eval_args(r, f, n, 0);
            if (!a) return jr_undef(NULL);
            if (self.k == JV_NS ||
                (self.k == JV_DICT && jr_dict_get(self.dict, c->name, strlen(c->name)) &&
                 jr_dict_get(self.dict, c->name, strlen(c->name))->k == JV_MACRO)) {
                jv fn = getattr_(r, self, c->name);
                if (fn.k == JV_MACRO) return call_macro(r, fn.macro, a, n->kw, n->n_args);
            }
            return jinja_method(r, self, c->name, a, n->kw, n->n_args);
        }
        if (self.k == JV_UNDEF) return undefined_error(r, self);
        return jr_fail(r, JINJA_EFAIL, "'%s' object has no method '%s'", jv_type_name(self),
                       c->name);
    }
    jv fn = ev(r, f, c);
    if (r->rc) return fn;
    jv *a = eval_args(r, f, n, 0);
    if (!a) return jr_undef(NULL);
    if (fn.k == JV_MACRO) return call_macro(r, fn.macro, a, n->kw, n->n_args);
    if (fn.k == JV_FUNC) return jinja_func(r, fn.func, a, n->kw, n->n_args);
    if (fn.k == JV_UNDEF) return undefined_error(r, fn);
    return jr_fail(r, JINJA_EFAIL, "'%s' object is not callable", jv_type_name(fn));
}

static jv ev_node(R *r, frame *f, const jnode *n) {
    switch (n->kind) {
    case E_LIT:
        return n->lit;
    case E_NAME:
        return lookup(r, f, n->name);
    case E_ATTR: {
        jv o = ev(r, f, n->a);
        return r->rc ? o : getattr_(r, o, n->name);
    }
    case E_ITEM: {
        jv o = ev(r, f, n->a), k = ev(r, f, n->b);
        return r->rc ? o : getitem(r, o, k);
    }
    case E_SLICE: {
        jv o = ev(r, f, n->a);
        jv a = n->b ? ev(r, f, n->b) : jr_none(), b = n->c ? ev(r, f, n->c) : jr_none(),
           c = n->d ? ev(r, f, n->d) : jr_none();
        return r->rc ? o : slice(r, o, a, b, c);
    }
    case E_CALL:
        return call(r, f, n);
    case E_FILTER: {
        jv v = ev(r, f, n->a);
        jv *a = eval_args(r, f, n, 0);
        if (r->rc || !a) return jr_undef(NULL);
        return jinja_filter(r, n->name, v, a, n->kw, n->n_args);
    }
    case E_TEST: {
        jv v = ev(r, f, n->a);
        jv *a = eval_args(r, f, n, 0);
        if (r->rc || !a) return jr_undef(NULL);
        jv t = jinja_test(r, n->name, v, a, n->n_args);
        return n->op ? jr_bool(!t.b) : t;
    }
    case E_NOT: {
        jv v = ev(r, f, n->a);
        return jr_bool(!jv_truthy(v));
    }
    case E_NEG:
    case E_POS: {
        jv v = ev(r, f, n->a);
        if (r->rc) return v;
        if (!jv_is_num(v))
            return jr_fail(r, JINJA_EFAIL, "bad operand type for unary %c: '%s'",
                           n->kind == E_NEG ? '-' : '+', jv_type_name(v));
        if (n->kind == E_POS) return v.k == JV_BOOL ? jr_int(v.b) : v;
        if (v.k == JV_FLOAT) return (jv){.k = JV_FLOAT, .f = -v.f};
        return jr_int(-(v.k == JV_BOOL ? v.b : v.i));
    }
    case E_BIN: {
        jv a = ev(r, f, n->a), b = ev(r, f, n->b);
        return r->rc ? a : binary(r, n->op, a, b);
    }
    case E_AND: {
        jv a = ev(r, f, n->a);
        return !jv_truthy(a) ? a : ev(r, f, n->b);
    }
    case E_OR: {
        jv a = ev(r, f, n->a);
        return jv_truthy(a) ? a : ev(r, f, n->b);
    }
    case E_COND: {
        jv c = ev(r, f, n->a);
        if (jv_truthy(c)) return ev(r, f, n->b);
        return n->c ? ev(r, f, n->c) : jr_undef(NULL);
    }
    case E_LIST:
    case E_TUPLE: {
        jv l = jr_list(r, (size_t)n->n_args);
        for (int i = 0; i < n->n_args && !r->rc; i++)
            l.list.items[i] = ev(r, f, n->args[i]);
        return l;
    }
    case E_DICT: {
        jv d = jr_dict(r);
        for (int i = 0; i + 1 < n->n_args && !r->rc; i += 2) {
            jv k = ev(r, f, n->args[i]), v = ev(r, f, n->args[i + 1]);
            if (!r->rc) jr_dict_set(r, d.dict, k, v);
        }
        return d;
    }
    default:
        return jr_fail(r, JINJA_EFAIL, "internal error: statement used as an expression");
    }
}

static jv ev(R *r, frame *f, const jnode *n) {
    if (!jr_enter(r)) return jr_undef(NULL);
    jv v = ev_node(r, f, n);
    jr_leave(r);
    return v;
}

/* ---- statements ---- */

static void output(R *r, jv v) {
    if (r->rc) return;
    jv s = jv_to_str(r, v);
    if (!r->rc) jbuf_put(r, r->out, s.str.s, s.str.u, s.str.n);
}

/* The items a for loop walks: a list's items, a dict's keys, a string's characters. */
static jv iterable(R *r, jv v) {
    switch (v.k) {
    case JV_LIST:
        return v;
    case JV_UNDEF:
    case JV_NONE:
        if (v.k == JV_NONE) return jr_fail(r, JINJA_EFAIL, "'NoneType' object is not iterable");
        return jr_list(r, 0);
    case JV_DICT:
    case JV_NS: {
        jv l = jr_list(r, v.dict->n);
        for (size_t i = 0; !r->rc && i < v.dict->n; i++)
            l.list.items[i] = v.dict->keys[i];
        return l;
    }
    case JV_STR: {
        size_t k = utf8_count(v.str.s, v.str.n);
        jv l = jr_list(r, k);
        for (size_t i = 0, off = 0; !r->rc && i < k; i++) {
            size_t e = off + utf8_offset(v.str.s + off, v.str.n - off, 1);
            l.list.items[i] = jr_str(r, v.str.s + off, v.str.u ? v.str.u + off : NULL, e - off);
            off = e;
        }
        return l;
    }
    default:
        return jr_fail(r, JINJA_EFAIL, "'%s' object is not iterable", jv_type_name(v));
    }
}

static bool unpack(R *r, frame *f, const char *const *names, int n, jv v) {
    if (n == 1) return assign(r, f, names[0], v);
    if (v.k != JV_LIST || v.list.n != (size_t)n) {
        jr_fail(r, JINJA_EFAIL, "cannot unpack a '%s' into %d names", jv_type_name(v), n);
        return false;
    }
    for (int i = 0; i < n; i++)
        if (!assign(r, f, names[i], v.list.items[i])) return false;
    return true;
}

static void exec_for(R *r, frame *outer, const jnode *n) {
    jv seq = iterable(r, ev(r, outer, n->a));
    if (r->rc) return;
    frame fr = {.parent = outer};
    jv items = seq;
    if (n->b) { /* the loop filter: loop.length counts what passes it */
        items = jr_list(r, seq.list.n);
        size_t m = 0;
        for (size_t i = 0; i < seq.list.n && !r->rc; i++) {
            if (++r->iterations > r->lim.max_iterations) break;
            unpack(r, &fr, n->names, n->n_names, seq.list.items[i]);
            if (jv_truthy(ev(r, &fr, n->b))) items.list.items[m++] = seq.list.items[i];
        }
        items.list.n = m;
    }
    static const char *const loop_keys[] = {"index0",    "index",    "first",
                                            "last",      "length",   "revindex",
                                            "revindex0", "previtem", "nextitem"};
    jv loop = jr_dict(r);
    size_t len = items.list.n;
    for (size_t i = 0; i < len && !r->rc; i++) {
        if (++r->iterations > r->lim.max_iterations) {
            jr_fail(r, JINJA_ELIMIT, "the template ran more than %ld loop iterations",
                    r->lim.max_iterations);
            return;
        }
        /* one loop object per loop, updated in place: an iteration allocates nothing */
        jv vals[] = {jr_int((int64_t)i),
                     jr_int((int64_t)i + 1),
                     jr_bool(i == 0),
                     jr_bool(i + 1 == len),
                     jr_int((int64_t)len),
                     jr_int((int64_t)(len - i)),
                     jr_int((int64_t)(len - i - 1)),
                     i > 0 ? items.list.items[i - 1] : jr_undef("previtem"),
                     i + 1 < len ? items.list.items[i + 1] : jr_undef("nextitem")};
        for (size_t k = 0; k < sizeof loop_keys / sizeof loop_keys[0]; k++)
            jr_dict_set(r, loop.dict,
                        (jv){.k = JV_STR, .str = {loop_keys[k], NULL, strlen(loop_keys[k])}},
                        vals[k]);
        if (r->rc) return;
        assign(r, &fr, "loop", loop);
        if (!unpack(r, &fr, n->names, n->n_names, items.list.items[i])) return;
        exec_body(r, &fr, n->body, n->n_body);
        if (r->ctl == 1) {
            r->ctl = 0;
            break;
        }
        r->ctl = 0;
    }
    if (len == 0 && !r->rc) exec_body(r, &fr, n->els, n->n_els);
}

static void exec_set(R *r, frame *f, const jnode *n) {
    if (n->kind == N_SETBLOCK) {
        jbuf buf = {0}, *saved = r->out;
        r->out = &buf;
        exec_body(r, f, n->body, n->n_body);
        r->out = saved;
        jv v = jbuf_take(r, &buf);
        if (!r->rc) assign(r, f, n->name, v);
        return;
    }
    jv v = ev(r, f, n->a);
    if (r->rc) return;
    if (n->attr) {
        jv ns = lookup(r, f, n->name);
        if (ns.k != JV_NS) {
            jr_fail(r, JINJA_EFAIL, "cannot assign attribute '%s' on '%s': not a namespace",
                    n->attr, n->name);
            return;
        }
        jr_dict_set(r, ns.dict, jr_cstr(r, n->attr), v);
        return;
    }
    if (n->name)
        assign(r, f, n->name, v);
    else
        unpack(r, f, n->names, n->n_names, v);
}

static void exec_body(R *r, frame *f, jnode *const *body, int n) {
    if (!jr_enter(r)) return;
    for (int i = 0; i < n && !r->rc && !r->ctl; i++) {
        const jnode *s = body[i];
        switch (s->kind) {
        case N_TEXT:
            jbuf_put(r, r->out, s->lit.str.s, NULL, s->lit.str.n);
            break;
        case N_OUTPUT:
            output(r, ev(r, f, s->a));
            break;
        case N_IF:
            if (jv_truthy(ev(r, f, s->a)))
                exec_body(r, f, s->body, s->n_body);
            else
                exec_body(r, f, s->els, s->n_els);
            break;
        case N_FOR:
            exec_for(r, f, s);
            break;
        case N_SET:
        case N_SETBLOCK:
            exec_set(r, f, s);
            break;
        case N_MACRO:
            assign(r, f, s->name, (jv){.k = JV_MACRO, .macro = s});
            break;
        case N_BREAK:
            r->ctl = 1;
            break;
        case N_CONTINUE:
            r->ctl = 2;
            break;
        case N_BLOCK:
            exec_body(r, f, s->body, s->n_body);
            break;
        default:
            jr_fail(r, JINJA_EFAIL, "internal error: expression used as a statement");
        }
    }
    jr_leave(r);
}

/* ---- JSON in ---- */

static jv from_json(R *r, const cJSON *j, bool data) {
    if (cJSON_IsString(j)) {
        size_t n = strlen(j->valuestring);
        jv s = jr_str(r, j->valuestring, NULL, n);
        if (data && n && !r->rc) {
            uint8_t *u = jr_alloc(r, n);
            if (u) memset(u, 1, n);
            s.str.u = u;
        }
        return s;
    }
    if (cJSON_IsBool(j)) return jr_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return jr_int((int64_t)d);
        return (jv){.k = JV_FLOAT, .f = d};
    }
    if ((cJSON_IsArray(j) || cJSON_IsObject(j)) && !jr_enter(r)) return jr_undef(NULL);
    if (cJSON_IsArray(j)) {
        jv l = jr_list(r, (size_t)cJSON_GetArraySize(j));
        size_t i = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, j) {
            if (r->rc) break;
            l.list.items[i++] = from_json(r, c, data);
        }
        jr_leave(r);
        return l;
    }
    if (cJSON_IsObject(j)) {
        jv d = jr_dict(r);
        const cJSON *c;
        cJSON_ArrayForEach(c, j) {
            if (r->rc) break;
            jv k = jr_cstr(r, c->string ? c->string : "");
            jr_dict_set(r, d.dict, k, from_json(r, c, data));
        }
        jr_leave(r);
        return d;
    }
    return jr_none();
}

static void add_vars(R *r, frame *g, const cJSON *obj, bool data) {
    const cJSON *c;
    cJSON_ArrayForEach(c, obj) {
        if (r->rc || !c->string) break;
        jv v = from_json(r, c, data);
        if (!r->rc) assign(r, g, jr_cstr(r, c->string).str.s, v);
    }
}

int jinja_render(const jinja_template *t, const cJSON *data, const cJSON *trusted,
                 const jinja_limits *lim, jinja_output *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    R r = {.lim = lim ? *lim : jinja_default_limits(), .err = err, .errlen = errlen};
    if (err && errlen) err[0] = '\0';
    frame g = {0};
    r.globals = &g;
    static const struct {
        const char *name;
        int fn;
    } funcs[] = {{"raise_exception", FN_RAISE},
                 {"strftime_now", FN_STRFTIME},
                 {"range", FN_RANGE},
                 {"namespace", FN_NAMESPACE},
                 {"dict", FN_DICT}};
    for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++)
        assign(&r, &g, funcs[i].name, (jv){.k = JV_FUNC, .func = funcs[i].fn});
    if (data) add_vars(&r, &g, data, true);
    if (trusted) add_vars(&r, &g, trusted, false);
    jbuf buf = {0};
    r.out = &buf;
    exec_body(&r, &g, t->body, t->n_body);
    for (arena_block *b = r.arena, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    if (r.rc) {
        free(buf.s);
        free(buf.u);
        return r.rc;
    }
    /* segments: runs of equal provenance */
    int nseg = 0;
    for (size_t i = 0; i < buf.n; i++)
        if (i == 0 || buf.u[i] != buf.u[i - 1]) nseg++;
    out->segs = malloc((size_t)(nseg ? nseg : 1) * sizeof *out->segs);
    out->text = buf.s ? buf.s : malloc(1);
    if (!out->segs || !out->text) {
        free(out->segs);
        free(out->text);
        free(buf.u);
        memset(out, 0, sizeof *out);
        snprintf(err, errlen, "out of memory rendering the template");
        return JINJA_ENOMEM;
    }
    if (!buf.s) out->text[0] = '\0';
    out->len = buf.n;
    for (size_t i = 0; i < buf.n; i++) {
        if (i == 0 || buf.u[i] != buf.u[i - 1])
            out->segs[out->n_segs++] = (jinja_segment){i, 0, buf.u[i] == 0};
        out->segs[out->n_segs - 1].len++;
    }
    free(buf.u);
    return 0;
}

void jinja_output_free(jinja_output *out) {
    if (!out) return;
    free(out->text);
    free(out->segs);
    memset(out, 0, sizeof *out);
}
