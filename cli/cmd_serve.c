/* cmd_serve: `llamaserve serve`. Reads the configuration (config/), sets up the log (server/log.h:
 * every line from here on has a timestamp and a level, text or JSON), starts listening at once
 * (so /health can say 503 while the model loads), loads the model, refuses a KV cache that would
 * not fit in memory, starts the scheduler, logs the startup summary, then waits for
 * SIGINT/SIGTERM: stop accepting, let running requests finish for up to shutdown_timeout
 * seconds, end the rest, exit 0. */
#include "cli.h"

#include "api.h"
#include "chat.h"
#include "common.h"
#include "config.h"
#include "fingerprint.h"
#include "gguf.h"
#include "http.h"
#include "kv_cache.h"
#include "log.h"
#include "matmul.h"
#include "scheduler.h"
#include "spec.h"
#include "summary.h"
#include "sysmem.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static chat_format chat_setting(cfg_chat_template t) {
    switch (t) {
    case CFG_TEMPLATE_LLAMA2: return CHAT_LLAMA2;
    case CFG_TEMPLATE_CHATML: return CHAT_CHATML;
    case CFG_TEMPLATE_ZEPHYR: return CHAT_ZEPHYR;
    case CFG_TEMPLATE_LLAMA3: return CHAT_LLAMA3;
    default: return CHAT_AUTO;
    }
}

/* The chat template: --chat-template-file's text, --chat-template, or the model's own (see
 * chat_template_load). NULL with a message: an unreadable file, or a template the interpreter
 * cannot run (the message names the construct and the flags that override it). */
static chat_template *load_chat_template(const cfg_server *cfg, const model *m, char *err,
                                         size_t errlen) {
    char *src = NULL;
    size_t len = 0;
    if (cfg->chat_template_file[0]) {
        FILE *f = fopen(cfg->chat_template_file, "rb");
        if (f) {
            src = malloc(1 << 20); /* templates are a few KB; 1 MiB is generous */
            len = src ? fread(src, 1, 1 << 20, f) : 0;
            if (src && !feof(f)) {
                free(src);
                src = NULL;
                snprintf(err, errlen, "--chat-template-file %.200s: larger than 1 MiB",
                         cfg->chat_template_file);
                fclose(f);
                return NULL;
            }
            fclose(f);
        }
        if (!src) {
            snprintf(err, errlen, "--chat-template-file %.200s: cannot read it",
                     cfg->chat_template_file);
            return NULL;
        }
    }
    chat_template *ct = chat_template_load(m, chat_setting(cfg->chat_template), src, len,
                                           cfg->chat_template_file, err, errlen);
    free(src);
    return ct;
}

/* Waits until no request is queued or running, or until deadline (monotonic seconds). */
static void wait_idle(sched *s, double deadline) {
    while (sched_active(s) > 0 && ls_now() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL); /* a shutdown poll, not a synchronisation in a test */
    }
}

/* 0 when the KV cache of sp fits in the memory this process may have; else logs why not, with
 * the settings that fit, and returns -1. */
static int check_kv_memory(const model *m, const sched_params *sp) {
    sysmem_info mi;
    sysmem_read("", &mi);
    sysmem_fit fit;
    uint64_t per_token = kv_bytes_per_token(&m->cfg, sp->kv);
    if (!sysmem_kv_fit(per_token, sp->parallel, sp->ctx_size, mi.available, &fit)) return 0;
    const char *kv_type = kv_type_name(sp->kv);
    char msg[1024];
    sysmem_kv_message(&fit, &mi, sp->parallel, sp->ctx_size, kv_type, msg, sizeof msg);
    cJSON *f = cJSON_CreateObject();
    if (f) {
        cJSON_AddNumberToObject(f, "parallel", sp->parallel);
        cJSON_AddNumberToObject(f, "ctx_size", sp->ctx_size);
        cJSON_AddStringToObject(f, "kv_type", kv_type);
        cJSON_AddNumberToObject(f, "kv_bytes_per_token", (double)per_token);
        cJSON_AddNumberToObject(f, "kv_cache_bytes", (double)fit.need);
        cJSON_AddNumberToObject(f, "available_bytes", (double)mi.available);
        cJSON_AddNumberToObject(f, "max_ctx_size", fit.max_ctx);
        cJSON_AddNumberToObject(f, "max_parallel", fit.max_parallel);
    }
    log_fields(LOG_ERROR, msg, f);
    cJSON_Delete(f);
    return -1;
}

static void log_listening(const cfg_server *cfg, const http_server *h) {
    int port = http_port(h), max_conns;
    unsigned long long open_files;
    http_limits(h, &open_files, &max_conns);
    cJSON *f = cJSON_CreateObject();
    if (f) {
        cJSON_AddStringToObject(f, "model_path", cfg->model);
        cJSON_AddStringToObject(f, "model_origin", summary_origin_name(cfg->model_origin));
        /* RLIMIT_NOFILE as raised for the connection limit */
        cJSON_AddNumberToObject(f, "open_files_limit", (double)open_files);
        cJSON_AddNumberToObject(f, "max_connections", max_conns);
    }
    char msg[400];
    snprintf(msg, sizeof msg, "listening on http://%s:%d, loading the model", cfg->host, port);
    log_fields(LOG_INFO, msg, f);
    cJSON_Delete(f);
}

/* The mapped model file, for the SIGBUS handler: a page of it that the file no longer backs
 * (truncated, or rewritten in place) faults on the next read. */
static const uint8_t *mapped_lo, *mapped_hi;

/* Exit status when the model file changed under the mapping: distinct, so that a supervisor
 * (or a test) can tell it from a crash and from a bad configuration. */
#define EXIT_MODEL_CHANGED 3

/* Writes the prepared line and exits: the process cannot continue without its weights. Only
 * async-signal-safe calls. A SIGBUS outside the mapping is not ours to explain: the default
 * action then ends the process as it would have. */
static void on_sigbus(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    const uint8_t *a = si->si_addr;
    if (a >= mapped_lo && a < mapped_hi) {
        log_fatal_now();
        _exit(EXIT_MODEL_CHANGED);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Arms on_sigbus for the model's mapping (not needed with --no-mmap: a private copy cannot
 * lose its pages). */
static void guard_mapping(const model *m, const char *path) {
    const mapfile *map = m->gguf ? &m->gguf->map : &m->map;
    if (!map->data) return;
    char msg[CFG_PATH_LEN + 256];
    snprintf(msg, sizeof msg,
             "the model file %s was truncated or overwritten while mapped (SIGBUS): exiting. "
             "Replace model files by writing the new file elsewhere and renaming it over the "
             "old one, or run with --no-mmap",
             path);
    log_prepare_fatal(msg);
    mapped_lo = map->data;
    mapped_hi = map->data + map->size;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

/* --model-draft into *out (NULL when none is set), refused unless its vocabulary is m's.
 * 0, or -1 with a message. */
static int load_draft(const cfg_server *c, const model *m, model **out, char *err,
                      size_t errlen) {
    char why[LS_ERR_LEN];
    *out = NULL;
    if (!c->model_draft[0]) return 0;
    model *d = model_load(c->model_draft, NULL, why, sizeof why);
    if (d && spec_check_draft_vocab(m, d, why, sizeof why) != 0) {
        model_free(d);
        d = NULL;
    }
    if (!d) return ls_fail(err, errlen, "--model-draft %.60s: %.170s", c->model_draft, why);
    *out = d;
    return 0;
}

/* The model of cfg, mapped (or copied: --no-mmap), its mapping guarded, repacked when
 * --repack asks; NULL with a message when it cannot load or has no tokenizer. */
static model *load_model(const cfg_server *cfg, char *err, size_t errlen) {
    map_set_private_copy(!cfg->mmap);
    model *m = model_load(cfg->model, cfg->tokenizer[0] ? cfg->tokenizer : NULL, err, errlen);
    if (!m) return NULL;
    if (cfg->mmap) guard_mapping(m, cfg->model);
    size_t repacked = 0;
    if (cfg->repack && model_repack(m, &repacked) != 0) {
        ls_fail(err, errlen, "out of memory repacking the weights (--repack)");
        model_free(m);
        return NULL;
    }
    if (cli_bf16_dot(cfg->bf16_dot, err, errlen)) {
        model_free(m);
        return NULL;
    }
    if (cfg->repack)
        log_msg(LOG_INFO, "repack: %.1f MiB of quantized weights copied for the decode kernels",
                (double)repacked / (1 << 20));
    if (!m->tok) {
        ls_fail(err, errlen, "%.200s has no tokenizer: pass --tokenizer", cfg->model);
        model_free(m);
        return NULL;
    }
    return m;
}

/* The scheduler's parameters from the settings; its progress callback wakes h's connections. */
static sched_params sched_params_of(const cfg_server *cfg, const model *m, const model *draft,
                                    http_server *h) {
    return (sched_params){
        .parallel = cfg->parallel,
        .ctx_size = cfg->ctx_size ? cfg->ctx_size : m->cfg.ctx_len,
        .batch_size = cfg->batch_size,
        .prefill_step_pct = cfg->prefill_step_pct,
        .threads = cfg->threads,
        .max_queue = cfg->max_queue,
        .kv = cfg->kv_type == CFG_KV_F32    ? KV_F32
              : cfg->kv_type == CFG_KV_Q8_0 ? KV_Q8_0
                                            : KV_F16,
        .prompt_cache = cfg->prompt_cache,
        .spec_ngram = cfg->spec_ngram,
        .draft = draft,
        .pooling = cfg->pooling == CFG_POOL_LAST ? EMBD_POOL_LAST : EMBD_POOL_MEAN,
        .on_progress = http_progress, /* the scheduler wakes the connections waiting on it */
        .progress_arg = h,
    };
}

/* After SIGINT or SIGTERM (sig): stops taking requests, lets running ones finish for up to
 * shutdown_timeout seconds, cancels the rest, then stops HTTP and the scheduler (freed). */
static void drain_and_stop(const cfg_server *cfg, http_server *h, sched *s, int sig) {
    http_drain(h);
    sched_drain(s);
    /* after both: once this line is out, new requests get 503 (tests wait for it) */
    log_msg(LOG_INFO, "%s: draining (up to %d s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
            cfg->shutdown_timeout);
    wait_idle(s, ls_now() + cfg->shutdown_timeout);
    sched_cancel_all(s);
    wait_idle(s, ls_now() + 5);
    http_stop(h); /* no request touches the scheduler after this */
    sched_destroy(s);
    log_msg(LOG_INFO, "stopped");
}

int cmd_serve(int argc, char **argv) {
    static cfg_server cfg; /* large (paths): not on the stack */
    char err[LS_ERR_LEN] = "";
    int rc = cfg_load(&cfg, argc, argv, stdout, err, sizeof err);
    if (rc == 1) return 0;
    if (rc != 0) {
        log_msg(LOG_ERROR, "llamaserve serve: %s", err); /* text: the format is not known yet */
        return 2;
    }
    if (log_setup(cfg.log_format == CFG_LOG_JSON, cfg.log_file, err, sizeof err)) {
        log_msg(LOG_ERROR, "llamaserve serve: %s", err);
        return 2;
    }
    /* every thread started from here on inherits these blocked; main takes them by sigwait */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = 1;
    model *m = NULL, *draft = NULL;
    sched *s = NULL;
    chat_template *ct = NULL;
    http_server *h = http_start(&cfg, err, sizeof err);
    if (!h) goto fail;
    log_listening(&cfg, h);
    if (!(m = load_model(&cfg, err, sizeof err))) goto fail;
    if (load_draft(&cfg, m, &draft, err, sizeof err)) goto fail;
    sched_params sp = sched_params_of(&cfg, m, draft, h);
    if (check_kv_memory(m, &sp)) goto done; /* logged with its numbers */
    if (!(s = sched_create(m, &sp, err, sizeof err))) goto fail;
    if (!(ct = load_chat_template(&cfg, m, err, sizeof err))) goto fail;
    char fingerprint[FP_LEN];
    if (fp_model_fingerprint(cfg.model, fingerprint, err, sizeof err)) goto fail;
    api_ctx ctx = {
        .m = m,
        .model_id = cfg.alias,
        .ctx_size = sp.ctx_size,
        .parallel = sp.parallel,
        .max_tokens_limit = cfg.max_tokens_limit,
        .default_seed = (long long)cfg.seed,
        .chat_fmt = chat_template_family(ct),
        .chat = ct,
        .fingerprint = fingerprint,
        .model_path = cfg.model,
    };
    http_set_ready(h, s, &ctx);
    summary_log_ready(&(summary_in){&cfg, m, &sp, http_port(h), chat_template_name(ct),
                                    !strcmp(chat_template_source(ct), "from the model file"),
                                    chat_template_source(ct)});

    int sig = 0;
    sigwait(&sigs, &sig);
    drain_and_stop(&cfg, h, s, sig);
    s = NULL;
    status = 0;
    goto done;
fail:
    log_msg(LOG_ERROR, "llamaserve serve: %s", err);
done:
    http_stop(h);
    sched_destroy(s); /* before http_free: it calls http_progress */
    http_free(h);
    chat_template_free(ct); /* after http_free: no request renders with it any more */
    model_free(m);
    model_free(draft);
    cfg_free(&cfg);
    log_close();
    return status;
}
