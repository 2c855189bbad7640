/* fuzz_config: the config file parser (config/config.c: cfg_load with --config FILE), on any
 * bytes as the file, with the model given as a flag so that no folder is searched; each file is
 * loaded twice, the second time with --print-config. Properties: no crash, no leak; a loaded
 * configuration is within its documented ranges and its strings are terminated; the printed
 * configuration is JSON that loads back to the same settings (without an API key, which is
 * printed as a placeholder). */
#include "fuzz.h"

#include "config.h"

#include <cjson/cJSON.h>
#include <string.h>

static void check_cfg(const cfg_server *c) {
    FUZZ_CHECK(c->port >= 0 && c->port <= 65535);
    FUZZ_CHECK(c->parallel >= 1 && c->parallel <= 256);
    FUZZ_CHECK(c->threads >= 1 && c->threads <= 256);
    FUZZ_CHECK(c->batch_size >= 1 && c->batch_size <= 4096);
    FUZZ_CHECK(c->ctx_size >= 0);
    FUZZ_CHECK(c->max_queue >= 0 && c->max_queue <= 100000);
    FUZZ_CHECK(c->max_body >= 1024 && c->max_body <= 1073741824);
    FUZZ_CHECK(c->max_tokens_limit >= 1 && c->max_tokens_limit <= 1048576);
    FUZZ_CHECK(c->timeout >= 1 && c->timeout <= 86400);
    FUZZ_CHECK(c->shutdown_timeout >= 0 && c->shutdown_timeout <= 3600);
    FUZZ_CHECK(c->host[0] && memchr(c->host, 0, sizeof c->host));
    FUZZ_CHECK(memchr(c->alias, 0, sizeof c->alias) && memchr(c->api_key, 0, sizeof c->api_key));
    FUZZ_CHECK(memchr(c->cors_origin, 0, sizeof c->cors_origin));
    FUZZ_CHECK(memchr(c->log_file, 0, sizeof c->log_file));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *path = strdup(fuzz_file(data, size));
    FUZZ_CHECK(path);
    char *argv[] = {"serve", "--config", path, "--model", "/nonexistent/model.gguf", NULL, NULL};
    cfg_server c;
    char err[1024];
    int rc = cfg_load(&c, 5, argv, NULL, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == -1) FUZZ_CHECK(err[0]);
    if (rc == 0) {
        check_cfg(&c);
        /* --print-config: JSON, which as a config file gives the same settings */
        char *printed = NULL;
        size_t n = 0;
        FILE *out = open_memstream(&printed, &n);
        FUZZ_CHECK(out);
        argv[5] = "--print-config";
        FUZZ_CHECK(cfg_load(&c, 6, argv, out, err, sizeof err) == 1);
        fclose(out);
        cJSON *j = cJSON_Parse(printed);
        FUZZ_CHECK(j);
        cJSON_Delete(j);
        /* what was printed, loaded as the config file, gives the same settings (an API key is
         * printed as a placeholder that a file may not hold) */
        if (c.api_key[0]) goto done;
        char *path2 = strdup(fuzz_file((const uint8_t *)printed, n));
        FUZZ_CHECK(path2);
        char *argv2[] = {"serve", "--config", path2, NULL};
        cfg_server again;
        int rc2 = cfg_load(&again, 3, argv2, NULL, err, sizeof err);
        if (rc2 != 0) fprintf(stderr, "reloading the printed configuration: %s\n%s", err, printed);
        FUZZ_CHECK(rc2 == 0);
        FUZZ_CHECK(again.port == c.port && again.parallel == c.parallel &&
                   again.ctx_size == c.ctx_size && again.threads == c.threads &&
                   again.batch_size == c.batch_size && again.max_queue == c.max_queue &&
                   again.seed == c.seed && again.chat_template == c.chat_template);
        FUZZ_CHECK(!strcmp(again.model, c.model) && !strcmp(again.host, c.host) &&
                   !strcmp(again.alias, c.alias) && !strcmp(again.cors_origin, c.cors_origin) &&
                   !strcmp(again.log_file, c.log_file) && !strcmp(again.tokenizer, c.tokenizer));
        free(path2);
    done:
        free(printed);
    }
    free(path);
    return 0;
}
