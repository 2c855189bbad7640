/* spec: prompt-lookup (n-gram) drafting (see spec.h). The sequence searched is the history
 * followed by the draft written so far, read through seq_at so that nothing is copied. */
#include "spec.h"

#include "common.h"
#include "tokenizer.h"

#include <assert.h>
#include <string.h>

/* Token i of hist (n_hist) followed by draft. */
static inline int32_t seq_at(const int32_t *hist, int n_hist, const int32_t *draft, int i) {
    return i < n_hist ? hist[i] : draft[i - n_hist];
}

/* The token that followed the most recent earlier occurrence of the sequence's last n tokens
 * (the sequence is hist then draft, len tokens in all), for the largest n in [lo, hi] that has
 * one; -1 when none has. One backward pass over the earlier end positions e (the follower
 * e + 1 must exist): the first e where a match of length >= n ends is n's most recent
 * occurrence, and a match of length hi ends the search, since the longest n wins. */
static int32_t ngram_next(const int32_t *hist, int n_hist, const int32_t *draft, int len, int lo,
                          int hi) {
    int32_t found[SPEC_NGRAM_MAX + 1];
    for (int n = 0; n <= SPEC_NGRAM_MAX; n++) found[n] = -1;
    if (len < lo + 1) return -1;
    const int32_t last = seq_at(hist, n_hist, draft, len - 1);
    for (int e = len - 2; e >= 0; e--) {
        if (seq_at(hist, n_hist, draft, e) != last) continue;
        int n = 1; /* the length of the match that ends at e */
        while (n < hi && e - n >= 0 &&
               seq_at(hist, n_hist, draft, e - n) == seq_at(hist, n_hist, draft, len - 1 - n))
            n++;
        for (int q = lo; q <= n; q++)
            if (found[q] < 0) found[q] = seq_at(hist, n_hist, draft, e + 1);
        if (n == hi) break;
    }
    for (int n = hi; n >= lo; n--)
        if (found[n] >= 0) return found[n];
    return -1;
}

int spec_ngram_draft(const int32_t *hist, int n_hist, int ngram_min, int ngram_max,
                     int32_t *draft, int n_max) {
    assert(n_hist >= 0 && n_max >= 0);
    if (ngram_max > SPEC_NGRAM_MAX) ngram_max = SPEC_NGRAM_MAX;
    if (ngram_min < 1) ngram_min = 1;
    int k = 0;
    while (k < n_max && ngram_min <= ngram_max) {
        int32_t next = ngram_next(hist, n_hist, draft, n_hist + k, ngram_min, ngram_max);
        if (next < 0) break;
        draft[k++] = next;
    }
    return k;
}

int spec_check_draft_vocab(const model *target, const model *draft, char *err, size_t errlen) {
    if (draft->cfg.vocab_size != target->cfg.vocab_size)
        return ls_fail(err, errlen, "the draft model has %d logits per token, the model %d: "
                       "a draft model needs the same vocabulary", draft->cfg.vocab_size,
                       target->cfg.vocab_size);
    const tokenizer *a = target->tok, *b = draft->tok;
    if (!a || !b) return ls_fail(err, errlen, "the draft model has no tokenizer to compare");
    if (tok_n_vocab(a) != tok_n_vocab(b) || tok_bos(a) != tok_bos(b) || tok_eos(a) != tok_eos(b))
        return ls_fail(err, errlen, "the draft model's vocabulary differs from the model's "
                       "(%d tokens, BOS %d, EOS %d against %d, %d, %d)", tok_n_vocab(b),
                       tok_bos(b), tok_eos(b), tok_n_vocab(a), tok_bos(a), tok_eos(a));
    for (int id = 0; id < tok_n_vocab(a); id++) {
        size_t la = 0, lb = 0;
        const char *pa = tok_piece(a, id, &la), *pb = tok_piece(b, id, &lb);
        if (la != lb || (la && memcmp(pa, pb, la)))
            return ls_fail(err, errlen, "the draft model's vocabulary differs from the model's "
                           "at token %d", id);
    }
    return 0;
}
