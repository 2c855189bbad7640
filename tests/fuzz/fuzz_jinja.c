/* fuzz_jinja: a model's own chat template (server/chat_template.c and the Jinja interpreter it
 * runs): the input is the template source, as a GGUF's tokenizer.chat_template or
 * --chat-template-file would give it; a template that loads is applied to a fixed conversation
 * and tokenized with the kjv-demo vocabulary. Properties: no crash, no leak, no hang; a refusal
 * is a 400 or a 503 with a message. */
#include "fuzz.h"

#include "chat.h"
#include "model.h"

#include <cjson/cJSON.h>
#include <string.h>

static tokenizer *tok;
static cJSON *messages;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/kjv-demo-tokenizer.bin", fuzz_models_dir());
    tok = model_load_tokenizer(path, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "fuzz_jinja: %s (skipped)\n", err);
        exit(FUZZ_SKIP);
    }
    messages = cJSON_Parse("[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                           "{\"role\":\"user\",\"content\":\"Hello <s>\"},"
                           "{\"role\":\"assistant\",\"content\":\"Hi\"},"
                           "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}]");
    FUZZ_CHECK(messages);
    return 0;
}

static void check_error(const chat_error *e) {
    FUZZ_CHECK((e->status == 400 || e->status == 503) && e->message[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024];
    chat_template *ct = chat_template_load(NULL, CHAT_AUTO, (const char *)data, size, "fuzz.jinja",
                                           err, sizeof err);
    if (!ct) return 0;
    cJSON *norm = NULL;
    chat_error e;
    memset(&e, 0, sizeof e);
    FUZZ_CHECK(chat_messages_normalize(messages, &norm, &e) == 0);
    char *text = NULL;
    memset(&e, 0, sizeof e);
    if (chat_apply(ct, norm, NULL, true, &text, &e) == 0)
        FUZZ_CHECK(text);
    else
        check_error(&e);
    free(text);
    int32_t *ids = NULL;
    int n = 0;
    memset(&e, 0, sizeof e);
    if (chat_prompt_tokenize(ct, tok, norm, NULL, &ids, &n, &e) == 0) {
        for (int i = 0; i < n; i++)
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < tok_n_vocab(tok));
    } else {
        check_error(&e);
    }
    free(ids);
    cJSON_Delete(norm);
    chat_template_free(ct);
    return 0;
}
