/* spec: prompt-lookup (n-gram) drafting for speculative decoding. Given a sequence's tokens so
 * far (prompt and output), it proposes the tokens that followed the most recent earlier place
 * where the sequence's last few tokens occurred. The scheduler verifies the proposal in one
 * batched forward step; this module never touches the model.
 * Pure functions over caller-owned arrays: no allocation, no state, thread-safe. */
#ifndef LS_SPEC_H
#define LS_SPEC_H

#include "model.h"

#include <stddef.h>
#include <stdint.h>

/* The longest suffix matched (tokens); spec_ngram_draft tries ngram_max down to ngram_min. */
#define SPEC_NGRAM_MAX 3

/* Writes up to n_max draft tokens to follow hist (n_hist) into draft and returns how many.
 * Token by token: the draft so far is appended to hist, the last n tokens of that sequence
 * (n from ngram_max down to ngram_min, both clamped to [1, SPEC_NGRAM_MAX]) are looked up at
 * their most recent earlier occurrence, and the token that followed it is the next draft
 * token; the first position without a match ends the draft. So each draft token depends only
 * on the tokens before it, never on n_max. O(n_max * n_hist * ngram_max) comparisons at most. */
int spec_ngram_draft(const int32_t *hist, int n_hist, int ngram_min, int ngram_max,
                     int32_t *draft, int n_max);

/* 0 when draft can draft for target: the same number of logits and the same tokens (every
 * piece's bytes, BOS and EOS). Else -1 with a message naming the first difference. */
int spec_check_draft_vocab(const model *target, const model *draft, char *err, size_t errlen);

#endif
