/* tools: OpenAI function calling for /v1/chat/completions. Validates `tools`, `tool_choice` and
 * `parallel_tool_calls`; prepares the messages and tools the chat template sees; builds the
 * grammar that forces a call (tool_choice "required" or a named function); and reads generated
 * text back as tool calls. Never runs the model; owns only what it returns. Every function is
 * thread-safe (no state between calls).
 *
 * The call syntax follows the chat template's text:
 *  hermes  <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>  (Hermes, Qwen; also
 *          the generic format below)
 *  llama3  {"name": "f", "parameters": {...}}, optionally after <|python_tag|>  (Llama 3.1/3.2)
 *  mistral [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...], or the array alone at the
 *          start of the answer ([TOOL_CALLS] is a control token, which decodes to no text; the
 *          forcing grammar writes the array alone)
 * A Jinja template that speaks of tools at all gets `tools` and the messages as they are
 * (tool_calls arguments parsed into objects, as Hugging Face templates expect), and the syntax
 * it shows (hermes when it shows none of the three). The built-in formats (the demo model)
 * and Jinja templates without a word of tools get the generic format: the tools are described
 * in the system message, in the hermes syntax; an assistant's tool_calls become <tool_call>
 * blocks of its text and tool results become a user turn of <tool_response> blocks.
 * tool_choice "none": the template is not told of the tools and the output is never read as a
 * call (OpenAI's "the model will not call any tool"); the history still renders. */
#ifndef LS_TOOLS_H
#define LS_TOOLS_H

#include "chat.h"
#include "grammar.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define TOOLS_MAX 128      /* tools per request (OpenAI's limit) */
#define TOOLS_MAX_CALLS 8  /* calls per answer when parallel_tool_calls is true */

typedef enum { TOOLS_HERMES, TOOLS_LLAMA3, TOOLS_MISTRAL } tools_syntax;
typedef enum { TOOL_CHOICE_NONE, TOOL_CHOICE_AUTO, TOOL_CHOICE_REQUIRED, TOOL_CHOICE_NAMED }
    tool_choice_kind;

/* A request's tools, validated. Immutable once made. */
typedef struct {
    tools_syntax syntax;
    bool native;             /* the template renders the tools itself; else the generic format */
    tool_choice_kind choice;
    char forced[65];         /* TOOL_CHOICE_NAMED: the function */
    bool parallel;           /* parallel_tool_calls (default true) */
    cJSON *tools;            /* (n) the request's tools array, a copy */
    int n;
} tools_req;

/* One call read from the output. name and arguments (compact JSON text of an object) are
 * owned by the tools_parsed that holds them. */
typedef struct {
    char *name;
    char *arguments;
} tool_call;

/* What tools_scan read from a choice's text. */
typedef struct {
    size_t content_len; /* text[0, content_len) is answer text: sure to be no part of a call */
    size_t tail_off;    /* final scans: text[tail_off, len) follows the last call and is text
                         * too (a truncated call, or words after the calls); len otherwise */
    tool_call *calls;   /* (n_calls) the complete calls, in order */
    int n_calls;
} tools_parsed;

/* Everything /v1/chat/completions (for_generation) and /apply-template need from a request
 * body o: *t (NULL when the request has no tools; caller frees with tools_req_free), the
 * messages and tools to render (*msgs: caller frees with cJSON_Delete; *tools: NULL or a
 * cJSON the caller frees), and with for_generation the grammar that forces a call (*g, NULL
 * for none; caller frees). 0, or -1 with e (400 naming the field, or 503 for memory). */
int tools_setup(const chat_template *ct, const cJSON *o, bool for_generation, tools_req **t,
                cJSON **msgs, cJSON **tools, gram_rules **g, chat_error *e);
void tools_req_free(tools_req *t);

/* Whether the output of a request with t is read for calls (tools given, choice not none). */
bool tools_active(const tools_req *t);

/* Reads text (len bytes) for calls in t's syntax. final: the choice has finished (an
 * unfinished call is then text); before that, content_len stops short of anything that may yet
 * become a call. A call counts only when its name is a declared tool and its arguments are a
 * JSON object (or a string holding one). 0, or -1 when memory ran out (out left empty).
 * Free with tools_parsed_free. */
int tools_scan(const tools_req *t, const char *text, size_t len, bool final, tools_parsed *out);
void tools_parsed_free(tools_parsed *p);

/* The id of call k of choice i of the response resp_id (stable, so that a stream and its
 * re-reads agree): "call_" and 24 letters and digits; 9 letters and digits for the mistral
 * syntax, whose templates accept no other. out holds 32 bytes. */
void tools_call_id(const tools_req *t, const char *resp_id, int i, int k, char out[32]);

#endif
