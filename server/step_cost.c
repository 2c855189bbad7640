/* step_cost: the least-squares fit of a forward step's time against its rows, with exponential
 * forgetting, and the prefill budget derived from it (see step_cost.h). Arithmetic only. */
#include "step_cost.h"

#include <math.h>

int step_cost_work(const step_cost *c, int rows) {
    if (c->group <= 1 || rows <= c->exact) return rows;
    return rows + (c->group - rows % c->group) % c->group;
}

/* The most rows whose work is at most w (w >= 0): w's whole rows, and beyond exact, down to a
 * whole group (but never below exact, whose work is exact). */
static int rows_within(const step_cost *c, double w) {
    int n = (int)w;
    if (c->group <= 1 || n <= c->exact) return n;
    int down = n / c->group * c->group;
    return down > c->exact ? down : c->exact;
}

void step_cost_add(step_cost *c, int rows, double seconds) {
    if (rows < 1 || !(seconds > 0) || !isfinite(seconds)) return;
    const double n = step_cost_work(c, rows);
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
    int p = floor;
    if (c->per_row > 0) {
        /* the most work rows: fixed + per_row * w <= limit * (fixed + per_row * work(d));
         * 1e-9: a budget that is exactly a whole number of rows is not lost to rounding */
        const double k = c->fixed / c->per_row;
        double w = limit_pct / 100.0 * (k + step_cost_work(c, step_rows)) - k + 1e-9;
        if (!(w < (double)step_rows + cap)) return cap; /* also NaN, huge: no overflow */
        int more = w < 0 ? 0 : rows_within(c, w) - step_rows;
        if (more > p) p = more;
    }
    if (p > cap) return cap;
    p = step_cost_work(c, step_rows + p) - step_rows; /* the paid group's free rows */
    return p < cap ? p : cap;
}
