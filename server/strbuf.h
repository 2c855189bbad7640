/* strbuf: a growing NUL-terminated string written with printf formats, for the text the server
 * builds (GBNF grammars from schemas, regexes and tools; tool prompts). An allocation failure
 * sets oom once; later writes are ignored, so a builder checks oom once at the end.
 * No I/O, no threads; the caller owns s and frees it. */
#ifndef LS_STRBUF_H
#define LS_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *s;       /* (cap) the text, NUL-terminated once anything was added; NULL before */
    size_t n, cap; /* bytes of text (the NUL not counted), bytes allocated */
    bool oom;      /* an allocation (or a format) failed: s is incomplete */
} strbuf;

/* Appends the formatted text; nothing once oom is set. */
void strbuf_add(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
