/* test_api: server/api.c, api_response.c and the scheduler's text path, in process, on a tiny
 * model written with gguf_builder whose vocabulary holds pieces longer than any fixed decode
 * buffer the server once used (64 bytes per generated token, 32 per echoed prompt token, 128
 * per logprobs token). A logit bias forces the long piece, so its text must come back whole:
 * generated text, echoed prompt and logprobs tokens. Pieces EOT_ID (<|eot_id|>, a control
 * piece) and EOT_KEY_ID (tokenizer.ggml.eot_token_id) end generation as EOS does. */
#include "api.h"
#include "check.h"
#include "common.h"
#include "gguf_builder.h"
#include "model.h"
#include "scheduler.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <unistd.h>

#define LONG_ID 263 /* the last piece of the tiny vocabulary, replaced by LONG_PIECE */
#define EOT_ID 262     /* replaced by the control piece <|eot_id|> */
#define EOT_KEY_ID 261 /* named by tokenizer.ggml.eot_token_id */

static char long_piece[256]; /* 75 x U+00E9: 150 bytes, longer than every old buffer */

static void make_long_piece(void) {
    for (int i = 0; i < 75; i++)
        memcpy(long_piece + 2 * i, "\xc3\xa9", 2);
    long_piece[150] = '\0';
}

/* The tiny model with piece LONG_ID replaced by long_piece. */
static int write_model(const char *path) {
    gspec s;
    tiny_model(&s, 0, false);
    gbuf *b = kv_set(&s, "tokenizer.ggml.tokens", 9);
    gb_u32(b, 8);
    gb_u64(b, TM_VOCAB);
    for (int i = 0; i < TM_VOCAB; i++) {
        char piece[16];
        tm_piece(piece, i, i >= 259 ? tm_words[i - 259] : NULL);
        gb_str(b, i == LONG_ID ? long_piece : i == EOT_ID ? "<|eot_id|>" : piece);
    }
    b = kv_set(&s, "tokenizer.ggml.token_type", 9);
    gb_u32(b, 5);
    gb_u64(b, TM_VOCAB);
    for (int i = 0; i < TM_VOCAB; i++)
        gb_u32(b, i == 0 ? 2 : i < 3 || i == EOT_ID ? 3 : i < 259 ? 6 : 1);
    kv_u32(&s, "tokenizer.ggml.eot_token_id", EOT_KEY_ID);
    int rc = gspec_save(&s, path);
    gspec_free(&s);
    return rc;
}

static api_ctx ctx_for(const model *m) {
    api_ctx c = {.m = m,
                 .model_id = "tiny",
                 .ctx_size = 32,
                 .parallel = 1,
                 .max_tokens_limit = 16,
                 .default_seed = 1,
                 .chat_fmt = CHAT_LLAMA2};
    return c;
}

#define FORCE_LONG "\"logit_bias\":{\"263\":100},\"temperature\":0"

/* Three generated long pieces come back whole, and so do their logprobs tokens. */
static void test_generated_text(const model *m) {
    const api_ctx ctx = ctx_for(m);
    sched_params sp = {.parallel = 1,
                       .ctx_size = 32,
                       .batch_size = 4,
                       .threads = 1,
                       .max_queue = 1,
                       .kv = KV_F32,
                       .prompt_cache = false};
    char err[LS_ERR_LEN] = "";
    sched *s = sched_create(m, &sp, err, sizeof err);
    CHECK(s != NULL, "sched_create: %s", err);
    if (!s) return;
    const char *body =
        "{\"prompt\":[1],\"max_tokens\":3,\"logprobs\":1,\"ignore_eos\":true," FORCE_LONG "}";
    api_call call;
    api_error e;
    CHECK(api_parse_completion(&ctx, body, strlen(body), &call, &e) == 0, "parse: %s", e.message);
    int status = 0;
    job *j = sched_submit(s, &call.req, &status, err, sizeof err);
    CHECK(j != NULL, "submit: %d %s", status, err);
    if (j) {
        job_wait(j);
        char want[3 * sizeof long_piece];
        snprintf(want, sizeof want, "%s%s%s", long_piece, long_piece, long_piece);
        job_view v;
        CHECK(job_view_init(&v, j) == 0 && job_view_sync(&v, NULL) == 0, "view");
        const choice_out *o = &v.choices[0];
        CHECK(o->len == strlen(want) && o->text && !strcmp(o->text, want),
              "generated %zu bytes, want %zu", o->len, strlen(want));
        char *json = api_response_json(&ctx, &call, &v, "cmpl-test", 0);
        job_view_free(&v);
        cJSON *root = json ? cJSON_Parse(json) : NULL;
        const cJSON *toks = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(
                cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0),
                "logprobs"),
            "tokens");
        const cJSON *t0 = cJSON_GetArrayItem(toks, 0);
        CHECK(cJSON_GetArraySize(toks) == 3 && cJSON_IsString(t0) &&
                  !strcmp(t0->valuestring, long_piece),
              "logprobs token: %s", cJSON_IsString(t0) ? t0->valuestring : "(none)");
        cJSON_Delete(root);
        free(json);
        job_release(j);
    }
    api_call_free(&call);
    sched_destroy(s);
}

/* Forcing an end-of-generation piece ends the choice at once with "stop" and no text; with
 * ignore_eos it runs to max_tokens and the control piece still prints nothing. */
static void test_eog(const model *m) {
    const api_ctx ctx = ctx_for(m);
    sched_params sp = {.parallel = 1, .ctx_size = 32, .batch_size = 4, .threads = 1,
                       .max_queue = 1, .kv = KV_F32, .prompt_cache = false};
    char err[LS_ERR_LEN] = "";
    sched *s = sched_create(m, &sp, err, sizeof err);
    CHECK(s != NULL, "sched_create: %s", err);
    if (!s) return;
    const struct {
        int id;
        bool ignore_eos;
        finish_reason finish;
        int n_gen;
    } cases[] = {{EOT_ID, false, FINISH_STOP, 0}, {EOT_KEY_ID, false, FINISH_STOP, 0},
                 {2, false, FINISH_STOP, 0},      {EOT_ID, true, FINISH_LENGTH, 3},
                 {LONG_ID, false, FINISH_LENGTH, 3}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"prompt\":[1],\"max_tokens\":3,\"ignore_eos\":%s,"
                 "\"logit_bias\":{\"%d\":100},\"temperature\":0}",
                 cases[k].ignore_eos ? "true" : "false", cases[k].id);
        api_call call;
        api_error e;
        CHECK(api_parse_completion(&ctx, body, strlen(body), &call, &e) == 0, "parse: %s",
              e.message);
        int status = 0;
        job *j = sched_submit(s, &call.req, &status, err, sizeof err);
        CHECK(j != NULL, "submit: %d %s", status, err);
        if (j) {
            job_wait(j);
            job_view v;
            CHECK(job_view_init(&v, j) == 0 && job_view_sync(&v, NULL) == 0, "view");
            const choice_out *o = &v.choices[0];
            bool text_ok = cases[k].id == LONG_ID ? o->len == 3 * strlen(long_piece) : o->len == 0;
            CHECK(o->finish == cases[k].finish && o->n_gen == cases[k].n_gen && text_ok,
                  "eog case %zu (id %d): finish %d, %d tokens, %zu bytes of text", k,
                  cases[k].id, (int)o->finish, o->n_gen, o->len);
            job_view_free(&v);
            job_release(j);
        }
        api_call_free(&call);
    }
    sched_destroy(s);
}

/* A prompt of long pieces given as ids echoes whole. */
static void test_echo(const model *m) {
    const api_ctx ctx = ctx_for(m);
    const char *body = "{\"prompt\":[263,263,263],\"echo\":true,\"max_tokens\":1}";
    api_call call;
    api_error e;
    CHECK(api_parse_completion(&ctx, body, strlen(body), &call, &e) == 0, "parse: %s", e.message);
    char want[3 * sizeof long_piece];
    snprintf(want, sizeof want, "%s%s%s", long_piece, long_piece, long_piece);
    CHECK(call.n_echo == 1 && !strcmp(call.echo_text[0], want), "echo: %zu bytes, want %zu",
          call.n_echo == 1 ? strlen(call.echo_text[0]) : 0, strlen(want));
    api_call_free(&call);
}

int main(void) {
    make_long_piece();
    const char *path = check_tmp_path("long-piece.gguf"); /* removed at exit (check.h) */
    if (!path) return 1;
    CHECK(write_model(path) == 0, "writing %s", path);
    char err[LS_ERR_LEN] = "";
    model *m = model_load(path, NULL, err, sizeof err);
    CHECK(m != NULL, "model_load: %s", err);
    if (m) {
        test_generated_text(m);
        test_echo(m);
        test_eog(m);
        model_free(m);
    }
    return check_summary();
}
