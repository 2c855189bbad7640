/* kv_cache: one sequence's keys and values, (layer, kv head, n_ctx, head_dim), in F32, F16 or
 * Q8_0 blocks.
 * Allocated once; clear/truncate only move the fill mark, copy moves just the filled positions. */
#include "kv_cache.h"
#include "common.h"

#include "tensor.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

size_t kv_row_bytes(kv_type type, int n) {
    if (type == KV_Q8_0) /* a partial block counts whole (kv_create refuses such shapes) */
        return (size_t)((n + QK - 1) / QK) * sizeof(block_q8_0);
    return (size_t)n * (type == KV_F16 ? 2 : 4);
}

const char *kv_type_name(kv_type type) {
    return type == KV_F32 ? "f32" : type == KV_F16 ? "f16" : "q8_0";
}

int kv_type_parse(const char *name, kv_type *out) {
    for (int t = KV_F32; t <= KV_Q8_0; t++)
        if (!strcmp(name, kv_type_name((kv_type)t))) {
            *out = (kv_type)t;
            return 0;
        }
    return -1;
}

kv_cache *kv_create(const model_config *c, int n_ctx, kv_type type, char *err, size_t errlen) {
    if (n_ctx <= 0) {
        ls_fail(err, errlen, "context size must be positive, got %d", n_ctx);
        return NULL;
    }
    if (type != KV_F32 && type != KV_F16 && type != KV_Q8_0) {
        ls_fail(err, errlen, "unknown KV cache type %d", (int)type);
        return NULL;
    }
    if (type == KV_Q8_0 && c->head_dim % QK != 0) { /* blocks must not straddle two heads */
        ls_fail(err, errlen,
                "a q8_0 KV cache needs a head size that is a multiple of %d; this "
                "model's is %d (use f16 or f32)",
                QK, c->head_dim);
        return NULL;
    }
    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) goto oom;
    kv->n_layers = c->n_layers;
    kv->n_ctx = n_ctx;
    kv->kv_dim = c->n_kv_heads * c->head_dim;
    kv->n_kv_heads = c->n_kv_heads;
    kv->head_dim = c->head_dim;
    kv->type = type;
    size_t n;
    if (ls_mul_size((size_t)kv->n_layers * kv_row_bytes(type, kv->kv_dim), (size_t)n_ctx, &n))
        goto oom;
    kv->k = ls_alloc(n);
    kv->v = ls_alloc(n);
    if (!kv->k || !kv->v) goto oom;
    return kv;
oom:
    kv_free(kv);
    ls_fail(err, errlen, "out of memory for a KV cache of %d positions", n_ctx);
    return NULL;
}

void kv_free(kv_cache *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

size_t kv_bytes_per_token(const model_config *c, kv_type type) {
    return 2 * (size_t)c->n_layers * kv_row_bytes(type, c->n_kv_heads * c->head_dim);
}

size_t kv_bytes(const kv_cache *kv) {
    return 2 * (size_t)kv->n_layers * (size_t)kv->n_ctx * kv_row_bytes(kv->type, kv->kv_dim);
}

void kv_clear(kv_cache *kv) { kv->n = 0; }

void kv_truncate(kv_cache *kv, int n) {
    if (n >= 0 && n < kv->n) kv->n = n;
}

int kv_copy(kv_cache *dst, const kv_cache *src) {
    if (dst->n_layers != src->n_layers || dst->n_kv_heads != src->n_kv_heads ||
        dst->head_dim != src->head_dim || dst->type != src->type || dst->n_ctx < src->n)
        return -1;
    /* each (layer, head) slice's filled positions: the caches' n_ctx may differ */
    size_t bytes = kv_row_bytes(src->type, src->head_dim) * (size_t)src->n;
    for (int l = 0; l < src->n_layers; l++)
        for (int h = 0; h < src->n_kv_heads; h++) {
            memcpy(kv_k_head(dst, l, h, 0), kv_k_head(src, l, h, 0), bytes);
            memcpy(kv_v_head(dst, l, h, 0), kv_v_head(src, l, h, 0), bytes);
        }
    dst->n = src->n;
    return 0;
}

static void *head_of(void *base, const kv_cache *kv, int layer, int kv_head, int pos) {
    assert(layer >= 0 && layer < kv->n_layers && kv_head >= 0 && kv_head < kv->n_kv_heads &&
           pos >= 0 && pos <= kv->n_ctx);
    size_t slice = (size_t)layer * (size_t)kv->n_kv_heads + (size_t)kv_head;
    size_t idx = slice * (size_t)kv->n_ctx + (size_t)pos;
    return (uint8_t *)base + idx * kv_row_bytes(kv->type, kv->head_dim);
}

void *kv_k_head(const kv_cache *kv, int layer, int kv_head, int pos) {
    return head_of(kv->k, kv, layer, kv_head, pos);
}
void *kv_v_head(const kv_cache *kv, int layer, int kv_head, int pos) {
    return head_of(kv->v, kv, layer, kv_head, pos);
}
