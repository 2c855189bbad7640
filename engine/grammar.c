/* grammar: the pushdown matcher and the trie-walked token mask (see grammar.h; the GBNF parser
 * is grammar_parse.c).
 * Representation: a grammar is a table of rules; a rule is a list of alternatives; an
 * alternative is a run of elements in one flat array, closed by an E_END element. An element
 * is a character class (sorted, merged code-point ranges; negation is resolved at parse time)
 * or a reference to a rule. Groups and repetitions become rules of their own, so the matcher
 * sees only classes and references. A parse position is a stack of element indices whose top
 * is the next class to match and whose lower entries are where to continue once the rule above
 * ends; a state is the set of such stacks (alternation makes several). The empty stack means
 * the root has been matched completely. */
#include "grammar_internal.h"
#include "common.h"
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define GRAM_CACHE 8        /* masks remembered per state */
#define GRAM_MEMO 256       /* advances remembered during one trie walk */
#define GRAM_MEMO_SCAN 48   /* how many of the most recent a lookup looks at */

/* ------------------------------------------------------------------------ the trie */

typedef struct {
    int child0, n_child; /* children are nodes child0 .. child0+n_child-1 */
    int tok0, n_tok;     /* tokens spelled exactly by this node's path: order[tok0 ..] */
} trie_node;

struct gram_vocab {
    int n_vocab, eos_id;
    uint32_t *end;      /* ((n_vocab + 31) / 32) bit i: token i ends generation (EOS, EOG) */
    char *bytes;        /* every token's bytes, concatenated */
    size_t *off, *len;  /* (n_vocab) */
    trie_node *node;    /* node 0 is the root */
    uint8_t *edge;      /* (n_nodes) the byte leading into each node */
    int n_nodes;
    int *order;         /* (n_vocab) token ids sorted by bytes */
};

static const gram_vocab *sort_vocab; /* qsort has no context argument; set only while building */
static int cmp_tok(const void *a, const void *b) {
    const gram_vocab *v = sort_vocab;
    int x = *(const int *)a, y = *(const int *)b;
    size_t lx = v->len[x], ly = v->len[y], m = lx < ly ? lx : ly;
    int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], m);
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Builds node from the sorted tokens order[lo, hi) that share their first depth bytes. */
static void trie_build(gram_vocab *v, int node, int lo, int hi, size_t depth) {
    int i = lo;
    while (i < hi && v->len[v->order[i]] == depth) i++;
    v->node[node].tok0 = lo;
    v->node[node].n_tok = i - lo;
    int groups = 0;
    for (int j = i; j < hi;) {
        uint8_t b = (uint8_t)v->bytes[v->off[v->order[j]] + depth];
        while (j < hi && (uint8_t)v->bytes[v->off[v->order[j]] + depth] == b) j++;
        groups++;
    }
    int child0 = v->n_nodes;
    v->n_nodes += groups;
    v->node[node].child0 = child0;
    v->node[node].n_child = groups;
    int c = 0;
    for (int j = i; j < hi; c++) {
        uint8_t b = (uint8_t)v->bytes[v->off[v->order[j]] + depth];
        int k = j;
        while (k < hi && (uint8_t)v->bytes[v->off[v->order[k]] + depth] == b) k++;
        v->edge[child0 + c] = b;
        trie_build(v, child0 + c, j, k, depth + 1);
        j = k;
    }
}

gram_vocab *gram_vocab_create(int n_vocab, const char *const *bytes, const size_t *lens,
                              int eos_id) {
    if (n_vocab < 1) return NULL;
    gram_vocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->n_vocab = n_vocab;
    v->eos_id = eos_id;
    v->end = calloc(((size_t)n_vocab + 31) / 32, sizeof *v->end);
    if (!v->end) {
        free(v);
        return NULL;
    }
    if (eos_id >= 0 && eos_id < n_vocab) v->end[eos_id >> 5] |= 1u << (eos_id & 31);
    size_t total = 0;
    for (int i = 0; i < n_vocab; i++) total += lens[i];
    v->bytes = malloc(total ? total : 1);
    v->off = malloc((size_t)n_vocab * sizeof *v->off);
    v->len = malloc((size_t)n_vocab * sizeof *v->len);
    v->order = malloc((size_t)n_vocab * sizeof *v->order);
    v->node = calloc(total + 1, sizeof *v->node);
    v->edge = calloc(total + 1, 1);
    if (!v->bytes || !v->off || !v->len || !v->order || !v->node || !v->edge) goto fail;
    size_t at = 0;
    int n = 0;
    for (int i = 0; i < n_vocab; i++) {
        v->off[i] = at;
        v->len[i] = lens[i];
        if (lens[i]) memcpy(v->bytes + at, bytes[i], lens[i]);
        at += lens[i];
        if (lens[i] && i != eos_id) v->order[n++] = i; /* empty and EOS tokens stay off the trie */
    }
    sort_vocab = v;
    qsort(v->order, (size_t)n, sizeof *v->order, cmp_tok);
    sort_vocab = NULL;
    v->n_nodes = 1;
    trie_build(v, 0, 0, n, 0);
    return v;
fail:
    gram_vocab_free(v);
    return NULL;
}

gram_vocab *gram_vocab_from_tokenizer(const tokenizer *t) {
    int n = tok_n_vocab(t);
    char *store = NULL;
    /* calloc: gcc's -Wmaybe-uninitialized (AArch64, -O2) cannot see that every element is set */
    const char **bytes = calloc((size_t)n, sizeof *bytes);
    size_t *lens = calloc((size_t)n, sizeof *lens), *offs = malloc((size_t)n * sizeof *offs);
    size_t total = 0, cap = 0;
    gram_vocab *v = NULL;
    if (!bytes || !lens || !offs) goto out;
    for (int i = 0; i < n; i++) {
        char buf[8];
        size_t len;
        const char *b = tok_piece_bytes(t, i, buf, &len);
        int type = tok_type(t, i);
        if (type == TOK_CONTROL || type == TOK_UNKNOWN || type == TOK_UNUSED) len = 0;
        if (total + len > cap) {
            size_t nc = cap ? cap * 2 : 4096;
            while (nc < total + len) nc *= 2;
            char *q = realloc(store, nc);
            if (!q) goto out;
            store = q;
            cap = nc;
        }
        if (len) memcpy(store + total, b, len);
        offs[i] = total;
        lens[i] = len;
        total += len;
    }
    for (int i = 0; i < n; i++) bytes[i] = store ? store + offs[i] : "";
    v = gram_vocab_create(n, bytes, lens, tok_eos(t));
    for (int i = 0; v && i < n; i++) /* <|eot_id|>, <|im_end|>, ... end a grammar as EOS does */
        if (tok_is_eog(t, i)) v->end[i >> 5] |= 1u << (i & 31);
out:
    free(store);
    free(bytes);
    free(lens);
    free(offs);
    return v;
}

void gram_vocab_free(gram_vocab *v) {
    if (!v) return;
    free(v->bytes);
    free(v->off);
    free(v->len);
    free(v->order);
    free(v->node);
    free(v->edge);
    free(v->end);
    free(v);
}

int gram_vocab_n(const gram_vocab *v) { return v ? v->n_vocab : 0; }
int gram_vocab_eos(const gram_vocab *v) { return v ? v->eos_id : -1; }

/* ---------------------------------------------------------------------- the matcher */

/* Stack sets live in a growable int arena: each stack is [len, e_0 .. e_len-1] (e_len-1 the
 * top), a set is the stacks in [start, end). Sets nest like the trie walk: a child's set is
 * appended after its parent's and dropped on return. set_add keeps no stack twice in a set: it
 * searches a set of up to SET_SCAN stacks, and past that looks stacks up in an index, since a
 * grammar may start 40,000 stacks at once (20,000 optional groups in a row), which the search
 * alone made 4 s of quadratic work per step. */
#define SET_SCAN 32
typedef struct {
    int *a;
    int n, cap;
    int set0, end, count; /* the set set_add last added to: [set0, end), count stacks */
    int *idx;             /* its index past SET_SCAN stacks: offset + 1 per slot, 0 empty */
    int idx_cap;          /* a power of two, at least twice count; 0: no index */
} arena;

typedef struct {
    int *key; /* [need, val, stacks...] of the state the mask belongs to */
    int n_key, cap_key;
    uint32_t *mask;
    unsigned long stamp;
    bool used;
} mask_entry;

struct gram_state {
    const gram_rules *g;
    const gram_vocab *v;
    arena cur;          /* the current set: the whole of cur */
    int need;           /* continuation bytes still expected for the current character */
    uint32_t val;       /* the bits of that character so far */
    arena work;         /* scratch for accepting and masking */
    bool oom;
    mask_entry cache[GRAM_CACHE];
    unsigned long clock;
    /* During a walk: the set [s0, s1) advanced by any character that the stacks of sig (bit i:
     * the i-th stack's class holds it) accept is [r0, r1). Entries die with their sets. */
    struct {
        int s0, s1, r0, r1;
        uint64_t sig;
    } memo[GRAM_MEMO];
    int n_memo;
};

static bool arena_reserve(arena *w, int more) {
    return gram_grow((void **)&w->a, &w->cap, w->n + more, sizeof *w->a);
}

static void arena_free(arena *w) {
    free(w->a);
    free(w->idx);
}

/* The index slot of stack (len), or the empty slot where it would go. */
static int *idx_slot(const arena *w, const int *stk, int len) {
    const uint32_t h = ls_hash_bytes(stk, (size_t)len * sizeof *stk);
    const uint32_t mask = (uint32_t)w->idx_cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        int *slot = &w->idx[i];
        if (*slot == 0) return slot;
        const int *other = w->a + *slot - 1;
        if (other[0] == len && memcmp(other + 1, stk, (size_t)len * sizeof *stk) == 0) return slot;
    }
}

/* (Re)builds the index of the set [set0, n) with room for twice its stacks. */
static bool idx_build(arena *w) {
    int cap = 64;
    while (cap < 4 * w->count) cap *= 2;
    free(w->idx);
    if (!(w->idx = calloc((size_t)cap, sizeof *w->idx))) {
        w->idx_cap = 0;
        return false;
    }
    w->idx_cap = cap;
    for (int i = w->set0; i < w->n; i += w->a[i] + 1)
        *idx_slot(w, w->a + i + 1, w->a[i]) = i + 1;
    return true;
}

/* Appends stack (len) to the set that starts at set0 unless it is already there. */
static int set_add(arena *w, int set0, const int *stk, int len) {
    if (w->set0 != set0 || w->end != w->n) { /* not the set of the last call: (re)count it */
        free(w->idx);
        w->idx = NULL;
        w->idx_cap = 0;
        w->set0 = set0;
        w->count = 0;
        for (int i = set0; i < w->n; i += w->a[i] + 1) w->count++;
        if (w->count > SET_SCAN && !idx_build(w)) return -1;
    }
    if (w->idx_cap) {
        if (*idx_slot(w, stk, len)) return 0;
    } else {
        for (int i = set0; i < w->n; i += w->a[i] + 1)
            if (w->a[i] == len && memcmp(w->a + i + 1, stk, (size_t)len * sizeof *stk) == 0)
                return 0;
    }
    if (!arena_reserve(w, len + 1)) return -1;
    const int at = w->n;
    w->a[w->n++] = len;
    memcpy(w->a + w->n, stk, (size_t)len * sizeof *stk);
    w->n += len;
    w->end = w->n;
    w->count++;
    if (w->idx_cap && 2 * w->count <= w->idx_cap) *idx_slot(w, stk, len) = at + 1;
    else if (w->count > SET_SCAN && !idx_build(w)) return -1;
    return 0;
}

/* Resolves stack src (len) until its top is a class or it is empty, adding every resulting
 * stack to the set at set0: an ended alternative pops, a reference is replaced by where to
 * continue after it and each of the rule's alternatives is pushed in turn. A reference that
 * ends its alternative is popped before pushing (tail position), so right recursion such as
 * x* never grows the stack. A stack that would grow past GRAM_MAX_STACK elements, or need more
 * than 4 x GRAM_MAX_STACK nested calls here (alternatives that each begin with a reference), is
 * dropped: the text cannot nest deeper than the matcher follows, so what would is not allowed.
 * -1 only when memory is short. */
static int expand(const gram_rules *g, arena *w, int set0, const int *src, int len, int depth) {
    int buf[GRAM_MAX_STACK];
    if (depth > 4 * GRAM_MAX_STACK) return 0;
    memcpy(buf, src, (size_t)len * sizeof *buf);
    for (;;) {
        while (len > 0 && g->el[buf[len - 1]].type == E_END) len--;
        if (len == 0 || g->el[buf[len - 1]].type == E_CHAR) return set_add(w, set0, buf, len);
        int pos = buf[len - 1];
        const g_rule *r = &g->rules[g->el[pos].a];
        if (g->el[pos + 1].type == E_END) len--;
        else buf[len - 1] = pos + 1;
        if (len + 1 > GRAM_MAX_STACK) return 0;
        for (int a = 0; a < r->n_alt; a++) {
            buf[len] = g->alt[r->alt0 + a];
            if (a + 1 == r->n_alt) { /* the last alternative continues in this frame */
                len++;
                break;
            }
            if (expand(g, w, set0, buf, len + 1, depth + 1) < 0) return -1;
        }
        if (r->n_alt == 0) return 0;
    }
}

static bool class_has(const gram_rules *g, const g_elem *e, uint32_t c) {
    const uint32_t *r = g->rng + 2 * e->a;
    for (int i = 0; i < e->n; i++)
        if (c >= r[2 * i] && c <= r[2 * i + 1]) return true;
    return false;
}

static bool class_meets(const gram_rules *g, const g_elem *e, uint32_t lo, uint32_t hi) {
    const uint32_t *r = g->rng + 2 * e->a;
    for (int i = 0; i < e->n; i++)
        if (r[2 * i] <= hi && lo <= r[2 * i + 1]) return true;
    return false;
}

/* The set [s0, s1) advanced by code point c, appended at the arena's end. Returns -1 when
 * memory is short; the new set is [s1', w->n) where s1' is the arena end on entry. */
static int set_advance(const gram_rules *g, arena *w, int s0, int s1, uint32_t c) {
    int set0 = w->n;
    int buf[GRAM_MAX_STACK];
    for (int i = s0; i < s1; i += w->a[i] + 1) {
        int len = w->a[i];
        if (len == 0) continue;
        const g_elem *top = &g->el[w->a[i + len]];
        if (!class_has(g, top, c)) continue;
        memcpy(buf, w->a + i + 1, (size_t)len * sizeof *buf);
        buf[len - 1]++;
        if (expand(g, w, set0, buf, len, 0) < 0) return -1;
    }
    return 0;
}

/* The stacks of [s0, s1) whose next class can hold some character in [lo, hi]; returns false
 * when all of them can (the set is then reused as it is), else appends the kept ones. */
static int set_filter(const gram_rules *g, arena *w, int s0, int s1, uint32_t lo, uint32_t hi,
                      int *f0, int *f1) {
    bool all = true;
    for (int i = s0; i < s1 && all; i += w->a[i] + 1)
        all = w->a[i] > 0 && class_meets(g, &g->el[w->a[i + w->a[i]]], lo, hi);
    if (all) {
        *f0 = s0, *f1 = s1;
        return 0;
    }
    *f0 = w->n;
    for (int i = s0; i < s1; i += w->a[i] + 1) {
        int len = w->a[i];
        if (len == 0 || !class_meets(g, &g->el[w->a[i + len]], lo, hi)) continue;
        if (!arena_reserve(w, len + 1)) return -1;
        memmove(w->a + w->n, w->a + i, (size_t)(len + 1) * sizeof *w->a);
        w->n += len + 1;
    }
    *f1 = w->n;
    return 0;
}

/* UTF-8 decoding one byte at a time. *need packs the continuation bytes still expected (low 4
 * bits) and the whole sequence's length (above), which bounds the character from below: a
 * 4-byte sequence is at least U+10000 (shorter forms are overlong, invalid). Returns 1 with
 * *cp when a character completes, 0 while more bytes are needed, -1 for a byte that cannot
 * appear here. */
static const uint32_t utf8_min[5] = {0, 0, 0x80, 0x800, 0x10000};
static int utf8_step(int *need, uint32_t *val, uint8_t b, uint32_t *cp) {
    if (*need == 0) {
        if (b < 0x80) {
            *cp = b;
            return 1;
        }
        if (b >= 0xC2 && b <= 0xDF) *need = 1 | 2 << 4, *val = b & 0x1F;
        else if (b >= 0xE0 && b <= 0xEF) *need = 2 | 3 << 4, *val = b & 0x0F;
        else if (b >= 0xF0 && b <= 0xF4) *need = 3 | 4 << 4, *val = b & 0x07;
        else return -1;
        return 0;
    }
    if ((b & 0xC0) != 0x80) return -1;
    *val = (*val << 6) | (b & 0x3F);
    int len = *need >> 4;
    if ((--*need & 15) == 0) {
        *need = 0;
        *cp = *val;
        return *cp <= CP_MAX && *cp >= utf8_min[len] ? 1 : -1;
    }
    return 0;
}

/* One byte applied to the set [*s0, *s1) with partial character (*need, *val). Returns 1 with
 * the new set in [*s0, *s1) (appended, or the same), 0 when it dies, -1 on memory. */
static int step_byte(const gram_rules *g, arena *w, int *s0, int *s1, int *need, uint32_t *val,
                     uint8_t b) {
    uint32_t cp;
    int r = utf8_step(need, val, b, &cp);
    if (r < 0) return 0;
    int n0 = w->n, f0, f1;
    if (r == 1) {
        if (set_advance(g, w, *s0, *s1, cp) < 0) return -1;
        f0 = n0, f1 = w->n;
    } else {
        int shift = 6 * (*need & 15);
        uint32_t lo = *val << shift, hi = lo | ((1u << shift) - 1);
        if (lo < utf8_min[*need >> 4]) lo = utf8_min[*need >> 4];
        if (hi > CP_MAX) hi = CP_MAX;
        if (lo > hi) return 0;
        if (set_filter(g, w, *s0, *s1, lo, hi, &f0, &f1) < 0) return -1;
    }
    if (f0 == f1) return 0;
    *s0 = f0, *s1 = f1;
    return 1;
}

gram_state *gram_state_create(const gram_rules *g, const gram_vocab *v) {
    gram_state *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->g = g;
    st->v = v;
    const g_rule *root = &g->rules[g->root];
    for (int a = 0; a < root->n_alt; a++) {
        int start = g->alt[root->alt0 + a];
        if (expand(g, &st->cur, 0, &start, 1, 0) < 0) goto fail;
    }
    if (v) {
        size_t words = ((size_t)v->n_vocab + 31) / 32;
        for (int i = 0; i < GRAM_CACHE; i++) {
            st->cache[i].mask = malloc(words * sizeof(uint32_t));
            if (!st->cache[i].mask) goto fail;
        }
    }
    return st;
fail:
    gram_state_free(st);
    return NULL;
}

void gram_state_free(gram_state *st) {
    if (!st) return;
    arena_free(&st->cur);
    arena_free(&st->work);
    for (int i = 0; i < GRAM_CACHE; i++) {
        free(st->cache[i].key);
        free(st->cache[i].mask);
    }
    free(st);
}

int gram_state_accept_bytes(gram_state *st, const char *bytes, size_t n) {
    arena *w = &st->work;
    w->n = 0;
    if (!arena_reserve(w, st->cur.n)) return -1;
    memcpy(w->a, st->cur.a, (size_t)st->cur.n * sizeof *w->a);
    w->n = st->cur.n;
    int s0 = 0, s1 = w->n, need = st->need;
    uint32_t val = st->val;
    for (size_t i = 0; i < n; i++) {
        if (step_byte(st->g, w, &s0, &s1, &need, &val, (uint8_t)bytes[i]) != 1) return -1;
        if (s0 > 0 && (size_t)s0 > (size_t)st->cur.n * 4 + 4096) { /* compact: keep it small */
            memmove(w->a, w->a + s0, (size_t)(s1 - s0) * sizeof *w->a);
            w->n = s1 - s0;
            s1 -= s0;
            s0 = 0;
        }
    }
    st->cur.n = 0;
    if (!arena_reserve(&st->cur, s1 - s0)) return -1;
    memcpy(st->cur.a, w->a + s0, (size_t)(s1 - s0) * sizeof *w->a);
    st->cur.n = s1 - s0;
    st->need = need;
    st->val = val;
    return 0;
}

bool gram_state_can_end(const gram_state *st) {
    if (st->need) return false;
    for (int i = 0; i < st->cur.n; i += st->cur.a[i] + 1)
        if (st->cur.a[i] == 0) return true;
    return false;
}

bool gram_state_done(const gram_state *st) {
    return st->need == 0 && st->cur.n == 1 && st->cur.a[0] == 0;
}

int gram_state_n_stacks(const gram_state *st) {
    int k = 0;
    for (int i = 0; i < st->cur.n; i += st->cur.a[i] + 1) k++;
    return k;
}

int gram_state_accept_token(gram_state *st, int id) {
    const gram_vocab *v = st->v;
    if (!v || id < 0 || id >= v->n_vocab) return -1;
    if ((v->end[id >> 5] >> (id & 31)) & 1) return gram_state_can_end(st) ? 0 : -1;
    if (v->len[id] == 0) return -1;
    return gram_state_accept_bytes(st, v->bytes + v->off[id], v->len[id]);
}

/* The trie walk: every token below node whose bytes keep some stack alive is set in mask. */
static int walk(gram_state *st, int node, int s0, int s1, int need, uint32_t val,
                uint32_t *mask, int *count) {
    const gram_vocab *v = st->v;
    const trie_node *nd = &v->node[node];
    for (int t = 0; t < nd->n_tok; t++) {
        int id = v->order[nd->tok0 + t];
        mask[id >> 5] |= 1u << (id & 31);
    }
    *count += nd->n_tok;
    arena *w = &st->work;
    const gram_rules *g = st->g;
    int mark = w->n, memo_mark = st->n_memo;
    for (int c = 0; c < nd->n_child; c++) {
        int child = nd->child0 + c, a0 = s0, a1 = s1, nneed = need;
        uint32_t nval = val, cp;
        int u = utf8_step(&nneed, &nval, v->edge[child], &cp);
        if (u < 0) continue;
        if (u == 0) { /* inside a character: keep the stacks that some completion could suit */
            int shift = 6 * (nneed & 15);
            uint32_t lo = nval << shift, hi = lo | ((1u << shift) - 1);
            if (lo < utf8_min[nneed >> 4]) lo = utf8_min[nneed >> 4];
            if (hi > CP_MAX) hi = CP_MAX;
            if (lo > hi) continue;
            if (set_filter(g, w, s0, s1, lo, hi, &a0, &a1) < 0) return -1;
        } else {
            /* which stacks take cp decides the result: characters alike share one advance
             * (inside a JSON string, nearly every byte of every token) */
            uint64_t sig = 0;
            int k = 0;
            for (int i = s0; i < s1; i += w->a[i] + 1, k++) {
                int len = w->a[i];
                if (len && k < 64 && class_has(g, &g->el[w->a[i + len]], cp)) sig |= 1ull << k;
                else if (len && k >= 64 && class_has(g, &g->el[w->a[i + len]], cp)) sig = ~0ull;
            }
            if (sig == 0) continue;
            bool memo = k <= 64, found = false;
            for (int e = st->n_memo - 1; memo && e >= 0 && e >= st->n_memo - GRAM_MEMO_SCAN; e--)
                if (st->memo[e].s0 == s0 && st->memo[e].s1 == s1 && st->memo[e].sig == sig) {
                    a0 = st->memo[e].r0, a1 = st->memo[e].r1, found = true;
                    break;
                }
            if (!found) {
                int n0 = w->n;
                if (set_advance(g, w, s0, s1, cp) < 0) return -1;
                a0 = n0, a1 = w->n;
                if (a1 - a0 == s1 - s0 &&
                    memcmp(w->a + a0, w->a + s0, (size_t)(s1 - s0) * sizeof *w->a) == 0) {
                    w->n = n0; /* the same set: reuse it, so that its memo entries apply */
                    a0 = s0, a1 = s1;
                }
                if (memo && st->n_memo < GRAM_MEMO) {
                    st->memo[st->n_memo].s0 = s0, st->memo[st->n_memo].s1 = s1;
                    st->memo[st->n_memo].r0 = a0, st->memo[st->n_memo].r1 = a1;
                    st->memo[st->n_memo].sig = sig;
                    st->n_memo++;
                }
            }
        }
        if (a0 == a1) continue;
        if (walk(st, child, a0, a1, nneed, nval, mask, count) < 0) return -1;
    }
    w->n = mark;
    st->n_memo = memo_mark;
    return 0;
}

int gram_state_mask(gram_state *st, uint32_t *mask) {
    const gram_vocab *v = st->v;
    size_t words = ((size_t)v->n_vocab + 31) / 32;
    int n_key = st->cur.n + 2;
    /* the cache: the same state always gives the same mask */
    for (int i = 0; i < GRAM_CACHE; i++) {
        mask_entry *e = &st->cache[i];
        if (e->used && e->n_key == n_key && e->key[0] == st->need && e->key[1] == (int)st->val &&
            memcmp(e->key + 2, st->cur.a, (size_t)st->cur.n * sizeof *e->key) == 0) {
            memcpy(mask, e->mask, words * sizeof *mask);
            e->stamp = ++st->clock;
            int k = 0;
            for (size_t j = 0; j < words; j++) k += __builtin_popcount(mask[j]);
            return k;
        }
    }
    memset(mask, 0, words * sizeof *mask);
    int count = 0;
    arena *w = &st->work;
    w->n = 0;
    if (!arena_reserve(w, st->cur.n)) return -1;
    memcpy(w->a, st->cur.a, (size_t)st->cur.n * sizeof *w->a);
    w->n = st->cur.n;
    st->n_memo = 0;
    if (walk(st, 0, 0, w->n, st->need, st->val, mask, &count) < 0) return -1;
    if (gram_state_can_end(st))
        for (size_t i = 0; i < words; i++) {
            count += __builtin_popcount(v->end[i] & ~mask[i]);
            mask[i] |= v->end[i];
        }
    mask_entry *e = &st->cache[0];
    for (int i = 1; i < GRAM_CACHE && e->used; i++)
        if (!st->cache[i].used || st->cache[i].stamp < e->stamp) e = &st->cache[i];
    if (gram_grow((void **)&e->key, &e->cap_key, n_key, sizeof *e->key)) {
        e->key[0] = st->need;
        e->key[1] = (int)st->val;
        memcpy(e->key + 2, st->cur.a, (size_t)st->cur.n * sizeof *e->key);
        e->n_key = n_key;
        memcpy(e->mask, mask, words * sizeof *mask);
        e->stamp = ++st->clock;
        e->used = true;
    }
    return count;
}
