/* tokenizer: placeholder until the module lands. */
#include "tokenizer.h"
#include "common.h"

tokenizer *tok_create(const tok_vocab *v, char *err, size_t errlen) {
    (void)v;
    ls_fail(err, errlen, "tokenizer not implemented");
    return NULL;
}
tokenizer *tok_load_llama2c(const char *path, int n_vocab, char *err, size_t errlen) {
    (void)path;
    (void)n_vocab;
    ls_fail(err, errlen, "tokenizer not implemented");
    return NULL;
}
void tok_free(tokenizer *t) { (void)t; }
