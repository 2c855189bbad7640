/* fuzz_api: every endpoint's request parser (server/api.c: api_parse_completion, _chat,
 * _tokenize, _detokenize, _embeddings; api_responses.c: api_parse_responses) on each input, as
 * a request body, with the kjv-demo model's tokenizer and a small context (so the length checks
 * are reached); the input's length picks the chat format. Properties: no crash, no leak; a
 * refused body fills the error (status 400, a message, an error JSON that parses); an accepted
 * one is within every limit the scheduler relies on (ids in the vocabulary, prompt plus
 * max_tokens within the context, n, stop strings), and a tokenize/detokenize answer is JSON;
 * accepted embedding inputs are each 1..ctx_size ids in the vocabulary. */
#include "fuzz.h"

#include "api.h"
#include "common.h"

#include <cjson/cJSON.h>
#include <string.h>

static model *m;
static api_ctx ctxs[4];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/kjv-demo.gguf", fuzz_models_dir());
    m = model_load(path, NULL, err, sizeof err);
    if (!m) {
        fprintf(stderr, "fuzz_api: %s (skipped)\n", err);
        exit(FUZZ_SKIP);
    }
    for (int i = 0; i < 4; i++)
        ctxs[i] = (api_ctx){.m = m,
                            .model_id = "kjv",
                            .ctx_size = 96,
                            .parallel = 4,
                            .max_tokens_limit = 64,
                            .default_seed = 7,
                            .chat_fmt = (chat_format)(CHAT_LLAMA2 + i)};
    return 0;
}

/* A refusal: every field a response needs is filled. */
static void check_error(const api_error *e) {
    if (e->status != 400 || !e->type || !e->message[0])
        fprintf(stderr, "refused with status %d, type %s, param '%.64s': %.512s\n", e->status,
                e->type ? e->type : "(none)", e->param, e->message);
    FUZZ_CHECK(e->status == 400 && e->type && e->message[0]);
    FUZZ_CHECK(memchr(e->param, '\0', sizeof e->param) &&
               memchr(e->message, '\0', sizeof e->message));
    char *s = api_error_json(e);
    FUZZ_CHECK(s);
    cJSON *j = cJSON_Parse(s);
    FUZZ_CHECK(j);
    cJSON_Delete(j);
    free(s);
}

static void check_call(const api_ctx *ctx, const api_call *c) {
    const gen_request *r = &c->req;
    FUZZ_CHECK(r->n_prompt >= 1 && r->prompt);
    for (int i = 0; i < r->n_prompt; i++)
        FUZZ_CHECK(r->prompt[i] >= 0 && r->prompt[i] < ctx->m->cfg.vocab_size);
    FUZZ_CHECK(r->max_tokens >= 0 && r->max_tokens <= ctx->max_tokens_limit);
    FUZZ_CHECK(r->n >= 1 && r->n <= ctx->parallel);
    int np = r->n_prompts > 1 ? r->n_prompts : 1;
    FUZZ_CHECK(r->n % np == 0 && (np == 1 || r->prompt_end[np - 1] == r->n_prompt));
    FUZZ_CHECK(!c->echo || c->chat || c->n_echo == np);
    for (int c = 0; c < r->n; c++) { /* each choice's prompt fits with its completion */
        int len;
        gen_request_prompt(r, c, &len, NULL);
        FUZZ_CHECK(len >= 1 && len + r->max_tokens <= ctx->ctx_size);
    }
    FUZZ_CHECK(r->n_stop >= 0 && r->n_stop <= SCHED_MAX_STOP);
    for (int i = 0; i < r->n_stop; i++) {
        size_t n = strlen(r->stop[i]);
        FUZZ_CHECK(n >= 1 && n <= SCHED_MAX_STOP_BYTES && ls_utf8_valid(r->stop[i], n));
    }
    FUZZ_CHECK(r->n_bias >= 0 && (r->n_bias == 0 || r->bias));
    for (int i = 0; i < r->n_bias; i++)
        FUZZ_CHECK(r->bias[i].id >= 0 && r->bias[i].id < ctx->m->cfg.vocab_size);
    FUZZ_CHECK(c->logprobs >= -1 && c->logprobs <= 20 && r->n_top_logprobs <= SAMPLER_MAX_TOP);
    FUZZ_CHECK(r->n_stop_ids >= 0 && r->n_stop_ids <= SCHED_MAX_STOP_IDS);
}

static void check_json(char *s) {
    FUZZ_CHECK(s);
    cJSON *j = cJSON_Parse(s);
    FUZZ_CHECK(j);
    cJSON_Delete(j);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const api_ctx *ctx = &ctxs[size % 4];
    const char *body = (const char *)data;
    api_call c;
    api_error e;
    memset(&e, 0, sizeof e);
    if (api_parse_completion(ctx, body, size, &c, &e) == 0) {
        check_call(ctx, &c);
        api_call_free(&c);
    } else {
        check_error(&e);
    }
    memset(&e, 0, sizeof e);
    if (api_parse_chat(ctx, body, size, &c, &e) == 0) {
        check_call(ctx, &c);
        FUZZ_CHECK(c.chat);
        api_call_free(&c);
    } else {
        check_error(&e);
    }
    memset(&e, 0, sizeof e);
    if (api_parse_responses(ctx, body, size, &c, &e) == 0) {
        check_call(ctx, &c);
        FUZZ_CHECK(c.chat && c.responses && c.resp_echo && c.req.n == 1);
        api_call_free(&c);
    } else {
        check_error(&e);
    }
    memset(&e, 0, sizeof e);
    if (api_parse_embeddings(ctx, body, size, size % 2, &c, &e) == 0) {
        const gen_request *r = &c.req;
        FUZZ_CHECK(r->embed && r->n >= 1 && r->n <= SCHED_MAX_INPUTS && r->input_off[0] == 0 &&
                   r->input_off[r->n] == r->n_prompt);
        for (int i = 0; i < r->n; i++) {
            int len = r->input_off[i + 1] - r->input_off[i];
            FUZZ_CHECK(len >= 1 && len <= ctx->ctx_size);
        }
        for (int i = 0; i < r->n_prompt; i++)
            FUZZ_CHECK(r->prompt[i] >= 0 && r->prompt[i] < ctx->m->cfg.vocab_size);
        api_call_free(&c);
    } else {
        check_error(&e);
    }
    char *json = NULL;
    memset(&e, 0, sizeof e);
    if (api_parse_tokenize(ctx, body, size, &json, &e) == 0)
        check_json(json);
    else
        check_error(&e);
    json = NULL;
    memset(&e, 0, sizeof e);
    if (api_parse_detokenize(ctx, body, size, &json, &e) == 0)
        check_json(json);
    else
        check_error(&e);
    return 0;
}
