/* config: the server's settings, and the only code that reads flags, environment and the config
 * file. Every setting lives in one table (config.c) that gives its default, its JSON key, its
 * LLAMASERVE_<KEY> environment variable, its --flag, its range and its help line; precedence is
 * flag > environment > file > default. Never exits and never logs: errors come back as -1 and a
 * message that names the key, flag or variable. Not thread-safe (getopt, getenv): call once, from
 * main, before any thread starts. */
#ifndef LS_CONFIG_H
#define LS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* String capacities, terminating NUL included; a longer value is an error naming the key. */
#define CFG_PATH_LEN 4096
#define CFG_NAME_LEN 256

typedef enum {
    CFG_TEMPLATE_AUTO, /* from the model file's metadata */
    CFG_TEMPLATE_LLAMA2,
    CFG_TEMPLATE_CHATML,
    CFG_TEMPLATE_ZEPHYR,
    CFG_TEMPLATE_LLAMA3,
} cfg_chat_template;

typedef enum { CFG_KV_F16, CFG_KV_F32, CFG_KV_Q8_0 } cfg_kv_type;
typedef enum { CFG_POOL_MEAN, CFG_POOL_LAST } cfg_pooling;
/* BF16 weights on BF16 activations: auto = where the CPU has AVX512_BF16. */
typedef enum { CFG_BF16_DOT_AUTO, CFG_BF16_DOT_ON, CFG_BF16_DOT_OFF } cfg_bf16_dot;
extern const char *const cfg_bf16_dot_names[]; /* by value, NULL-terminated */
/* Where the model path came from. */
typedef enum {
    CFG_MODEL_GIVEN,      /* --model, LLAMASERVE_MODEL or the config file */
    CFG_MODEL_MODELS_DIR, /* the one .gguf file in models_dir */
    CFG_MODEL_EMBEDDED,   /* the demo model shipped with llamaserve (cfg_find_demo_model) */
} cfg_model_origin;
typedef enum { CFG_LOG_TEXT, CFG_LOG_JSON } cfg_log_format;

/* The effective configuration. Plain data with fixed buffers: copy it freely, share it read-only
 * between threads once cfg_load has returned. Ranges are enforced by cfg_load. */
typedef struct {
    char config[CFG_PATH_LEN];    /* the config file that was read; "" = none */
    char model[CFG_PATH_LEN];     /* model file; "" only when cfg_load returned 1 */
    char models_dir[CFG_PATH_LEN]; /* without a model: the one .gguf here; "" = none */
    cfg_model_origin model_origin;
    char tokenizer[CFG_PATH_LEN]; /* "" = the model's own tokenizer */
    char alias[CFG_NAME_LEN];     /* model name for clients; cfg_load fills it from model */
    cfg_chat_template chat_template;
    char chat_template_file[CFG_PATH_LEN]; /* a Jinja template file; "" = none */
    char host[CFG_NAME_LEN]; /* address to listen on, never "" */
    int port;                /* 0..65535; 0 = any free port */
    int parallel;            /* slots, 1..256 */
    int ctx_size;            /* KV cache tokens PER SLOT; 0 = the model's context length (-c N,
                                llama.cpp's total, is stored here as N / parallel) */
    int threads;             /* 1..256 */
    int batch_size;          /* most rows of one forward step (prefill chunk), 1..4096 */
    int prefill_step_pct;    /* a step with prompt rows beside decoding ones: at most this % of
                                a decode-only step's measured time, 0..10000; 0 = no limit */
    cfg_kv_type kv_type;
    cfg_pooling pooling;        /* how /v1/embeddings pools a sequence's hidden states */
    bool mmap;                  /* map the model file; false: read it into private memory */
    bool repack;                /* quantized matrices also copied in the decode kernels' layout */
    cfg_bf16_dot bf16_dot;      /* BF16 weights on BF16 activations (matmul.h mm_set_bf16_dot) */
    bool prompt_cache;          /* reuse a free slot's cached prompt prefix */
    int spec_ngram;             /* prompt-lookup draft tokens per step, 0..32; 0 = off */
    char model_draft[CFG_PATH_LEN]; /* a draft model with the same vocabulary; "" = none */
    int max_queue;              /* requests waiting beyond the busy slots, 0..100000 */
    int max_body;               /* bytes, 1024..1073741824 */
    int max_tokens_limit;       /* the largest max_tokens a request may ask, 1..1048576 */
    bool webui;                 /* serve the chat page at / (server/webui.h) */
    char api_key[CFG_NAME_LEN]; /* "" = no authentication; never print it */
    bool public_models;         /* GET /v1/models and /models need no API key */
    bool slots;                 /* serve GET /slots */
    char cors_origin[CFG_PATH_LEN]; /* origins allowed by CORS, comma-separated, each "*" or
                                       scheme://host[:port]; "" = CORS off */
    int timeout;                /* idle timeout, seconds, 1..86400 (see config.c) */
    int request_timeout;        /* whole-request deadline, seconds, 1..86400 */
    int shutdown_timeout;       /* seconds running requests get to finish, 0..3600 */
    cfg_log_format log_format;
    char log_file[CFG_PATH_LEN]; /* log lines are appended here; "" = stderr */
    bool log_requests;
    int64_t seed; /* default sampling seed; -1 = random per request */
} cfg_server;

/* Fills c with every default. */
void cfg_defaults(cfg_server *c);

/* Builds the configuration of `serve`: argv[0] is "serve"; then the environment (getenv) and the
 * JSON file named by --config or LLAMASERVE_CONFIG. c's previous contents are ignored. Returns 0
 * with c complete (a model is then required); 1 when --help or --print-config was handled and
 * printed to out (the caller exits 0); -1 with a message in err on any bad flag, variable, key or
 * value. llama.cpp's spellings (-np, -c, -b, -a, ...) are taken as llama.cpp means them, and a
 * llama.cpp flag we do not take is an error naming what to use instead. Neither changes argv
 * nor keeps a pointer into it. */
int cfg_load(cfg_server *c, int argc, char **argv, FILE *out, char *err, size_t errlen);

/* Finds the demo model shipped with llamaserve (LS_DEMO_MODEL, kjv-demo-q8_0.gguf), the model
 * `serve` and `generate` use when none is given. Looks, in order, next to the running binary, in
 * ../share/llamaserve beside it, at the installed data path and in the source tree it was built
 * from. Returns 0 with the path in out, or -1 with a message naming every place it looked. */
int cfg_find_demo_model(char *out, size_t n, char *err, size_t errlen);

/* Writes c as one JSON object, every key of the config file, api_key redacted as "***" when set.
 * The output is itself a valid config file (that is how llamaserve.example.json is made). */
void cfg_print_json(const cfg_server *c, FILE *out);

/* Whether origin (len bytes, not NUL-terminated) is allowed by the cors_origin list: 2 when
 * the list holds "*", 1 when it holds origin itself (ASCII case-insensitive, as hosts are), 0
 * otherwise (and always when the list is ""). Thread-safe. */
int cfg_cors_match(const char *list, const char *origin, size_t len);

/* Writes --help: every flag with its environment variable and default. */
void cfg_print_help(FILE *out);

/* Releases what c owns. Nothing today (fixed buffers); call it anyway so that can change. */
void cfg_free(cfg_server *c);

#endif
