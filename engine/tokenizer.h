/* tokenizer: SentencePiece-style BPE as Llama 2 uses it (score-ordered merges, byte fallback
 * <0xNN>, the dummy-prefix space, BOS/EOS), built from a GGUF vocabulary or a llama2.c
 * tokenizer.bin, and byte-level BPE as GPT-2 and Llama 3 use it (tokenizer_bpe.c: a regex
 * pre-tokenizer, merges by rank). A tokenizer is immutable after creation and safe to share
 * between threads; the incremental decoder (tok_stream) is per sequence. */
#ifndef LS_TOKENIZER_H
#define LS_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

/* SentencePiece piece types (tokenizer.ggml.token_type). */
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5,
       TOK_BYTE = 6 };

/* How text becomes pieces: SentencePiece BPE by score (tokenizer.ggml.model = llama) or
 * byte-level BPE by merge rank after a regex split (gpt2: GPT-2, Llama 3). */
typedef enum { TOK_SPM = 0, TOK_BPE = 1 } tok_kind;

typedef struct {
    int n_vocab;
    const char *const *pieces; /* (n_vocab) piece bytes, not necessarily NUL-terminated */
    const size_t *piece_lens;  /* (n_vocab) */
    const float *scores;       /* (n_vocab) merge priority: higher merges first */
    const int32_t *types;      /* (n_vocab) TOK_*; NULL: inferred (<0xNN> byte, <s> etc. control) */
    int bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
    bool add_bos;              /* whether prompts get BOS by default */
    bool add_dummy_prefix;     /* prepend a space (U+2581) to the text, as SentencePiece does */
    tok_kind kind;             /* TOK_SPM unless set */
    /* TOK_BPE only: the merges "LEFT RIGHT" in rank order and the pre-tokenizer's name
     * (tokenizer.ggml.pre; NULL: "default"). Pieces are in byte-level spelling. */
    const char *const *merges;
    const size_t *merge_lens;
    int n_merges;
    const char *pre;
    size_t pre_len;
    /* End of generation besides eos_id (tokenizer.ggml.eot_token_id, eom_token_id, ...). */
    const int *eog_ids;
    int n_eog;
} tok_vocab;

/* Copies the vocabulary (the arrays may be freed afterwards). NULL with a message on error
 * (pieces that are not UTF-8, duplicate byte pieces, ids out of range...). */
tokenizer *tok_create(const tok_vocab *v, char *err, size_t errlen);
/* Reads a llama2.c tokenizer.bin of n_vocab entries (n_vocab < 0: every entry in the file,
 * which must then end exactly after the last one; with n_vocab >= 0 bytes after entry n_vocab
 * are ignored, as llama2.c does). BOS = 1, EOS = 2, UNK = 0 as llama2.c assumes; types are
 * inferred; add_bos and add_dummy_prefix are true. llama2.c's exporter writes U+2581 as ' '
 * and BOS/EOS as "\n<s>\n"/"\n</s>\n": both are undone, so pieces read as in the
 * SentencePiece model and encoding matches it. Every length is checked against the file. */
tokenizer *tok_load_llama2c(const char *path, int n_vocab, char *err, size_t errlen);
void tok_free(tokenizer *t);

int tok_n_vocab(const tokenizer *t);
int tok_bos(const tokenizer *t);
int tok_eos(const tokenizer *t);
int tok_unk(const tokenizer *t);
bool tok_add_bos(const tokenizer *t);
tok_kind tok_get_kind(const tokenizer *t);
/* Whether id ends generation: EOS, the vocabulary's eot/eom ids, and the control (or
 * user-defined) pieces that end a turn in the common chat formats: <|eot_id|>, <|eom_id|>,
 * <|end_of_text|>, <|im_end|>, <|end|>, <|endoftext|>, <end_of_turn>, <|END_OF_TURN_TOKEN|>. */
bool tok_is_eog(const tokenizer *t, int id);
/* The TOK_* type of id (inferred ones included), 0 for an id out of range. */
int tok_type(const tokenizer *t, int id);
/* The merge score of id (tokenizer.ggml.scores), 0 for an id out of range. */
float tok_score(const tokenizer *t, int id);
/* The id of the piece spelled exactly so (raw form, U+2581 for spaces), or -1. */
int tok_piece_id(const tokenizer *t, const char *piece, size_t len);

/* Encodes len bytes of text as plain text: the spelling of a special piece (<|eot_id|>,
 * <s>...) in the text is never that piece, so user text cannot inject control tokens (chat
 * templates and requests that ask for it use tok_encode_special). Writes at most cap ids; returns the number of ids the full
 * encoding has (which may exceed cap: call again with a bigger buffer), or a negative value on
 * error. add_bos prepends BOS. Text that is not valid UTF-8 is never rejected: as SentencePiece
 * does, each byte that does not belong to a valid character is read as U+FFFD (which then
 * encodes as a piece or through the byte pieces). -1 when the text is over ~700 MB or a symbol
 * has neither a piece, a byte piece nor <unk> to stand for it; TOK_ENOMEM when memory runs
 * out (the caller's fault in the first cases, the server's in the last). Thread-safe. */
#define TOK_ENOMEM (-2)
int tok_encode(const tokenizer *t, const char *text, size_t len, bool add_bos, int32_t *ids,
               int cap);

/* As tok_encode, but the exact spelling of a control or user-defined piece anywhere in the
 * text is that piece (longest match first); the text between them is encoded as tok_encode
 * does. For text from a chat template or a request's parse_special. */
int tok_encode_special(const tokenizer *t, const char *text, size_t len, bool add_bos,
                       int32_t *ids, int cap);

/* The bytes of one token as it appears in decoded text: U+2581 becomes a space, a byte piece
 * <0xNN> becomes that byte, control tokens are empty, <unk> is " \u2047 " as SentencePiece
 * prints it. *len receives the length; an id out of range gives "". */
const char *tok_piece_bytes(const tokenizer *t, int id, char buf[8], size_t *len);
/* The raw piece string (for display, e.g. "<0x0A>" or "\xe2\x96\x81the"). */
const char *tok_piece(const tokenizer *t, int id, size_t *len);

/* Decodes n ids into out (cap bytes, always NUL-terminated when cap > 0). Drops the leading
 * space of the first text piece (control tokens such as BOS before it are ignored), as
 * SentencePiece's decode does; bytes of byte pieces that do not form valid UTF-8 become one
 * U+FFFD each (SentencePiece again). Ids out of range are skipped. Returns the full decoded
 * length (which may exceed cap - 1). The same text as a tok_stream started with
 * strip_leading_space = true. */
size_t tok_decode(const tokenizer *t, const int32_t *ids, int n, char *out, size_t cap);

/* Incremental decoder for streaming: feed ids one at a time, get back only complete UTF-8
 * characters; bytes of a character split across tokens are held until it completes. */
typedef struct {
    const tokenizer *t;
    unsigned char pending[8]; /* bytes of an incomplete UTF-8 character */
    int n_pending;
    bool strip_space;         /* drop the leading space of the next text (the dummy prefix) */
} tok_stream;

/* strip_leading_space: true when the stream starts right after BOS with no prompt text (the
 * first generated piece's space is then the dummy prefix); false to continue a prompt. */
void tok_stream_init(tok_stream *s, const tokenizer *t, bool strip_leading_space);
/* Writes the text completed by token id to out and NUL-terminates it; returns the bytes written.
 * With cap >= tok_stream_cap(t) nothing is ever cut (64 bytes suffice for Llama 2's and the
 * kjv-demo vocabularies); text beyond cap - 1 bytes is lost. Held bytes that can no longer
 * complete a character become one U+FFFD each. Allocates nothing. */
size_t tok_stream_feed(tok_stream *s, int id, char *out, size_t cap);
/* Flushes what is left at the end (each held byte of an incomplete character becomes U+FFFD). */
size_t tok_stream_flush(tok_stream *s, char *out, size_t cap);
/* A buffer size for tok_stream_feed/flush that always holds one token's text. */
size_t tok_stream_cap(const tokenizer *t);

#endif
