/* test_chat_template: server/chat_template.c. The Jinja path's token ids equal the built-in
 * Llama-2 format's (which test_chat checks against Meta's reference) for the same conversation;
 * special pieces are ids only where the template writes them, never in message content; one
 * BOS; the message shapes (developer, content parts, tool calls); raise_exception as a 400; an
 * unsupported construct as a load error that names it; the model file's own template. */
#include "chat.h"
#include "check.h"
#include "common.h"
#include "gguf.h"
#include "model.h"

#include <stdlib.h>
#include <string.h>

static chat_template *load_file(const model *m, const char *name) {
    char rel[128], err[LS_ERR_LEN] = "";
    snprintf(rel, sizeof rel, "templates/%s.jinja", name);
    size_t n = 0;
    char *src = check_slurp(check_test_path(rel), &n);
    CHECK(src, "cannot read %s", rel);
    chat_template *ct = src ? chat_template_load(m, CHAT_AUTO, src, n, rel, err, sizeof err) : NULL;
    CHECK(ct, "%s: %s", name, err);
    free(src);
    return ct;
}

static const char *const convo_json =
    "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi "
    "there\"},{\"role\":\"assistant\",\"content\":\"Hello!\"},{\"role\":\"user\",\"content\":"
    "\"Who are you?\"}]";

/* The Jinja Llama-2 template and the built-in llama2 format give the same ids. */
static void test_same_ids_as_builtin(const model *m) {
    chat_template *ct = load_file(m, "llama2");
    if (!ct) return;
    cJSON *msgs = cJSON_Parse(convo_json);
    chat_error e;
    int32_t *a = NULL, *b = NULL;
    int na = 0, nb = 0;
    CHECK(chat_prompt_tokenize(ct, m->tok, msgs, NULL, &a, &na, &e) == 0, "%s", e.message);
    CHECK(chat_prompt_tokenize(chat_template_builtin(CHAT_LLAMA2), m->tok, msgs, NULL, &b, &nb,
                               &e) == 0,
          "%s", e.message);
    CHECK(na == nb && na > 10 && !memcmp(a, b, (size_t)na * sizeof *a), "jinja %d ids, built-in %d",
          na, nb);
    CHECK(a && a[0] == tok_bos(m->tok) && a[1] != tok_bos(m->tok), "one BOS in front");
    free(a);
    free(b);
    cJSON_Delete(msgs);
    chat_template_free(ct);
}

static int count_id(const int32_t *ids, int n, int id) {
    int k = 0;
    for (int i = 0; i < n; i++)
        k += ids[i] == id;
    return k;
}

/* "</s>" and "<s>" in content stay text; the template's eos_token is an id. */
static void test_no_injection(const model *m) {
    chat_template *ct = load_file(m, "zephyr");
    if (!ct) return;
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"a </s><s> b\"},"
                              "{\"role\":\"assistant\",\"content\":\"c\"},"
                              "{\"role\":\"user\",\"content\":\"</s>\"}]");
    chat_error e;
    int32_t *ids = NULL;
    int n = 0;
    CHECK(chat_prompt_tokenize(ct, m->tok, msgs, NULL, &ids, &n, &e) == 0, "%s", e.message);
    CHECK(count_id(ids, n, tok_eos(m->tok)) == 3, "EOS ids: %d, want one per message",
          count_id(ids, n, tok_eos(m->tok)));
    CHECK(count_id(ids, n, tok_bos(m->tok)) == 1 && ids[0] == tok_bos(m->tok), "one BOS");
    free(ids);
    char *text = NULL;
    CHECK(chat_apply(ct, msgs, NULL, true, &text, &e) == 0 && text &&
              !strcmp(text, "<|user|>\na </s><s> b</s>\n<|assistant|>\nc</s>\n<|user|>\n</s></s>\n"
                            "<|assistant|>\n"),
          "text \"%s\"", text ? text : e.message);
    free(text);
    cJSON_Delete(msgs);
    chat_template_free(ct);
}

static void check_shape(const char *json, int status, const char *param, const char *needle) {
    cJSON *msgs = cJSON_Parse(json), *out = NULL;
    chat_error e = {0};
    int rc = chat_messages_normalize(msgs, &out, &e);
    if (status == 0) {
        char *s = out ? cJSON_PrintUnformatted(out) : NULL;
        CHECK(rc == 0 && s && !strcmp(s, needle), "%s -> %s (%s)", json, s ? s : "", e.message);
        free(s);
    } else {
        CHECK(rc == -1 && e.status == status && !strcmp(e.param, param) &&
                  strstr(e.message, needle),
              "%s: got %d %s \"%s\"", json, e.status, e.param, e.message);
    }
    cJSON_Delete(out);
    cJSON_Delete(msgs);
}

static void test_shapes(void) {
    check_shape("[{\"role\":\"developer\",\"content\":\"x\"}]", 0, NULL,
                "[{\"role\":\"system\",\"content\":\"x\"}]");
    check_shape("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                "{\"type\":\"text\",\"text\":\"b\"}]}]",
                0, NULL, "[{\"role\":\"user\",\"content\":\"a\\nb\"}]");
    check_shape("[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\"}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"1\",\"content\":\"r\"}]",
                0, NULL,
                "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\"}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"1\",\"content\":\"r\"}]");
    check_shape("[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":"
                "[{\"type\":\"input_audio\"}]}]",
                400, "messages[1].content[0]", "'input_audio' is not supported");
    check_shape("[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]", 400,
                "messages[0].content[0].text", "UTF-8 string");
    check_shape("[{\"role\":\"user\",\"content\":null}]", 400, "messages[0]", "content must be");
    check_shape("[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]", 400, "messages[0]",
                "tool_calls");
    check_shape("[{\"role\":\"bot\",\"content\":\"x\"}]", 400, "messages[0]", "role");
    check_shape("{}", 400, "messages", "array");
    check_shape("[]", 400, "messages", "empty");
}

static void test_raise_and_errors(const model *m) {
    chat_template *ct = load_file(m, "gemma3");
    if (!ct) return;
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"a\"},"
                              "{\"role\":\"user\",\"content\":\"b\"}]");
    chat_error e;
    char *text = NULL;
    CHECK(chat_apply(ct, msgs, NULL, true, &text, &e) == -1 && e.status == 400 &&
              !strcmp(e.message,
                      "Conversation roles must alternate user/assistant/user/assistant/..."),
          "%d %s", e.status, e.message);
    int32_t *ids = NULL;
    int n;
    CHECK(chat_prompt_tokenize(ct, m->tok, msgs, NULL, &ids, &n, &e) == -1 && e.status == 400 &&
              !strcmp(e.param, "messages") && strstr(e.message, "must alternate"),
          "%s", e.message);
    cJSON_Delete(msgs);
    chat_template_free(ct);
    /* a tool message has no place in a built-in format */
    msgs = cJSON_Parse("[{\"role\":\"tool\",\"content\":\"r\"}]");
    CHECK(chat_apply(chat_template_builtin(CHAT_CHATML), msgs, NULL, true, &text, &e) == -1 &&
              e.status == 400 && !strcmp(e.param, "messages[0]"),
          "%s", e.message);
    cJSON_Delete(msgs);
}

static void test_unsupported(void) {
    static const struct {
        const char *src, *needle;
    } cases[] = {
        {"{% for m in messages %}{% include 'x.j2' %}{% endfor %}", "'{% include %}' (line 1)"},
        {"{{ messages | batch(2) }}", "unsupported Jinja filter 'batch'"},
        {"{{ x is prime }}", "unsupported Jinja test 'prime'"},
        {"{{ messages.pop() }}", "unsupported method 'pop()'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[LS_ERR_LEN] = "";
        chat_template *ct = chat_template_load(NULL, CHAT_AUTO, cases[i].src, strlen(cases[i].src),
                                               "t.jinja", err, sizeof err);
        CHECK(!ct && strstr(err, cases[i].needle) && strstr(err, "--chat-template NAME") &&
                  strstr(err, "t.jinja"),
              "%s: %s", cases[i].src, err);
        chat_template_free(ct);
    }
    /* --chat-template NAME takes over from the model's template */
    char err[LS_ERR_LEN] = "";
    chat_template *ct = chat_template_load(NULL, CHAT_CHATML, NULL, 0, NULL, err, sizeof err);
    CHECK(ct && !chat_template_is_jinja(ct) && chat_template_family(ct) == CHAT_CHATML &&
              !strcmp(chat_template_name(ct), "chatml"),
          "%s", err);
    chat_template_free(ct);
}

/* llama3-vocab.gguf carries Meta's template: the same text as tests/templates/llama3.jinja. */
static void test_model_file_template(void) {
    char err[LS_ERR_LEN] = "";
    gguf_file *g = gguf_open(check_model_path("llama3-vocab.gguf"), err, sizeof err);
    CHECK(g, "%s", err);
    if (!g) return;
    gguf_str s;
    size_t n = 0;
    char *want = check_slurp(check_test_path("templates/llama3.jinja"), &n);
    CHECK(gguf_get_str(g, "tokenizer.chat_template", &s, err, sizeof err) == 0 && want &&
              (size_t)s.len == n && !memcmp(s.s, want, n),
          "the GGUF's template differs from templates/llama3.jinja (%s)", err);
    model m = {.gguf = g};
    chat_template *ct = chat_template_load(&m, CHAT_AUTO, NULL, 0, NULL, err, sizeof err);
    CHECK(ct && chat_template_is_jinja(ct) && chat_template_family(ct) == CHAT_LLAMA3 &&
              !strcmp(chat_template_source(ct), "from the model file"),
          "%s", err);
    chat_template_free(ct);
    free(want);
    gguf_close(g);
}

int main(void) {
    char err[LS_ERR_LEN];
    tokenizer *t = model_load_tokenizer(check_model_path("llama2-vocab.gguf"), err, sizeof err);
    CHECK(t, "llama2-vocab.gguf: %s", err);
    model m = {.tok = t};
    if (t) {
        test_same_ids_as_builtin(&m);
        test_no_injection(&m);
        test_raise_and_errors(&m);
    }
    test_shapes();
    test_unsupported();
    test_model_file_template();
    tok_free(t);
    return check_summary();
}
