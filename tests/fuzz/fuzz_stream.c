/* fuzz_stream: the streamer that turns sampled tokens into a choice's text (server/scheduler.c:
 * slot_admit, slot_accept, find_stop, slot_finish): complete UTF-8 characters only (tok_stream),
 * and text that may begin a stop string held back until it cannot. scheduler.c is included
 * whole to reach these static functions; the linker then takes no scheduler.o from the server
 * library. One slot of a hand-built scheduler (no thread, no forward pass) is fed the input's
 * tokens through one-hot logits and greedy sampling, with the kjv-demo vocabulary (1024 pieces, 256
 * of them bytes: small, so that sampling over it stays cheap). Input: a flags byte (stop count, a
 * BOS-only prompt, ignore_eos, logprobs), the stop strings (a length byte, then the bytes), then
 * token ids (two bytes each). Property: the choice's text is exactly what the request asks for: the
 * streamed text up to the first stop string seen after some token (cut where it starts), else all
 * of it with the held bytes flushed; an EOS ends it without its text; and the stream events
 * (chat, completions or Responses API) carry exactly that text. */
#include "fuzz.h"

#include "../../server/scheduler.c"

#include "api.h"

#include <cjson/cJSON.h>

static model fake; /* the tokenizer and the config sizes only: no weights */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/kjv-demo-tokenizer.bin", fuzz_models_dir());
    fake.tok = model_load_tokenizer(path, err, sizeof err);
    if (!fake.tok) {
        fprintf(stderr, "fuzz_stream: %s (skipped)\n", err);
        exit(FUZZ_SKIP);
    }
    fake.cfg = (model_config){.dim = 2,
                              .n_layers = 1,
                              .n_heads = 1,
                              .n_kv_heads = 1,
                              .head_dim = 2,
                              .hidden_dim = 2,
                              .ctx_len = 64,
                              .rope_dim = 2,
                              .rope_theta = 10000.0f,
                              .norm_eps = 1e-5f,
                              .vocab_size = tok_n_vocab(fake.tok)};
    return 0;
}

/* The text the request must get (caller frees): stream the ids, stop at the first token after
 * which a stop string occurs, or at EOS. */
static char *expected(const gen_request *r, const int32_t *ids, int n, bool strip, size_t *len) {
    const tokenizer *t = fake.tok;
    size_t cap = tok_stream_cap(t), n_text = 0;
    char *text = malloc((size_t)n * cap + 64), *piece = malloc(cap);
    FUZZ_CHECK(text && piece);
    tok_stream ts;
    tok_stream_init(&ts, t, strip);
    for (int i = 0; i <= n; i++) {
        if (i == n || (ids[i] == tok_eos(t) && !r->ignore_eos)) {
            /* the end: held bytes of an incomplete character become U+FFFD */
            n_text += tok_stream_flush(&ts, text + n_text, 64);
            i = n;
        } else {
            size_t k = tok_stream_feed(&ts, ids[i], piece, cap);
            memcpy(text + n_text, piece, k);
            n_text += k;
        }
        long cut = -1;
        for (int s = 0; s < r->n_stop; s++) {
            const char *hit = memmem(text, n_text, r->stop[s], strlen(r->stop[s]));
            if (hit && (cut < 0 || hit - text < cut)) cut = hit - text;
        }
        if (cut >= 0) {
            n_text = (size_t)cut;
            break;
        }
    }
    *len = n_text;
    free(piece);
    return text;
}

/* A Responses API stream (api_responses.c): "event: T" and "data: {...}" blocks, each data's
 * type T and sequence_number its place; the deltas join into the choice's text, which
 * output_text.done repeats, and the last event ends the response. */
static void check_responses_events(const char *sse, size_t len, const char *expect,
                                   size_t n_expect) {
    char *joined = malloc(n_expect + 1);
    FUZZ_CHECK(joined);
    size_t n_joined = 0;
    int seq = 0;
    bool ended = false;
    const char *p = sse, *end = sse + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *sep = memmem(p, (size_t)(end - p), "\n\n", 2);
        FUZZ_CHECK(nl && sep && !ended && strncmp(p, "event: ", 7) == 0 &&
                   strncmp(nl + 1, "data: ", 6) == 0);
        char *name = strndup(p + 7, (size_t)(nl - p - 7)), *data = strndup(nl + 7, (size_t)(sep - nl - 7));
        cJSON *e = cJSON_Parse(data);
        FUZZ_CHECK(name && data && e);
        const cJSON *type = cJSON_GetObjectItem(e, "type");
        FUZZ_CHECK(cJSON_IsString(type) && !strcmp(type->valuestring, name));
        FUZZ_CHECK(cJSON_GetObjectItem(e, "sequence_number")->valueint == seq++);
        const cJSON *t = cJSON_GetObjectItem(e, !strcmp(name, "response.output_text.delta") ? "delta"
                                                 : !strcmp(name, "response.output_text.done") ? "text"
                                                                                               : "");
        if (!strcmp(name, "response.output_text.delta")) {
            size_t k = strlen(t->valuestring);
            FUZZ_CHECK(k > 0 && n_joined + k <= n_expect);
            memcpy(joined + n_joined, t->valuestring, k);
            n_joined += k;
        } else if (!strcmp(name, "response.output_text.done")) {
            FUZZ_CHECK(strlen(t->valuestring) == n_expect &&
                       memcmp(t->valuestring, expect, n_expect) == 0);
        }
        ended = !strcmp(name, "response.completed") || !strcmp(name, "response.incomplete");
        cJSON_Delete(e);
        free(name);
        free(data);
        p = sep + 2;
    }
    FUZZ_CHECK(ended && n_joined == n_expect && memcmp(joined, expect, n_expect) == 0);
    free(joined);
}

/* The stream's events: JSON chunks whose texts join into the choice's text (a NUL byte reads
 * as U+FFFD: JSON strings here cannot hold one), one finish reason, the usage chunk when asked,
 * then [DONE]; or a Responses stream's events. */
static void check_events(const char *sse, size_t len, bool chat, bool usage, bool responses,
                         const char *want, size_t want_len) {
    char *joined = malloc(3 * want_len + 1), *expect = malloc(3 * want_len + 1);
    FUZZ_CHECK(joined && expect);
    size_t n_joined = 0, n_expect = 0;
    for (size_t i = 0; i < want_len; i++) {
        if (want[i]) {
            expect[n_expect++] = want[i];
        } else {
            memcpy(expect + n_expect, "\xef\xbf\xbd", 3);
            n_expect += 3;
        }
    }
    if (responses) {
        check_responses_events(sse, len, expect, n_expect);
        free(joined);
        free(expect);
        return;
    }
    int finishes = 0, usages = 0;
    bool done = false;
    FUZZ_CHECK(sse); /* a complete stream has sent its last event */
    const char *p = sse, *end = sse + len;
    while (p < end) {
        const char *sep = memmem(p, (size_t)(end - p), "\n\n", 2);
        FUZZ_CHECK(sep && !done && strncmp(p, "data: ", 6) == 0);
        char *event = strndup(p + 6, (size_t)(sep - p - 6));
        FUZZ_CHECK(event);
        p = sep + 2;
        if (strcmp(event, "[DONE]") == 0) {
            done = true;
            free(event);
            continue;
        }
        cJSON *e = cJSON_Parse(event);
        FUZZ_CHECK(e);
        free(event);
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(e, "choices"), 0);
        usages += cJSON_IsObject(cJSON_GetObjectItem(e, "usage"));
        if (ch) {
            const cJSON *t = chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "delta"), "content")
                                  : cJSON_GetObjectItem(ch, "text");
            if (cJSON_IsString(t)) {
                size_t k = strlen(t->valuestring);
                FUZZ_CHECK(n_joined + k <= n_expect);
                memcpy(joined + n_joined, t->valuestring, k);
                n_joined += k;
            }
            finishes += cJSON_IsString(cJSON_GetObjectItem(ch, "finish_reason"));
        }
        cJSON_Delete(e);
    }
    FUZZ_CHECK(done && finishes == 1 && usages == (usage ? 1 : 0));
    FUZZ_CHECK(n_joined == n_expect && memcmp(joined, expect, n_expect) == 0);
    free(joined);
    free(expect);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *p = data + 1, *end = data + size;
    gen_request req = {0};
    int n_stop = data[0] % (SCHED_MAX_STOP + 1);
    for (int i = 0; i < n_stop && p < end; i++) {
        size_t len = 1 + *p++ % 16;
        if (len > (size_t)(end - p)) break;
        if (!ls_utf8_valid((const char *)p, len) || memchr(p, 0, len)) break; /* api.c's rules */
        req.stop[req.n_stop] = strndup((const char *)p, len);
        FUZZ_CHECK(req.stop[req.n_stop]);
        req.n_stop++;
        p += len;
    }
    int n_ids = (int)((end - p) / 2);
    if (n_ids == 0) {
        gen_request_free(&req);
        return 0;
    }
    int32_t *ids = malloc((size_t)n_ids * sizeof *ids);
    FUZZ_CHECK(ids);
    for (int i = 0; i < n_ids; i++)
        ids[i] = (int32_t)((p[2 * i] | p[2 * i + 1] << 8) % fake.cfg.vocab_size);
    bool bos_only = data[0] & 0x10;
    req.n_prompt = bos_only ? 1 : 2;
    req.prompt = malloc(2 * sizeof *req.prompt);
    FUZZ_CHECK(req.prompt);
    req.prompt[0] = tok_bos(fake.tok);
    req.prompt[1] = 100;
    req.max_tokens = n_ids;
    req.n = 1;
    sampler_params_default(&req.sp);
    req.sp.temperature = 0.0f;
    req.ignore_eos = data[0] & 0x20;
    req.n_top_logprobs = data[0] & 0x40 ? 2 : -1;

    size_t want_len;
    char *want = expected(&req, ids, n_ids, bos_only, &want_len);

    char err[256];
    sched s = {.m = &fake, .p = {.parallel = 1, .ctx_size = n_ids + 2, .batch_size = 1}};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    slot sl = {0};
    sched_slot_info pub = {0}; /* what /slots shows of it: slot_finish updates it */
    s.slots = &sl;
    s.pub = &pub;
    sl.kv = kv_create(&fake.cfg, s.p.ctx_size, KV_F32, err, sizeof err);
    sl.hist = calloc((size_t)s.p.ctx_size, sizeof *sl.hist);
    sl.piece_cap = tok_stream_cap(fake.tok); /* as sched_create sizes them */
    sl.held_cap = SCHED_MAX_STOP_BYTES + sl.piece_cap;
    sl.piece = malloc(sl.piece_cap);
    sl.held = malloc(sl.held_cap);
    FUZZ_CHECK(sl.kv && sl.hist && sl.held && sl.piece);
    job *j = job_create_detached(&req);
    FUZZ_CHECK(j);
    atomic_store(&j->refs, 2); /* ours and the scheduler's */
    s.n_busy = 1;
    FUZZ_CHECK(slot_admit(&s, &sl, j, 0, 0, err, sizeof err) == 0);
    float *logits = calloc((size_t)fake.cfg.vocab_size, sizeof *logits);
    FUZZ_CHECK(logits);
    /* the client's side: the stream's events after every token (api_response.c) */
    api_ctx actx = {.m = &fake,
                    .model_id = "kjv",
                    .ctx_size = s.p.ctx_size,
                    .parallel = 1,
                    .max_tokens_limit = n_ids,
                    .default_seed = 1,
                    .chat_fmt = CHAT_LLAMA2};
    /* chat with include_usage, which the Responses API has no use for: a Responses stream */
    bool responses = (data[0] & 0x88) == 0x88;
    api_call call = {.chat = data[0] & 0x80,
                     .responses = responses,
                     .stream = true,
                     .include_usage = data[0] & 0x08,
                     .logprobs = j->req.n_top_logprobs};
    api_stream st;
    FUZZ_CHECK(api_stream_init(&st, &actx, &call, j, responses ? "resp_fuzz" : "cmpl-fuzz", 1) == 0);
    char *sse = NULL;
    size_t sse_len = 0, sse_cap = 0;
    bool done = false, complete = false;
    for (int i = 0; i < n_ids && !done; i++) {
        logits[ids[i]] = 10.0f;
        bool matched;
        done = slot_accept(&s, &sl, logits, ls_now(), -1, &matched);
        logits[ids[i]] = 0.0f;
        FUZZ_CHECK(job_view_sync(st.j, NULL) == 0);
        complete = api_stream_events(&st, &sse, &sse_len, &sse_cap);
    }
    FUZZ_CHECK(complete);
    check_events(sse, sse_len, call.chat, call.include_usage, responses, want, want_len);
    free(sse);
    FUZZ_CHECK(done && s.n_busy == 0 && st.j->n_finished == 1);
    const choice_out *o = &st.j->choices[0];
    FUZZ_CHECK(o->finish == FINISH_STOP || o->finish == FINISH_LENGTH);
    FUZZ_CHECK(o->len == want_len && (want_len == 0 || memcmp(o->text, want, want_len) == 0));
    if (want_len) FUZZ_CHECK(ls_utf8_valid(o->text, o->len));
    api_stream_free(&st);

    free(logits);
    free(want);
    free(ids);
    job_release(j);
    kv_free(sl.kv);
    free(sl.hist);
    free(sl.held);
    free(sl.piece);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    return 0;
}
