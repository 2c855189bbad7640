/* test_kv_cache: sizes, the (layer, kv head, position) layout, clear, truncate and copy of a
 * sequence's KV cache (F32, F16, Q8_0). */
#include "check.h"
#include "kv_cache.h"

#include <string.h>

/* Every (layer, head) slice of n_ctx positions starts where the one before it ended, each
 * position kv_row_bytes(head_dim) after the last, K and V alike: contiguous, no overlap, and
 * together exactly the cache's bytes. */
static bool slices_tile(const kv_cache *kv) {
    const size_t hb = kv_row_bytes(kv->type, kv->head_dim);
    const char *k = kv_k_head(kv, 0, 0, 0), *v = kv_v_head(kv, 0, 0, 0);
    for (int l = 0; l < kv->n_layers; l++)
        for (int h = 0; h < kv->n_kv_heads; h++)
            for (int p = 0; p <= kv->n_ctx; p++, k += hb, v += hb) {
                if ((char *)kv_k_head(kv, l, h, p) != k || (char *)kv_v_head(kv, l, h, p) != v)
                    return false;
                if (p == kv->n_ctx) k -= hb, v -= hb; /* the end is the next slice's start */
            }
    return k == (char *)kv_k_head(kv, 0, 0, 0) + kv_bytes(kv) / 2 &&
           v == (char *)kv_v_head(kv, 0, 0, 0) + kv_bytes(kv) / 2;
}

/* Sets each (layer, head, pos < n) slice's bytes to its own value (base + a small tag). */
static void fill(kv_cache *kv, int n, int base) {
    const size_t hb = kv_row_bytes(kv->type, kv->head_dim);
    for (int l = 0; l < kv->n_layers; l++)
        for (int h = 0; h < kv->n_kv_heads; h++)
            for (int p = 0; p < n; p++) {
                int tag = base + (l * kv->n_kv_heads + h) * 8 + p + 1;
                memset(kv_k_head(kv, l, h, p), tag, hb);
                memset(kv_v_head(kv, l, h, p), tag ^ 0x80, hb);
            }
}

/* a and b hold the same keys and values at positions 0..n-1 of every (layer, head). */
static bool same_prefix(const kv_cache *a, const kv_cache *b, int n) {
    const size_t hb = kv_row_bytes(a->type, a->head_dim);
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; h < a->n_kv_heads; h++)
            for (int p = 0; p < n; p++)
                if (memcmp(kv_k_head(a, l, h, p), kv_k_head(b, l, h, p), hb) ||
                    memcmp(kv_v_head(a, l, h, p), kv_v_head(b, l, h, p), hb))
                    return false;
    return true;
}

/* Position p of every (layer, head) still holds what fill(kv, n > p, base) put there. */
static bool untouched(const kv_cache *kv, int p, int base) {
    const size_t hb = kv_row_bytes(kv->type, kv->head_dim);
    for (int l = 0; l < kv->n_layers; l++)
        for (int h = 0; h < kv->n_kv_heads; h++) {
            int tag = (base + (l * kv->n_kv_heads + h) * 8 + p + 1) & 0xff;
            const unsigned char *k = kv_k_head(kv, l, h, p), *v = kv_v_head(kv, l, h, p);
            for (size_t i = 0; i < hb; i++)
                if (k[i] != tag || v[i] != (tag ^ 0x80)) return false;
        }
    return true;
}

int main(void) {
    model_config c = {.dim = 64, .n_layers = 3, .n_heads = 8, .n_kv_heads = 2, .head_dim = 8};
    char err[256];
    CHECK(kv_create(&c, 0, KV_F32, err, sizeof err) == NULL && strstr(err, "context"),
          "zero context is refused: %s", err);
    CHECK(kv_create(&c, 4, (kv_type)7, err, sizeof err) == NULL, "unknown type is refused");
    for (int ti = 0; ti < 2; ti++) {
        kv_type t = ti ? KV_F16 : KV_F32;
        size_t el = ti ? 2 : 4;
        kv_cache *a = kv_create(&c, 10, t, err, sizeof err), *b = kv_create(&c, 10, t, err, 256);
        kv_cache *small = kv_create(&c, 3, t, err, sizeof err);
        CHECK(a && b && small, "create: %s", err);
        if (!a || !b || !small) return check_summary();
        CHECK(a->kv_dim == 16 && a->n == 0, "shape");
        CHECK(kv_bytes(a) == 2 * 3 * 10 * 16 * el, "bytes %zu", kv_bytes(a));
        CHECK(a->n_kv_heads == 2 && a->head_dim == 8, "heads");
        CHECK(slices_tile(a), "(layer, head, pos) slices tile K and V in order");
        fill(a, 6, 0);
        a->n = 6;
        CHECK(kv_copy(b, a) == 0 && b->n == 6 && same_prefix(a, b, 6), "copy");
        kv_truncate(b, 4);
        /* a copy into a cache of another n_ctx moves each (layer, head) slice on its own */
        kv_cache *seven = kv_create(&c, 7, t, err, sizeof err);
        CHECK(seven != NULL, "create 7: %s", err);
        if (seven) {
            fill(seven, 7, 200);
            CHECK(kv_copy(seven, a) == 0 && seven->n == 6 && same_prefix(a, seven, 6),
                  "copy into a longer-or-shorter cache");
            CHECK(untouched(seven, 6, 200), "copy leaves positions past n alone");
            fill(seven, 7, 200);
            CHECK(kv_copy(seven, b) == 0 && seven->n == 4 && same_prefix(a, seven, 4) &&
                      untouched(seven, 4, 200) && untouched(seven, 5, 200),
                  "a truncated cache copies only its kept positions");
            kv_free(seven);
        }
        CHECK(kv_copy(small, a) != 0, "a copy that does not fit is refused");
        CHECK(b->n == 4, "truncate to 4");
        kv_truncate(b, 9);
        CHECK(b->n == 4, "truncate never grows");
        kv_clear(b);
        CHECK(b->n == 0, "clear");
        kv_free(a);
        kv_free(b);
        kv_free(small);
    }
    /* Q8_0: 34-byte blocks of 32; a head size that splits a block is refused */
    CHECK(kv_create(&c, 4, KV_Q8_0, err, sizeof err) == NULL && strstr(err, "multiple of 32"),
          "q8_0 with head_dim 8 is refused: %s", err);
    model_config c32 = {.dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 32};
    kv_cache *q = kv_create(&c32, 5, KV_Q8_0, err, sizeof err),
             *q2 = kv_create(&c32, 5, KV_Q8_0, err, sizeof err);
    CHECK(q && q2, "q8_0 create: %s", err);
    if (q && q2) {
        CHECK(kv_bytes_per_token(&c32, KV_Q8_0) == 2 * 2 * 2 * 34, "q8_0 bytes per token %zu",
              kv_bytes_per_token(&c32, KV_Q8_0));
        CHECK(kv_bytes(q) == 5 * kv_bytes_per_token(&c32, KV_Q8_0), "q8_0 bytes");
        CHECK(kv_row_bytes(KV_Q8_0, 32) == 34 && kv_row_bytes(KV_F16, 32) == 64 &&
                  kv_row_bytes(KV_F32, 32) == 128,
              "row bytes");
        CHECK((char *)kv_v_head(q, 1, 1, 3) - (char *)kv_v_head(q, 0, 0, 0) ==
                  ((1 * 2 + 1) * 5 + 3) * 34,
              "q8_0 head offsets");
        CHECK(slices_tile(q), "q8_0 slices tile K and V in order");
        fill(q, 3, 0);
        q->n = 3;
        CHECK(kv_copy(q2, q) == 0 && q2->n == 3 && same_prefix(q, q2, 3), "q8_0 copy");
        CHECK(!strcmp(kv_type_name(KV_Q8_0), "q8_0") && !strcmp(kv_type_name(KV_F16), "f16"),
              "names");
    }
    kv_free(q);
    kv_free(q2);
    return check_summary();
}
