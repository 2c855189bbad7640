/* tokenizer_bpe: byte-level BPE as GPT-2 and Llama 3 use it (tokenizer.ggml.model = gpt2): a
 * pre-tokenizer regex splits the text into words, each word's bytes become byte-level
 * characters (GPT-2's bytes_to_unicode), and adjacent symbols merge by merge rank. Internal to
 * the engine: tokenizer.c owns a bpe_model and calls it; nothing else should. Immutable after
 * bpe_create and safe to share between threads. Never reads files, never logs. */
#ifndef LS_TOKENIZER_BPE_H
#define LS_TOKENIZER_BPE_H

#include "tokenizer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bpe_model bpe_model;

/* Builds the merge table from n_merges "LEFT RIGHT" strings over t's pieces (t must be a
 * complete tokenizer apart from its BPE part) and compiles the pre-tokenizer named pre (NULL or
 * "" means "default"). Merges naming pieces the vocabulary lacks are skipped (counted in
 * *n_skipped when not NULL). NULL with a message on error (unknown pre-tokenizer, PCRE2
 * failure, out of memory). */
bpe_model *bpe_create(const tokenizer *t, const char *const *merges, const size_t *merge_lens,
                      int n_merges, const char *pre, size_t pre_len, int *n_skipped, char *err,
                      size_t errlen);
void bpe_free(bpe_model *b);

/* The pre-tokenizer names bpe_create accepts, NULL-terminated (for messages and docs). */
extern const char *const bpe_pre_names[];

/* Appends the ids of len bytes of text (any bytes: invalid UTF-8 is read as U+FFFD per byte)
 * through put(ctx, id). 0, -1 when a byte has no byte-level piece or the regex fails,
 * TOK_ENOMEM when memory runs out. Thread-safe. */
int bpe_encode(const bpe_model *b, const tokenizer *t, const char *text, size_t len,
               void (*put)(void *ctx, int id), void *ctx);

/* The bytes a byte-level piece stands for, written to out (at most len bytes: every byte-level
 * character is at least one byte). Characters outside the byte-level alphabet are copied as
 * their UTF-8 bytes. Returns the byte count. */
size_t bpe_piece_to_bytes(const char *piece, size_t len, char *out);

#endif
