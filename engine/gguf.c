/* gguf: a validating reader for GGUF v2/v3 files (header, metadata, tensor infos, data section).
 * Owns the mapping and the parsed tables of one file; strings, metadata arrays and tensor data
 * point into the mapping (arrays are views: validated once, decoded on demand). Never reads outside
 * the mapping, never allocates more than a count that has first been checked against the bytes left
 * in the file, and never interprets what the keys mean (that is model.c's job). */
#include "gguf.h"
#include "common.h"
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_KEY_LEN 65535
#define GGUF_MAX_NAME_LEN 255

const char *gguf_type_name(gguf_type t) {
    static const char *names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                  "int32",  "float32", "bool",   "string", "array",
                                  "uint64", "int64",   "float64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* How each scalar type is stored: its size in bytes and the gguf_value field it widens into. */
enum { SC_UNSIGNED = 1, SC_SIGNED, SC_FLOAT, SC_BOOL };
static const struct {
    uint8_t size, kind;
} scalars[] = {
    [GGUF_UINT8] = {1, SC_UNSIGNED},   [GGUF_INT8] = {1, SC_SIGNED},
    [GGUF_UINT16] = {2, SC_UNSIGNED},  [GGUF_INT16] = {2, SC_SIGNED},
    [GGUF_UINT32] = {4, SC_UNSIGNED},  [GGUF_INT32] = {4, SC_SIGNED},
    [GGUF_UINT64] = {8, SC_UNSIGNED},  [GGUF_INT64] = {8, SC_SIGNED},
    [GGUF_FLOAT32] = {4, SC_FLOAT},    [GGUF_FLOAT64] = {8, SC_FLOAT},
    [GGUF_BOOL] = {1, SC_BOOL},
    /* GGUF_STRING, GGUF_ARRAY: {0, 0} */
};

/* Bytes of a scalar value of type t; 0 for string/array/unknown. */
static size_t scalar_size(gguf_type t) {
    return (unsigned)t < sizeof scalars / sizeof scalars[0] ? scalars[t].size : 0;
}

/* The scalar of type t (scalar_size(t) > 0) stored at p into v's field for it, v zeroed. GGUF
 * is little-endian, as the host is assumed to be: the size's low bytes of a 64-bit field. */
static void scalar_decode(const uint8_t *p, gguf_type t, gguf_value *v) {
    const size_t sz = scalars[t].size;
    uint64_t u = 0;
    memcpy(&u, p, sz);
    switch (scalars[t].kind) {
    case SC_UNSIGNED: v->u = u; break;
    case SC_SIGNED: { /* sign-extend from bit 8 * sz - 1 */
        const uint64_t sign = (uint64_t)1 << (8 * sz - 1);
        v->i = (int64_t)((u ^ sign) - sign);
        break;
    }
    case SC_FLOAT:
        if (sz == 4) {
            float x;
            memcpy(&x, p, 4);
            v->f = x;
        } else {
            memcpy(&v->f, p, 8);
        }
        break;
    case SC_BOOL: v->b = u != 0; break;
    }
}

/* The fewest bytes one element of type t can take in the file (for count checks). */
static size_t min_value_size(gguf_type t) {
    if (t == GGUF_STRING) return 8;    /* the length */
    if (t == GGUF_ARRAY) return 4 + 8; /* element type and count */
    return scalar_size(t);
}

/* ---- a bounds-checked cursor over the mapping ------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    char *err;
    size_t errlen;
} cursor;

static size_t cur_left(const cursor *c) {
    return c->size - c->pos;
}

static int cur_read(cursor *c, void *out, size_t n, const char *what) {
    if (n > cur_left(c)) {
        memset(out, 0, n);
        ls_fail(c->err, c->errlen, "truncated file: %s at offset %zu needs %zu bytes, %zu left",
                what, c->pos, n, cur_left(c));
        return -1;
    }
    memcpy(out, c->p + c->pos, n); /* little-endian host assumed, as GGUF is little-endian */
    c->pos += n;
    return 0;
}

static int cur_u32(cursor *c, uint32_t *v, const char *what) {
    return cur_read(c, v, 4, what);
}
static int cur_u64(cursor *c, uint64_t *v, const char *what) {
    return cur_read(c, v, 8, what);
}

static int cur_str(cursor *c, gguf_str *out, uint64_t max_len, const char *what) {
    uint64_t len;
    if (cur_u64(c, &len, what) != 0) return -1;
    if (len > cur_left(c))
        return ls_fail(c->err, c->errlen,
                       "%s: string length %llu at offset %zu exceeds the file (truncated?)", what,
                       (unsigned long long)len, c->pos - 8);
    if (len > max_len)
        return ls_fail(c->err, c->errlen, "%s: string length %llu exceeds the limit %llu", what,
                       (unsigned long long)len, (unsigned long long)max_len);
    out->s = (const char *)(c->p + c->pos);
    out->len = len;
    if (!ls_utf8_valid(out->s, (size_t)len))
        return ls_fail(c->err, c->errlen, "%s: string at offset %zu is not valid UTF-8", what,
                       c->pos - 8);
    c->pos += (size_t)len;
    return 0;
}

/* ---- metadata values ------------------------------------------------------------------------ */

static void value_free(gguf_value *v) {
    if (v->type != GGUF_ARRAY) return;
    free((void *)v->arr.index); /* the file owns it (see read_value) */
    v->arr.index = NULL;
}

/* Sizes and contents of values already validated by read_value: these read the mapping
 * without checks, and only ever at offsets read_value has walked. */
static uint64_t value_size(const uint8_t *p, gguf_type t);

static uint64_t elems_size(const uint8_t *p, gguf_type elem, uint64_t n) {
    size_t sz = scalar_size(elem);
    if (sz) return n * sz;
    uint64_t off = 0;
    for (uint64_t i = 0; i < n; i++)
        off += value_size(p + off, elem);
    return off;
}

static uint64_t value_size(const uint8_t *p, gguf_type t) {
    uint64_t n;
    if (t == GGUF_STRING) {
        memcpy(&n, p, 8);
        return 8 + n;
    }
    if (t == GGUF_ARRAY) {
        uint32_t elem;
        memcpy(&elem, p, 4);
        memcpy(&n, p + 4, 8);
        return 12 + elems_size(p + 12, (gguf_type)elem, n); /* depth <= GGUF_MAX_DEPTH */
    }
    return scalar_size(t);
}

/* Decodes the validated value of type t at p into v (strings and arrays as views). */
static void decode_at(const uint8_t *p, gguf_type t, gguf_value *v) {
    memset(v, 0, sizeof *v);
    v->type = t;
    if (t == GGUF_STRING) {
        memcpy(&v->str.len, p, 8);
        v->str.s = (const char *)p + 8;
    } else if (t == GGUF_ARRAY) {
        uint32_t elem;
        memcpy(&elem, p, 4);
        v->arr.elem = (gguf_type)elem;
        memcpy(&v->arr.n, p + 4, 8);
        v->arr.data = p + 12;
        v->arr.nbytes = elems_size(v->arr.data, v->arr.elem, v->arr.n);
    } else {
        scalar_decode(p, t, v);
    }
}

static int read_value(cursor *c, gguf_type t, gguf_value *v, int depth, const char *key);

/* Reads the rest of an array value (its element type, count and elements) into v; depth counts
 * enclosing arrays. */
static int read_array(cursor *c, gguf_value *v, int depth, const char *key) {
    if (depth >= GGUF_MAX_DEPTH)
        return ls_fail(c->err, c->errlen, "%s: arrays nested deeper than %d", key, GGUF_MAX_DEPTH);
    uint32_t elem;
    uint64_t n;
    if (cur_u32(c, &elem, key) || cur_u64(c, &n, key)) return -1;
    if (elem > GGUF_FLOAT64)
        return ls_fail(c->err, c->errlen, "%s: unknown array element type %u", key, elem);
    /* Every element takes at least min_value_size bytes: a count the file cannot hold is
     * rejected before anything is allocated for it. */
    if (n > cur_left(c) / min_value_size((gguf_type)elem))
        return ls_fail(
            c->err, c->errlen,
            "%s: array count %llu is more than the rest of the file can hold (truncated?)", key,
            (unsigned long long)n);
    /* The elements stay in the mapping (a view); they are validated here, once, so that
     * gguf_arr_get can decode them without checks. */
    v->arr.elem = (gguf_type)elem;
    v->arr.n = n;
    v->arr.data = c->p + c->pos;
    size_t start = c->pos, sz = scalar_size((gguf_type)elem);
    if (sz) { /* n * sz fits: checked against the bytes left above */
        for (uint64_t i = 0; elem == GGUF_BOOL && i < n; i++)
            if (c->p[c->pos + i] > 1)
                return ls_fail(c->err, c->errlen, "%s: bool value %u is neither 0 nor 1", key,
                               c->p[c->pos + i]);
        c->pos += (size_t)n * sz;
        v->arr.nbytes = c->pos - start;
        return 0;
    }
    /* strings or arrays: a top-level array keeps the offset of every GGUF_ARR_STRIDE-th
     * element, so that gguf_arr_get walks at most GGUF_ARR_STRIDE - 1 elements */
    uint64_t *index = NULL;
    if (depth == 0 && n > 0) {
        index = malloc((size_t)((n - 1) / GGUF_ARR_STRIDE + 1) * sizeof *index);
        if (!index)
            return ls_fail(c->err, c->errlen, "%s: out of memory for the index of %llu items", key,
                           (unsigned long long)n);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (index && i % GGUF_ARR_STRIDE == 0) index[i / GGUF_ARR_STRIDE] = c->pos - start;
        gguf_value e; /* nested: allocates nothing (depth > 0) */
        if (read_value(c, (gguf_type)elem, &e, depth + 1, key) != 0) {
            free(index);
            return -1;
        }
    }
    v->arr.index = index;
    v->arr.nbytes = c->pos - start;
    return 0;
}

/* Reads one value of type t into v; depth counts enclosing arrays. On error v holds nothing
 * that needs freeing. */
static int read_value(cursor *c, gguf_type t, gguf_value *v, int depth, const char *key) {
    memset(v, 0, sizeof *v);
    v->type = t;
    if (t == GGUF_STRING) return cur_str(c, &v->str, UINT64_MAX, key);
    if (t == GGUF_ARRAY) return read_array(c, v, depth, key);
    const size_t sz = scalar_size(t);
    if (sz == 0) return ls_fail(c->err, c->errlen, "%s: unknown value type %u", key, (unsigned)t);
    uint8_t bytes[8];
    if (cur_read(c, bytes, sz, key)) return -1;
    if (t == GGUF_BOOL && bytes[0] > 1)
        return ls_fail(c->err, c->errlen, "%s: bool value %u is neither 0 nor 1", key, bytes[0]);
    scalar_decode(bytes, t, v);
    return 0;
}

/* ---- sorted indices for lookups and duplicate checks ---------------------------------------- */

static int str_cmp(gguf_str a, gguf_str b) {
    size_t n = a.len < b.len ? (size_t)a.len : (size_t)b.len;
    int r = n ? memcmp(a.s, b.s, n) : 0;
    if (r) return r;
    return a.len < b.len ? -1 : a.len > b.len;
}

/* qsort has no context argument: the strings to sort by are passed through this. */
static _Thread_local const gguf_str *sort_keys;

static int order_cmp(const void *a, const void *b) {
    return str_cmp(sort_keys[*(const uint64_t *)a], sort_keys[*(const uint64_t *)b]);
}

/* Sorts indices 0..n-1 by keys[i]; returns the index of a duplicate key, or -1 when none. */
static int64_t sort_unique(uint64_t *order, const gguf_str *keys, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        order[i] = i;
    sort_keys = keys;
    qsort(order, (size_t)n, sizeof *order, order_cmp);
    sort_keys = NULL;
    for (uint64_t i = 1; i < n; i++)
        if (str_cmp(keys[order[i - 1]], keys[order[i]]) == 0) return (int64_t)order[i];
    return -1;
}

/* Binary search for a NUL-terminated name among n strings reached through order. */
static int64_t find_sorted(const uint64_t *order, uint64_t n, const void *base, size_t stride,
                           const char *name) {
    gguf_str want = {name, strlen(name)};
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const gguf_str *s = (const gguf_str *)((const char *)base + order[mid] * stride);
        int r = str_cmp(*s, want);
        if (r == 0) return (int64_t)order[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---- the file ---------------------------------------------------------------------------- */

static int read_kvs(gguf_file *f, cursor *c) {
    char *err = c->err;
    size_t errlen = c->errlen;
    /* each pair takes at least 8 (key length) + 1 (key) + 4 (type) + 1 bytes */
    if (f->n_kv > cur_left(c) / 14)
        return ls_fail(
            err, errlen,
            "metadata count %llu is more than the rest of the file can hold (truncated?)",
            (unsigned long long)f->n_kv);
    f->kv = calloc(f->n_kv ? (size_t)f->n_kv : 1, sizeof *f->kv);
    f->kv_order = calloc(f->n_kv ? (size_t)f->n_kv : 1, sizeof *f->kv_order);
    if (!f->kv || !f->kv_order) return ls_fail(err, errlen, "out of memory for metadata");
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        char what[64];
        snprintf(what, sizeof what, "metadata key #%llu", (unsigned long long)i);
        if (cur_str(c, &kv->key, GGUF_MAX_KEY_LEN, what) != 0) return -1;
        if (kv->key.len == 0) return ls_fail(err, errlen, "%s is empty", what);
        char key[96];
        snprintf(key, sizeof key, "key '%.*s'", (int)(kv->key.len < 80 ? kv->key.len : 80),
                 kv->key.s);
        uint32_t type;
        if (cur_u32(c, &type, key) != 0) return -1;
        if (type > GGUF_FLOAT64)
            return ls_fail(err, errlen, "%s: unknown value type %u", key, type);
        if (read_value(c, (gguf_type)type, &kv->value, 0, key) != 0) {
            kv->value.type = GGUF_UINT8; /* nothing to free */
            return -1;
        }
    }
    gguf_str *keys = malloc((f->n_kv ? (size_t)f->n_kv : 1) * sizeof *keys);
    if (!keys) return ls_fail(err, errlen, "out of memory");
    for (uint64_t i = 0; i < f->n_kv; i++)
        keys[i] = f->kv[i].key;
    int64_t dup = sort_unique(f->kv_order, keys, f->n_kv);
    free(keys);
    if (dup >= 0)
        return ls_fail(err, errlen, "duplicate metadata key '%.*s'", (int)f->kv[dup].key.len,
                       f->kv[dup].key.s);
    return 0;
}

static int read_tensor_infos(gguf_file *f, cursor *c) {
    char *err = c->err;
    size_t errlen = c->errlen;
    /* each info takes at least 8 + 1 (name) + 4 + 8 (one dim) + 4 + 8 bytes */
    if (f->n_tensors > cur_left(c) / 33)
        return ls_fail(err, errlen,
                       "tensor count %llu is more than the rest of the file can hold (truncated?)",
                       (unsigned long long)f->n_tensors);
    size_t n = f->n_tensors ? (size_t)f->n_tensors : 1;
    f->tensors = calloc(n, sizeof *f->tensors);
    f->tensor_order = calloc(n, sizeof *f->tensor_order);
    if (!f->tensors || !f->tensor_order) return ls_fail(err, errlen, "out of memory for tensors");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char what[64];
        snprintf(what, sizeof what, "tensor #%llu name", (unsigned long long)i);
        if (cur_str(c, &t->name, GGUF_MAX_NAME_LEN, what) != 0) return -1;
        if (t->name.len == 0) return ls_fail(err, errlen, "%s is empty", what);
        char nm[300];
        snprintf(nm, sizeof nm, "tensor '%.*s'", (int)t->name.len, t->name.s);
        if (cur_u32(c, &t->n_dims, nm) != 0) return -1;
        if (t->n_dims == 0 || t->n_dims > 4)
            return ls_fail(err, errlen, "%s: n_dims %u is not in 1..4", nm, t->n_dims);
        for (int d = 0; d < 4; d++)
            t->ne[d] = 1;
        size_t nelem = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne;
            if (cur_u64(c, &ne, nm) != 0) return -1;
            if (ne == 0) return ls_fail(err, errlen, "%s: dimension %u is zero", nm, d);
            if (ne > INT64_MAX || ls_mul_size(nelem, (size_t)ne, &nelem) != 0 || nelem > INT64_MAX)
                return ls_fail(err, errlen, "%s: element count overflows", nm);
            t->ne[d] = (int64_t)ne;
        }
        if (cur_u32(c, &t->type, nm) != 0 || cur_u64(c, &t->offset, nm) != 0) return -1;
        const int be = dtype_ggml_block_elems(t->type);
        if (be == 0) return ls_fail(err, errlen, "%s: unknown tensor type %u", nm, t->type);
        if (t->ne[0] % be != 0)
            return ls_fail(err, errlen, "%s: row length %lld is not a multiple of %s's block of %d",
                           nm, (long long)t->ne[0], dtype_ggml_name(t->type), be);
        size_t nb;
        if (ls_mul_size(nelem / (size_t)be, dtype_ggml_block_bytes(t->type), &nb))
            return ls_fail(err, errlen, "%s: byte size overflows", nm);
        t->nbytes = nb;
    }
    gguf_str *names = malloc(n * sizeof *names);
    if (!names) return ls_fail(err, errlen, "out of memory");
    for (uint64_t i = 0; i < f->n_tensors; i++)
        names[i] = f->tensors[i].name;
    int64_t dup = sort_unique(f->tensor_order, names, f->n_tensors);
    free(names);
    if (dup >= 0)
        return ls_fail(err, errlen, "duplicate tensor name '%.*s'", (int)f->tensors[dup].name.len,
                       f->tensors[dup].name.s);
    return 0;
}

static int offset_cmp(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places the data section and checks every tensor lies inside it, aligned, without overlap. */
static int place_tensors(gguf_file *f, cursor *c) {
    char *err = c->err;
    size_t errlen = c->errlen;
    size_t start = (c->pos + (f->alignment - 1)) & ~(size_t)(f->alignment - 1);
    if (start < c->pos) return ls_fail(err, errlen, "data section offset overflows");
    f->data_offset = start;
    if (f->n_tensors == 0) return 0; /* a vocabulary-only file may end right after its infos */
    if (start > c->size)
        return ls_fail(err, errlen,
                       "truncated file: data section at %zu is past the end (%zu bytes)", start,
                       c->size);
    size_t data_size = c->size - start;
    const gguf_tensor **by_off = malloc((size_t)f->n_tensors * sizeof *by_off);
    if (!by_off) return ls_fail(err, errlen, "out of memory");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        by_off[i] = t;
        if (t->offset % f->alignment != 0) {
            free(by_off);
            return ls_fail(err, errlen, "tensor '%.*s': offset %llu is not aligned to %llu",
                           (int)t->name.len, t->name.s, (unsigned long long)t->offset,
                           (unsigned long long)f->alignment);
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            free(by_off);
            return ls_fail(err, errlen,
                           "tensor '%.*s': bytes %llu..%llu are out of bounds of the data section "
                           "(%zu bytes; truncated file?)",
                           (int)t->name.len, t->name.s, (unsigned long long)t->offset,
                           (unsigned long long)(t->offset + t->nbytes), data_size);
        }
        t->data = f->map.data + start + t->offset;
    }
    qsort(by_off, (size_t)f->n_tensors, sizeof *by_off, offset_cmp);
    for (uint64_t i = 1; i < f->n_tensors; i++) {
        const gguf_tensor *a = by_off[i - 1], *b = by_off[i];
        if (a->offset + a->nbytes > b->offset) {
            int r = ls_fail(err, errlen, "tensors '%.*s' and '%.*s' overlap", (int)a->name.len,
                            a->name.s, (int)b->name.len, b->name.s);
            free(by_off);
            return r;
        }
    }
    free(by_off);
    return 0;
}

gguf_file *gguf_open(const char *path, char *err, size_t errlen) {
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        ls_fail(err, errlen, "out of memory");
        return NULL;
    }
    char sub[LS_ERR_LEN] = "";
    if (map_open(&f->map, path, err, errlen) != 0) goto fail_nomsg;
    cursor c = {f->map.data, f->map.size, 0, sub, sizeof sub};
    char magic[4];
    if (cur_read(&c, magic, 4, "magic") != 0) goto fail;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0) {
        ls_fail(sub, sizeof sub, "bad magic (not a GGUF file)");
        goto fail;
    }
    if (cur_u32(&c, &f->version, "version") != 0) goto fail;
    if (f->version != 2 && f->version != 3) {
        ls_fail(sub, sizeof sub, "unsupported GGUF version %u (2 and 3 are supported)", f->version);
        goto fail;
    }
    if (cur_u64(&c, &f->n_tensors, "tensor count") || cur_u64(&c, &f->n_kv, "metadata count"))
        goto fail;
    if (read_kvs(f, &c) != 0) goto fail;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t al;
    int r = gguf_get_int(f, "general.alignment", &al, sub, sizeof sub);
    if (r < 0) goto fail;
    if (r == 0) {
        if (al <= 0 || (al & (al - 1)) != 0 || al > (1 << 30)) {
            ls_fail(sub, sizeof sub, "general.alignment %lld is not a power of two", (long long)al);
            goto fail;
        }
        f->alignment = (uint64_t)al;
    }
    if (read_tensor_infos(f, &c) != 0) goto fail;
    if (place_tensors(f, &c) != 0) goto fail;
    return f;
fail:
    ls_fail(err, errlen, "%s: %s", path, sub);
fail_nomsg:
    gguf_close(f);
    return NULL;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++)
            value_free(&f->kv[i].value);
    free(f->kv);
    free(f->kv_order);
    free(f->tensors);
    free(f->tensor_order);
    map_close(&f->map);
    free(f);
}

/* ---- lookups --------------------------------------------------------------------------------- */

const gguf_value *gguf_get(const gguf_file *f, const char *key) {
    if (!f->kv_order) return NULL;
    int64_t i = find_sorted(f->kv_order, f->n_kv, f->kv, sizeof *f->kv, key);
    return i < 0 ? NULL : &f->kv[i].value;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    if (!f->tensor_order) return NULL;
    int64_t i = find_sorted(f->tensor_order, f->n_tensors, f->tensors, sizeof *f->tensors, name);
    return i < 0 ? NULL : &f->tensors[i];
}

int gguf_get_int(const gguf_file *f, const char *key, int64_t *out, char *err, size_t errlen) {
    const gguf_value *v = gguf_get(f, key);
    if (!v) return 1;
    switch (v->type) {
    case GGUF_UINT8:
    case GGUF_UINT16:
    case GGUF_UINT32:
    case GGUF_UINT64:
        if (v->u > INT64_MAX)
            return ls_fail(err, errlen, "%s: value %llu is out of range", key,
                           (unsigned long long)v->u);
        *out = (int64_t)v->u;
        return 0;
    case GGUF_INT8:
    case GGUF_INT16:
    case GGUF_INT32:
    case GGUF_INT64:
        *out = v->i;
        return 0;
    default:
        return ls_fail(err, errlen, "%s has type %s, expected an integer", key,
                       gguf_type_name(v->type));
    }
}

int gguf_get_float(const gguf_file *f, const char *key, double *out, char *err, size_t errlen) {
    const gguf_value *v = gguf_get(f, key);
    if (!v) return 1;
    if (v->type == GGUF_FLOAT32 || v->type == GGUF_FLOAT64) {
        *out = v->f;
        return 0;
    }
    int64_t i;
    if (gguf_get_int(f, key, &i, NULL, 0) == 0) {
        *out = (double)i;
        return 0;
    }
    return ls_fail(err, errlen, "%s has type %s, expected a number", key, gguf_type_name(v->type));
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, char *err, size_t errlen) {
    const gguf_value *v = gguf_get(f, key);
    if (!v) return 1;
    if (v->type != GGUF_BOOL)
        return ls_fail(err, errlen, "%s has type %s, expected bool", key, gguf_type_name(v->type));
    *out = v->b;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, char *err, size_t errlen) {
    const gguf_value *v = gguf_get(f, key);
    if (!v) return 1;
    if (v->type != GGUF_STRING)
        return ls_fail(err, errlen, "%s has type %s, expected string", key,
                       gguf_type_name(v->type));
    *out = v->str;
    return 0;
}

int gguf_get_array(const gguf_file *f, const char *key, gguf_type elem, const gguf_value **out,
                   char *err, size_t errlen) {
    const gguf_value *v = gguf_get(f, key);
    if (!v) return 1;
    if (v->type != GGUF_ARRAY)
        return ls_fail(err, errlen, "%s has type %s, expected an array of %s", key,
                       gguf_type_name(v->type), gguf_type_name(elem));
    if (v->arr.elem != elem)
        return ls_fail(err, errlen, "%s is an array of %s, expected an array of %s", key,
                       gguf_type_name(v->arr.elem), gguf_type_name(elem));
    *out = v;
    return 0;
}

int gguf_arr_get(const gguf_value *a, uint64_t i, gguf_value *out) {
    if (a->type != GGUF_ARRAY || i >= a->arr.n) return -1;
    gguf_type t = a->arr.elem;
    size_t sz = scalar_size(t);
    uint64_t off = 0, k = 0;
    if (sz) {
        off = i * sz, k = i;
    } else if (a->arr.index) {
        k = i / GGUF_ARR_STRIDE * GGUF_ARR_STRIDE;
        off = a->arr.index[i / GGUF_ARR_STRIDE];
    }
    for (; k < i; k++)
        off += value_size(a->arr.data + off, t);
    if (off >= a->arr.nbytes) return -1; /* never for a value this reader made */
    decode_at(a->arr.data + off, t, out);
    return 0;
}

bool gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.s, c, n) == 0);
}
