/* step_cost: a running estimate of how long one forward step takes as a function of its rows,
 * fitted to the scheduler's own timings, and the prefill chunk that estimate allows beside a
 * step's decoding rows (the per-step token budget of chunked prefill, as in vLLM).
 * Pure arithmetic: no clock, no allocation, no locking; the caller times its steps and owns
 * the struct (the scheduler thread's alone). No errors: a sample it cannot use is ignored. */
#ifndef LS_STEP_COST_H
#define LS_STEP_COST_H

/* The model: seconds = fixed + per_row * work rows (step_cost_work: the rows the kernels
 * compute). `fixed` is what every step pays whatever its rows (reading every weight once: a
 * memory-bound CPU's decode cost), `per_row` what each row adds (its arithmetic). It is fitted
 * by least squares over the timed steps, each older step weighing STEP_COST_DECAY times less
 * than the next, so the fit follows a machine whose speed changes (other load, a longer
 * context) within a few dozen steps. Zero-initialise, then set
 * exact and group. */
typedef struct {
    double w, n, t, nn, nt; /* weighted sums over steps: 1, work rows, seconds, their products */
    double fixed, per_row;  /* the last well-determined fit; per_row 0 until there is one */
    /* How the matmul kernels take rows (mm_row_tiling), set before the first step: the first
     * `exact` rows each cost their own, beyond them rows go in whole groups of `group`, so a
     * step costs what its rows rounded up to a group do. group 0 or 1: every row its own. */
    int exact, group;
} step_cost;

#define STEP_COST_DECAY 0.98 /* a step's weight after the next step (half-life 34 steps) */

/* The rows a step of `rows` rows computes, by c's tiling: rows up to exact, else rows rounded up
 * to a multiple of group. The fit and the budget below count these "work rows". */
int step_cost_work(const step_cost *c, int rows);

/* Records one step of `rows` rows that took `seconds`, and refits when the steps in memory
 * span enough row counts to tell the fixed cost from the per-row cost (a spread of rows below
 * half a row keeps the previous fit, as does a fit whose per-row cost is not positive: noise).
 * rows < 1 or seconds not > 0: ignored. */
void step_cost_add(step_cost *c, int rows, double seconds);

/* Extra rows (prompt or draft) a step may add beside its step_rows decoding rows so that it
 * takes at most limit_pct percent of the time of the same step without them, by c's fit: the
 * largest p with fixed + per_row * work(step_rows + p) <= limit_pct / 100 * (fixed + per_row *
 * work(step_rows)); with every row its own, p = (limit_pct / 100 - 1) * (fixed / per_row +
 * step_rows). Never below floor (so that prompts progress; also the answer before any fit);
 * then raised to fill the last group the step pays for anyway (those rows are free); never
 * above cap (the batch). With no decoding rows or limit_pct 0 there is no stream to hold up:
 * cap. */
int step_cost_prefill_rows(const step_cost *c, int step_rows, int limit_pct, int floor, int cap);

#endif
