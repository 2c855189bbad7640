/* cli_common: the steps every model-running subcommand starts with (acting on parse()'s answer,
 * loading the model, starting the thread pool), written once with their messages. No state. */
#include "cli.h"

#include "common.h"
#include "matmul.h"

#include <string.h>

int cli_parsed(int prc, const char *name, void (*usage)(FILE *), const char *err) {
    if (prc == 1) {
        usage(stdout);
        return 0;
    }
    if (prc != 0) {
        fprintf(stderr, "llamaserve %s: %s\n", name, err);
        return 2;
    }
    return -1;
}

model *cli_load_model(const char *path, const char *tokenizer_path, bool need_tokenizer,
                      char *err, size_t errlen) {
    model *m = model_load(path, tokenizer_path, err, errlen);
    if (m && need_tokenizer && !m->tok) {
        ls_fail(err, errlen, "%.200s has no tokenizer: pass --tokenizer", path);
        model_free(m);
        return NULL;
    }
    return m;
}

pool *cli_pool(int threads, char *err, size_t errlen) {
    pool *p = pool_create(threads);
    if (!p) ls_fail(err, errlen, "cannot start %d threads", threads);
    return p;
}

int cli_bf16_dot(cfg_bf16_dot mode, char *err, size_t errlen) {
    if (mode == CFG_BF16_DOT_OFF) {
        mm_set_bf16_dot(false);
        return 0;
    }
    if (!mm_set_bf16_dot(true) && mode == CFG_BF16_DOT_ON)
        return ls_fail(err, errlen, "--bf16-dot on needs a CPU with AVX512_BF16 (and AVX-512 "
                                    "allowed)");
    return 0;
}

int cli_bf16_dot_parse(const char *s, cfg_bf16_dot *mode, char *err, size_t errlen) {
    for (int i = 0; cfg_bf16_dot_names[i]; i++)
        if (!strcmp(s, cfg_bf16_dot_names[i])) {
            *mode = (cfg_bf16_dot)i;
            return 0;
        }
    return ls_fail(err, errlen, "--bf16-dot: '%s' is not one of auto, on, off", s);
}
