/* tokenizer: SentencePiece BPE as Llama 2 uses it. Owns an immutable copy of the vocabulary (raw
 * pieces, their decoded text, scores, types) and a hash table from piece bytes to id. Encoding
 * allocates one working block per call and nothing per merge; decoding allocates nothing.
 * Never reads files except in tok_load_llama2c, never exits, never logs.
 *
 * What SentencePiece does, checked against python3-sentencepiece on llama2-tokenizer.model and
 * kjv-demo-tokenizer.model (both: identity normalizer, add_dummy_prefix, no
 * remove_extra_whitespaces, byte_fallback), and what this file matches:
 * - ' ' becomes U+2581; U+2581 is prepended to non-empty text. Tabs, newlines stay as they are.
 * - Each byte that does not start a valid UTF-8 character (strictly: no overlongs, surrogates
 *   or code points above U+10FFFF; a truncated sequence counts byte by byte) is replaced by
 *   U+FFFD before the merges, so b"a\xffb" encodes like "a\uFFFDb".
 * - Merges take the adjacent pair with the highest-scoring concatenation, ties to the left.
 *   User-defined pieces are cut out first (longest match) and never merged further.
 * - A final symbol that is not a piece becomes its bytes' <0xNN> pieces, or <unk> when the
 *   vocabulary has no byte pieces (then consecutive <unk>s collapse into one).
 * - Decoding drops the leading U+2581 of the first piece that is not a control piece (a byte
 *   piece or <unk> first means nothing is dropped), turns <unk> into " \u2047 ", and decodes each
 *   run of byte pieces as UTF-8 with one U+FFFD per byte that is not part of a valid character.
 * Unused pieces (none in our vocabularies) are not merge targets here; SentencePiece merges into
 * them and then splits them again, which can differ in contrived vocabularies. */
#include "tokenizer.h"
#include "common.h"
#include "tokenizer_bpe.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_MARK "\xe2\x96\x81"  /* U+2581, SentencePiece's visible space */
#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */
#define UNK_TEXT " \xe2\x81\x87 "  /* what SentencePiece prints for <unk> */

/* One slot of the piece table: the piece's hash is kept beside its id so that a probe rarely
 * has to touch the piece bytes. */
typedef struct {
    uint32_t hash;
    int32_t id; /* -1: empty */
} tok_slot;

struct tokenizer {
    int n_vocab;
    char *raw;            /* all raw pieces, each NUL-terminated */
    size_t *raw_off;      /* (n_vocab + 1) offsets into raw */
    char *text;           /* all decoded texts (U+2581 -> ' ', <unk> -> UNK_TEXT, control -> "") */
    size_t *text_off;     /* (n_vocab + 1) offsets into text */
    float *scores;        /* (n_vocab) */
    unsigned char *types; /* (n_vocab) TOK_* */
    tok_slot *slots;      /* (n_slots) open-addressing table, linear probing */
    size_t n_slots;       /* a power of two, at least 2 * n_vocab */
    int byte_id[256];     /* id of <0xNN>, -1 when absent */
    bool has_bytes;       /* any byte piece: byte fallback instead of <unk> */
    size_t max_user_len;  /* longest user-defined piece, 0 when there are none */
    size_t max_text_len;  /* longest decoded text of one piece */
    int bos_id, eos_id, unk_id, pad_id;
    bool add_bos, add_dummy_prefix;
    tok_kind kind;
    bpe_model *bpe;          /* TOK_BPE: merges and pre-tokenizer; NULL for TOK_SPM */
    unsigned char *eog;      /* (n_vocab) 1: the id ends generation */
    size_t max_special_len;  /* longest control or user-defined piece (tok_encode_special) */
    bool special_first[256]; /* whether some such piece starts with this byte */
};

/* Pieces that end a turn in the common chat formats (tok_is_eog), when control or
 * user-defined. */
static const char *const eog_pieces[] = {
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<|END_OF_TURN_TOKEN|>",
    "<｜end▁of▁sentence｜>",
};

/* ---- UTF-8 ---- */

/* The strict UTF-8 status of the bytes s[0..n): the length (1..4) of the valid character they
 * start with, 0 when s[0] cannot start one, or -1 when they are a valid but incomplete prefix. */
static int utf8_check(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90; /* overlong */
        if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else
        return 0;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return -1;
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (s[i] < lo_i || s[i] > hi_i) return 0;
    }
    return need;
}

/* ---- piece lookup ---- */

static inline const char *raw_of(const tokenizer *t, int id, size_t *len) {
    *len = t->raw_off[id + 1] - t->raw_off[id] - 1;
    return t->raw + t->raw_off[id];
}

/* The id of the piece with exactly these bytes, or -1. */
static int lookup(const tokenizer *t, const char *s, size_t n) {
    size_t mask = t->n_slots - 1;
    uint32_t h = ls_hash_bytes(s, n);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        int32_t id = t->slots[i].id;
        if (id < 0) return -1;
        if (t->slots[i].hash != h) continue;
        size_t len;
        const char *p = raw_of(t, id, &len);
        if (len == n && memcmp(p, s, n) == 0) return id;
    }
}

int tok_piece_id(const tokenizer *t, const char *piece, size_t len) {
    return lookup(t, piece, len);
}

/* "<0xNN>" with upper-case hex, as SentencePiece spells byte pieces: the byte, or -1. */
static int parse_byte_piece(const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *a = memchr(hex, s[3], 16), *b = memchr(hex, s[4], 16);
    if (!a || !b || !s[3] || !s[4]) return -1;
    return (int)((a - hex) * 16 + (b - hex));
}

/* The byte a TOK_BYTE piece stands for. */
static int byte_of(const tokenizer *t, int id) {
    size_t n;
    const char *p = raw_of(t, id, &n);
    return parse_byte_piece(p, n);
}

/* ---- creation ---- */

void tok_free(tokenizer *t) {
    if (!t) return;
    free(t->raw);
    free(t->raw_off);
    free(t->text);
    free(t->text_off);
    free(t->scores);
    free(t->types);
    free(t->slots);
    free(t->eog);
    bpe_free(t->bpe);
    free(t);
}

static bool id_ok(int id, int n) {
    return id >= -1 && id < n;
}

/* Checks what tok_create is given: counts, special ids, every piece (present, UTF-8, a score,
 * a known type). Sets *raw_total to the bytes of all pieces with their NULs. */
static int check_vocab(const tok_vocab *v, size_t *raw_total, char *err, size_t errlen) {
    int n = v ? v->n_vocab : 0;
    if (!v || n <= 0 || !v->pieces || !v->piece_lens || !v->scores)
        return ls_fail(err, errlen, "tokenizer: empty or incomplete vocabulary");
    if (n > INT32_MAX / 4)
        return ls_fail(err, errlen, "tokenizer: vocabulary of %d pieces is too large", n);
    if (!id_ok(v->bos_id, n) || !id_ok(v->eos_id, n) || !id_ok(v->unk_id, n) ||
        !id_ok(v->pad_id, n))
        return ls_fail(err, errlen, "tokenizer: special token id out of range (vocabulary of %d)",
                       n);
    *raw_total = 0;
    for (int i = 0; i < n; i++) {
        if (!v->pieces[i] && v->piece_lens[i])
            return ls_fail(err, errlen, "tokenizer: piece %d is missing", i);
        if (ls_add_size(*raw_total, v->piece_lens[i], raw_total) ||
            ls_add_size(*raw_total, 1, raw_total))
            return ls_fail(err, errlen, "tokenizer: vocabulary too large");
        if (!ls_utf8_valid(v->pieces[i], v->piece_lens[i]))
            return ls_fail(err, errlen, "tokenizer: piece %d is not valid UTF-8", i);
        if (isnan(v->scores[i]))
            return ls_fail(err, errlen, "tokenizer: piece %d has a NaN score", i);
        if (v->types && (v->types[i] < TOK_NORMAL || v->types[i] > TOK_BYTE))
            return ls_fail(err, errlen, "tokenizer: piece %d has unknown type %d", i,
                           (int)v->types[i]);
    }
    return 0;
}

/* A tokenizer for v's n pieces with every table allocated (raw_total bytes of pieces), the hash
 * slots empty and the special ids copied; NULL when out of memory. */
static tokenizer *alloc_tokenizer(const tok_vocab *v, size_t raw_total) {
    const int n = v->n_vocab;
    size_t text_cap = raw_total + sizeof UNK_TEXT, n_slots = 16;
    while (n_slots < 2 * (size_t)n)
        n_slots *= 2;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n_vocab = n;
    t->raw = malloc(raw_total ? raw_total : 1);
    t->raw_off = malloc(((size_t)n + 1) * sizeof *t->raw_off);
    t->text = malloc(text_cap);
    t->text_off = malloc(((size_t)n + 1) * sizeof *t->text_off);
    t->scores = malloc((size_t)n * sizeof *t->scores);
    t->types = malloc((size_t)n);
    t->slots = malloc(n_slots * sizeof *t->slots);
    t->eog = calloc((size_t)n, 1);
    if (!t->raw || !t->raw_off || !t->text || !t->text_off || !t->scores || !t->types ||
        !t->slots || !t->eog) {
        tok_free(t);
        return NULL;
    }
    t->kind = v->kind;
    t->n_slots = n_slots;
    for (size_t k = 0; k < n_slots; k++)
        t->slots[k] = (tok_slot){.hash = 0, .id = -1};
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    t->bos_id = v->bos_id;
    t->eos_id = v->eos_id;
    t->unk_id = v->unk_id;
    t->pad_id = v->pad_id;
    t->add_bos = v->add_bos;
    t->add_dummy_prefix = v->add_dummy_prefix;
    return t;
}

/* Piece i's type: the vocabulary's own, else guessed from the special ids and the <0xNN> form
 * (byte >= 0) as llama2.c vocabularies need. */
static int piece_type(const tok_vocab *v, int i, int byte) {
    if (v->types) return v->types[i];
    if (i == v->unk_id) return TOK_UNKNOWN;
    if (i == v->bos_id || i == v->eos_id || i == v->pad_id) return TOK_CONTROL;
    return byte >= 0 ? TOK_BYTE : TOK_NORMAL;
}

/* Appends piece p (len bytes) of the given type as decoded text at t->text + *toff. Byte pieces
 * are handled byte by byte when decoding, so their text here is empty; control pieces print
 * nothing. */
static void add_piece_text(tokenizer *t, int type, const char *p, size_t len, size_t *toff) {
    if (type == TOK_UNKNOWN && t->kind == TOK_SPM) {
        memcpy(t->text + *toff, UNK_TEXT, sizeof UNK_TEXT - 1);
        *toff += sizeof UNK_TEXT - 1;
    } else if (t->kind == TOK_BPE) {
        if (type != TOK_CONTROL) *toff += bpe_piece_to_bytes(p, len, t->text + *toff);
    } else if (type != TOK_CONTROL && type != TOK_BYTE) {
        for (size_t j = 0; j < len;) {
            if (len - j >= 3 && memcmp(p + j, SPACE_MARK, 3) == 0) {
                t->text[(*toff)++] = ' ';
                j += 3;
            } else {
                t->text[(*toff)++] = p[j++];
            }
        }
    }
}

/* Piece i into the lookup table. A duplicate piece keeps its first id, as the later one could
 * never be produced. */
static void hash_insert(tokenizer *t, int i, const char *p, size_t len) {
    uint32_t h = ls_hash_bytes(p, len);
    for (size_t mask = t->n_slots - 1, k = h & mask;; k = (k + 1) & mask) {
        int32_t other = t->slots[k].id;
        if (other < 0) {
            t->slots[k] = (tok_slot){.hash = h, .id = i};
            return;
        }
        size_t olen;
        const char *op = raw_of(t, other, &olen);
        if (olen == len && memcmp(op, p, len) == 0) return;
    }
}

/* Piece i of v into every table of t (raw and text at *roff and *toff, which it advances), and
 * into the byte and special-piece summaries. -1 with a message on a bad byte piece. */
static int add_piece(tokenizer *t, const tok_vocab *v, int i, size_t *roff, size_t *toff,
                     char *err, size_t errlen) {
    const char *p = v->pieces[i];
    size_t len = v->piece_lens[i];
    int byte = parse_byte_piece(p, len);
    int type = piece_type(v, i, byte);
    t->types[i] = (unsigned char)type;
    t->scores[i] = v->scores[i] + 0.0f; /* -0.0 -> +0.0: they tie, as in SentencePiece */

    t->raw_off[i] = *roff;
    if (len) memcpy(t->raw + *roff, p, len);
    t->raw[*roff + len] = '\0';
    *roff += len + 1;

    t->text_off[i] = *toff;
    add_piece_text(t, type, p, len, toff);
    size_t tlen = *toff - t->text_off[i];
    if (tlen > t->max_text_len) t->max_text_len = tlen;

    if (type == TOK_BYTE) {
        if (byte < 0)
            return ls_fail(err, errlen, "tokenizer: byte piece %d is not of the form <0xNN>", i);
        if (t->byte_id[byte] >= 0)
            return ls_fail(err, errlen, "tokenizer: byte piece <0x%02X> appears twice (%d, %d)",
                           byte, t->byte_id[byte], i);
        t->byte_id[byte] = i;
        t->has_bytes = true;
    }
    if (type == TOK_USER_DEFINED && len > t->max_user_len) t->max_user_len = len;
    if ((type == TOK_USER_DEFINED || type == TOK_CONTROL) && len >= 2) {
        if (len > t->max_special_len) t->max_special_len = len;
        t->special_first[(unsigned char)p[0]] = true;
    }
    hash_insert(t, i, p, len);
    return 0;
}

/* The end-of-generation ids: EOS, the vocabulary's list, and the known end-of-turn pieces
 * where they are special. */
static void mark_eog(tokenizer *t, const tok_vocab *v) {
    if (t->eos_id >= 0) t->eog[t->eos_id] = 1;
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog_ids && v->eog_ids[i] >= 0 && v->eog_ids[i] < t->n_vocab)
            t->eog[v->eog_ids[i]] = 1;
    for (size_t k = 0; k < sizeof eog_pieces / sizeof eog_pieces[0]; k++) {
        int id = lookup(t, eog_pieces[k], strlen(eog_pieces[k]));
        if (id >= 0 && (t->types[id] == TOK_CONTROL || t->types[id] == TOK_USER_DEFINED))
            t->eog[id] = 1;
    }
}

tokenizer *tok_create(const tok_vocab *v, char *err, size_t errlen) {
    size_t raw_total;
    if (check_vocab(v, &raw_total, err, errlen) != 0) return NULL;
    tokenizer *t = alloc_tokenizer(v, raw_total);
    if (!t) {
        ls_fail(err, errlen, "tokenizer: out of memory");
        return NULL;
    }
    size_t roff = 0, toff = 0;
    for (int i = 0; i < v->n_vocab; i++)
        if (add_piece(t, v, i, &roff, &toff, err, errlen) != 0) goto fail;
    t->raw_off[v->n_vocab] = roff;
    t->text_off[v->n_vocab] = toff;
    mark_eog(t, v);
    if (t->kind == TOK_BPE) {
        if ((!v->merges || !v->merge_lens) && v->n_merges > 0) {
            ls_fail(err, errlen, "tokenizer: merges missing");
            goto fail;
        }
        t->bpe = bpe_create(t, v->merges, v->merge_lens, v->n_merges, v->pre, v->pre_len, NULL, err,
                            errlen);
        if (!t->bpe) goto fail;
    }
    return t;
fail:
    tok_free(t);
    return NULL;
}

/* ---- accessors ---- */

int tok_n_vocab(const tokenizer *t) {
    return t->n_vocab;
}
int tok_bos(const tokenizer *t) {
    return t->bos_id;
}
int tok_eos(const tokenizer *t) {
    return t->eos_id;
}
int tok_unk(const tokenizer *t) {
    return t->unk_id;
}
bool tok_add_bos(const tokenizer *t) {
    return t->add_bos;
}
tok_kind tok_get_kind(const tokenizer *t) {
    return t->kind;
}
bool tok_is_eog(const tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}
int tok_type(const tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab ? t->types[id] : 0;
}
float tok_score(const tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab ? t->scores[id] : 0.0f;
}
size_t tok_stream_cap(const tokenizer *t) {
    /* a piece's text, U+FFFD for up to 3 held bytes, a 4-byte character and the NUL; a
     * byte-level piece's bytes may each become U+FFFD */
    if (t->kind == TOK_BPE) return 3 * (t->max_text_len + 3) + 4 + 1;
    return t->max_text_len + 3 * 3 + 4 + 1;
}

const char *tok_piece(const tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return "";
    }
    return raw_of(t, id, len);
}

const char *tok_piece_bytes(const tokenizer *t, int id, char buf[8], size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return "";
    }
    if (t->types[id] == TOK_BYTE) {
        buf[0] = (char)byte_of(t, id);
        buf[1] = '\0';
        *len = 1;
        return buf;
    }
    *len = t->text_off[id + 1] - t->text_off[id];
    return t->text + t->text_off[id];
}

/* ---- encoding ---- */

/* One symbol of the text being merged: a byte range of the normalized text, linked to its
 * live neighbours. A symbol absorbed into its left neighbour gets len 0 and is never reused. */
typedef struct {
    int32_t start, len;
    int32_t prev, next; /* -1 at the ends */
} tok_sym;

/* A candidate merge of symbol left with its right neighbour. key orders candidates as
 * SentencePiece does, higher score first and then the leftmost, packed into one integer so the
 * heap compares without branches: the score made order-preserving in the high half, ~left in
 * the low half. len is the pair's combined length when queued: every merge makes some symbol
 * longer, so the candidate is stale exactly when the pair's current combined length differs. */
typedef struct {
    uint64_t key;
    int32_t len;
} tok_pair;

static inline uint64_t pair_key(float score, int32_t left) {
    uint32_t bits;
    memcpy(&bits, &score, 4);
    bits = bits & 0x80000000u ? ~bits : bits | 0x80000000u; /* -0.0 was made +0.0 at creation */
    return (uint64_t)bits << 32 | (uint32_t) ~(uint32_t)left;
}

static inline int32_t pair_left(const tok_pair *p) {
    return (int32_t) ~(uint32_t)p->key;
}

/* A binary max-heap on key. */
static void heap_push(tok_pair *h, size_t *n, tok_pair p) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (h[up].key >= p.key) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = p;
}

static tok_pair heap_pop(tok_pair *h, size_t *n) {
    tok_pair top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        c += c + 1 < m && h[c + 1].key > h[c].key;
        if (h[c].key <= last.key) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

static inline bool mergeable(const tokenizer *t, int id) {
    return id >= 0 && (t->types[id] == TOK_NORMAL || t->types[id] == TOK_USER_DEFINED);
}

/* Queues the merge of symbol l with its right neighbour when their concatenation is a piece. */
static void try_pair(const tokenizer *t, const char *norm, const tok_sym *sym,
                     const unsigned char *frozen, int32_t l, tok_pair *heap, size_t *n_heap) {
    if (l < 0) return;
    int32_t r = sym[l].next;
    if (r < 0 || frozen[l] || frozen[r]) return;
    int32_t len = sym[l].len + sym[r].len;
    int id = lookup(t, norm + sym[l].start, (size_t)len);
    if (!mergeable(t, id)) return;
    heap_push(heap, n_heap, (tok_pair){.key = pair_key(t->scores[id], l), .len = len});
}

typedef struct {
    int32_t *ids;
    int cap;
    long n;
    bool last_unk; /* the last id came from an unknown symbol (for collapsing <unk> runs) */
} id_out;

static inline void put_id(id_out *o, int id) {
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

static void put_id_cb(void *ctx, int id) {
    put_id(ctx, id);
}

/* SentencePiece step 1: text (len) normalized into norm (<= 3 bytes per input byte + 3):
 * spaces to U+2581, the dummy prefix, invalid bytes to U+FFFD. Returns norm's length. */
static size_t spm_normalize(const tokenizer *t, const char *text, size_t len, char *norm) {
    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0;
    if (t->add_dummy_prefix) {
        memcpy(norm, SPACE_MARK, 3);
        pos = 3;
    }
    for (size_t i = 0; i < len;) {
        int c = utf8_check(s + i, len - i);
        if (c <= 0) {
            memcpy(norm + pos, REPLACEMENT, 3);
            pos += 3;
            i++;
        } else if (s[i] == ' ') {
            memcpy(norm + pos, SPACE_MARK, 3);
            pos += 3;
            i++;
        } else {
            memcpy(norm + pos, s + i, (size_t)c);
            pos += (size_t)c;
            i += (size_t)c;
        }
    }
    return pos;
}

/* Step 2: norm (pos bytes) split into characters, user-defined pieces (longest first) as
 * frozen single symbols, linked in order in sym. Returns the symbol count. */
static int32_t spm_split(const tokenizer *t, const char *norm, size_t pos, tok_sym *sym,
                         unsigned char *frozen) {
    int32_t n_sym = 0;
    for (size_t p = 0; p < pos;) {
        size_t l = 0;
        bool fz = false;
        for (size_t m = t->max_user_len < pos - p ? t->max_user_len : pos - p; m > 0; m--) {
            int id = lookup(t, norm + p, m);
            if (id >= 0 && t->types[id] == TOK_USER_DEFINED) {
                l = m;
                fz = true;
                break;
            }
        }
        if (!l) l = (size_t)utf8_check((const unsigned char *)norm + p, pos - p);
        sym[n_sym] =
            (tok_sym){.start = (int32_t)p, .len = (int32_t)l, .prev = n_sym - 1, .next = -1};
        if (n_sym > 0) sym[n_sym - 1].next = n_sym;
        frozen[n_sym] = fz;
        n_sym++;
        p += l;
    }
    return n_sym;
}

/* Step 3: merge the best pair until no adjacent pair forms a piece (heap: room for 3 * n_sym
 * candidates). */
static void spm_merge(const tokenizer *t, const char *norm, tok_sym *sym,
                      const unsigned char *frozen, int32_t n_sym, tok_pair *heap) {
    size_t n_heap = 0;
    for (int32_t i = 0; i + 1 < n_sym; i++)
        try_pair(t, norm, sym, frozen, i, heap, &n_heap);
    while (n_heap > 0) {
        tok_pair best = heap_pop(heap, &n_heap);
        int32_t l = pair_left(&best), r = sym[l].next;
        if (sym[l].len == 0 || r < 0 || sym[l].len + sym[r].len != best.len) continue;
        sym[l].len += sym[r].len;
        sym[r].len = 0;
        sym[l].next = sym[r].next;
        if (sym[l].next >= 0) sym[sym[l].next].prev = l;
        try_pair(t, norm, sym, frozen, sym[l].prev, heap, &n_heap);
        try_pair(t, norm, sym, frozen, l, heap, &n_heap);
    }
}

/* Step 4: the ids of the merged symbols into o: pieces as they are, anything else through the
 * byte pieces (or <unk>). -1 when nothing can stand for some text. */
static int spm_emit(const tokenizer *t, const char *norm, const tok_sym *sym, int32_t n_sym,
                    id_out *o) {
    int rc = 0;
    for (int32_t i = n_sym > 0 ? 0 : -1; i >= 0; i = sym[i].next) {
        const char *p = norm + sym[i].start;
        int id = lookup(t, p, (size_t)sym[i].len);
        int type = id >= 0 ? t->types[id] : 0;
        if (type == TOK_NORMAL || type == TOK_USER_DEFINED || type == TOK_UNUSED) {
            put_id(o, id);
            o->last_unk = false;
        } else if (t->has_bytes) {
            for (int32_t j = 0; j < sym[i].len; j++) {
                int b = t->byte_id[(unsigned char)p[j]];
                if (b < 0) b = t->unk_id;
                if (b < 0) rc = -1;
                put_id(o, b);
            }
        } else if (t->unk_id >= 0) {
            if (!o->last_unk) put_id(o, t->unk_id);
            o->last_unk = true;
        } else {
            rc = -1; /* nothing can stand for this text */
        }
    }
    return rc;
}

int tok_encode(const tokenizer *t, const char *text, size_t len, bool add_bos, int32_t *ids,
               int cap) {
    id_out o = {.ids = ids, .cap = ids ? cap : 0};
    if (add_bos && t->bos_id >= 0) put_id(&o, t->bos_id);
    if (len == 0) return (int)o.n;
    if (!text) return -1;
    if (t->kind == TOK_BPE) {
        int rc = bpe_encode(t->bpe, t, text, len, put_id_cb, &o);
        if (rc < 0) return rc;
        return o.n > INT_MAX ? -1 : (int)o.n;
    }
    if (!text || len > (size_t)(INT32_MAX - 8) / 3) return -1;

    /* One block: symbols (<= len + 1), candidate heap (each merge queues at most two, so
     * <= 3 * symbols), frozen flags, and the normalized text (<= 3 bytes per input byte). */
    size_t n_max = len + 1, norm_cap = 3 * len + 3, bytes;
    if (ls_mul_size(n_max, sizeof(tok_sym) + 3 * sizeof(tok_pair) + 1, &bytes) ||
        ls_add_size(bytes, norm_cap, &bytes))
        return -1;
    char *block = malloc(bytes);
    if (!block) return TOK_ENOMEM;
    tok_sym *sym = (tok_sym *)block;
    tok_pair *heap = (tok_pair *)(sym + n_max);
    unsigned char *frozen = (unsigned char *)(heap + 3 * n_max);
    char *norm = (char *)frozen + n_max;

    const size_t n_norm = spm_normalize(t, text, len, norm);
    const int32_t n_sym = spm_split(t, norm, n_norm, sym, frozen);
    spm_merge(t, norm, sym, frozen, n_sym, heap);
    int rc = spm_emit(t, norm, sym, n_sym, &o);
    free(block);
    if (rc < 0 || o.n > INT_MAX) return -1;
    return (int)o.n;
}

/* The special piece (control or user-defined, two bytes or more) spelled at s, longest
 * first: its id, with *n its length; -1 when none starts here. */
static int special_at(const tokenizer *t, const char *s, size_t left, size_t *n) {
    size_t m = t->max_special_len < left ? t->max_special_len : left;
    if (!t->special_first[(unsigned char)s[0]]) return -1;
    for (; m >= 2; m--) {
        int id = lookup(t, s, m);
        if (id >= 0 && (t->types[id] == TOK_CONTROL || t->types[id] == TOK_USER_DEFINED)) {
            *n = m;
            return id;
        }
    }
    return -1;
}

int tok_encode_special(const tokenizer *t, const char *text, size_t len, bool add_bos, int32_t *ids,
                       int cap) {
    long n = 0;
    if (add_bos && t->bos_id >= 0) {
        if (ids && n < cap) ids[n] = t->bos_id;
        n++;
    }
    if (len && !text) return -1;
    size_t seg = 0; /* start of the plain text not yet encoded */
    for (size_t i = 0; i <= len;) {
        size_t m = 0;
        int id = i < len ? special_at(t, text + i, len - i, &m) : -1;
        if (id < 0 && i < len) {
            i++;
            continue;
        }
        if (i > seg) { /* the plain text before this special piece (or the end) */
            int room = ids && n < cap ? cap - (int)n : 0;
            int k = tok_encode(t, text + seg, i - seg, false, room ? ids + n : NULL, room);
            if (k < 0) return k;
            n += k;
        }
        if (id < 0) break; /* the end */
        if (ids && n < cap) ids[n] = id;
        n++;
        i += m;
        seg = i;
    }
    return n > INT_MAX ? -1 : (int)n;
}

/* ---- decoding ---- */

/* Bytes written into a caller's buffer: what does not fit is counted but dropped, and the
 * buffer stays NUL-terminated. */
typedef struct {
    char *out;
    size_t cap, n;
} text_out;

static void put_text(text_out *o, const void *p, size_t n) {
    if (o->cap > 0 && o->n < o->cap - 1) {
        size_t room = o->cap - 1 - o->n, k = n < room ? n : room;
        memcpy(o->out + o->n, p, k);
        o->out[o->n + k] = '\0';
    }
    o->n += n;
}

/* Emits the held bytes that are settled: whole characters as they are, one U+FFFD for each
 * byte that cannot begin a valid character. With at_end, an incomplete tail counts as invalid
 * (nothing more can complete it). */
static void drain_pending(tok_stream *s, text_out *o, bool at_end) {
    int i = 0;
    while (i < s->n_pending) {
        int c = utf8_check(s->pending + i, (size_t)(s->n_pending - i));
        if (c < 0 && !at_end) break;
        if (c > 0) {
            put_text(o, s->pending + i, (size_t)c);
            i += c;
        } else {
            put_text(o, REPLACEMENT, 3);
            i++;
        }
    }
    memmove(s->pending, s->pending + i, (size_t)(s->n_pending - i));
    s->n_pending -= i;
}

static void stream_feed(tok_stream *s, int id, text_out *o) {
    const tokenizer *t = s->t;
    if (id < 0 || id >= t->n_vocab || t->types[id] == TOK_CONTROL) return;
    if (t->kind == TOK_BPE) {
        /* a byte-level piece is any bytes: hold them until they complete characters */
        const unsigned char *p = (const unsigned char *)t->text + t->text_off[id];
        size_t n = t->text_off[id + 1] - t->text_off[id];
        for (size_t i = 0; i < n; i++) {
            s->pending[s->n_pending++] = p[i];
            drain_pending(s, o, false);
        }
        return;
    }
    if (t->types[id] == TOK_BYTE) {
        s->pending[s->n_pending++] = (unsigned char)byte_of(t, id);
        s->strip_space = false;
        drain_pending(s, o, false);
        return;
    }
    /* A text piece is valid UTF-8 and so starts with a lead byte: held bytes can no longer
     * complete. */
    drain_pending(s, o, true);
    const char *p = t->text + t->text_off[id];
    size_t n = t->text_off[id + 1] - t->text_off[id], rn;
    const char *raw = raw_of(t, id, &rn);
    if (s->strip_space && rn >= 3 && memcmp(raw, SPACE_MARK, 3) == 0) {
        p++;
        n--;
    }
    s->strip_space = false;
    put_text(o, p, n);
}

void tok_stream_init(tok_stream *s, const tokenizer *t, bool strip_leading_space) {
    memset(s, 0, sizeof *s);
    s->t = t;
    s->strip_space = strip_leading_space;
}

size_t tok_stream_feed(tok_stream *s, int id, char *out, size_t cap) {
    text_out o = {.out = out, .cap = cap};
    if (cap > 0) out[0] = '\0';
    stream_feed(s, id, &o);
    return o.n < cap ? o.n : (cap ? cap - 1 : 0);
}

size_t tok_stream_flush(tok_stream *s, char *out, size_t cap) {
    text_out o = {.out = out, .cap = cap};
    if (cap > 0) out[0] = '\0';
    drain_pending(s, &o, true);
    return o.n < cap ? o.n : (cap ? cap - 1 : 0);
}

size_t tok_decode(const tokenizer *t, const int32_t *ids, int n, char *out, size_t cap) {
    text_out o = {.out = out, .cap = cap};
    if (cap > 0) out[0] = '\0';
    tok_stream s;
    tok_stream_init(&s, t, true);
    for (int i = 0; i < n; i++)
        stream_feed(&s, ids[i], &o);
    drain_pending(&s, &o, true);
    return o.n;
}

/* ---- llama2.c tokenizer.bin ---- */

/* The file is int32 max_token_length, then per token float32 score, int32 length and the
 * piece bytes. llama2.c's exporter writes U+2581 as ' ' and BOS/EOS as "\n<s>\n" and
 * "\n</s>\n"; both are undone here so that pieces read as the SentencePiece model spells them
 * and encoding matches it. */
/* tokenizer.bin at path, whole, into *data (caller frees) and *size. */
static int read_tokenizer_bin(const char *path, unsigned char **data, size_t *size, char *err,
                              size_t errlen) {
    long n = 0;
    int rc = -1;
    FILE *f = fopen(path, "rb");
    if (!f) return ls_fail(err, errlen, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        ls_fail(err, errlen, "%s: cannot determine the file size", path);
        goto done;
    }
    if (n < 4 || n > (1L << 30)) {
        /* the largest real vocabularies (~250k pieces) take a few MB */
        ls_fail(err, errlen, "%s: %ld bytes is not the size of a tokenizer.bin", path, n);
        goto done;
    }
    *data = malloc((size_t)n);
    if (!*data || fread(*data, 1, (size_t)n, f) != (size_t)n) {
        ls_fail(err, errlen, "%s: cannot read %ld bytes", path, n);
        goto done;
    }
    *size = (size_t)n;
    rc = 0;
done:
    fclose(f);
    return rc;
}

/* First pass over tokenizer.bin's entries (data, size): each checked against the file size;
 * *count entries (n_vocab of them when n_vocab >= 0), *text_total the bytes their pieces may
 * take once converted. */
static int count_llama2c_entries(const char *path, const unsigned char *data, size_t size,
                                 int n_vocab, size_t *count, size_t *text_total, char *err,
                                 size_t errlen) {
    int32_t max_len;
    memcpy(&max_len, data, 4);
    if (max_len <= 0)
        return ls_fail(err, errlen, "%s: bad max_token_length %d", path, (int)max_len);
    size_t off = 4;
    *count = 0;
    *text_total = 0;
    while (off < size && (n_vocab < 0 || *count < (size_t)n_vocab)) {
        int32_t len;
        if (size - off < 8) return ls_fail(err, errlen, "%s: entry %zu is truncated", path, *count);
        memcpy(&len, data + off + 4, 4);
        if (len < 0 || (size_t)len > size - off - 8)
            return ls_fail(err, errlen, "%s: entry %zu has length %d past the end of the file",
                           path, *count, (int)len);
        off += 8 + (size_t)len;
        *text_total += 3 * (size_t)len; /* ' ' may grow into U+2581 */
        if (++*count > INT32_MAX / 4) return ls_fail(err, errlen, "%s: too many entries", path);
    }
    if (*count == 0 || (n_vocab >= 0 && *count < (size_t)n_vocab))
        return ls_fail(err, errlen, "%s: has %zu entries, expected %d", path, *count, n_vocab);
    return 0;
}

/* Entry i's piece p (len bytes) as the tokenizer stores it, at out: llama2.c's "\n<s>\n" and
 * "\n</s>\n" as <s> and </s>, spaces as U+2581. Returns the bytes written (<= 3 * len). */
static size_t llama2c_piece(char *out, size_t i, const unsigned char *p, int32_t len) {
    if (i == 1 && len == 5 && memcmp(p, "\n<s>\n", 5) == 0) {
        memcpy(out, "<s>", 3);
        return 3;
    }
    if (i == 2 && len == 6 && memcmp(p, "\n</s>\n", 6) == 0) {
        memcpy(out, "</s>", 4);
        return 4;
    }
    size_t n = 0;
    for (int32_t j = 0; j < len; j++) {
        if (p[j] == ' ') {
            memcpy(out + n, SPACE_MARK, 3);
            n += 3;
        } else {
            out[n++] = (char)p[j];
        }
    }
    return n;
}

tokenizer *tok_load_llama2c(const char *path, int n_vocab, char *err, size_t errlen) {
    tokenizer *t = NULL;
    unsigned char *data = NULL;
    char *blob = NULL;
    const char **pieces = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    size_t size = 0, count = 0, text_total = 0;
    if (read_tokenizer_bin(path, &data, &size, err, errlen) ||
        count_llama2c_entries(path, data, size, n_vocab, &count, &text_total, err, errlen))
        goto done;
    pieces = malloc(count * sizeof *pieces);
    lens = malloc(count * sizeof *lens);
    scores = malloc(count * sizeof *scores);
    blob = malloc(text_total + 1);
    if (!pieces || !lens || !scores || !blob) {
        ls_fail(err, errlen, "%s: out of memory", path);
        goto done;
    }
    size_t off = 4, boff = 0;
    for (size_t i = 0; i < count; i++) {
        int32_t len;
        memcpy(&scores[i], data + off, 4);
        memcpy(&len, data + off + 4, 4);
        pieces[i] = blob + boff;
        lens[i] = llama2c_piece(blob + boff, i, data + off + 8, len);
        boff += lens[i];
        off += 8 + (size_t)len;
    }
    tok_vocab v = {.n_vocab = (int)count,
                   .pieces = pieces,
                   .piece_lens = lens,
                   .scores = scores,
                   .types = NULL,
                   .bos_id = count > 1 ? 1 : -1,
                   .eos_id = count > 2 ? 2 : -1,
                   .unk_id = 0,
                   .pad_id = -1,
                   .add_bos = true,
                   .add_dummy_prefix = true};
    char why[LS_ERR_LEN];
    t = tok_create(&v, why, sizeof why);
    if (!t) ls_fail(err, errlen, "%s: %s", path, why);
done:
    free(data);
    free(blob);
    free(pieces);
    free(lens);
    free(scores);
    return t;
}
