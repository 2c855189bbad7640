/* embed: mean or last pooling of hidden states, then L2 normalisation (see embed.h). Sums run
 * in double so that a long sequence's mean does not depend on float rounding of its order. */
#include "embed.h"

#include <assert.h>
#include <math.h>
#include <string.h>

void embd_reset(double *acc, int dim) {
    memset(acc, 0, (size_t)dim * sizeof *acc);
}

void embd_add(double *acc, const float *row, int dim, embd_pooling how) {
    for (int i = 0; i < dim; i++)
        acc[i] = how == EMBD_POOL_LAST ? row[i] : acc[i] + row[i];
}

void embd_finish(float *out, const double *acc, int n_rows, int dim, embd_pooling how) {
    assert(n_rows > 0);
    double scale = how == EMBD_POOL_MEAN ? 1.0 / n_rows : 1.0, ss = 0.0;
    for (int i = 0; i < dim; i++)
        ss += acc[i] * scale * (acc[i] * scale);
    double norm = sqrt(ss), inv = norm > 0.0 ? scale / norm : 0.0;
    for (int i = 0; i < dim; i++)
        out[i] = (float)(acc[i] * inv);
}
