/* json_regex: a JSON Schema `pattern` (an ECMA-262 regular expression) as a GBNF expression
 * for the *contents* of a JSON string (between its quotes, as JSON text: `"` and `\` come out
 * escaped). json_schema.c embeds it. The subset: literals, `.`, classes `[...]`/`[^...]` with
 * ranges, \d \w \s \D \W \S, groups `(...)`/`(?:...)`, `|`, `* + ? {n} {n,} {n,m}` (lazy forms
 * read alike), and `^`/`$` at the ends (an unanchored pattern may match anywhere in the string:
 * any characters come before or after). Anything else (backreferences, lookaround, \b, flags)
 * is an error, never a looser grammar. Some matches come out tighter, always valid: `.` and
 * negated classes never produce a control character, `"` or `\`; \s is a space, \t, \n, \r or
 * \f. Pure function of its input; thread-safe. */
#ifndef LS_JSON_REGEX_H
#define LS_JSON_REGEX_H

#include <stddef.h>

/* The GBNF expression (caller frees) using the rule `char` of json_schema.c's fixed rules, or
 * NULL with a message in err (naming the offset in the pattern, or "out of memory"). */
char *json_regex_gbnf(const char *pattern, char *err, size_t errlen);

#endif
