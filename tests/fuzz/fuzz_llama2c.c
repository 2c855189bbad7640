/* fuzz_llama2c: the legacy llama2.c formats on any bytes: the checkpoint header and layout
 * (llama2c_parse, then model_load of the file) and the tokenizer.bin loader (tok_load_llama2c,
 * with every entry and with the count a checkpoint would give), each tokenizer then used to
 * encode and decode. Properties: no crash, no leak; a parsed layout fits in the file; a loaded
 * tokenizer decodes what it encodes to valid UTF-8 of the length it reports. */
#include "fuzz.h"

#include "common.h"
#include "llama2c.h"
#include "model.h"

#include <string.h>

static void check_layout(const llama2c_layout *l, size_t size) {
    FUZZ_CHECK(l->file_size == size);
    const size_t offs[] = {l->tok_embd, l->rms_att, l->wq, l->wk, l->wv,        l->wo,
                           l->rms_ffn,  l->w1,      l->w2, l->w3, l->rms_final, l->wcls};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        FUZZ_CHECK(offs[i] >= LLAMA2C_HEADER_BYTES && offs[i] <= size);
}

static void use_tokenizer(tokenizer *t) {
    static const char text[] = "Hello, world! \xc3\xa9t\xc3\xa9 \xe2\x96\x81 \xff<s>\n";
    int32_t ids[256];
    int n = tok_encode(t, text, sizeof text - 1, true, ids, 256);
    if (n > 256) n = 256;
    char out[4096];
    for (int k = 0; k < 2; k++) {
        size_t len = tok_decode(t, ids, n < 0 ? 0 : n, out, sizeof out);
        if (len < sizeof out) FUZZ_CHECK(ls_utf8_valid(out, len));
        for (int i = 0; i < n; i++)
            ids[i] = (ids[i] * 7 + i) % (tok_n_vocab(t) + 2) - 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    llama2c_layout lay;
    if (llama2c_parse(data, size, &lay, err, sizeof err) == 0) check_layout(&lay, size);
    const char *path = fuzz_file(data, size);
    model_free(model_load(path, NULL, err, sizeof err));
    const int counts[] = {-1, 1, 3, 264};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        tokenizer *t = tok_load_llama2c(path, counts[i], err, sizeof err);
        if (!t) continue;
        if (counts[i] >= 0) FUZZ_CHECK(tok_n_vocab(t) == counts[i]);
        use_tokenizer(t);
        tok_free(t);
    }
    return 0;
}
