/* json_schema: JSON Schema to GBNF (engine/grammar.h parses the result). The grammar accepts
 * only JSON that validates against the schema: a keyword it cannot express exactly is an
 * error naming its schema path (e.g. "#/properties/name/pattern"), never a looser grammar.
 * Some constructs come out tighter than the schema, always valid: object keys in the order
 * the schema lists them; no extra keys unless additionalProperties says so and the schema
 * declares no properties; numbers of at most 16 digits, and without an exponent when they have
 * bounds (minimum/maximum on a number: whole-number bounds only); February has 28 days in
 * `date`.
 * oneOf is enforced only when its branches cannot overlap (different types or const/enum
 * values); otherwise it is refused like any construct we cannot express.
 * Pure functions of their input; thread-safe. */
#ifndef LS_JSON_SCHEMA_H
#define LS_JSON_SCHEMA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* The grammar of any JSON object (response_format json_object). Static text. */
const char *json_object_gbnf(void);

/* Converts schema to GBNF; caller frees. strict: OpenAI's strict mode (additionalProperties
 * false unless given; no different otherwise, as absent additionalProperties also gives no
 * extra keys). NULL with a message (naming the schema path) in err, and the path alone in
 * path (both may be NULL), on an unsupported or invalid schema or when memory is short. */
char *json_schema_to_gbnf(const cJSON *schema, bool strict, char *err, size_t errlen,
                          char *path, size_t pathlen);

/* For grammars that combine several schemas (tools.c): the rules of schema alone, named
 * rN with N counting from *next_rule (advanced past them), without a root rule and without the
 * fixed rules they use (json_schema_fixed_gbnf: ws, value, string, number...; add them once).
 * *top: the number of the schema's own rule. NULL with err/path as json_schema_to_gbnf. */
char *json_schema_gbnf_rules(const cJSON *schema, bool strict, int *next_rule, int *top,
                            char *err, size_t errlen, char *path, size_t pathlen);
const char *json_schema_fixed_gbnf(void);

/* The request fields that ask for constrained output: `grammar` (GBNF), `json_schema` (a
 * schema, llama.cpp's field) and `response_format` (OpenAI's: text, json_object, json_schema);
 * at most one may constrain (`tools` are tools.c's). 0 with *out the parsed grammar (NULL: unconstrained; caller frees),
 * or -1 with the offending field in param and a message naming the position or schema path,
 * or -2 when memory ran out (the request itself may be fine). */
typedef struct gram_rules gram_rules;
int json_request_grammar(const cJSON *body, gram_rules **out, char *param, size_t paramlen,
                         char *msg, size_t msglen);

#endif
