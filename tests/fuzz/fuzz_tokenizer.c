/* fuzz_tokenizer: tok_encode and the incremental decoder (tok_stream_*) of engine/tokenizer.c
 * with real vocabularies: Llama 2's (llama2-vocab.gguf) and the kjv-demo one
 * (kjv-demo-tokenizer.bin), loaded once. The first input byte picks the vocabulary and add_bos; the
 * rest is encoded as text, and read again as token ids (two bytes each, some out of range) to
 * decode. Properties: ids are in range; valid UTF-8 text decodes back to itself exactly (both
 * vocabularies have a byte piece for every byte), but for U+2581, SentencePiece's space mark, which
 * comes back as a space; decoding gives valid UTF-8; feeding ids one at a time to a tok_stream
 * (buffers of tok_stream_cap) gives exactly tok_decode's text; a short buffer gets a prefix of it
 * and the full length. */
#include "fuzz.h"

#include "common.h"
#include "model.h"
#include "tokenizer.h"

#include <string.h>

static tokenizer *vocabs[2]; /* Llama 2, kjv-demo */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *files[2] = {"llama2-vocab.gguf", "kjv-demo-tokenizer.bin"};
    for (int i = 0; i < 2; i++) {
        char path[4096], err[512];
        snprintf(path, sizeof path, "%s/%s", fuzz_models_dir(), files[i]);
        vocabs[i] = model_load_tokenizer(path, err, sizeof err);
        if (!vocabs[i]) {
            fprintf(stderr, "fuzz_tokenizer: %s (skipped)\n", err);
            exit(FUZZ_SKIP);
        }
    }
    return 0;
}

/* tok_decode's text of ids, checked against the stream and a short buffer. Caller frees. */
static char *decode_checked(const tokenizer *t, const int32_t *ids, int n, size_t *len) {
    size_t full = tok_decode(t, ids, n, NULL, 0);
    char *out = malloc(full + 1);
    FUZZ_CHECK(out);
    FUZZ_CHECK(tok_decode(t, ids, n, out, full + 1) == full && out[full] == '\0');
    FUZZ_CHECK(ls_utf8_valid(out, full));
    /* one token at a time */
    size_t cap = tok_stream_cap(t), pos = 0;
    char *piece = malloc(cap);
    FUZZ_CHECK(piece);
    tok_stream s;
    tok_stream_init(&s, t, true);
    for (int i = 0; i <= n; i++) {
        size_t k =
            i < n ? tok_stream_feed(&s, ids[i], piece, cap) : tok_stream_flush(&s, piece, cap);
        FUZZ_CHECK(k < cap && piece[k] == '\0');
        FUZZ_CHECK(pos + k <= full && memcmp(out + pos, piece, k) == 0);
        pos += k;
    }
    FUZZ_CHECK(pos == full);
    free(piece);
    /* a short buffer */
    size_t short_cap = full / 2 + 1;
    char *part = malloc(short_cap);
    FUZZ_CHECK(part);
    FUZZ_CHECK(tok_decode(t, ids, n, part, short_cap) == full);
    FUZZ_CHECK(strlen(part) <= short_cap - 1 && memcmp(part, out, strlen(part)) == 0);
    free(part);
    *len = full;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const tokenizer *t = vocabs[data[0] & 1];
    bool add_bos = data[0] & 2;
    const char *text = (const char *)data + 1;
    size_t text_len = size - 1;

    int n = tok_encode(t, text, text_len, add_bos, NULL, 0);
    FUZZ_CHECK(n >= 0);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    FUZZ_CHECK(ids);
    FUZZ_CHECK(tok_encode(t, text, text_len, add_bos, ids, n) == n);
    for (int i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < tok_n_vocab(t));
    if (add_bos && tok_bos(t) >= 0) FUZZ_CHECK(n >= 1 && ids[0] == tok_bos(t));
    size_t len;
    char *back = decode_checked(t, ids, n, &len);
    if (ls_utf8_valid(text, text_len)) {
        /* SentencePiece's round trip: U+2581 (its space mark) comes back as a space */
        char *want = malloc(text_len + 1);
        FUZZ_CHECK(want);
        size_t w = 0;
        for (size_t i = 0; i < text_len; i++) {
            if (i + 3 <= text_len && memcmp(text + i, "\xe2\x96\x81", 3) == 0) {
                want[w++] = ' ';
                i += 2;
            } else {
                want[w++] = text[i];
            }
        }
        FUZZ_CHECK(len == w && memcmp(back, want, w) == 0);
        free(want);
    }
    free(back);
    free(ids);

    /* the bytes as ids: mostly in range, a few just outside */
    int n_ids = (int)(text_len / 2), span = tok_n_vocab(t) + 16;
    ids = malloc(((size_t)n_ids + 1) * sizeof *ids);
    FUZZ_CHECK(ids);
    for (int i = 0; i < n_ids; i++)
        ids[i] = (int32_t)((data[1 + 2 * i] | data[2 + 2 * i] << 8) % span) - 8;
    for (int i = 0; i < n_ids; i++) {
        char buf[8];
        size_t k;
        tok_piece_bytes(t, ids[i], buf, &k);
        tok_piece(t, ids[i], &k);
    }
    free(decode_checked(t, ids, n_ids, &len));
    free(ids);
    return 0;
}
