/* summary: the startup summary, logged once when serve is ready: the model (name, architecture,
 * parameters, tensor types, weights memory, file and where it came from), the slots and their
 * context, the KV cache memory in total, threads and matrix kernels, the chat template and the
 * listening address. One block of text lines, or one JSON object (log.h). Reads its inputs
 * only; call from the main thread. */
#ifndef LS_SUMMARY_H
#define LS_SUMMARY_H

#include "config.h"
#include "model.h"
#include "scheduler.h"

#include <stdbool.h>

typedef struct {
    const cfg_server *cfg;
    const model *m;
    const sched_params *sp; /* what the scheduler was started with (ctx_size resolved) */
    int port;               /* the port bound (cfg->port may be 0) */
    const char *chat_template;
    bool chat_detected;      /* the template came from the model file */
    const char *chat_source; /* where it came from, e.g. "from --chat-template-file" */
} summary_in;

void summary_log_ready(const summary_in *in);

/* "given", "models_dir" or "embedded" */
const char *summary_origin_name(cfg_model_origin o);

#endif
