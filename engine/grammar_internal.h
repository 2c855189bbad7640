/* grammar_internal: the representation a parsed grammar shares between grammar_parse.c (which
 * builds it) and grammar.c (which matches with it). Not part of the engine's interface. */
#ifndef LS_GRAMMAR_INTERNAL_H
#define LS_GRAMMAR_INTERNAL_H

#include "grammar.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRAM_MAX_ELEMS 200000
/* Groups nested deeper than this are refused: the parser recurses per group (a client's 100 KB
 * of parentheses overflowed the stack), and the matcher's stacks (GRAM_MAX_STACK elements) could
 * not follow them anyway. */
#define GRAM_MAX_NESTING 512
#define GRAM_MAX_STACK 512 /* elements deep one matcher stack may grow (nesting of the text) */
#define GRAM_MAX_REPEAT 10000
#define CP_MAX 0x10FFFFu

enum { E_END = 0, E_CHAR, E_REF };

typedef struct {
    int type;
    int a, n; /* E_CHAR: ranges rng[a .. a+n); E_REF: rule a */
} g_elem;

typedef struct {
    char *name;   /* NULL for a group or repetition made by the parser */
    int alt0;     /* alternatives alt[alt0 .. alt0+n_alt) */
    int n_alt;
    bool defined;
    size_t pos;   /* where it was defined, or first referenced while undefined */
} g_rule;

struct gram_rules {
    g_elem *el;
    int n_el, cap_el;
    uint32_t *rng; /* (n_rng, 2) lo, hi inclusive */
    int n_rng, cap_rng;
    int *alt;      /* element index where each alternative starts */
    int n_alt, cap_alt;
    g_rule *rules;
    int n_rules, cap_rules;
    int root;
};


/* Grows *p (of *cap elements of size bytes) to hold need elements; false when memory is short
 * (*p unchanged). */
bool gram_grow(void **p, int *cap, int need, size_t size);

#endif
