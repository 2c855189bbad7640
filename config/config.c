/* config: builds cfg_server from defaults, the JSON config file, LLAMASERVE_* variables and flags,
 * in that order, each layer overriding the one before. Everything about a setting comes from its
 * row in `settings` below; adding a setting is one row plus its struct field. Never exits, never
 * logs; a bad value is an error even when a later layer would have overridden it. */
#include "config.h"

#include "args.h"
#include "llamacpp.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef LS_DEMO_MODEL
#define LS_DEMO_MODEL "kjv-demo-q8_0.gguf"
#endif
#ifndef LS_DATA_DIR
#define LS_DATA_DIR "/usr/local/share/llamaserve"
#endif
#ifndef LS_SOURCE_MODELS_DIR
#define LS_SOURCE_MODELS_DIR "models"
#endif

enum kind { K_STR, K_INT, K_I64, K_BOOL, K_ENUM };
/* APPEND: a repeated flag adds to the comma-separated list instead of replacing it (the file and
 * the environment give the whole list at once). */
enum { NOT_IN_FILE = 1, NON_EMPTY = 2, SECRET = 4, APPEND = 8 };

typedef struct {
    const char *key; /* JSON key; flag --key with '_' -> '-'; env LLAMASERVE_KEY upper-cased */
    enum kind kind;
    size_t offset, size;      /* the field in cfg_server; size is a string's capacity */
    long long min, max;       /* K_INT, K_I64 */
    const char *def_str;      /* K_STR */
    long long def;            /* K_INT, K_I64, K_BOOL (0/1), K_ENUM (index into names) */
    const char *const *names; /* K_ENUM, NULL-terminated */
    char short_flag;          /* 0 = none */
    const char *metavar, *help;
    unsigned flags;
    /* K_STR: checks a value's form beyond its length; 0, or -1 with a message naming what */
    int (*check)(const char *v, const char *what, char *err, size_t errlen);
} setting;

#define FIELD(f) offsetof(cfg_server, f), sizeof(((cfg_server *)0)->f)
#define STR(f, def, sh, mv, fl, h)                                                                 \
    { #f, K_STR, FIELD(f), 0, 0, def, 0, NULL, sh, mv, h, fl, NULL }
#define INT(f, def, lo, hi, sh, h)                                                                 \
    { #f, K_INT, FIELD(f), lo, hi, NULL, def, NULL, sh, "N", h, 0, NULL }
#define ENUM(f, def, names, h)                                                                     \
    { #f, K_ENUM, FIELD(f), 0, 0, NULL, def, names, 0, "NAME", h, 0, NULL }

static const char *const template_names[] = {"auto", "llama2", "chatml", "zephyr", "llama3", NULL};
static const char *const kv_names[] = {"f16", "f32", "q8_0", NULL};
static const char *const log_names[] = {"text", "json", NULL};
static const char *const pooling_names[] = {"mean", "last", NULL};
const char *const cfg_bf16_dot_names[] = {"auto", "on", "off", NULL};

/* Enum fields are written through an int (memcpy); they must be int-sized. */
_Static_assert(sizeof(cfg_chat_template) == sizeof(int), "enum size");
_Static_assert(sizeof(cfg_kv_type) == sizeof(int), "enum size");
_Static_assert(sizeof(cfg_log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(cfg_pooling) == sizeof(int), "enum size");
_Static_assert(sizeof(cfg_bf16_dot) == sizeof(int), "enum size");

static int check_origins(const char *v, const char *what, char *err, size_t errlen);

/* The order here is the order of --help, --print-config and the example file. */
static const setting settings[] = {
    STR(config, "", 0, "FILE", NOT_IN_FILE, "JSON config file: an object with the keys below"),
    STR(model, "", 'm', "PATH", 0,
        "model file (GGUF or llama2.c .bin); empty = the one .gguf\n"
        "in models_dir, else the embedded demo model"),
    STR(models_dir, "", 0, "DIR", 0,
        "without a model: serve the one .gguf file in this folder\n"
        "(the container sets /models); empty = none"),
    STR(tokenizer, "", 0, "PATH", 0, "tokenizer file; empty = the model's own"),
    STR(alias, "", 'a', "NAME", 0,
        "model name shown to clients; empty = the model file name\n"
        "without its extension"),
    ENUM(chat_template, CFG_TEMPLATE_AUTO, template_names,
         "chat prompt format; auto = the model file's Jinja template,\n"
         "else llama2; a name = that built-in format"),
    STR(chat_template_file, "", 0, "PATH", 0,
        "a Jinja chat template file to render prompts with, over\n"
        "the model's own and --chat-template; empty = none"),
    STR(host, "127.0.0.1", 0, "ADDR", NON_EMPTY, "address to listen on"),
    INT(port, 8080, 0, 65535, 0, "TCP port; 0 = any free port"),
    INT(parallel, 4, 1, 256, 0, "slots: requests decoded at the same time"),
    INT(ctx_size, 0, 0, 1048576, 0,
        "KV cache size in tokens PER SLOT, so the cache holds\n"
        "parallel x ctx_size tokens; 0 = the model's context length.\n"
        "llama.cpp's --ctx-size is the TOTAL: use -c for that"),
    INT(threads, 2, 1, 256, 't', "threads for the matrix work"),
    INT(batch_size, 64, 1, 4096, 'b', "most token rows in one forward step (the prefill chunk)"),
    INT(prefill_step_pct, 200, 0, 10000, 0,
        "a step that feeds prompt or draft rows beside decoding\n"
        "streams may take this % of a decode-only step's time at\n"
        "most (from the measured cost per row; >= 1 row);\n"
        "0 = only batch_size"),
    ENUM(kv_type, CFG_KV_F16, kv_names,
         "KV cache element type, keys and values alike; q8_0 = 8-bit\n"
         "blocks, half of f16's memory (-ctk/-ctv are aliases)"),
    ENUM(pooling, CFG_POOL_MEAN, pooling_names,
         "embeddings: mean = the average of every token's final\n"
         "hidden state, last = the last token's; then unit length"),
    {"mmap", K_BOOL, FIELD(mmap), 0, 0, NULL, 1, NULL, 0, "BOOL",
     "map the model file (shared, read-only); --no-mmap reads it\n"
     "into private memory, immune to the file being replaced", 0, NULL},
    {"repack", K_BOOL, FIELD(repack), 0, 0, NULL, 0, NULL, 0, "BOOL",
     "copy the Q4_0, IQ4_NL, K-quant and IQ4_XS matrices into\n"
     "private memory in the decode kernels' layout: faster decode,\n"
     "the weights' size again in RAM",
     0, NULL},
    ENUM(bf16_dot, CFG_BF16_DOT_AUTO, cfg_bf16_dot_names,
         "BF16 weights on activations rounded to BF16 with the CPU's\n"
         "vdpbf16ps: faster prefill, less exact; auto = where the CPU\n"
         "has AVX512_BF16, on = refuse to start without, off = F32"),
    {"prompt_cache", K_BOOL, FIELD(prompt_cache), 0, 0, NULL, 1, NULL, 0, "BOOL",
     "a new prompt reuses the longest prefix a free slot's KV\n"
     "cache holds (--no-prompt-cache turns it off)",
     0, NULL},
    INT(spec_ngram, 8, 0, 32, 0,
        "speculative decoding by prompt lookup: draft tokens verified\n"
        "per step at most, for requests that do not say; 0 = off"),
    STR(model_draft, "", 0, "PATH", 0,
        "a small model with the same vocabulary that drafts instead of\n"
        "prompt lookup (its own KV cache per slot); empty = none"),
    INT(max_queue, 64, 0, 100000, 0,
        "requests that may wait beyond the busy slots; more are refused"),
    INT(max_body, 1048576, 1024, 1073741824, 0, "largest request body in bytes"),
    INT(max_tokens_limit, 4096, 1, 1048576, 0, "the largest max_tokens a request may ask for"),
    /* designated: a member added to `setting` later is 0 here without a warning */
    {.key = "webui",
     .kind = K_BOOL,
     .offset = offsetof(cfg_server, webui),
     .size = sizeof(bool),
     .def = 1,
     .metavar = "BOOL",
     .help = "serve the chat page at / (--no-webui turns it off: / is 404)"},
    STR(api_key, "", 0, "KEY", SECRET,
        "clients must send 'Authorization: Bearer KEY' (or\n"
        "'X-Api-Key: KEY'); empty = no auth (prefer the variable:\n"
        "ps shows flags)"),
    {"public_models", K_BOOL, FIELD(public_models), 0, 0, NULL, 1, NULL, 0, "BOOL",
     "answer GET /v1/models and /models without the API key, as\n"
     "/health is (--no-public-models asks for the key)",
     0, NULL},
    {"slots", K_BOOL, FIELD(slots), 0, 0, NULL, 1, NULL, 0, "BOOL",
     "serve GET /slots, each slot's state (--no-slots: 501)", 0, NULL},
    {"cors_origin", K_STR, FIELD(cors_origin), 0, 0, "", 0, NULL, 0, "ORIGIN",
     "let browser pages from ORIGIN (scheme://host[:port], or *)\n"
     "call the API (CORS); repeat the flag for several, or give a\n"
     "comma-separated list; empty = CORS off",
     APPEND, check_origins},
    INT(timeout, 10, 1, 86400, 0,
        "idle timeout: seconds a connection may go without a byte\n"
        "either way while the server waits on the client (between\n"
        "keep-alive requests, a stalled upload or reader); waiting\n"
        "for tokens does not count"),
    INT(request_timeout, 30, 1, 86400, 0,
        "seconds a request (line, headers and body) may take to\n"
        "arrive, counted from the connection's start or the end of\n"
        "its previous response, however it trickles in"),
    INT(shutdown_timeout, 10, 0, 3600, 0, "seconds running requests get to finish on shutdown"),
    ENUM(log_format, CFG_LOG_TEXT, log_names, "log line format; json = every line one JSON object"),
    STR(log_file, "", 0, "PATH", 0, "append the log lines to this file; empty = stderr"),
    {"log_requests", K_BOOL, FIELD(log_requests), 0, 0, NULL, 1, NULL, 0, "BOOL",
     "log one line per request (--no-log-requests turns it off)", 0, NULL},
    /* JSON numbers are doubles, exact up to 2^53 - 1: the largest seed a config file can hold. */
    {"seed", K_I64, FIELD(seed), -1, 9007199254740991LL, NULL, -1, NULL, 's', "N",
     "sampling seed when a request gives none; -1 = random per request", 0, NULL},
};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

#define ENV_PREFIX "LLAMASERVE_"
#define MAX_FILE_BYTES (1 << 20)
/* -c N, llama.cpp's total context: at most every slot at the largest ctx_size */
#define MAX_CTX_TOTAL (256LL * 1048576)

static void flag_name(const setting *s, char *out, size_t n) {
    snprintf(out, n, "%s", s->key);
    for (char *p = out; *p; p++)
        if (*p == '_') *p = '-';
}

static void env_name(const setting *s, char *out, size_t n) {
    snprintf(out, n, ENV_PREFIX "%s", s->key);
    for (char *p = out; *p; p++)
        *p = (char)toupper((unsigned char)*p);
}

static void *field(cfg_server *c, const setting *s) {
    return (char *)c + s->offset;
}
static const void *cfield(const cfg_server *c, const setting *s) {
    return (const char *)c + s->offset;
}

/* Value writers: each checks what the table says and stores, or fails naming `what`. */

static int set_str(cfg_server *c, const setting *s, const char *v, const char *what, char *err,
                   size_t errlen) {
    size_t len = strlen(v);
    if (len >= s->size) return cfg_fail(err, errlen, "%s: longer than %zu bytes", what, s->size - 1);
    if ((s->flags & NON_EMPTY) && len == 0) return cfg_fail(err, errlen, "%s: must not be empty", what);
    /* "***" is what --print-config shows for a key; feeding that output back must not make it
     * the key. */
    if ((s->flags & SECRET) && !strcmp(v, "***"))
        return cfg_fail(err, errlen, "%s: \"***\" is --print-config's placeholder, not a key", what);
    if (s->check && s->check(v, what, err, errlen)) return -1;
    memcpy(field(c, s), v, len + 1);
    return 0;
}

/* The entries of a comma-separated origin list, blanks around each trimmed: calls fn on each;
 * stops and returns fn's value when it is not 0. */
static int each_origin(const char *list, int (*fn)(const char *e, size_t n, void *arg), void *arg) {
    for (const char *p = list;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t > 0 && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        int rc = fn(p, t, arg);
        if (rc) return rc;
        if (!p[n]) return 0;
        p += n + 1;
    }
}

typedef struct {
    const char *what;
    char *err;
    size_t errlen;
} origin_check;

/* An origin as a browser sends it: "*", or scheme://host[:port] with no path (a trailing slash
 * is the usual slip, and would never match). */
static int check_one_origin(const char *e, size_t n, void *arg) {
    origin_check *oc = arg;
    if (n == 1 && e[0] == '*') return 0;
    size_t i = 0;
    while (i < n && (isalnum((unsigned char)e[i]) || (i > 0 && strchr("+.-", e[i]))))
        i++;
    bool ok = i > 0 && isalpha((unsigned char)e[0]) && n - i > 3 && !strncmp(e + i, "://", 3);
    for (size_t k = i + 3; ok && k < n; k++)
        ok = e[k] > ' ' && e[k] < 0x7f && !strchr("/?#,", e[k]);
    if (ok) return 0;
    return cfg_fail(oc->err, oc->errlen,
                    "%s: '%.*s' is not an origin: give scheme://host[:port] with no path (e.g. "
                    "http://localhost:3000), or *",
                    oc->what, (int)n, e);
}

static int check_origins(const char *v, const char *what, char *err, size_t errlen) {
    if (!*v) return 0; /* CORS off */
    origin_check oc = {what, err, errlen};
    return each_origin(v, check_one_origin, &oc);
}

typedef struct {
    const char *origin;
    size_t len;
    int found;
} origin_match;

static int match_one_origin(const char *e, size_t n, void *arg) {
    origin_match *om = arg;
    if (n == 1 && e[0] == '*')
        om->found = 2;
    else if (n == om->len && !strncasecmp(e, om->origin, n) && om->found < 1)
        om->found = 1;
    return 0;
}

int cfg_cors_match(const char *list, const char *origin, size_t len) {
    if (!list[0]) return 0;
    origin_match om = {origin, len, 0};
    each_origin(list, match_one_origin, &om);
    return om.found;
}

static void set_int(cfg_server *c, const setting *s, long long v) {
    if (s->kind == K_I64) {
        int64_t x = v;
        memcpy(field(c, s), &x, sizeof x);
    } else if (s->kind == K_BOOL) {
        bool b = v != 0;
        memcpy(field(c, s), &b, sizeof b);
    } else {
        int x = (int)v;
        memcpy(field(c, s), &x, sizeof x);
    }
}

static int set_enum(cfg_server *c, const setting *s, const char *v, const char *what, char *err,
                    size_t errlen) {
    char list[128] = "";
    for (int i = 0; s->names[i]; i++) {
        if (!strcmp(v, s->names[i])) {
            set_int(c, s, i);
            return 0;
        }
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", s->names[i]);
    }
    return cfg_fail(err, errlen, "%s: '%s' is not one of %s", what, v, list);
}

static int parse_bool(const char *v, bool *out) {
    static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no",
                                                                                "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = true, 0;
        if (!strcasecmp(v, no[i])) return *out = false, 0;
    }
    return -1;
}

/* A value given as text (a flag or an environment variable). */
static int set_text(cfg_server *c, const setting *s, const char *v, const char *what, char *err,
                    size_t errlen) {
    long long x;
    bool b;
    switch (s->kind) {
    case K_STR:
        return set_str(c, s, v, what, err, errlen);
    case K_ENUM:
        return set_enum(c, s, v, what, err, errlen);
    case K_BOOL:
        if (parse_bool(v, &b))
            return cfg_fail(err, errlen, "%s: '%s' is not a boolean (true/false, 1/0, yes/no, on/off)",
                        what, v);
        set_int(c, s, b);
        return 0;
    case K_INT:
    case K_I64:
        /* strtoll would skip leading blanks; a value with them is a typo, not a number. */
        if (isspace((unsigned char)v[0]))
            return cfg_fail(err, errlen, "%s: '%s' is not an integer", what, v);
        if (cfg_parse_int(v, s->min, s->max, &x, what, err, errlen)) return -1;
        set_int(c, s, x);
        return 0;
    }
    return cfg_fail(err, errlen, "%s: unknown setting kind", what);
}

/* A value from the config file: the JSON type must match; integers must be whole and in range. */
static int set_json(cfg_server *c, const setting *s, const cJSON *v, const char *what, char *err,
                    size_t errlen) {
    switch (s->kind) {
    case K_STR:
    case K_ENUM:
        if (!cJSON_IsString(v)) return cfg_fail(err, errlen, "%s: expected a string", what);
        return s->kind == K_STR ? set_str(c, s, v->valuestring, what, err, errlen)
                                : set_enum(c, s, v->valuestring, what, err, errlen);
    case K_BOOL:
        if (!cJSON_IsBool(v)) return cfg_fail(err, errlen, "%s: expected true or false", what);
        set_int(c, s, cJSON_IsTrue(v));
        return 0;
    case K_INT:
    case K_I64: {
        double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        if (!isfinite(d) || d != floor(d) || d < (double)s->min || d > (double)s->max)
            return cfg_fail(err, errlen, "%s: expected an integer in [%lld, %lld]", what, s->min,
                        s->max);
        set_int(c, s, (long long)d);
        return 0;
    }
    }
    return cfg_fail(err, errlen, "%s: unknown setting kind", what);
}

void cfg_defaults(cfg_server *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        if (s->kind == K_STR)
            snprintf(field(c, s), s->size, "%s", s->def_str);
        else
            set_int(c, s, s->def);
    }
}

void cfg_free(cfg_server *c) {
    (void)c;
}

static const setting *find_key(const char *key) {
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (!strcmp(settings[i].key, key)) return &settings[i];
    return NULL;
}

/* Reads the whole file (at most MAX_FILE_BYTES) into a NUL-terminated buffer; caller frees. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cfg_fail(err, errlen, "config file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    if (!buf) {
        cfg_fail(err, errlen, "config file %s: out of memory", path);
        goto fail;
    }
    *len = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    if (ferror(f)) {
        cfg_fail(err, errlen, "config file %s: read error", path);
        goto fail;
    }
    if (*len > MAX_FILE_BYTES) {
        cfg_fail(err, errlen, "config file %s: larger than %d bytes", path, MAX_FILE_BYTES);
        goto fail;
    }
    buf[*len] = '\0';
    fclose(f);
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

static int load_file(cfg_server *c, const char *path, char *err, size_t errlen) {
    size_t len = 0;
    char *buf = read_file(path, &len, err, errlen);
    if (!buf) return -1;
    int rc = -1;
    bool seen[N_SETTINGS] = {0};
    const char *end = NULL;
    cJSON *root = NULL;
    if (strlen(buf) != len) {
        cfg_fail(err, errlen, "config file %s: contains a NUL byte", path);
        goto fail;
    }
    /* len + 1: the NUL is part of what cJSON reads, so trailing text after the object fails. */
    root = cJSON_ParseWithLengthOpts(buf, len + 1, &end, true);
    if (!root) {
        int line = 1, col = 1;
        for (const char *p = buf; end && p < end && p < buf + len; p++, col++)
            if (*p == '\n') line++, col = 0;
        cfg_fail(err, errlen, "config file %s: malformed JSON at line %d, column %d", path, line, col);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        cfg_fail(err, errlen, "config file %s: expected a JSON object {...}", path);
        goto fail;
    }
    for (const cJSON *item = root->child; item; item = item->next) {
        char what[512];
        snprintf(what, sizeof what, "config file %s: key \"%s\"", path, item->string);
        const setting *s = find_key(item->string);
        if (!s || (s->flags & NOT_IN_FILE)) {
            cfg_fail(err, errlen, "%s: unknown key", what);
            goto fail;
        }
        if (seen[s - settings]) {
            cfg_fail(err, errlen, "%s: appears twice", what);
            goto fail;
        }
        seen[s - settings] = true;
        if (set_json(c, s, item, what, err, errlen)) goto fail;
    }
    rc = 0;
fail:
    cJSON_Delete(root);
    free(buf);
    return rc;
}

static int load_env(cfg_server *c, char *err, size_t errlen) {
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char name[64], what[96];
        env_name(&settings[i], name, sizeof name);
        const char *v = getenv(name);
        if (!v) continue;
        snprintf(what, sizeof what, "environment variable %s", name);
        if (set_text(c, &settings[i], v, what, err, errlen)) return -1;
    }
    return 0;
}

/* alias defaults to the model's file name without its extension: models/tiny.gguf -> tiny. */
static void default_alias(cfg_server *c) {
    if (c->alias[0] || !c->model[0]) return;
    const char *base = strrchr(c->model, '/');
    base = base ? base + 1 : c->model;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (len >= sizeof c->alias) len = sizeof c->alias - 1; /* a display name: cutting is fine */
    memcpy(c->alias, base, len);
    c->alias[len] = '\0';
}

int cfg_find_demo_model(char *out, size_t n, char *err, size_t errlen) {
    char exe[CFG_PATH_LEN] = "";
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
    } else {
        exe[0] = '\0';
    }
    char places[4][CFG_PATH_LEN];
    int n_places = 0;
    if (exe[0]) {
        snprintf(places[n_places++], CFG_PATH_LEN, "%s/%s", exe, LS_DEMO_MODEL);
        snprintf(places[n_places++], CFG_PATH_LEN, "%s/../share/llamaserve/%s", exe, LS_DEMO_MODEL);
    }
    snprintf(places[n_places++], CFG_PATH_LEN, "%s/%s", LS_DATA_DIR, LS_DEMO_MODEL);
    snprintf(places[n_places++], CFG_PATH_LEN, "%s/%s", LS_SOURCE_MODELS_DIR, LS_DEMO_MODEL);
    for (int i = 0; i < n_places; i++) {
        if (access(places[i], R_OK) == 0 && strlen(places[i]) < n) {
            snprintf(out, n, "%s", places[i]);
            return 0;
        }
    }
    char list[4 * 256] = "";
    for (int i = 0; i < n_places; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%.200s", i ? ", " : "", places[i]);
    }
    return cfg_fail(err, errlen, "no model given (--model PATH), and the demo model is in none of: %s",
                    list);
}

/* The one .gguf file in dir: 0 with its path, 1 when dir holds none (or does not exist), -1 with
 * a message when it holds several (which one to serve is the user's choice, not ours). */
static int model_in_dir(const char *dir, char *out, size_t n, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) return 1;
    char first[256] = "", second[256] = "";
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcasecmp(e->d_name + len - 5, ".gguf")) continue;
        snprintf(found++ ? second : first, sizeof first, "%s", e->d_name);
        if (found > 1) break;
    }
    closedir(d);
    if (found == 0) return 1;
    if (found > 1)
        return cfg_fail(err, errlen,
                        "models_dir %s holds several .gguf files (%s, %s, ...): choose one with "
                        "--model or LLAMASERVE_MODEL",
                        dir, first, second);
    if ((size_t)snprintf(out, n, "%s/%s", dir, first) >= n)
        return cfg_fail(err, errlen, "models_dir %s: path too long", dir);
    return 0;
}

/* No model given: the one in models_dir, else the embedded demo model. */
static int default_model(cfg_server *c, char *err, size_t errlen) {
    if (c->models_dir[0]) {
        int rc = model_in_dir(c->models_dir, c->model, sizeof c->model, err, errlen);
        if (rc < 0) return -1;
        if (rc == 0) {
            c->model_origin = CFG_MODEL_MODELS_DIR;
            return 0;
        }
    }
    if (cfg_find_demo_model(c->model, sizeof c->model, err, errlen)) return -1;
    c->model_origin = CFG_MODEL_EMBEDDED;
    return 0;
}

/* One flag seen on the command line, applied after the file and the environment. */
typedef struct {
    const setting *s;  /* NULL: -c, llama.cpp's total context */
    const char *value; /* NULL: a bare --bool or --no-bool */
    bool negate;
} flag_use;

enum { OPT_HELP = 'h', OPT_CTX_TOTAL = 'c', OPT_PRINT = 1000, OPT_SET = 1100, OPT_NEG = 1400 };

/* Before getopt: rewrites llama.cpp's several-letter single-dash spellings of our flags (-np)
 * to our long names in args (a copy of argv), and refuses a llama.cpp flag we do not take with
 * a hint. Walks the words as getopt will, so that a flag's value ("--api-key -np") is never
 * taken for a flag. */
static int rewrite_llamacpp(int argc, char **args, const struct option *opts, const char *shorts,
                            char *err, size_t errlen) {
    const char *cache_type = NULL; /* the value of a -ctk/-ctv seen before */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(args[i], "--")) break;
        if (args[i][0] != '-' || !args[i][1]) continue; /* an operand: getopt reports it */
        const char *ours = cfg_llamacpp_alias(args[i]);
        /* llama.cpp's separate key and value types: we keep one, so they must agree */
        if (ours && (!strncmp(args[i], "-ct", 3) || !strncmp(args[i], "--cache-type-", 13))) {
            const char *v = i + 1 < argc ? args[i + 1] : NULL;
            if (v && cache_type && strcmp(v, cache_type))
                return cfg_fail(err, errlen,
                                "%s %s: keys and values have one type in llamaserve, and %s was "
                                "given before",
                                args[i], v, cache_type);
            if (v) cache_type = v;
        }
        if (ours) args[i] = (char *)ours; /* getopt permutes the pointers, never writes the text */
        const char *a = args[i];
        /* before our short flags: "-tb" is llama.cpp's --threads-batch, not "-t b" */
        char name[48];
        const char *hint = cfg_llamacpp_hint(a, name, sizeof name);
        if (hint) {
            int n = (int)strcspn(a, "=");
            if (!strncmp(a, name, (size_t)n) && !name[n])
                return cfg_fail(err, errlen, "unknown option '%.*s' (a llama.cpp flag): %s", n, a,
                                hint);
            return cfg_fail(err, errlen, "unknown option '%.*s' (llama.cpp's %s): %s", n, a, name,
                            hint);
        }
        if (a[1] == '-') {
            size_t n = strcspn(a + 2, "=");
            for (const struct option *o = opts; o->name; o++)
                if (strlen(o->name) == n && !strncmp(o->name, a + 2, n)) {
                    if (o->has_arg == required_argument && !a[2 + n]) i++; /* its value follows */
                    break;
                }
        } else {
            /* a cluster of short flags ("-t4", "-m PATH"): the first that takes a value ends it */
            for (const char *p = a + 1; *p && *p != ':'; p++) {
                const char *sf = strchr(shorts + 1, *p);
                if (!sf) break; /* unknown: getopt reports it */
                if (sf[1] == ':') {
                    if (!p[1]) i++;
                    break;
                }
            }
        }
    }
    return 0;
}

/* -c N: llama.cpp's total context, shared by the slots (its n_ctx / n_parallel). */
static int apply_ctx_total(cfg_server *c, const char *v, char *err, size_t errlen) {
    long long total;
    if (cfg_parse_int(v, 1, MAX_CTX_TOTAL, &total, "-c", err, errlen)) {
        if (!strcmp(v, "0"))
            return cfg_fail(err, errlen,
                            "-c 0: the model's context shared by the slots is not supported; "
                            "--ctx-size 0 gives every slot the model's context");
        return -1;
    }
    long long per_slot = total / c->parallel;
    if (per_slot < 1)
        return cfg_fail(err, errlen,
                        "-c %lld: the total context is shared by %d slots (--parallel), which "
                        "leaves less than one token each",
                        total, c->parallel);
    if (per_slot > 1048576)
        return cfg_fail(err, errlen,
                        "-c %lld: %lld tokens per slot is more than the largest --ctx-size, "
                        "1048576",
                        total, per_slot);
    c->ctx_size = (int)per_slot;
    return 0;
}

/* getopt_long's tables for every setting: --name (and --no-name for booleans) and the short
 * flags, plus --help and --print-config. */
typedef struct {
    struct option opts[2 * N_SETTINGS + 3];
    char names[2 * N_SETTINGS][48];
    char shorts[2 * N_SETTINGS + 8];
} flag_table;

static void build_flag_table(flag_table *ft) {
    size_t n_opts = 0;
    strcpy(ft->shorts, ":hc:");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        flag_name(s, ft->names[n_opts], sizeof ft->names[n_opts]);
        ft->opts[n_opts] = (struct option){
            ft->names[n_opts], s->kind == K_BOOL ? optional_argument : required_argument, NULL,
            OPT_SET + (int)i};
        n_opts++;
        if (s->kind == K_BOOL) {
            memcpy(ft->names[n_opts], "no-", 3);
            flag_name(s, ft->names[n_opts] + 3, sizeof ft->names[n_opts] - 3);
            ft->opts[n_opts] =
                (struct option){ft->names[n_opts], no_argument, NULL, OPT_NEG + (int)i};
            n_opts++;
        }
        if (s->short_flag) {
            size_t n = strlen(ft->shorts);
            ft->shorts[n] = s->short_flag;
            ft->shorts[n + 1] = ':';
            ft->shorts[n + 2] = '\0';
        }
    }
    ft->opts[n_opts++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    ft->opts[n_opts++] = (struct option){"print-config", no_argument, NULL, OPT_PRINT};
    ft->opts[n_opts] = (struct option){0, 0, 0, 0};
}

/* The flag use of getopt's answer ch (a setting's, -c's, or a short flag's) into *u; -1 with a
 * message for an unknown or incomplete one. */
static int flag_use_of(int ch, char **args, flag_use *u, char *err, size_t errlen) {
    if (ch == OPT_CTX_TOTAL) {
        *u = (flag_use){NULL, optarg, false};
    } else if (ch >= OPT_SET && ch < OPT_SET + (int)N_SETTINGS) {
        *u = (flag_use){&settings[ch - OPT_SET], optarg, false};
    } else if (ch >= OPT_NEG && ch < OPT_NEG + (int)N_SETTINGS) {
        *u = (flag_use){&settings[ch - OPT_NEG], NULL, true};
    } else if (ch == ':') {
        return cfg_fail(err, errlen, "%s needs a value", args[optind - 1]);
    } else if (ch == '?') {
        if (optopt && optopt < 256) return cfg_fail(err, errlen, "unknown option '-%c'", optopt);
        return cfg_fail(err, errlen, "unknown option '%s'", args[optind - 1]);
    } else {
        const setting *s = NULL;
        for (size_t i = 0; i < N_SETTINGS; i++)
            if (settings[i].short_flag == ch) s = &settings[i];
        if (!s) return cfg_fail(err, errlen, "unknown option '-%c'", ch);
        *u = (flag_use){s, optarg, false};
    }
    return 0;
}

/* Pass 1: the flags of args (argc words) into uses (*n_uses), --help and --print-config into
 * *help and *print, so that --config is known before the file is read and the file and
 * environment are applied beneath the flags whatever their order. */
static int collect_flags(int argc, char **args, const flag_table *ft, flag_use *uses,
                         size_t *n_uses, bool *help, bool *print, char *err, size_t errlen) {
    int ch, li = -1;
    opterr = 0;
    optind = 0; /* glibc: 0 also resets getopt's state left from an earlier call */
    while ((ch = getopt_long(argc, args, ft->shorts, ft->opts, &li)) != -1) {
        if (li >= 0 && ch != '?' && ch != ':') {
            /* getopt_long takes unambiguous prefixes (--par for --parallel); we do not, so that
             * adding a flag never changes what an old command line means. */
            const struct option *o = &ft->opts[li];
            bool separate = o->has_arg == required_argument && optarg == args[optind - 1];
            const char *arg = args[optind - (separate ? 2 : 1)];
            size_t n = strcspn(arg + 2, "=");
            if (strncmp(arg, "--", 2) || strlen(o->name) != n)
                return cfg_fail(err, errlen, "unknown option '%.*s' (did you mean --%s?)",
                                (int)strcspn(arg, "="), arg, o->name);
        }
        li = -1;
        if (ch == OPT_HELP)
            *help = true;
        else if (ch == OPT_PRINT)
            *print = true;
        else if (flag_use_of(ch, args, &uses[(*n_uses)++], err, errlen))
            return -1;
    }
    if (optind < argc) return cfg_fail(err, errlen, "unexpected argument '%s'", args[optind]);
    return 0;
}

/* The file's path: the last --config, else LLAMASERVE_CONFIG; reads the file when there is
 * one. */
static int apply_config_file(cfg_server *c, const flag_use *uses, size_t n_uses, char *err,
                             size_t errlen) {
    const setting *config = find_key("config");
    char config_env[64];
    env_name(config, config_env, sizeof config_env);
    const char *path = getenv(config_env);
    const char *path_what = config_env;
    for (size_t i = 0; i < n_uses; i++)
        if (uses[i].s == config) path = uses[i].value, path_what = "--config";
    if (!path || !*path) return 0;
    char what[96];
    snprintf(what, sizeof what, "%s%s", path_what == config_env ? "environment variable " : "",
             path_what);
    if (set_str(c, config, path, what, err, errlen) || load_file(c, path, err, errlen)) return -1;
    return 0;
}

/* The flags, above the file and the environment, in command-line order; *ctx_total is the last
 * -c, unless a later --ctx-size overrode it. */
static int apply_flags(cfg_server *c, const flag_use *uses, size_t n_uses,
                       const char **ctx_total, char *err, size_t errlen) {
    bool appended[N_SETTINGS] = {0};
    *ctx_total = NULL;
    for (size_t i = 0; i < n_uses; i++) {
        const flag_use *u = &uses[i];
        if (!u->s) {
            *ctx_total = u->value;
            continue;
        }
        char what[64] = "--";
        flag_name(u->s, what + 2, sizeof what - 2);
        if (!strcmp(u->s->key, "ctx_size")) *ctx_total = NULL;
        if (u->s->kind == K_BOOL && !u->value) {
            set_int(c, u->s, !u->negate);
        } else if ((u->s->flags & APPEND) && appended[u->s - settings]) {
            /* the flag's earlier values (not the file's or the environment's) plus this one */
            char list[CFG_PATH_LEN];
            const char *prev = cfield(c, u->s);
            if ((size_t)snprintf(list, sizeof list, "%s,%s", prev, u->value) >= sizeof list)
                return cfg_fail(err, errlen, "%s: the values together are longer than %zu bytes",
                                what, sizeof list - 1);
            if (set_text(c, u->s, list, what, err, errlen)) return -1;
        } else if (set_text(c, u->s, u->value, what, err, errlen)) {
            return -1;
        }
        appended[u->s - settings] = true;
    }
    return 0;
}

int cfg_load(cfg_server *c, int argc, char **argv, FILE *out, char *err, size_t errlen) {
    flag_table ft;
    build_flag_table(&ft);
    cfg_defaults(c);
    int rc = -1;
    bool help = false, print = false;
    size_t n_uses = 0;
    flag_use *uses = calloc((size_t)(argc > 0 ? argc : 1), sizeof *uses);
    /* getopt permutes the words it parses and the llama.cpp rewrite replaces some: a copy
     * leaves the caller's argv as it was */
    char **args = calloc((size_t)(argc > 0 ? argc : 0) + 1, sizeof *args);
    if (!uses || !args) {
        cfg_fail(err, errlen, "out of memory");
        goto done;
    }
    for (int i = 0; i < argc; i++)
        args[i] = argv[i];
    if (rewrite_llamacpp(argc, args, ft.opts, ft.shorts, err, errlen)) goto done;
    if (collect_flags(argc, args, &ft, uses, &n_uses, &help, &print, err, errlen)) goto done;
    if (help) {
        cfg_print_help(out);
        rc = 1;
        goto done;
    }
    const char *ctx_total;
    if (apply_config_file(c, uses, n_uses, err, errlen) || load_env(c, err, errlen) ||
        apply_flags(c, uses, n_uses, &ctx_total, err, errlen))
        goto done;
    /* after every layer, so that the division uses the final --parallel */
    if (ctx_total && apply_ctx_total(c, ctx_total, err, errlen)) goto done;
    if (!c->model[0] && !print && default_model(c, err, errlen)) goto done;
    default_alias(c);
    if (print) {
        cfg_print_json(c, out);
        rc = 1;
        goto done;
    }
    rc = 0;
done:
    free(uses);
    free(args);
    return rc;
}

static void print_json_string(const char *s, FILE *out) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void cfg_print_json(const cfg_server *c, FILE *out) {
    const char *sep = "{\n";
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        if (s->flags & NOT_IN_FILE) continue;
        fprintf(out, "%s  \"%s\": ", sep, s->key);
        sep = ",\n";
        const void *f = cfield(c, s);
        int x;
        int64_t x64;
        bool b;
        switch (s->kind) {
        case K_STR:
            print_json_string((s->flags & SECRET) && *(const char *)f ? "***" : f, out);
            break;
        case K_INT:
            memcpy(&x, f, sizeof x);
            fprintf(out, "%d", x);
            break;
        case K_I64:
            memcpy(&x64, f, sizeof x64);
            fprintf(out, "%lld", (long long)x64);
            break;
        case K_BOOL:
            memcpy(&b, f, sizeof b);
            fputs(b ? "true" : "false", out);
            break;
        case K_ENUM:
            memcpy(&x, f, sizeof x);
            print_json_string(s->names[x], out);
            break;
        }
    }
    fputs("\n}\n", out);
}

/* The default as --help shows it. */
static void default_text(const setting *s, char *out, size_t n) {
    switch (s->kind) {
    case K_STR:
        snprintf(out, n, "\"%s\"", s->def_str);
        break;
    case K_INT:
    case K_I64:
        snprintf(out, n, "%lld", s->def);
        break;
    case K_BOOL:
        snprintf(out, n, "%s", s->def ? "true" : "false");
        break;
    case K_ENUM:
        snprintf(out, n, "%s", s->names[s->def]);
        break;
    }
}

void cfg_print_help(FILE *out) {
    fprintf(out,
            "usage: llamaserve serve [--model PATH] [options]\n"
            "\n"
            "Serves the model over HTTP. Each setting comes from its flag, else its environment\n"
            "variable, else the JSON config file (--config), else its default.\n"
            "\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        char flag[48], env[64], left[96], def[64], range[160] = "";
        flag_name(s, flag, sizeof flag);
        env_name(s, env, sizeof env);
        if (s->short_flag)
            snprintf(left, sizeof left, "-%c, --%s %s", s->short_flag, flag, s->metavar);
        else if (s->kind == K_BOOL)
            snprintf(left, sizeof left, "    --%s[=%s]", flag, s->metavar);
        else
            snprintf(left, sizeof left, "    --%s %s", flag, s->metavar);
        default_text(s, def, sizeof def);
        if (s->kind == K_INT || s->kind == K_I64)
            snprintf(range, sizeof range, "; %lld..%lld", s->min, s->max);
        fprintf(out, "  %-26s ", left);
        for (const char *h = s->help; *h; h++) /* continuation lines line up with the first */
            *h == '\n' ? fprintf(out, "\n  %-26s ", "") : fputc(*h, out);
        fputc('\n', out);
        if (s->kind == K_ENUM) {
            fprintf(out, "  %-26s one of:", "");
            for (int k = 0; s->names[k]; k++)
                fprintf(out, " %s", s->names[k]);
            fputc('\n', out);
        }
        fprintf(out, "  %-26s [default %s%s; env %s]\n", "", def, range, env);
        if (!strcmp(s->key, "ctx_size"))
            fprintf(out,
                    "  %-26s TOTAL context as llama.cpp's -c means it, shared by the\n"
                    "  %-26s slots: ctx_size = N / parallel, rounded down (-c 8192\n"
                    "  %-26s with 4 slots = --ctx-size 2048); flag only\n",
                    "-c N", "", "");
    }
    fprintf(out,
            "  %-26s print the effective configuration as JSON (api_key as \"***\") "
            "and exit\n",
            "    --print-config");
    fprintf(out, "  %-26s this help\n", "-h, --help");
    fprintf(out,
            "\n"
            "llama.cpp's server flags -m, -c, -np, -t, -b, -a, -s, -to, --host and --port mean\n"
            "what they mean there (-np = --parallel, -to = --timeout); mind that -c is the total\n"
            "context and --ctx-size the context of each slot. A llama.cpp flag llamaserve does\n"
            "not take (-ngl, -fa, --n-predict, ...) is an error that says what to use instead.\n");
}
