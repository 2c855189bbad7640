/* fuzz_chat: the chat-template renderer (server/chat.c). The input is a list of messages: fields
 * separated by NUL bytes, each a role byte (system, user, assistant, an unknown role, no role;
 * an assistant's content may be absent) then the content; it is rendered and tokenized in every
 * format, and also read as a Jinja template and a format name. Properties: no crash, no leak;
 * chat_render succeeds exactly when chat_tokenize does; chatml and zephyr carry each content
 * verbatim; tokenize's ids are in the vocabulary, BOS first when asked; a buffer one id short is
 * refused, an exact one gives the same ids. */
#include "fuzz.h"

#include "chat.h"
#include "model.h"

#include <string.h>

#define MAX_MSGS 12

static tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/llama2-vocab.gguf", fuzz_models_dir());
    tok = model_load_tokenizer(path, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "fuzz_chat: %s (skipped)\n", err);
        exit(FUZZ_SKIP);
    }
    return 0;
}

static void check_format(chat_format f, const chat_message *msgs, int n, bool add_bos) {
    char err[512];
    char *text = chat_render(f, msgs, n, err, sizeof err);
    int cap = 64;
    for (int i = 0; i < n; i++)
        cap += 64 + 3 * (msgs[i].content ? (int)strlen(msgs[i].content) : 0);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    FUZZ_CHECK(ids);
    int got = chat_tokenize(tok, f, msgs, n, add_bos, ids, cap, err, sizeof err);
    FUZZ_CHECK((text != NULL) == (got >= 0));
    if (text && (f == CHAT_CHATML || f == CHAT_ZEPHYR))
        for (int i = 0; i < n; i++)
            if (msgs[i].content) FUZZ_CHECK(strstr(text, msgs[i].content));
    if (got >= 0) {
        for (int i = 0; i < got; i++)
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < tok_n_vocab(tok));
        if (add_bos) FUZZ_CHECK(got >= 1 && ids[0] == tok_bos(tok));
        int32_t *exact = malloc(((size_t)got + 1) * sizeof *exact);
        FUZZ_CHECK(exact);
        FUZZ_CHECK(chat_tokenize(tok, f, msgs, n, add_bos, exact, got, err, sizeof err) == got);
        FUZZ_CHECK(memcmp(exact, ids, (size_t)got * sizeof *ids) == 0);
        if (got > 0)
            FUZZ_CHECK(chat_tokenize(tok, f, msgs, n, add_bos, exact, got - 1, err, sizeof err) <
                       0);
        free(exact);
    }
    free(ids);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *roles[] = {"system", "user", "assistant", "tool", NULL};
    char *copy = malloc(size + 1);
    FUZZ_CHECK(copy);
    memcpy(copy, data, size);
    copy[size] = '\0';
    chat_format_detect(copy, size);
    chat_format cf;
    char err[512];
    if (chat_format_from_name(copy, &cf, err, sizeof err) == 0)
        FUZZ_CHECK(strcmp(chat_format_name(cf), copy) == 0);

    chat_message msgs[MAX_MSGS];
    int n = 0;
    bool add_bos = size & 1;
    for (char *p = copy; p < copy + size && n < MAX_MSGS; p += strlen(p) + 1) {
        unsigned sel = (unsigned char)*p;
        msgs[n].role = roles[sel % 5];
        msgs[n].content = *p ? p + 1 : p;
        if (sel >= 0xf0 && msgs[n].role == roles[2]) msgs[n].content = NULL;
        n++;
    }
    for (chat_format f = CHAT_AUTO; f <= CHAT_LLAMA3; f++)
        check_format(f, msgs, n, add_bos);
    free(copy);
    return 0;
}
