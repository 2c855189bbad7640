/* llamacpp: llama.cpp server flags, as tables. The spellings are llama.cpp's (tools/server,
 * common/arg.cpp of 2025); the hints are ours. A flag llama.cpp and llamaserve share with the same
 * meaning (-m, -t, --host, --port, --api-key, --timeout, --log-format, ...) is in neither table:
 * cfg_load takes it directly. */
#include "llamacpp.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* llama.cpp spellings of flags we have (-np, --cache-type-k), rewritten to our long name before
 * getopt sees them. */
static const struct {
    const char *arg, *ours;
} aliases[] = {
    {"-np", "--parallel"},
    {"-to", "--timeout"},
    {"-md", "--model-draft"},
    /* one type for keys and values: either spelling sets both (the last one given wins) */
    {"-ctk", "--kv-type"},
    {"-ctv", "--kv-type"},
    {"--cache-type-k", "--kv-type"},
    {"--cache-type-v", "--kv-type"},
};

/* Flags we do not take. `names`: the spellings, space-separated, llama.cpp's long one first. */
static const struct {
    const char *names, *hint;
} hints[] = {
    {"--n-gpu-layers -ngl --gpu-layers", "llamaserve runs on the CPU; drop it"},
    {"--device -dev --split-mode -sm --tensor-split -ts --main-gpu -mg --no-kv-offload -nkvo",
     "llamaserve runs on the CPU; drop it"},
    {"--flash-attn -fa", "llamaserve's attention kernels need no switch; drop it"},
    {"--cont-batching -cb --no-cont-batching -nocb",
     "continuous batching is always on in llamaserve; drop it"},
    {"--metrics", "/metrics is always served by llamaserve; drop it"},
    {"--threads-batch -tb", "use -t/--threads: one thread count for prompts and generation"},
    {"--n-predict -n --predict",
     "the request's max_tokens sets it; --max-tokens-limit caps what a request may ask"},
    {"--ubatch-size -ub", "use -b/--batch-size: one batch size (the prefill chunk)"},
    {"--mlock", "not supported: the weights are memory-mapped read-only; drop it"},
    {"--embedding --embeddings",
     "llamaserve always serves /v1/embeddings beside completions and chat; drop it"},
    {"--reranking --rerank", "reranking is not supported"},
    {"--jinja --no-jinja --chat-template-kwargs",
     "the model's Jinja chat template is always rendered; --chat-template-file PATH or "
     "--chat-template auto|llama2|chatml|zephyr|llama3 override it"},
    {"--rope-freq-base --rope-freq-scale --rope-scaling --rope-scale --yarn-orig-ctx "
     "--yarn-ext-factor --yarn-attn-factor --yarn-beta-slow --yarn-beta-fast",
     "RoPE settings come from the model file"},
    {"--temp --top-k --top-p --min-p --repeat-penalty --presence-penalty --frequency-penalty",
     "sampling is set per request (temperature, top_p, ...); --seed sets the default seed"},
    {"--hf-repo -hf --hf-file -hff --model-url -mu",
     "download the GGUF file yourself and pass -m PATH (check it with llamaserve inspect)"},
    {"--api-key-file", "use LLAMASERVE_API_KEY or the config file's api_key"},
    {"--ssl-key-file --ssl-cert-file", "TLS is not built in: put a proxy such as nginx in front"},
    {"--lora --lora-scaled --control-vector", "adapters are not supported"},
    {"--slot-save-path --props",
     "llamaserve cannot save slots or change properties; drop it (GET /slots and /props are "
     "served)"},
    {"--path --api-prefix", "llamaserve serves its own chat page at / and the API at /v1; drop it"},
    {"--verbose -v --verbosity -lv --log-verbosity --log-disable --log-colors",
     "use --log-format, --log-file and --no-log-requests"},
    {"--cache-reuse", "the prompt cache is on by default (--prompt-cache)"},
    {"--numa", "not supported; drop it"},
    {"--ctx-size-draft -cd --draft-max --draft-min",
     "the draft's length is --spec-ngram N (or the request's speculative.n_max), its context "
     "the model's"},
};

const char *cfg_llamacpp_alias(const char *arg) {
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcmp(arg, aliases[i].arg)) return aliases[i].ours;
    return NULL;
}

const char *cfg_llamacpp_hint(const char *arg, char *long_name, size_t cap) {
    size_t n = strcspn(arg, "=");
    if (n < 2 || arg[0] != '-') return NULL;
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++) {
        /* the long spelling a group's flag belongs to: the last --name before it in the list */
        const char *p = hints[i].names, *group = p;
        while (*p) {
            size_t len = strcspn(p, " ");
            if (p[1] == '-') group = p;
            if (len == n && !strncmp(p, arg, n)) {
                if (cap > 0) snprintf(long_name, cap, "%.*s", (int)strcspn(group, " "), group);
                return hints[i].hint;
            }
            p += len;
            while (*p == ' ')
                p++;
        }
    }
    return NULL;
}
