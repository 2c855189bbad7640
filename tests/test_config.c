/* test_config: config/config.c. Defaults, file < environment < flag precedence, every kind of bad
 * value from each source (the message must name the key, variable or flag), malformed and missing
 * files, --help, --print-config (parsed back as JSON), and the example file. Files go under a
 * mkdtemp directory; LLAMASERVE_* variables are cleared first and set with setenv. */
#include "check.h"
#include "config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static char tmp_dir[] = "/tmp/test_config_XXXXXX";
static char tmp_path[8][1100];
static int n_tmp_path;
static char err[1024];

/* Writes `text` to tmp_dir/name and returns the path. */
static const char *write_tmp(const char *name, const char *text) {
    char *path = tmp_path[n_tmp_path++ % 8];
    snprintf(path, 1100, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static void clear_env(void) {
    char names[64][128];
    int n = 0;
    for (char **e = environ; *e && n < 64; e++)
        if (!strncmp(*e, "LLAMASERVE_", 11)) {
            size_t len = strcspn(*e, "=");
            snprintf(names[n++], sizeof names[0], "%.*s", (int)len, *e);
        }
    for (int i = 0; i < n; i++)
        unsetenv(names[i]);
}

/* cfg_load on a NULL-terminated list of arguments after "serve"; what it prints goes to
 * *out_text (caller frees) when out_text is not NULL. */
static int load_va(cfg_server *c, char **out_text, va_list ap) {
    char *argv[64] = {"serve"};
    int argc = 1;
    for (char *a; (a = va_arg(ap, char *)) && argc < 63;)
        argv[argc++] = a;
    argv[argc] = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    err[0] = '\0';
    int rc = cfg_load(c, argc, argv, out, err, sizeof err);
    fclose(out);
    if (out_text)
        *out_text = text;
    else
        free(text);
    return rc;
}

static int load_out(cfg_server *c, char **out_text, ...) {
    va_list ap;
    va_start(ap, out_text);
    int rc = load_va(c, out_text, ap);
    va_end(ap);
    return rc;
}

static int load_args(cfg_server *c, ...) {
    va_list ap;
    va_start(ap, c);
    int rc = load_va(c, NULL, ap);
    va_end(ap);
    return rc;
}
#define load(...) load_args(__VA_ARGS__, (char *)NULL)

static char *print_to_string(const cfg_server *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cfg_print_json(c, out);
    fclose(out);
    return text;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_defaults(void) {
    cfg_server c;
    cfg_defaults(&c);
    CHECK(!strcmp(c.model, "") && !strcmp(c.tokenizer, "") && !strcmp(c.alias, ""), "strings");
    CHECK(c.chat_template == CFG_TEMPLATE_AUTO, "chat_template");
    CHECK(!strcmp(c.host, "127.0.0.1"), "host %s", c.host);
    CHECK(c.port == 8080 && c.parallel == 4 && c.ctx_size == 0 && c.threads == 2, "ints");
    CHECK(c.batch_size == 64 && c.kv_type == CFG_KV_F16 && c.pooling == CFG_POOL_MEAN &&
              c.max_queue == 64,
          "ints");
    CHECK(c.max_body == 1048576 && c.max_tokens_limit == 4096 && !strcmp(c.api_key, ""), "ints");
    CHECK(c.timeout == 10 && c.request_timeout == 30 && c.shutdown_timeout == 10 &&
              c.log_format == CFG_LOG_TEXT,
          "ints");
    CHECK(c.log_requests && c.seed == -1 && !strcmp(c.config, ""), "bool, seed");
    cfg_free(&c);

    /* Nothing but a model: the defaults, with alias from the file name. */
    CHECK(load(&c, "-m", "models/kjv-demo.gguf") == 0, "%s", err);
    CHECK(!strcmp(c.model, "models/kjv-demo.gguf") && !strcmp(c.alias, "kjv-demo"), "%s", c.alias);
    CHECK(c.parallel == 4 && c.port == 8080 && c.log_requests, "defaults kept");
    CHECK(load(&c, "--model=x.y.bin") == 0 && !strcmp(c.alias, "x.y"), "%s", c.alias);
    CHECK(load(&c, "--model", "dir.d/plain") == 0 && !strcmp(c.alias, "plain"), "%s", c.alias);
    CHECK(load(&c, "-m", "a.gguf", "--alias", "mine") == 0 && !strcmp(c.alias, "mine"), "%s",
          c.alias);
    /* Without a model: the embedded demo model, found in the source tree this was built from. */
    CHECK(load(&c, "--port", "1") == 0, "%s", err);
    CHECK(c.model_origin == CFG_MODEL_EMBEDDED && strstr(c.model, "/kjv-demo-q8_0.gguf") &&
              !strcmp(c.alias, "kjv-demo-q8_0") && access(c.model, R_OK) == 0,
          "%s %s", c.model, c.alias);
    CHECK(load(&c, "-m", "given.gguf") == 0 && c.model_origin == CFG_MODEL_GIVEN, "%s", c.model);
    CHECK(c.mmap && load(&c, "--no-mmap") == 0 && !c.mmap, "--no-mmap: %s", err);
    CHECK(!c.repack && load(&c, "--repack") == 0 && c.repack, "--repack: %s", err);
    setenv("LLAMASERVE_REPACK", "on", 1);
    CHECK(load(&c, "--port", "1") == 0 && c.repack, "LLAMASERVE_REPACK: %s", err);
    CHECK(load(&c, "--no-repack") == 0 && !c.repack, "--no-repack over the variable: %s", err);
    unsetenv("LLAMASERVE_REPACK");
    cfg_free(&c);
}

/* models_dir: its one .gguf file is served when no model is given; none falls through to the
 * demo model; several are an error naming them. */
static void test_models_dir(void) {
    cfg_server c;
    char dir[] = "/tmp/ls_models_XXXXXX", path[300];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(load(&c, "--models-dir", dir) == 0 && c.model_origin == CFG_MODEL_EMBEDDED, "%s", err);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/mine.gguf", dir);
    fclose(fopen(path, "w"));
    CHECK(load(&c, "--models-dir", dir) == 0 && c.model_origin == CFG_MODEL_MODELS_DIR &&
              !strcmp(c.model, path) && !strcmp(c.alias, "mine"),
          "%s %s", c.model, err);
    CHECK(load(&c, "--models-dir", dir, "-m", "x.gguf") == 0 && !strcmp(c.model, "x.gguf"),
          "a given model wins: %s", c.model);
    char path2[300];
    snprintf(path2, sizeof path2, "%s/other.GGUF", dir);
    fclose(fopen(path2, "w"));
    CHECK(load(&c, "--models-dir", dir) == -1 && strstr(err, "several"), "%s", err);
    remove(path);
    remove(path2);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    remove(path);
    rmdir(dir);
    cfg_free(&c);
}

static void test_precedence(void) {
    cfg_server c;
    const char *file = write_tmp("prec.json", "{\"model\": \"file.gguf\", \"parallel\": 2,"
                                              " \"port\": 9000, \"threads\": 3,"
                                              " \"host\": \"0.0.0.0\", \"kv_type\": \"f32\","
                                              " \"log_requests\": false, \"seed\": 42}");
    /* File alone. */
    CHECK(load(&c, "--config", file) == 0, "%s", err);
    CHECK(!strcmp(c.model, "file.gguf") && c.parallel == 2 && c.port == 9000 && c.threads == 3,
          "file values");
    CHECK(!strcmp(c.host, "0.0.0.0") && c.kv_type == CFG_KV_F32 && !c.log_requests && c.seed == 42,
          "file values");
    CHECK(!strcmp(c.config, file), "config %s", c.config);

    /* Environment beats the file. */
    setenv("LLAMASERVE_PARALLEL", "5", 1);
    setenv("LLAMASERVE_PORT", "9001", 1);
    setenv("LLAMASERVE_LOG_REQUESTS", "yes", 1);
    setenv("LLAMASERVE_MODEL", "env.gguf", 1);
    CHECK(load(&c, "--config", file) == 0, "%s", err);
    CHECK(c.parallel == 5 && c.port == 9001 && c.threads == 3 && c.log_requests, "env > file");
    CHECK(!strcmp(c.model, "env.gguf") && !strcmp(c.alias, "env"), "%s", c.model);

    /* Flags beat both, wherever --config stands among them. */
    CHECK(load(&c, "--parallel", "7", "-m", "flag.gguf", "--config", file, "--no-log-requests") ==
              0,
          "%s", err);
    CHECK(c.parallel == 7 && c.port == 9001 && c.threads == 3 && !c.log_requests, "flag > env");
    CHECK(!strcmp(c.model, "flag.gguf"), "%s", c.model);
    CHECK(load(&c, "--config", file, "--threads=9", "-t", "8", "--log-requests=off") == 0, "%s",
          err);
    CHECK(c.threads == 8 && !c.log_requests, "the last flag wins");
    unsetenv("LLAMASERVE_PARALLEL");
    unsetenv("LLAMASERVE_PORT");
    unsetenv("LLAMASERVE_LOG_REQUESTS");
    unsetenv("LLAMASERVE_MODEL");

    /* A bare --log-requests turns it back on over the file's false. */
    CHECK(load(&c, "--config", file, "--log-requests") == 0 && c.log_requests, "%s", err);

    /* LLAMASERVE_CONFIG names the file; --config beats it. */
    const char *other = write_tmp("other.json", "{\"model\": \"other.gguf\", \"parallel\": 11}");
    setenv("LLAMASERVE_CONFIG", file, 1);
    CHECK(load(&c) == 0 && c.parallel == 2 && !strcmp(c.config, file), "%s", err);
    CHECK(load(&c, "--config", other) == 0 && c.parallel == 11 && c.port == 8080, "%s", err);
    CHECK(!strcmp(c.config, other), "%s", c.config);
    unsetenv("LLAMASERVE_CONFIG");
    cfg_free(&c);
}

/* One bad value, tried as a file value (JSON text), an environment value and a flag value. */
typedef struct {
    const char *key, *json, *text;
} bad_value;

static void test_bad_values(void) {
    static char long_path[5000];
    memset(long_path, 'a', sizeof long_path - 1);
    static char long_json[5010];
    snprintf(long_json, sizeof long_json, "\"%s\"", long_path);
    const bad_value bad[] = {
        {"parallel", "0", "0"},
        {"parallel", "257", "257"},
        {"parallel", "3.5", "3.5"},
        {"parallel", "\"4\"", "four"},
        {"parallel", "null", ""},
        {"port", "-1", "-1"},
        {"port", "65536", "65536"},
        {"port", "1e999", "1e999"},
        {"ctx_size", "1048577", "1048577"},
        {"threads", "0", "0x10"},
        {"batch_size", "4097", "4097"},
        {"max_queue", "100001", "-5"},
        {"max_body", "1023", "1023"},
        {"max_tokens_limit", "0", "0"},
        {"timeout", "0", "86401"},
        {"shutdown_timeout", "3601", " 5"},
        {"seed", "-2", "-2"},
        {"seed", "1e300", "99999999999999999999"},
        {"kv_type", "\"q4_0\"", "q4_0"},
        {"kv_type", "16", "F16 "},
        {"pooling", "\"cls\"", "none"},
        {"log_format", "\"xml\"", "xml"},
        {"chat_template", "\"vicuna\"", "vicuna"},
        {"log_requests", "1", "maybe"},
        {"log_requests", "\"true\"", ""},
        {"host", "\"\"", ""},
        {"host", "[]", long_path},
        {"model", "3", long_path},
        {"tokenizer", "{}", long_path},
        {"model", long_json, long_path},
        {"api_key", "\"***\"", "***"},
        {"alias", "false", long_path},
        {"cors_origin", "\"http://x/\"", "localhost"},
        {"log_file", "7", long_path},
    };
    cfg_server c;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const bad_value *b = &bad[i];
        char json[6000], flag[64], env[64], want[96];
        snprintf(json, sizeof json, "{\"model\": \"m.gguf\", \"%s\": %s}", b->key, b->json);
        const char *path = write_tmp("bad.json", json);
        snprintf(want, sizeof want, "key \"%s\"", b->key);
        CHECK(load(&c, "--config", path) == -1 && strstr(err, want) && strstr(err, path),
              "file %s=%.40s: %s", b->key, b->json, err);

        snprintf(env, sizeof env, "LLAMASERVE_");
        for (size_t k = 0; b->key[k]; k++)
            env[11 + k] = (char)toupper((unsigned char)b->key[k]);
        env[11 + strlen(b->key)] = '\0';
        setenv(env, b->text, 1);
        /* Bad even when a flag would override it. */
        CHECK(load(&c, "-m", "m.gguf") == -1 && strstr(err, env), "env %s=%.40s: %s", env, b->text,
              err);
        unsetenv(env);

        snprintf(flag, sizeof flag, "--");
        for (size_t k = 0; b->key[k]; k++)
            flag[2 + k] = b->key[k] == '_' ? '-' : b->key[k];
        flag[2 + strlen(b->key)] = '\0';
        char arg[5100];
        snprintf(arg, sizeof arg, "%s=%s", flag, b->text);
        CHECK(load(&c, "-m", "m.gguf", arg) == -1 && strstr(err, flag), "flag %.60s: %s", arg, err);
    }
    /* The message of the brief's example, word for word. */
    const char *p = write_tmp("x.json", "{\"parallel\": 0}");
    CHECK(load(&c, "--config", p) == -1, "parallel 0");
    char want[256];
    snprintf(want, sizeof want, "config file %s: key \"parallel\": expected an integer in [1, 256]",
             p);
    CHECK(!strcmp(err, want), "%s", err);

    /* The edges of a range are accepted. */
    p = write_tmp("edges.json",
                  "{\"model\": \"m\", \"port\": 0, \"parallel\": 256, "
                  "\"max_body\": 1073741824, \"seed\": 9007199254740991, "
                  "\"shutdown_timeout\": 0, \"max_queue\": 0, \"ctx_size\": 1048576}");
    CHECK(load(&c, "--config", p) == 0, "%s", err);
    CHECK(c.port == 0 && c.parallel == 256 && c.max_body == 1073741824 &&
              c.seed == 9007199254740991LL && c.ctx_size == 1048576,
          "edges");
    CHECK(load(&c, "-m", "m", "--seed", "0", "--port", "65535", "--timeout=86400") == 0 &&
              c.seed == 0 && c.port == 65535 && c.timeout == 86400,
          "%s", err);
    CHECK(load(&c, "-m", "m", "--chat-template", "llama3", "--log-format", "json", "--kv-type",
               "f32", "--pooling", "last") == 0,
          "%s", err);
    CHECK(c.chat_template == CFG_TEMPLATE_LLAMA3 && c.log_format == CFG_LOG_JSON &&
              c.kv_type == CFG_KV_F32 && c.pooling == CFG_POOL_LAST,
          "enums");
    cfg_free(&c);
}

static void test_bad_files_and_flags(void) {
    cfg_server c;
    const char *p = write_tmp("unknown.json", "{\"model\": \"m\", \"paralel\": 4}");
    CHECK(load(&c, "--config", p) == -1 && strstr(err, "\"paralel\"") && strstr(err, "unknown"),
          "%s", err);
    p = write_tmp("config-key.json", "{\"config\": \"other.json\"}");
    CHECK(load(&c, "--config", p) == -1 && strstr(err, "\"config\""), "%s", err);
    p = write_tmp("twice.json", "{\"port\": 1, \"port\": 2}");
    CHECK(load(&c, "--config", p) == -1 && strstr(err, "\"port\"") && strstr(err, "twice"), "%s",
          err);
    p = write_tmp("type.json", "{\"model\": \"m\", \"threads\": \"4\"}");
    CHECK(load(&c, "--config", p) == -1 && strstr(err, "\"threads\""), "%s", err);
    p = write_tmp("malformed.json", "{\n  \"model\": \"m\",\n  \"port\": 80,,\n}");
    CHECK(load(&c, "--config", p) == -1 && strstr(err, "malformed") && strstr(err, "line 3") &&
              strstr(err, p),
          "%s", err);
    p = write_tmp("trailing.json", "{\"model\": \"m\"} {}");
    CHECK(load(&c, "--config", p) == -1 && strstr(err, "malformed"), "%s", err);
    p = write_tmp("empty.json", "");
    CHECK(load(&c, "--config", p) == -1 && strstr(err, p), "%s", err);
    p = write_tmp("array.json", "[1, 2]");
    CHECK(load(&c, "--config", p) == -1 && strstr(err, "object"), "%s", err);
    char missing[1100];
    snprintf(missing, sizeof missing, "%s/no-such.json", tmp_dir);
    CHECK(load(&c, "--config", missing) == -1 && strstr(err, missing), "%s", err);
    setenv("LLAMASERVE_CONFIG", missing, 1);
    CHECK(load(&c, "-m", "m") == -1 && strstr(err, missing), "%s", err);
    unsetenv("LLAMASERVE_CONFIG");

    CHECK(load(&c, "-m", "m", "--paralel", "3") == -1 && strstr(err, "--paralel"), "%s", err);
    /* No abbreviations: --par is not --parallel, --no-log is not --no-log-requests. */
    CHECK(load(&c, "-m", "m", "--par", "3") == -1 && strstr(err, "'--par'"), "%s", err);
    CHECK(load(&c, "-m", "m", "--par=3") == -1 && strstr(err, "'--par'"), "%s", err);
    CHECK(load(&c, "-m", "m", "--no-log") == -1 && strstr(err, "'--no-log'"), "%s", err);
    CHECK(load(&c, "-m", "m", "--api-key", "--par") == 0 && !strcmp(c.api_key, "--par"), "%s", err);
    CHECK(load(&c, "-m", "m", "-x") == -1 && strstr(err, "-x"), "%s", err);
    CHECK(load(&c, "-m", "m", "--port") == -1 && strstr(err, "--port"), "%s", err);
    CHECK(load(&c, "-m") == -1 && strstr(err, "-m"), "%s", err);
    CHECK(load(&c, "-m", "m", "stray") == -1 && strstr(err, "stray"), "%s", err);
    CHECK(load(&c, "-m", "m", "--no-log-requests=1") == -1, "%s", err);
    CHECK(load(&c, "-m", "m", "--print-config=1") == -1, "%s", err);
    cfg_free(&c);
}

/* llama.cpp's spellings: the shared flags mean what they mean there, -c is the total context
 * divided among the slots, and the flags we do not take are errors naming what to use. */
static void test_llamacpp_flags(void) {
    cfg_server c;
    CHECK(load(&c, "-m", "m.gguf", "-np", "3", "-t", "5", "-b", "32", "-a", "mine", "--host",
               "0.0.0.0", "--port", "9", "-s", "11", "-to", "30") == 0,
          "%s", err);
    CHECK(c.parallel == 3 && c.threads == 5 && c.batch_size == 32 && !strcmp(c.alias, "mine") &&
              !strcmp(c.host, "0.0.0.0") && c.port == 9 && c.seed == 11 && c.timeout == 30,
          "aliases: %d %d %d %s %s %d %lld %d", c.parallel, c.threads, c.batch_size, c.alias,
          c.host, c.port, (long long)c.seed, c.timeout);
    /* -c is the total, rounded down per slot, whatever the order of -c and -np */
    CHECK(load(&c, "-m", "m", "-c", "8192", "-np", "4") == 0 && c.ctx_size == 2048, "%d %s",
          c.ctx_size, err);
    CHECK(load(&c, "-m", "m", "-np", "3", "-c", "1000") == 0 && c.ctx_size == 333, "%d %s",
          c.ctx_size, err);
    CHECK(load(&c, "-m", "m", "-c", "1000") == 0 && c.ctx_size == 250, "default 4 slots: %d",
          c.ctx_size);
    setenv("LLAMASERVE_PARALLEL", "2", 1);
    CHECK(load(&c, "-m", "m", "-c", "1000") == 0 && c.ctx_size == 500, "env parallel: %d",
          c.ctx_size);
    unsetenv("LLAMASERVE_PARALLEL");
    /* --ctx-size stays per slot; of -c and --ctx-size the last one wins */
    CHECK(load(&c, "-m", "m", "--ctx-size", "1000", "-np", "4") == 0 && c.ctx_size == 1000, "%d",
          c.ctx_size);
    CHECK(load(&c, "-m", "m", "-c", "8192", "--ctx-size", "100") == 0 && c.ctx_size == 100, "%d",
          c.ctx_size);
    CHECK(load(&c, "-m", "m", "--ctx-size", "100", "-c", "8192") == 0 && c.ctx_size == 2048, "%d",
          c.ctx_size);
    CHECK(load(&c, "-m", "m", "-c", "3", "-np", "4") == -1 && strstr(err, "-c 3") &&
              strstr(err, "4 slots"),
          "%s", err);
    CHECK(load(&c, "-m", "m", "-c", "0") == -1 && strstr(err, "--ctx-size 0"), "%s", err);
    CHECK(load(&c, "-m", "m", "-c", "x") == -1 && strstr(err, "-c"), "%s", err);
    CHECK(load(&c, "-m", "m", "-np", "1", "-c", "2000000") == -1 && strstr(err, "1048576"), "%s",
          err);
    /* a value that looks like a llama.cpp flag is still a value */
    CHECK(load(&c, "-m", "m", "--api-key", "-np") == 0 && !strcmp(c.api_key, "-np"), "%s", err);
    /* llama.cpp's cache types: aliases of --kv-type, keys and values alike */
    CHECK(load(&c, "-m", "m", "--kv-type", "q8_0") == 0 && c.kv_type == CFG_KV_Q8_0, "%s", err);
    CHECK(load(&c, "-m", "m", "-ctk", "q8_0", "-ctv", "q8_0") == 0 && c.kv_type == CFG_KV_Q8_0,
          "%s", err);
    CHECK(load(&c, "-m", "m", "--cache-type-k", "f32", "--cache-type-v", "f32") == 0 &&
              c.kv_type == CFG_KV_F32,
          "%s", err);
    CHECK(load(&c, "-m", "m", "-ctv", "q8_0") == 0 && c.kv_type == CFG_KV_Q8_0, "%s", err);
    CHECK(load(&c, "-m", "m", "-ctk", "q8_0", "-ctv", "f16") == -1 && strstr(err, "one type") &&
              strstr(err, "-ctv f16"),
          "different key and value types are refused: %s", err);
    CHECK(load(&c, "-m", "m", "-ctk", "q4_0") == -1 && strstr(err, "q4_0"), "%s", err);
    CHECK(load(&c, "-m", "m", "--alias", "-ngl") == 0 && !strcmp(c.alias, "-ngl"), "%s", err);
    CHECK(load(&c, "-m", "-fa") == 0 && !strcmp(c.model, "-fa"), "%s", err);
    /* the caller's argv is left as it was */
    char *argv[] = {"serve", "x", "-np", "2", "-m", "m", NULL};
    CHECK(cfg_load(&c, 6, argv, stdout, err, sizeof err) == -1, "stray x");
    CHECK(!strcmp(argv[1], "x") && !strcmp(argv[2], "-np") && !strcmp(argv[4], "-m"), "argv");

    const struct {
        const char *arg, *want;
    } refused[] = {
        {"-ngl", "CPU"},
        {"--n-gpu-layers=99", "CPU"},
        {"--gpu-layers", "CPU"},
        {"-fa", "--flash-attn"},
        {"-tb", "-t/--threads"},
        {"--threads-batch", "-t/--threads"},
        {"-n", "max_tokens"},
        {"--n-predict", "--max-tokens-limit"},
        {"-cb", "always on"},
        {"--metrics", "always"},
        {"--mlock", "drop it"},
        {"--embedding", "always serves /v1/embeddings"},
        {"--rerank", "not supported"},
        {"--jinja", "--chat-template"},
        {"--rope-freq-base", "model file"},
        {"-ub", "--batch-size"},
        {"-hf", "-m PATH"},
        {"-v", "--log-format"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "'%.*s'", (int)strcspn(refused[i].arg, "="), refused[i].arg);
        CHECK(load(&c, "-m", "m", refused[i].arg, "1") == -1 && strstr(err, want) &&
                  strstr(err, refused[i].want),
              "%s: %s", refused[i].arg, err);
    }
    /* none of the refused spellings is one of ours (each of ours is accepted above or below) */
    CHECK(load(&c, "-m", "m", "--timeout", "5", "--log-format", "json", "--log-file", "/tmp/x",
               "--chat-template", "chatml", "--api-key", "k", "--seed", "1") == 0,
          "%s", err);
    cfg_free(&c);
}

/* cors_origin: a comma-separated list from the file or the environment, repeatable as a flag. */
static void test_cors_origin(void) {
    cfg_server c;
    CHECK(load(&c, "-m", "m") == 0 && c.cors_origin[0] == '\0', "off by default");
    CHECK(load(&c, "-m", "m", "--cors-origin", "http://localhost:3000", "--cors-origin",
               "https://chat.example.com") == 0 &&
              !strcmp(c.cors_origin, "http://localhost:3000,https://chat.example.com"),
          "%s %s", c.cors_origin, err);
    setenv("LLAMASERVE_CORS_ORIGIN", "http://a.example, http://b.example:8080", 1);
    CHECK(load(&c, "-m", "m") == 0 &&
              !strcmp(c.cors_origin, "http://a.example, http://b.example:8080"),
          "%s %s", c.cors_origin, err);
    /* a flag replaces the environment's list, then adds to its own */
    CHECK(load(&c, "-m", "m", "--cors-origin=*") == 0 && !strcmp(c.cors_origin, "*"), "%s",
          c.cors_origin);
    unsetenv("LLAMASERVE_CORS_ORIGIN");
    const char *p =
        write_tmp("cors.json", "{\"model\": \"m\", \"cors_origin\": \"http://x.test\"}");
    CHECK(load(&c, "--config", p) == 0 && !strcmp(c.cors_origin, "http://x.test"), "%s", err);
    const char *bad[] = {"http://x.test/", "localhost:3000", "http://",           "*,",
                         "http://a b",     "://x",           "http://x.test/path"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(load(&c, "-m", "m", "--cors-origin", bad[i]) == -1 && strstr(err, "--cors-origin") &&
                  strstr(err, "origin"),
              "%s: %s", bad[i], err);
    CHECK(load(&c, "-m", "m", "--cors-origin", "http://ok.test", "--cors-origin", "bad/") == -1 &&
              strstr(err, "'bad/'"),
          "%s", err);

    const char *list = "http://a.example, HTTPS://B.example:8443 ,http://c.example";
    CHECK(cfg_cors_match(list, "http://a.example", 16) == 1, "first");
    CHECK(cfg_cors_match(list, "https://b.example:8443", 22) == 1, "case and blanks");
    CHECK(cfg_cors_match(list, "http://c.example", 16) == 1, "last");
    CHECK(cfg_cors_match(list, "http://evil.example", 19) == 0, "not listed");
    CHECK(cfg_cors_match(list, "http://a.exampl", 15) == 0, "a prefix is not a match");
    CHECK(cfg_cors_match(list, "http://a.example.evil", 21) == 0, "nor a longer one");
    CHECK(cfg_cors_match("http://a.example,*", "http://z", 8) == 2, "wildcard");
    CHECK(cfg_cors_match("*", "http://a.example", 16) == 2, "wildcard alone");
    CHECK(cfg_cors_match("", "http://a.example", 16) == 0, "off");
    cfg_free(&c);
}

static void test_help(void) {
    cfg_server c;
    char *text = NULL;
    /* --help wins even over a bad flag value or a broken environment. */
    setenv("LLAMASERVE_PORT", "nope", 1);
    CHECK(load_out(&c, &text, "--port=2", "--help", (char *)NULL) == 1, "%s", err);
    unsetenv("LLAMASERVE_PORT");
    const char *want[] = {"-m, --model",
                          "LLAMASERVE_MODEL",
                          "--parallel",
                          "LLAMASERVE_PARALLEL",
                          "--ctx-size",
                          "PER SLOT",
                          "--api-key",
                          "LLAMASERVE_API_KEY",
                          "--log-requests",
                          "--no-log-requests",
                          "--config",
                          "LLAMASERVE_CONFIG",
                          "--print-config",
                          "--seed",
                          "[default 4; 1..256; env LLAMASERVE_PARALLEL]",
                          "one of: auto llama2 chatml zephyr llama3",
                          "--max-tokens-limit",
                          "LLAMASERVE_SHUTDOWN_TIMEOUT",
                          "\"127.0.0.1\"",
                          "-c N",
                          "TOTAL context",
                          "-np",
                          "-b, --batch-size",
                          "-a, --alias",
                          "--cors-origin",
                          "LLAMASERVE_CORS_ORIGIN",
                          "--log-file",
                          "LLAMASERVE_LOG_FILE"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(text && strstr(text, want[i]), "--help lacks %s", want[i]);
    free(text);
    CHECK(load_out(&c, &text, "-h", (char *)NULL) == 1 && text && strstr(text, "usage"), "-h");
    free(text);
}

static void test_print_config(void) {
    cfg_server c;
    char *text = NULL;
    const char *file = write_tmp("print.json", "{\"threads\": 6, \"api_key\": \"from-file\"}");
    setenv("LLAMASERVE_PARALLEL", "3", 1);
    setenv("LLAMASERVE_API_KEY", "sekrit-value", 1);
    int rc = load_out(&c, &text, "--config", file, "--port", "1234", "--print-config", "-m",
                      "p/q.gguf", "--log-format", "json", (char *)NULL);
    unsetenv("LLAMASERVE_PARALLEL");
    unsetenv("LLAMASERVE_API_KEY");
    CHECK(rc == 1, "%s", err);
    CHECK(text && !strstr(text, "sekrit") && !strstr(text, "from-file"), "key leaked: %s",
          text ? text : "");
    cJSON *j = cJSON_Parse(text ? text : "");
    CHECK(cJSON_IsObject(j), "not JSON: %s", text ? text : "");
    if (j) {
        CHECK(cJSON_GetObjectItem(j, "port")->valueint == 1234, "port");
        CHECK(cJSON_GetObjectItem(j, "parallel")->valueint == 3, "parallel");
        CHECK(cJSON_GetObjectItem(j, "threads")->valueint == 6, "threads");
        CHECK(!strcmp(cJSON_GetObjectItem(j, "model")->valuestring, "p/q.gguf"), "model");
        CHECK(!strcmp(cJSON_GetObjectItem(j, "alias")->valuestring, "q"), "alias");
        CHECK(!strcmp(cJSON_GetObjectItem(j, "api_key")->valuestring, "***"), "redacted");
        CHECK(!strcmp(cJSON_GetObjectItem(j, "log_format")->valuestring, "json"), "log_format");
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "log_requests")), "log_requests");
        CHECK(cJSON_GetObjectItem(j, "seed")->valuedouble == -1, "seed");
        CHECK(!cJSON_GetObjectItem(j, "config"), "config is not a key of the file");
    }
    cJSON_Delete(j);
    free(text);

    /* Without a key, api_key prints as ""; the output, fed back, gives the same configuration. */
    rc = load_out(&c, &text, "-m", "m.bin", "--print-config", "--host", "a\"b\\c", "--seed", "7",
                  (char *)NULL);
    CHECK(rc == 1 && text && strstr(text, "\"api_key\": \"\""), "%s", text);
    const char *again = write_tmp("again.json", text ? text : "");
    char *text2 = NULL;
    rc = load_out(&c, &text2, "--config", again, "--print-config", (char *)NULL);
    CHECK(rc == 1 && text2 && !strcmp(text, text2), "round trip:\n%s\n%s", text, text2);
    CHECK(!strcmp(c.host, "a\"b\\c") && c.seed == 7, "%s", c.host);
    free(text);
    free(text2);
    cfg_free(&c);
}

static void test_example_file(void) {
    char path[1100];
    snprintf(path, sizeof path, "%s/../config/llamaserve.example.json", check_test_path(""));
    char *example = slurp(path);
    CHECK(example, "cannot read %s", path);
    if (!example) return;
    cfg_server c;
    cfg_defaults(&c);
    char *defaults = print_to_string(&c);
    /* Byte for byte what --print-config writes for the defaults: so it has every key. */
    CHECK(!strcmp(example, defaults), "example differs from the defaults:\n%s", defaults);
    char *text = NULL;
    CHECK(load_out(&c, &text, "--config", path, "--print-config", (char *)NULL) == 1, "%s", err);
    CHECK(text && !strcmp(text, defaults), "loaded example differs:\n%s", text);
    free(text);
    CHECK(load(&c, "--config", path, "-m", "x.gguf") == 0, "%s", err);
    cfg_server d;
    cfg_defaults(&d);
    snprintf(d.model, sizeof d.model, "x.gguf");
    snprintf(d.alias, sizeof d.alias, "x");
    snprintf(d.config, sizeof d.config, "%s", path);
    CHECK(!memcmp(&c, &d, sizeof c), "example + model != defaults + model");
    free(defaults);
    free(example);
}

int main(void) {
    clear_env();
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_defaults();
    test_models_dir();
    test_precedence();
    test_bad_values();
    test_bad_files_and_flags();
    test_llamacpp_flags();
    test_cors_origin();
    test_help();
    test_print_config();
    test_example_file();
    DIR *d = opendir(tmp_dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[1100];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(tmp_dir);
    return check_summary();
}
