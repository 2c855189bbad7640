/* metrics: the server's counters and latency histograms, rendered in Prometheus text format.
 * Every update is a relaxed atomic add, so any thread may record without a lock. */
#ifndef LS_METRICS_H
#define LS_METRICS_H

#include <stddef.h>

/* One HTTP request finished with this route and status. */
void metrics_request(const char *route, int status);
void metrics_tokens(unsigned long long prompt, unsigned long long generated);
/* Prompt tokens a request found in its slot's KV cache (the prompt cache). */
void metrics_prompt_cached(unsigned long long n);
/* Speculative decoding: draft tokens verified in a step, and how many of them were accepted. */
void metrics_spec(unsigned long long drafted, unsigned long long accepted);
void metrics_ttft(double seconds);
void metrics_itl(double seconds);
/* One forward step of the scheduler: its time, its decoding rows (one per decoding slot, and
 * its draft tokens) and its prompt rows. Counted by kind, so that an operator can see what
 * admitting prompts costs the running streams (--prefill-step-pct): "decode" steps have no
 * prompt rows, "prefill" ones nothing else, "mixed" ones both. */
void metrics_step(double seconds, int decode_rows, int prompt_rows);
/* A completions or chat request answered 200, from arrival to its last byte. */
void metrics_duration(double seconds);
/* An HTTP connection opened (+1) or closed (-1). */
void metrics_connections(int delta);
/* A beam-search job took its slots (+1) or ended (-1): the scheduler thread. */
void metrics_beam_running(int delta);

/* Appends the exposition text (counters, histograms, and the given gauges) to a malloc'ed
 * string; caller frees. */
char *metrics_render(int busy_slots, int slots, int queued, long long kv_tokens,
                     long long kv_capacity);

#endif
