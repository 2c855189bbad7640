/* args: strict parsing of numbers from flags, environment variables and config values. The one
 * place that turns user text into numbers, so every command rejects "12abc", "", "1e999" and
 * out-of-range values with the same clear message. */
#ifndef LS_ARGS_H
#define LS_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Formats a message into err (when not NULL) and returns -1: `return cfg_fail(...)`. */
int cfg_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Each returns 0 and stores the value, or -1 with a message that names `what`. */
int cfg_parse_int(const char *s, long long min, long long max, long long *out, const char *what,
                  char *err, size_t errlen);
int cfg_parse_u64(const char *s, uint64_t *out, const char *what, char *err, size_t errlen);
int cfg_parse_float(const char *s, double min, double max, double *out, const char *what,
                    char *err, size_t errlen);

#endif
