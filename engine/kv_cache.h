/* kv_cache: the keys and values of one sequence, for every layer, up to n_ctx positions. Owned
 * by one sequence (a server slot, a beam); not thread-safe: only the thread that runs the
 * forward step touches it. Sized once at creation; never reallocates. */
#ifndef LS_KV_CACHE_H
#define LS_KV_CACHE_H

#include "model.h"

/* KV_Q8_0: each head's keys and values as Q8_0 blocks (32 values, one F16 scale, 34 bytes),
 * quantized when a row is written (quantize_row_q8_0); needs head_dim a multiple of 32. */
typedef enum { KV_F32 = 0, KV_F16 = 1, KV_Q8_0 = 2 } kv_type;

/* Laid out (layer, kv head, position, head_dim): one kv head's keys (values) at consecutive
 * positions are one contiguous stream, which attention reads front to back and the hardware
 * prefetchers follow; (layer, position, kv_dim) gave a 128-byte slice every 512 bytes at the
 * TinyLlama shape, whose first touch was a quarter of decode's time at 4k tokens. */
typedef struct {
    int n_layers, n_ctx, kv_dim; /* kv_dim = n_kv_heads * head_dim */
    int n_kv_heads, head_dim;
    kv_type type;
    void *k;   /* (n_layers, n_kv_heads, n_ctx, head_dim) of type (Q8_0: head_dim / 32 blocks) */
    void *v;   /* (n_layers, n_kv_heads, n_ctx, head_dim) of type */
    int n;     /* positions 0..n-1 hold valid entries */
} kv_cache;

/* NULL with a message when n_ctx is not positive, the type is unknown or does not fit the
 * model's head_dim (Q8_0), or the memory cannot be had. */
kv_cache *kv_create(const model_config *c, int n_ctx, kv_type type, char *err, size_t errlen);
void kv_free(kv_cache *kv);
size_t kv_bytes(const kv_cache *kv);
/* Bytes one position takes in a cache of this model and type (keys and values, every layer):
 * kv_bytes of a cache of n_ctx positions is n_ctx times this. */
size_t kv_bytes_per_token(const model_config *c, kv_type type);
/* Bytes taken by the first n elements of a row of this type: the byte offset of element n
 * within a row (Q8_0: n a multiple of 32 for an offset; otherwise rounded up to whole blocks). */
size_t kv_row_bytes(kv_type type, int n);
/* "f32", "f16", "q8_0". */
const char *kv_type_name(kv_type type);
/* The type of one of those names into *out: 0, or -1 when name is none of them. */
int kv_type_parse(const char *name, kv_type *out);

void kv_clear(kv_cache *kv);
/* Keeps positions 0..n-1 (n <= kv->n). */
void kv_truncate(kv_cache *kv, int n);
/* Copies src's first src->n positions into dst (same shape and type). 0, or -1 on mismatch. */
int kv_copy(kv_cache *dst, const kv_cache *src);

/* The head_dim keys (values) of one kv head at one position, for the forward pass; the same
 * head's next position follows at kv_row_bytes(type, head_dim) bytes. pos may be n_ctx (the
 * end of the head's slice, not to be read). */
void *kv_k_head(const kv_cache *kv, int layer, int kv_head, int pos);
void *kv_v_head(const kv_cache *kv, int layer, int kv_head, int pos);

#endif
