/* embed: pooling of one sequence's final hidden states (fwd_batch.hidden) into one embedding,
 * as llama.cpp does for decoder models: the mean over every row of the sequence (BOS
 * included when the prompt has it), or its last row; then scaled to unit L2 norm.
 * Owns nothing: the caller holds the accumulator (dim doubles per sequence). Pure functions,
 * safe from any thread on distinct accumulators; no errors (the caller checks sizes). */
#ifndef LS_EMBED_H
#define LS_EMBED_H

typedef enum { EMBD_POOL_MEAN, EMBD_POOL_LAST } embd_pooling;

/* acc (dim) = 0: before a sequence's first row. */
void embd_reset(double *acc, int dim);
/* Adds row (dim), the sequence's next hidden state in position order, to acc (dim): summed for
 * mean pooling, kept (replacing the previous one) for last. */
void embd_add(double *acc, const float *row, int dim, embd_pooling how);
/* out (dim) = the pooled embedding of the n_rows > 0 rows added to acc, L2-normalised (a zero
 * vector stays zero). */
void embd_finish(float *out, const double *acc, int n_rows, int dim, embd_pooling how);

#endif
