/* jinja: a small interpreter for the Jinja subset that chat templates use (the
 * `tokenizer.chat_template` a GGUF carries), configured as Hugging Face configures jinja2:
 * trim_blocks and lstrip_blocks on, no autoescape, an immutable sandbox (no list.append, no
 * attribute writes except on namespace()), `tojson` as json.dumps(ensure_ascii=False), the
 * loopcontrols extension ({% break %}, {% continue %}) and the globals raise_exception and
 * strftime_now. Knows nothing of HTTP, models or tokens; never exits.
 *
 * Provenance. Every byte of the output knows whether it came from the template (its text, its
 * string literals, the `trusted` variables such as bos_token) or from the `data` variables (the
 * messages a client sent). The renderer hands the output back as segments, so that a tokenizer
 * can parse special-token strings in template text only and keep message content plain text.
 *
 * Limits. A template is untrusted input: rendering stops with JINJA_ELIMIT when the output,
 * the memory a render allocates, the number of loop iterations or the call depth go over the
 * limits given, so a hostile template can neither hang a request nor exhaust memory.
 *
 * Threads: a parsed template is immutable; any number of threads may render it at once. */
#ifndef LS_JINJA_H
#define LS_JINJA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct jinja_template jinja_template;

/* Error codes of jinja_render (jinja_parse returns NULL with a message instead). */
#define JINJA_EFAIL (-1)  /* a runtime error: undefined attribute, bad operand types... */
#define JINJA_ERAISE (-2) /* the template called raise_exception(msg): err is msg itself */
#define JINJA_ELIMIT (-3) /* over a limit of jinja_limits */
#define JINJA_ENOMEM (-4) /* malloc failed */

typedef struct {
    size_t max_output;   /* bytes of rendered text */
    size_t max_memory;   /* bytes the render may allocate for its values */
    long max_iterations; /* loop iterations, all loops together */
    int max_depth;       /* nested macro calls */
} jinja_limits;
/* 1 MiB of output, 64 MiB of values, 100,000 iterations, depth 32. */
jinja_limits jinja_default_limits(void);

/* Nesting, which bounds the stack that parsing and rendering use, whatever the limits above.
 * jinja_parse refuses a template whose brackets, unary operators, block tags or elif chains
 * nest deeper than JINJA_MAX_NESTING levels (jinja2 itself stops short of 100 nested brackets
 * or blocks). jinja_render stops with JINJA_ELIMIT past JINJA_MAX_RECURSION levels of its own
 * recursion: the expressions and blocks it is inside, those of the macros that called it, and
 * the lists and dicts that ==, <, str() and tojson walk (a namespace may hold itself). */
#define JINJA_MAX_NESTING 100
#define JINJA_MAX_RECURSION 500

/* One span of the output: [start, start+len) came from the template (from_template) or from
 * the data variables. Adjacent segments always differ in from_template. */
typedef struct {
    size_t start, len;
    bool from_template;
} jinja_segment;

typedef struct {
    char *text; /* NUL-terminated; len bytes before the NUL */
    size_t len;
    jinja_segment *segs; /* n_segs spans covering text in order */
    int n_segs;
} jinja_output;

/* ---- parsing ---- */

/* Parses src[0..len). NULL with a message on a syntax error or on a construct this interpreter
 * does not support (a tag, filter, test or method it lacks): the message names the construct
 * and its line, e.g. "unsupported Jinja filter 'wordwrap' (line 3)". Caller frees. */
jinja_template *jinja_parse(const char *src, size_t len, char *err, size_t errlen);
void jinja_free(jinja_template *t);

/* ---- rendering ---- */

/* Renders t with the variables of two JSON objects: data (may be NULL; its strings count as
 * data, e.g. messages and tools) and trusted (may be NULL; its strings count as template text,
 * e.g. bos_token, eos_token, add_generation_prompt). A name in both takes trusted's value.
 * JSON numbers without a fractional part are integers. 0 and *out filled (free with
 * jinja_output_free), or a JINJA_E* code with a message. */
int jinja_render(const jinja_template *t, const cJSON *data, const cJSON *trusted,
                 const jinja_limits *lim, jinja_output *out, char *err, size_t errlen);
void jinja_output_free(jinja_output *out);

#endif
