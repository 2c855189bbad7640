/* summary: gathers the startup facts into a cJSON object (the JSON line's fields) and a text
 * block (the text lines), and logs them as one block. Runs once; allocation is fine here. */
#include "summary.h"

#include "kv_cache.h"
#include "log.h"
#include "matmul.h"
#include "sysmem.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *summary_origin_name(cfg_model_origin o) {
    switch (o) {
    case CFG_MODEL_MODELS_DIR:
        return "models_dir";
    case CFG_MODEL_EMBEDDED:
        return "embedded";
    default:
        return "given";
    }
}

static const char *origin_text(cfg_model_origin o) {
    switch (o) {
    case CFG_MODEL_MODELS_DIR:
        return "the one .gguf in models_dir";
    case CFG_MODEL_EMBEDDED:
        return "the embedded demo model: no --model given";
    default:
        return "given";
    }
}

/* A GGUF string metadata value into out, "" when absent (or a llama2.c checkpoint). */
static void meta_str(const model *m, const char *key, char *out, size_t n) {
    gguf_str s;
    out[0] = '\0';
    if (m->gguf && gguf_get_str(m->gguf, key, &s, NULL, 0) == 0)
        snprintf(out, n, "%.*s", (int)(s.len < n ? s.len : n - 1), s.s);
}

/* Appends a formatted line to the text block. */
static void line(char *block, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void line(char *block, size_t cap, const char *fmt, ...) {
    size_t len = strlen(block);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(block + len, cap - len, fmt, ap);
    va_end(ap);
    len = strlen(block);
    if (len + 1 < cap) memcpy(block + len, "\n", 2);
}

void summary_log_ready(const summary_in *in) {
    const cfg_server *cfg = in->cfg;
    const model *m = in->m;
    const sched_params *sp = in->sp;
    model_stats st;
    model_get_stats(m, &st);
    char name[128], arch[64], address[300];
    meta_str(m, "general.name", name, sizeof name);
    meta_str(m, "general.architecture", arch, sizeof arch);
    if (!m->gguf) snprintf(arch, sizeof arch, "llama");
    /* an IPv6 address goes in brackets in a URL */
    snprintf(address, sizeof address, strchr(cfg->host, ':') ? "http://[%s]:%d" : "http://%s:%d",
             cfg->host, in->port);
    const char *kv_type = kv_type_name(sp->kv);
    uint64_t kv_total = (uint64_t)kv_bytes_per_token(&m->cfg, sp->kv) * (uint64_t)sp->parallel *
                        (uint64_t)sp->ctx_size;
    const char *kernels = mm_kernels();
    /* whether BF16 matrices multiply BF16-rounded activations (--bf16-dot; auto where the CPU
     * has AVX512_BF16) */
    bool bf16_dot = false;
    for (int i = 0; i < st.n_types; i++)
        if (st.types[i].type == DT_BF16) bf16_dot = mm_bf16_dot();

    cJSON *f = cJSON_CreateObject();
    cJSON *types = cJSON_CreateObject();
    if (!f || !types) {
        cJSON_Delete(f);
        cJSON_Delete(types);
        log_msg(LOG_INFO, "ready at %s", address);
        return;
    }
    cJSON_AddStringToObject(f, "address", address);
    cJSON_AddStringToObject(f, "model", cfg->alias);
    cJSON_AddStringToObject(f, "model_name", name);
    cJSON_AddStringToObject(f, "architecture", arch);
    cJSON_AddNumberToObject(f, "parameters", (double)st.n_params);
    for (int i = 0; i < st.n_types; i++)
        cJSON_AddNumberToObject(types, dtype_name(st.types[i].type), st.types[i].n_tensors);
    cJSON_AddItemToObject(f, "tensor_types", types);
    cJSON_AddNumberToObject(f, "weights_bytes", (double)st.bytes);
    cJSON_AddStringToObject(f, "model_path", cfg->model);
    cJSON_AddStringToObject(f, "model_origin", summary_origin_name(cfg->model_origin));
    cJSON_AddNumberToObject(f, "slots", sp->parallel);
    cJSON_AddNumberToObject(f, "ctx_per_slot", sp->ctx_size);
    cJSON_AddNumberToObject(f, "ctx_total", (double)sp->parallel * sp->ctx_size);
    cJSON_AddStringToObject(f, "kv_type", kv_type);
    cJSON_AddNumberToObject(f, "kv_cache_bytes", (double)kv_total);
    cJSON_AddNumberToObject(f, "threads", sp->threads);
    cJSON_AddStringToObject(f, "kernels", kernels);
    cJSON_AddBoolToObject(f, "bf16_dot", bf16_dot);
    cJSON_AddNumberToObject(f, "batch_size", sp->batch_size);
    cJSON_AddStringToObject(f, "chat_template", in->chat_template);
    cJSON_AddBoolToObject(f, "chat_template_detected", in->chat_detected);
    cJSON_AddBoolToObject(f, "api_key", cfg->api_key[0] != '\0');
    cJSON_AddStringToObject(f, "cors_origin", cfg->cors_origin);

    char block[4096] = "", wbytes[32], kvbytes[32], slotbytes[32], types_text[256] = "";
    sysmem_format_bytes(st.bytes, wbytes, sizeof wbytes);
    sysmem_format_bytes(kv_total, kvbytes, sizeof kvbytes);
    sysmem_format_bytes(kv_total / (uint64_t)sp->parallel, slotbytes, sizeof slotbytes);
    for (int i = 0; i < st.n_types; i++) {
        size_t len = strlen(types_text);
        snprintf(types_text + len, sizeof types_text - len, "%s%d x %s", i ? ", " : "",
                 st.types[i].n_tensors, dtype_name(st.types[i].type));
    }
    double params = (double)st.n_params;
    line(block, sizeof block, "  model      %s%s%s%s, %s, %.2f %s parameters", cfg->alias,
         name[0] ? " (\"" : "", name, name[0] ? "\")" : "", arch,
         params >= 1e9 ? params / 1e9 : params / 1e6, params >= 1e9 ? "B" : "M");
    line(block, sizeof block, "  file       %s (%s)", cfg->model, origin_text(cfg->model_origin));
    line(block, sizeof block, "  weights    %s memory-mapped: %s tensors", wbytes, types_text);
    line(block, sizeof block, "  slots      %d x %d tokens of context (%lld in all)", sp->parallel,
         sp->ctx_size, (long long)sp->parallel * sp->ctx_size);
    line(block, sizeof block, "  kv cache   %s of %s in total (%s per slot)", kvbytes, kv_type,
         slotbytes);
    line(block, sizeof block, "  compute    %d threads, %s kernels%s, batches of up to %d rows",
         sp->threads, kernels, bf16_dot ? " (BF16 on BF16-rounded activations)" : "",
         sp->batch_size);
    line(block, sizeof block, "  chat       %s template (%s)", in->chat_template,
         in->chat_source ? in->chat_source
         : in->chat_detected ? "from the model file" : "fallback: the model file names none");
    line(block, sizeof block, "  listening  %s (%s%s%s)", address,
         cfg->api_key[0] ? "API key required" : "no API key",
         cfg->cors_origin[0] ? "; CORS for " : "", cfg->cors_origin);
    char msg[640];
    snprintf(msg, sizeof msg, "ready: serving '%s' at %s", cfg->alias, address);
    log_block(LOG_INFO, msg, f, block);
    cJSON_Delete(f);
}
