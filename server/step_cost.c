/* step_cost: the least-squares fit of a forward step's time against its rows, with exponential
 * forgetting, and the prefill budget derived from it (see step_cost.h). Arithmetic only. */
#include "step_cost.h"

#include <math.h>

void step_cost_add(step_cost *c, int rows, double seconds) {
    if (rows < 1 || !(seconds > 0) || !isfinite(seconds)) return;
    const double n = rows;
    c->w = STEP_COST_DECAY * c->w + 1;
    c->n = STEP_COST_DECAY * c->n + n;
    c->t = STEP_COST_DECAY * c->t + seconds;
    c->nn = STEP_COST_DECAY * c->nn + n * n;
    c->nt = STEP_COST_DECAY * c->nt + n * seconds;
    /* weighted means and (co)variance of rows and seconds */
    double mn = c->n / c->w, mt = c->t / c->w;
    double var = c->nn / c->w - mn * mn, cov = c->nt / c->w - mn * mt;
    if (var < 0.25) return; /* every step in memory had about the same rows */
    double per_row = cov / var;
    if (!(per_row > 0)) return;
    double fixed = mt - per_row * mn;
    c->per_row = per_row;
    c->fixed = fixed > 0 ? fixed : 0; /* a negative intercept is noise: no fixed cost */
}

int step_cost_prefill_rows(const step_cost *c, int step_rows, int limit_pct, int floor, int cap) {
    if (cap <= 0) return 0;
    if (floor > cap) floor = cap;
    if (limit_pct <= 0 || step_rows <= 0) return cap;
    if (!(c->per_row > 0)) return floor;
    /* 1e-9: a budget that is exactly a whole number of rows is not lost to rounding */
    double p = (limit_pct / 100.0 - 1) * (c->fixed / c->per_row + step_rows) + 1e-9;
    if (!(p < cap)) return cap; /* also NaN and huge values: no conversion overflow */
    return p < floor ? floor : (int)p;
}
