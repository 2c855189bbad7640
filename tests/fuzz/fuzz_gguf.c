/* fuzz_gguf: the GGUF reader (engine/gguf.c) and what model.c builds from it, on any bytes: the
 * file is parsed, every key is looked up through each typed getter and every array element read
 * through gguf_arr_get, then the tokenizer and the whole model are loaded from it. Properties: no
 * crash, no leak; a lookup finds each key that was read; array elements, strings and tensor views
 * lie inside the file. */
#include "fuzz.h"

#include "gguf.h"
#include "model.h"

#include <string.h>

/* Whether n bytes at p lie inside the file. */
static bool in_file(const gguf_file *f, const void *p, uint64_t n) {
    const uint8_t *b = f->map.data, *q = p;
    return n == 0 || (b && q >= b && n <= f->map.size && (size_t)(q - b) <= f->map.size - n);
}

/* Every element of array a (a view into the mapping) through gguf_arr_get: each has the array's
 * element type and lies in the file; index n is refused. At most 2048 elements per array, so that
 * the walk over nested arrays stays fast. */
static void walk_array(const gguf_file *f, const gguf_value *a) {
    FUZZ_CHECK(in_file(f, a->arr.data, a->arr.nbytes));
    gguf_value v;
    for (uint64_t i = 0; i < a->arr.n && i < 2048; i++) {
        FUZZ_CHECK(gguf_arr_get(a, i, &v) == 0);
        FUZZ_CHECK(v.type == a->arr.elem);
        if (v.type == GGUF_STRING) FUZZ_CHECK(in_file(f, v.str.s, v.str.len));
        if (v.type == GGUF_ARRAY) walk_array(f, &v);
    }
    FUZZ_CHECK(gguf_arr_get(a, a->arr.n, &v) == -1);
}

static void walk(const gguf_file *f) {
    char err[256];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        char key[256];
        if (kv->key.len >= sizeof key || memchr(kv->key.s, 0, kv->key.len)) continue;
        memcpy(key, kv->key.s, kv->key.len);
        key[kv->key.len] = '\0';
        FUZZ_CHECK(gguf_get(f, key) == &kv->value);
        int64_t iv;
        double dv;
        bool bv;
        gguf_str sv;
        const gguf_value *av;
        gguf_get_int(f, key, &iv, err, sizeof err);
        gguf_get_float(f, key, &dv, err, sizeof err);
        gguf_get_bool(f, key, &bv, err, sizeof err);
        gguf_get_str(f, key, &sv, err, sizeof err);
        for (int t = GGUF_UINT8; t <= GGUF_FLOAT64; t++)
            gguf_get_array(f, key, (gguf_type)t, &av, err, sizeof err);
        if (kv->value.type == GGUF_ARRAY) walk_array(f, &kv->value);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        const uint8_t *p = t->data, *base = f->map.data;
        FUZZ_CHECK(p >= base && t->nbytes <= f->map.size &&
                   (size_t)(p - base) <= f->map.size - t->nbytes);
        char name[256];
        if (t->name.len >= sizeof name || memchr(t->name.s, 0, t->name.len)) continue;
        memcpy(name, t->name.s, t->name.len);
        name[t->name.len] = '\0';
        FUZZ_CHECK(gguf_find_tensor(f, name) == t);
        dtype_ggml_name(t->type);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    char err[512];
    gguf_file *f = gguf_open(path, err, sizeof err);
    if (!f) return 0;
    walk(f);
    gguf_close(f);
    tok_free(model_load_tokenizer(path, err, sizeof err));
    model_free(model_load(path, NULL, err, sizeof err));
    return 0;
}
