/* test_kv_cache: sizes, clear, truncate and copy of a sequence's KV cache (F32, F16, Q8_0). */
#include "check.h"
#include "kv_cache.h"

#include <string.h>

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
        /* rows are distinct and laid out (layer, pos, kv_dim) */
        CHECK((char *)kv_k_row(a, 1, 2) - (char *)kv_k_row(a, 0, 0) == (10 + 2) * 16 * (long)el,
              "row offsets");
        for (int l = 0; l < 3; l++)
            for (int p = 0; p < 6; p++) {
                memset(kv_k_row(a, l, p), l * 16 + p + 1, 16 * el);
                memset(kv_v_row(a, l, p), 100 + l * 16 + p, 16 * el);
            }
        a->n = 6;
        CHECK(kv_copy(b, a) == 0 && b->n == 6, "copy");
        bool same = true;
        for (int l = 0; l < 3; l++)
            for (int p = 0; p < 6; p++)
                same = same && !memcmp(kv_k_row(a, l, p), kv_k_row(b, l, p), 16 * el) &&
                       !memcmp(kv_v_row(a, l, p), kv_v_row(b, l, p), 16 * el);
        CHECK(same, "copied rows equal");
        CHECK(kv_copy(small, a) != 0, "a copy that does not fit is refused");
        kv_truncate(b, 4);
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
        CHECK((char *)kv_v_row(q, 1, 3) - (char *)kv_v_row(q, 0, 0) == (5 + 3) * 2 * 34,
              "q8_0 row offsets");
        for (int l = 0; l < 2; l++)
            for (int p = 0; p < 3; p++) {
                memset(kv_k_row(q, l, p), 7 * l + p + 1, 68);
                memset(kv_v_row(q, l, p), 50 + 7 * l + p, 68);
            }
        q->n = 3;
        CHECK(kv_copy(q2, q) == 0 && q2->n == 3 &&
                  !memcmp(kv_k_row(q2, 1, 2), kv_k_row(q, 1, 2), 68) &&
                  !memcmp(kv_v_row(q2, 1, 0), kv_v_row(q, 1, 0), 68),
              "q8_0 copy");
        CHECK(!strcmp(kv_type_name(KV_Q8_0), "q8_0") && !strcmp(kv_type_name(KV_F16), "f16"),
              "names");
    }
    kv_free(q);
    kv_free(q2);
    return check_summary();
}
