/* gguf_write: GGUF v3 pieces to a stdio stream for the CLI's file writers (see gguf_write.h).
 * The reader (engine/gguf.c) defines what is valid; this only encodes. */
#include "gguf_write.h"

#include <string.h>

void gw_put(gw_file *o, const void *p, size_t n) {
    if (!o->failed && n > 0 && fwrite(p, 1, n, o->fp) != n) o->failed = 1;
}
void gw_u32(gw_file *o, uint32_t v) { gw_put(o, &v, 4); }
void gw_u64(gw_file *o, uint64_t v) { gw_put(o, &v, 8); }
void gw_strn(gw_file *o, const char *s, size_t n) {
    gw_u64(o, n);
    gw_put(o, s, n);
}
void gw_str(gw_file *o, const char *s) { gw_strn(o, s, strlen(s)); }
void gw_zeros(gw_file *o, size_t n) {
    static const char z[64];
    while (n > 0) {
        size_t k = n < sizeof z ? n : sizeof z;
        gw_put(o, z, k);
        n -= k;
    }
}

void gw_kv_u32(gw_file *o, const char *key, uint32_t v) {
    o->n_kv++;
    gw_str(o, key);
    gw_u32(o, GGUF_UINT32);
    gw_u32(o, v);
}
void gw_kv_f32(gw_file *o, const char *key, float v) {
    o->n_kv++;
    gw_str(o, key);
    gw_u32(o, GGUF_FLOAT32);
    gw_put(o, &v, 4);
}
void gw_kv_str(gw_file *o, const char *key, const char *v) {
    o->n_kv++;
    gw_str(o, key);
    gw_u32(o, GGUF_STRING);
    gw_str(o, v);
}
void gw_kv_array(gw_file *o, const char *key, gguf_type elem, uint64_t n) {
    o->n_kv++;
    gw_str(o, key);
    gw_u32(o, GGUF_ARRAY);
    gw_u32(o, (uint32_t)elem);
    gw_u64(o, n);
}

void gw_kv_copy(gw_file *o, const gguf_kv *kv) {
    o->n_kv++;
    const gguf_value *v = &kv->value;
    gw_strn(o, kv->key.s, kv->key.len);
    gw_u32(o, (uint32_t)v->type);
    static const size_t size[] = {[GGUF_UINT8] = 1,   [GGUF_INT8] = 1,   [GGUF_UINT16] = 2,
                                  [GGUF_INT16] = 2,   [GGUF_UINT32] = 4, [GGUF_INT32] = 4,
                                  [GGUF_FLOAT32] = 4, [GGUF_BOOL] = 1,   [GGUF_UINT64] = 8,
                                  [GGUF_INT64] = 8,   [GGUF_FLOAT64] = 8};
    switch (v->type) {
    case GGUF_STRING: gw_strn(o, v->str.s, v->str.len); break;
    case GGUF_ARRAY:
        gw_u32(o, (uint32_t)v->arr.elem);
        gw_u64(o, v->arr.n);
        gw_put(o, v->arr.data, v->arr.nbytes);
        break;
    case GGUF_FLOAT32: {
        float f = (float)v->f;
        gw_put(o, &f, 4);
        break;
    }
    case GGUF_FLOAT64: gw_put(o, &v->f, 8); break;
    case GGUF_BOOL: {
        uint8_t b = v->b;
        gw_put(o, &b, 1);
        break;
    }
    default: { /* integers, little-endian as the file */
        uint64_t u = v->type == GGUF_INT8 || v->type == GGUF_INT16 || v->type == GGUF_INT32 ||
                             v->type == GGUF_INT64
                         ? (uint64_t)v->i
                         : v->u;
        gw_put(o, &u, size[v->type]);
    }
    }
}
