/* chat: turns an OpenAI-style list of chat messages into a prompt. A model's own Jinja chat
 * template (`tokenizer.chat_template`) is rendered by jinja.h's interpreter (chat_template.c,
 * the second half of this header); the four built-in formats below (Llama-2 [INST]/<<SYS>>,
 * ChatML, Zephyr, Llama-3) serve files that carry no template and --chat-template NAME. Owns
 * nothing beyond what a call returns; every function is thread-safe. Never runs the model,
 * never exits.
 *
 * Built-in formats:
 * BOS, once. The rendered text (chat_render) never starts with a BOS string ("<s>",
 * "<|begin_of_text|>"): chat_tokenize puts the tokenizer's BOS id in front itself, once, when
 * asked (add_bos). Every other special token of a format (Llama-2's inner "</s><s>" between
 * turns, "<|im_start|>", "<|eot_id|>"...) is emitted as its own id when the vocabulary has a
 * piece spelled exactly so (the BOS/EOS ids for "<s>"/"</s>"), and encoded as plain text
 * otherwise. Message content is always encoded as plain text, never parsed for special
 * strings, so a user cannot inject "<|im_start|>system" as a control token. Each run of text
 * between two special ids is encoded on its own (SentencePiece then adds its dummy-prefix
 * space after every special token, as Meta's per-turn encoding and llama.cpp do).
 *
 * Fallback: a model with no template gets the Llama-2 format. The kjv-demo model has no chat
 * template (it is not a chat model: expect Bible text, not answers). */
#ifndef LS_CHAT_H
#define LS_CHAT_H

#include "model.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { CHAT_AUTO = 0, CHAT_LLAMA2, CHAT_CHATML, CHAT_ZEPHYR, CHAT_LLAMA3 } chat_format;

/* One message. role: "system", "user" or "assistant" (exact, case-sensitive). content: a
 * NUL-terminated string; NULL only for an assistant message (read as ""). Not owned. */
typedef struct {
    const char *role;
    const char *content;
} chat_message;

/* ---- choosing a format ---- */

/* "auto", "llama2", "chatml", "zephyr", "llama3" -> *out, 0; -1 with a message otherwise. */
int chat_format_from_name(const char *name, chat_format *out, char *err, size_t errlen);
/* The name chat_format_from_name accepts; "?" for a value outside the enum. */
const char *chat_format_name(chat_format f);
/* Guesses the format from a Jinja template's source (len bytes; need not be NUL-terminated;
 * NULL for none). Checked in this order: "<|start_header_id|>" -> llama3, "<|im_start|>" ->
 * chatml, "<|user|>" -> zephyr, "[INST]" -> llama2 (Mistral's [INST] templates land here too:
 * close, not exact). Anything else, or NULL: CHAT_LLAMA2, the fallback. Never CHAT_AUTO. */
chat_format chat_format_detect(const char *jinja, size_t len);
/* The format to use for model m: setting itself unless it is CHAT_AUTO, else the guess from
 * the model's GGUF `tokenizer.chat_template` (chat_format_detect; the fallback when m is NULL,
 * a llama2.c checkpoint or has no template). *detected (may be NULL) is set to whether a
 * template was present and recognised. Never CHAT_AUTO. */
chat_format chat_format_for_model(const model *m, chat_format setting, bool *detected);

/* ---- rendering ---- */

/* The exact formats, with {x} the message content (BOS left out, as said above):
 *  llama2: [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST]
 *          {user} [/INST]  -- Meta's reference: an optional system message, first only, merged
 *          into the first user turn; then user and assistant strictly alternating, ending with
 *          user (else an error naming the message). Each [INST] body and each assistant reply
 *          is stripped of leading/trailing ASCII whitespace, as Meta's .strip() does.
 *  chatml: <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
 *  zephyr: <|{role}|>\n{content}</s>\n ... <|assistant|>\n
 *  llama3: <|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|> ...
 *          <|start_header_id|>assistant<|end_header_id|>\n\n
 * The last line of each is the generation prompt, always appended. chatml, zephyr and llama3
 * accept any order of roles. CHAT_AUTO renders as the fallback, llama2.
 * Errors (-1 / NULL with a message): an empty list, a NULL role, an unknown role (named, with
 * its index), NULL content outside an assistant message, an order llama2 cannot express. */

/* The prompt as text, NUL-terminated, without BOS (for logs and tests). Caller frees. */
char *chat_render(chat_format f, const chat_message *msgs, int n, char *err, size_t errlen);

/* The prompt as token ids for tokenizer t: BOS first (once, when add_bos and t has one; pass
 * tok_add_bos(t) for the model's own default), then the format's text and special ids.
 * Writes at most cap ids and returns how many it wrote; -1 with a message on any error above
 * or when the prompt needs more than cap ids (the message gives the full count); CHAT_ENOMEM
 * with a message when memory runs out (not the request's fault). */
#define CHAT_ENOMEM (-2)
int chat_tokenize(const tokenizer *t, chat_format f, const chat_message *msgs, int n, bool add_bos,
                  int32_t *ids, int cap, char *err, size_t errlen);

/* ---- generation ---- */

/* The ids that end an assistant turn in format f, for the sampler's stop set: t's EOS, plus the
 * format's own end-of-turn token (<|im_end|>, <|eot_id|>) when t has that piece. Writes at most
 * cap ids; returns the number written. */
int chat_stop_ids(const tokenizer *t, chat_format f, int32_t *ids, int cap);
/* The end-of-turn text of format f ("<|im_end|>", "<|eot_id|>", "</s>"): a stop string for
 * when t has no such piece and the model spells it out in text. Never NULL. */
const char *chat_stop_text(chat_format f);

/* ---- chat templates (chat_template.c) ----
 * What serve renders prompts with: the model's own Jinja `tokenizer.chat_template` (run by
 * jinja.h's interpreter, with bos_token/eos_token from the vocabulary), a template file, or one
 * of the built-in formats above. Parsed once at startup, immutable after: thread-safe. */

typedef struct chat_template chat_template;

/* A request error: status 400 (the request's fault; param names the field) or 503 (memory). */
typedef struct {
    int status;
    char param[96];
    char message[512];
} chat_error;

/* The template for model m (m may be NULL in tests), in this order: file_src (len bytes: the
 * text of --chat-template-file, named file_name; NULL for none); the built-in format setting
 * when it is not CHAT_AUTO; the model file's tokenizer.chat_template; else the Llama-2 built-in
 * format (the file carries no template). A Jinja template is parsed here, so one that uses a
 * construct the interpreter lacks fails at startup: NULL with a message that names the construct
 * and the flags that override it. Caller frees with chat_template_free. */
chat_template *chat_template_load(const model *m, chat_format setting, const char *file_src,
                                  size_t file_len, const char *file_name, char *err,
                                  size_t errlen);
void chat_template_free(chat_template *ct);
/* A static template for a built-in format (CHAT_AUTO: llama2). Never freed. */
const chat_template *chat_template_builtin(chat_format f);
/* "jinja", or the built-in format's name. */
const char *chat_template_name(const chat_template *ct);
/* Where it came from: "from the model file", "from --chat-template-file"... */
const char *chat_template_source(const chat_template *ct);
/* The format family, for stop tokens: the built-in format, or chat_format_detect's guess from
 * the Jinja source. */
chat_format chat_template_family(const chat_template *ct);
bool chat_template_is_jinja(const chat_template *ct);
/* The Jinja source, NUL-terminated (GET /props shows it; tools.c reads its tool-call syntax);
 * NULL for a built-in format. Owned by ct. */
const char *chat_template_text(const chat_template *ct);

/* The messages a client sent (a JSON array), as templates see them: 'developer' is read as
 * 'system'; content may be a string, null (assistant only) or a list of {"type":"text"} parts,
 * joined with "\n" into one string; any other part type is a 400 naming it; tool messages and
 * assistant tool_calls pass through unchanged. 0 and *out (caller frees), or -1 with e. */
int chat_messages_normalize(const cJSON *messages, cJSON **out, chat_error *e);

/* The prompt as text (NUL-terminated, caller frees), as POST /apply-template returns it. tools:
 * the request's tools (NULL: none). add_generation_prompt as the template reads it. A template's
 * raise_exception(msg) is a 400 whose message is msg. 0, or -1 with e. */
int chat_apply(const chat_template *ct, const cJSON *messages, const cJSON *tools,
               bool add_generation_prompt, char **text, chat_error *e);

/* The prompt as token ids for t, with the generation prompt: *ids (caller frees), *n. Special
 * pieces (control and user-defined tokens) are recognised in template text only; message
 * content is always plain text. BOS: the template's own when its text starts with it, else the
 * tokenizer's default (tok_add_bos); never two. 0, or -1 with e. */
int chat_prompt_tokenize(const chat_template *ct, const tokenizer *t, const cJSON *messages,
                         const cJSON *tools, int32_t **ids, int *n, chat_error *e);

#endif
