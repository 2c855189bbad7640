/* grammar: constrained decoding with GBNF grammars (llama.cpp's syntax). Three objects:
 *   gram_rules  - a parsed grammar (rules of alternatives of element sequences), immutable and
 *                 shareable between threads;
 *   gram_vocab  - a byte trie over one vocabulary's token strings, immutable and shareable;
 *   gram_state  - where one sequence stands in the grammar (a set of pushdown stacks plus the
 *                 bytes of an incomplete UTF-8 character), owned by one sequence.
 * Matching is per code point; a token that ends inside a UTF-8 character is accepted when some
 * character its bytes begin could continue the parse. No JSON, no I/O; errors are returned with
 * a message, never by exiting. */
#ifndef LS_GRAMMAR_H
#define LS_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gram_rules gram_rules;
typedef struct gram_vocab gram_vocab;
typedef struct gram_state gram_state;

/* Parses GBNF text (len bytes; need not be NUL-terminated). The start rule is `root`. NULL on
 * error with a message naming the line, column and byte offset of the problem (syntax errors,
 * undefined rules, missing root, left recursion, repetition bounds too large, groups nested
 * deeper than 512, a start that nests deeper than the matcher follows). The matcher follows
 * text nested up to 512 stack elements deep: a continuation that would go deeper is not
 * allowed, as a character the grammar does not allow is not. */
gram_rules *gram_parse(const char *text, size_t len, char *err, size_t errlen);
void gram_rules_free(gram_rules *g);
/* Number of rules after desugaring (repetitions and groups become rules of their own). */
int gram_rules_count(const gram_rules *g);

/* Builds the token trie. bytes[i] (lens[i]) is what token i prints; tokens of length 0 (control
 * tokens) are never allowed by a mask; eos_id (or -1) is allowed exactly where the grammar may
 * end. The arrays may be freed afterwards. NULL when memory is short. */
gram_vocab *gram_vocab_create(int n_vocab, const char *const *bytes, const size_t *lens,
                              int eos_id);
/* The same from a tokenizer: each token's decoded bytes (tok_piece_bytes); control and unknown
 * tokens are never allowed; EOS and every end-of-generation token (tok_is_eog: <|eot_id|>,
 * <|im_end|>, ...) are allowed where the grammar may end. */
typedef struct tokenizer tokenizer;
gram_vocab *gram_vocab_from_tokenizer(const tokenizer *t);
void gram_vocab_free(gram_vocab *v);
int gram_vocab_n(const gram_vocab *v);
int gram_vocab_eos(const gram_vocab *v);

/* A fresh state at the start of g's root rule. Both are borrowed and must outlive the state.
 * NULL when memory is short. */
gram_state *gram_state_create(const gram_rules *g, const gram_vocab *v);
void gram_state_free(gram_state *st);

/* Fills mask ((n_vocab + 31) / 32 words, bit i of word i/32 set when token i may follow) and
 * returns the number of allowed tokens. Walks the trie with the state's stacks, pruning a
 * subtree as soon as its prefix cannot continue; recent masks are cached by state. Allocates
 * only while its buffers grow (the first steps). -1 when memory is short. */
int gram_state_mask(gram_state *st, uint32_t *mask);
/* Advances the state by token id (its bytes, or the end for eos). Returns 0, or -1 (the state
 * unchanged) when the token cannot follow. */
int gram_state_accept_token(gram_state *st, int id);
/* Advances by raw bytes; 0 or -1 (state unchanged) as above. */
int gram_state_accept_bytes(gram_state *st, const char *bytes, size_t n);
/* Whether the text so far is a complete sentence of the grammar (EOS may come now). */
bool gram_state_can_end(const gram_state *st);
/* Whether the text is complete and nothing else can follow (generation should stop). */
bool gram_state_done(const gram_state *st);
/* Number of stacks in the state (for tests and diagnostics). */
int gram_state_n_stacks(const gram_state *st);

#endif
