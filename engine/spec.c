/* spec: prompt-lookup (n-gram) drafting (see spec.h). The sequence searched is the history
 * followed by the draft written so far, read through seq_at so that nothing is copied. */
#include "spec.h"

#include <assert.h>

/* Token i of hist (n_hist) followed by draft. */
static inline int32_t seq_at(const int32_t *hist, int n_hist, const int32_t *draft, int i) {
    return i < n_hist ? hist[i] : draft[i - n_hist];
}

/* The token that followed the most recent earlier occurrence of the sequence's last n tokens
 * (the sequence is hist then draft, len tokens in all), or -1 when there is none. */
static int32_t ngram_next(const int32_t *hist, int n_hist, const int32_t *draft, int len, int n) {
    if (len < n + 1) return -1;
    /* an occurrence starting at m is followed by token m + n, which must exist: m + n < len */
    for (int m = len - n - 1; m >= 0; m--) {
        int k = 0;
        while (k < n && seq_at(hist, n_hist, draft, m + k) ==
                            seq_at(hist, n_hist, draft, len - n + k))
            k++;
        if (k == n) return seq_at(hist, n_hist, draft, m + n);
    }
    return -1;
}

int spec_ngram_draft(const int32_t *hist, int n_hist, int ngram_min, int ngram_max,
                     int32_t *draft, int n_max) {
    assert(n_hist >= 0 && n_max >= 0);
    if (ngram_max > SPEC_NGRAM_MAX) ngram_max = SPEC_NGRAM_MAX;
    if (ngram_min < 1) ngram_min = 1;
    int k = 0;
    while (k < n_max) {
        int32_t next = -1;
        for (int n = ngram_max; n >= ngram_min && next < 0; n--)
            next = ngram_next(hist, n_hist, draft, n_hist + k, n);
        if (next < 0) break;
        draft[k++] = next;
    }
    return k;
}
