/* cmd_serve: `llamaserve serve`. Reads the configuration (config/), starts listening at once
 * (so /health can say 503 while the model loads), loads the model, starts the scheduler, then
 * waits for SIGINT/SIGTERM: stop accepting, let running requests finish for up to
 * shutdown_timeout seconds, end the rest, exit 0. */
#include "cli.h"

#include "api.h"
#include "chat.h"
#include "common.h"
#include "config.h"
#include "http.h"
#include "scheduler.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static chat_format chat_setting(cfg_chat_template t) {
    switch (t) {
    case CFG_TEMPLATE_LLAMA2: return CHAT_LLAMA2;
    case CFG_TEMPLATE_CHATML: return CHAT_CHATML;
    case CFG_TEMPLATE_ZEPHYR: return CHAT_ZEPHYR;
    case CFG_TEMPLATE_LLAMA3: return CHAT_LLAMA3;
    default: return CHAT_AUTO;
    }
}

/* Waits until no request is queued or running, or until deadline (monotonic seconds). */
static void wait_idle(sched *s, double deadline) {
    while (sched_active(s) > 0 && ls_now() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL); /* a shutdown poll, not a synchronisation in a test */
    }
}

int cmd_serve(int argc, char **argv) {
    static cfg_server cfg; /* large (paths): not on the stack */
    char err[LS_ERR_LEN] = "";
    int rc = cfg_load(&cfg, argc, argv, stdout, err, sizeof err);
    if (rc == 1) return 0;
    if (rc != 0) {
        fprintf(stderr, "llamaserve serve: %s\n", err);
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
    model *m = NULL;
    sched *s = NULL;
    http_server *h = http_start(&cfg, err, sizeof err);
    if (!h) goto fail;
    static const char *const origin[] = {
        [CFG_MODEL_GIVEN] = "",
        [CFG_MODEL_MODELS_DIR] = ", the one .gguf in models_dir",
        [CFG_MODEL_EMBEDDED] = ", the embedded demo model: no --model given",
    };
    fprintf(stderr, "llamaserve: listening on http://%s:%d (loading %s%s)\n", cfg.host,
            http_port(h), cfg.model, origin[cfg.model_origin]);
    m = model_load(cfg.model, cfg.tokenizer[0] ? cfg.tokenizer : NULL, err, sizeof err);
    if (!m) goto fail;
    if (!m->tok) {
        snprintf(err, sizeof err, "%.200s has no tokenizer: pass --tokenizer", cfg.model);
        goto fail;
    }
    sched_params sp = {
        .parallel = cfg.parallel,
        .ctx_size = cfg.ctx_size ? cfg.ctx_size : m->cfg.ctx_len,
        .batch_size = cfg.batch_size,
        .threads = cfg.threads,
        .max_queue = cfg.max_queue,
        .kv = cfg.kv_type == CFG_KV_F32 ? KV_F32 : KV_F16,
        .prompt_cache = cfg.prompt_cache,
    };
    if (!(s = sched_create(m, &sp, err, sizeof err))) goto fail;
    bool detected = false;
    api_ctx ctx = {
        .m = m,
        .model_id = cfg.alias,
        .ctx_size = sp.ctx_size,
        .parallel = sp.parallel,
        .max_tokens_limit = cfg.max_tokens_limit,
        .default_seed = (long long)cfg.seed,
        .chat_fmt = chat_format_for_model(m, chat_setting(cfg.chat_template), &detected),
    };
    http_set_ready(h, s, &ctx);
    fprintf(stderr,
            "llamaserve: ready: model %s as '%s', %d slots x %d tokens, %d threads, chat "
            "template %s%s\n",
            cfg.model, cfg.alias, sp.parallel, sp.ctx_size, sp.threads,
            chat_format_name(ctx.chat_fmt), detected ? "" : " (fallback)");

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "llamaserve: %s: draining (up to %d s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            cfg.shutdown_timeout);
    http_quiesce(h);
    sched_drain(s);
    wait_idle(s, ls_now() + cfg.shutdown_timeout);
    sched_cancel_all(s);
    wait_idle(s, ls_now() + 5);
    http_stop(h); /* joins the connection threads: none touches the scheduler after this */
    h = NULL;
    sched_destroy(s);
    s = NULL;
    status = 0;
    fprintf(stderr, "llamaserve: stopped\n");
    goto done;
fail:
    fprintf(stderr, "llamaserve serve: %s\n", err);
done:
    http_stop(h);
    sched_destroy(s);
    model_free(m);
    cfg_free(&cfg);
    return status;
}
