/* step_cost: a running estimate of how long one forward step takes as a function of its rows,
 * fitted to the scheduler's own timings, and the prefill chunk that estimate allows beside a
 * step's decoding rows (the per-step token budget of chunked prefill, as in vLLM).
 * Pure arithmetic: no clock, no allocation, no locking; the caller times its steps and owns
 * the struct (the scheduler thread's alone). No errors: a sample it cannot use is ignored. */
#ifndef LS_STEP_COST_H
#define LS_STEP_COST_H

/* The model: seconds = fixed + per_row * rows. `fixed` is what every step pays whatever its
 * rows (reading every weight once: a memory-bound CPU's decode cost), `per_row` what each row
 * adds (its arithmetic). It is fitted by least squares over the timed steps, each older step
 * weighing STEP_COST_DECAY times less than the next, so the fit follows a machine whose speed
 * changes (other load, a longer context) within a few dozen steps. Zero-initialise. */
#define STEP_COST_ROWS 128 /* the row counts whose own times are kept (below) */
typedef struct {
    double w, n, t, nn, nt; /* weighted sums over steps: 1, rows, seconds, rows^2, rows*seconds */
    double fixed, per_row;  /* the last well-determined fit; per_row 0 until there is one */
    /* A CPU's step time is not a line in its rows: the kernels change shape with the row count
     * (one to a few activation rows read the weights once in decode tiles; from 4 on, tiles of 4
     * rows, so 5 rows cost what 8 do: 2.7x a 2-row step on Zen 4, where the line says 1.5x).
     * So each row count up to STEP_COST_ROWS also keeps its own running time (at[n], last
     * updated at step at_step[n]; at_step 0: never), which stands in for the line until
     * STEP_COST_STALE steps pass without that count; the line covers the counts not seen. */
    unsigned long steps;
    double at[STEP_COST_ROWS + 1];
    unsigned long at_step[STEP_COST_ROWS + 1];
} step_cost;

#define STEP_COST_DECAY 0.98 /* a step's weight after the next step (half-life 34 steps) */
#define STEP_COST_AT_GAIN 0.25 /* at[n] moves this share of the way to each new time */
#define STEP_COST_STALE 256    /* steps after which a row count's own time is forgotten */

/* Records one step of `rows` rows that took `seconds` (and its row count's own time), and
 * refits when the steps in memory span enough row counts to tell the fixed cost from the
 * per-row cost (a spread of rows below half a row keeps the previous fit, as does a fit whose
 * per-row cost is not positive: noise). rows < 1 or seconds not > 0: ignored. */
void step_cost_add(step_cost *c, int rows, double seconds);

/* Extra rows (prompt or draft) a step may add beside its step_rows decoding rows so that it
 * takes at most limit_pct percent of the time of the same step without them, by c's estimate
 * of a step of n rows (its own recent time at[n], else the line fixed + per_row * n): the
 * largest p such that every step of step_rows + 1 .. step_rows + p rows
 * is estimated within limit_pct / 100 of the step of step_rows. On the line alone that is p =
 * (limit_pct / 100 - 1) * (fixed / per_row + step_rows). Never below floor (so that prompts
 * progress; also the answer before any fit) nor above cap (the batch). With no decoding rows
 * or limit_pct 0 there is no stream to hold up: cap. */
int step_cost_prefill_rows(const step_cost *c, int step_rows, int limit_pct, int floor, int cap);

#endif
