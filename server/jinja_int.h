/* jinja_int: the types the jinja modules share (not a public contract): the syntax tree that
 * jinja_parse.c builds, the values jinja_eval.c computes with, and the built-ins of
 * jinja_builtins.c. Values live in a per-render arena and are never freed one by one. */
#ifndef LS_JINJA_INT_H
#define LS_JINJA_INT_H

#include "jinja.h"

#include <stdint.h>

/* ---- values ---- */

typedef enum {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_DICT,
    JV_NS,    /* namespace(): a dict whose attributes {% set ns.x %} may change */
    JV_MACRO, /* a {% macro %} */
    JV_FUNC,  /* a global function: raise_exception, range, namespace... */
} jv_kind;

typedef struct jv jv;
typedef struct jdict jdict;
struct jdict { /* ordered, as Python's dict; linear lookup (templates' dicts are small) */
    jv *keys, *vals;
    size_t n, cap;
};
struct jv {
    jv_kind k;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *s;
            const uint8_t *u; /* per byte: 1 = from data; NULL = all from the template */
            size_t n;
        } str;
        struct {
            jv *items;
            size_t n;
        } list;
        jdict *dict; /* JV_DICT, JV_NS */
        const struct jnode *macro;
        int func;
    };
    const char *undef_name; /* JV_UNDEF: what was undefined, for messages */
};

/* ---- syntax tree ---- */

typedef enum {
    /* statements */
    N_TEXT,     /* lit: the text */
    N_OUTPUT,   /* {{ a }} */
    N_IF,       /* a: condition, body, els (an elif is an N_IF alone in els) */
    N_FOR,      /* names: targets, a: iterable, b: filter or NULL, body, els */
    N_SET,      /* name (and attr for ns.attr) or names: targets, a: value */
    N_SETBLOCK, /* {% set name %}body{% endset %} */
    N_MACRO,    /* name, names: params, args: defaults (NULL: none), body */
    N_BREAK,
    N_CONTINUE,
    N_BLOCK, /* body only ({% generation %}) */
    /* expressions */
    E_LIT,    /* lit */
    E_NAME,   /* name */
    E_ATTR,   /* a.name */
    E_ITEM,   /* a[b] */
    E_SLICE,  /* a[b:c:d], each may be NULL */
    E_CALL,   /* a(args, kw) */
    E_FILTER, /* a | name(args, kw) */
    E_TEST,   /* a is [not] name(args); op: 1 = negated */
    E_NOT,
    E_NEG,
    E_POS,
    E_BIN, /* a op b; op: one of the BIN_ codes */
    E_AND,
    E_OR,
    E_COND, /* b if a else c (c may be NULL) */
    E_LIST, /* args */
    E_TUPLE,
    E_DICT, /* args: key, value, key, value... */
} jnode_kind;

enum {
    BIN_ADD = 1,
    BIN_SUB,
    BIN_MUL,
    BIN_DIV,
    BIN_FLOORDIV,
    BIN_MOD,
    BIN_POW,
    BIN_CONCAT,
    BIN_EQ,
    BIN_NE,
    BIN_LT,
    BIN_LE,
    BIN_GT,
    BIN_GE,
    BIN_IN,
    BIN_NOTIN,
};

typedef struct jnode jnode;
struct jnode {
    jnode_kind kind;
    int op;
    int line;
    const char *name; /* NUL-terminated */
    const char *attr;
    jv lit;
    jnode *a, *b, *c, *d;
    jnode **args;
    const char **kw; /* kw[i]: the keyword of args[i], NULL when positional (calls, filters) */
    int n_args;
    const char **names;
    int n_names;
    jnode **body, **els;
    int n_body, n_els;
};

struct jinja_template {
    jnode **body;
    int n_body;
    void *pool; /* every node and string of the tree, freed together */
};

/* ---- render state (jinja_eval.c) ---- */

typedef struct arena_block arena_block;

typedef struct { /* a growing string with per-byte provenance, malloc'd */
    char *s;
    uint8_t *u;
    size_t n, cap;
} jbuf;

typedef struct frame frame;
struct frame {
    frame *parent;
    jdict vars;
};

typedef struct {
    arena_block *arena;
    size_t used; /* bytes the arena holds */
    jinja_limits lim;
    long iterations;
    int depth; /* macro calls in progress */
    int nest;  /* recursion levels in progress: see jr_enter */
    int rc; /* 0, or the first JINJA_E* code */
    char *err;
    size_t errlen;
    jbuf *out; /* where output goes now (a macro call captures into its own) */
    frame *globals;
    int ctl; /* 1: {% break %} pending, 2: {% continue %} pending */
} R;

/* Records the first error (later ones are dropped) and returns an undefined value. */
jv jr_fail(R *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Every recursion of the renderer enters a level here: an expression or block evaluated, a list
 * or dict walked by ==, <, str() or tojson, a JSON value read in. False with r->rc set (or
 * already set) past JINJA_MAX_RECURSION levels, so that neither a deep template, nor macros
 * calling each other, nor a deep or self-containing value can overflow the thread's stack;
 * true, and the caller calls jr_leave when it returns. */
bool jr_enter(R *r);
void jr_leave(R *r);
void *jr_alloc(R *r, size_t n);                             /* zeroed; NULL with r->rc set */
jv jr_str(R *r, const char *s, const uint8_t *u, size_t n); /* copies */
jv jr_cstr(R *r, const char *s);                            /* a template-text copy */
jv jr_bool(bool b);
jv jr_int(int64_t i);
jv jr_none(void);
jv jr_undef(const char *name);
jv jr_list(R *r, size_t n); /* n undefined items */
jv jr_dict(R *r);
bool jr_dict_set(R *r, jdict *d, jv key, jv val);
jv *jr_dict_get(const jdict *d, const char *key, size_t n);
bool jv_truthy(jv v);
bool jv_eq(R *r, jv a, jv b); /* false with r->rc set past the recursion limit */
int jv_cmp(R *r, jv a, jv b); /* -1, 0, 1; 2 with r->rc set when unordered */
jv jv_to_str(R *r, jv v);     /* Python's str() */
jv jv_repr(R *r, jv v);       /* Python's repr() */
const char *jv_type_name(jv v);
bool jv_is_num(jv v);
double jv_num(jv v);
/* Appends to a buffer; false with r->rc set over the output limit or out of memory. */
bool jbuf_put(R *r, jbuf *b, const char *s, const uint8_t *u, size_t n);
jv jbuf_take(R *r, jbuf *b); /* the buffer as a string value; frees the buffer */
size_t utf8_count(const char *s, size_t n);
size_t utf8_offset(const char *s, size_t n, size_t k); /* byte offset of code point k */

/* ---- built-ins (jinja_builtins.c) ---- */

enum { FN_RAISE = 1, FN_STRFTIME, FN_RANGE, FN_NAMESPACE, FN_DICT };

/* Whether the parser accepts the name (the evaluator implements exactly these). */
bool jinja_known_filter(const char *name);
bool jinja_known_test(const char *name);
bool jinja_known_method(const char *name);

/* Each takes evaluated arguments; kw[i] names args[i] (NULL: positional; kw may be NULL). */
jv jinja_filter(R *r, const char *name, jv v, const jv *args, const char *const *kw, int n);
jv jinja_test(R *r, const char *name, jv v, const jv *args, int n); /* a JV_BOOL */
jv jinja_method(R *r, jv self, const char *name, const jv *args, const char *const *kw, int n);
jv jinja_func(R *r, int fn, const jv *args, const char *const *kw, int n);
/* JSON text of v as json.dumps(v, ensure_ascii=False, indent, sort_keys) writes it. */
jv jinja_tojson(R *r, jv v, int indent, bool sort_keys);

#endif
