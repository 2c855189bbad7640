/* args: strict number parsing for flags, environment and config values. */
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int cfg_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int cfg_parse_int(const char *s, long long min, long long max, long long *out, const char *what,
                  char *err, size_t errlen) {
    char *end = NULL;
    if (!s || !*s) return cfg_fail(err, errlen, "%s: expected an integer, got an empty value", what);
    if (isspace((unsigned char)*s)) return cfg_fail(err, errlen, "%s: '%s' is not an integer", what, s);
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0') return cfg_fail(err, errlen, "%s: '%s' is not an integer", what, s);
    if (errno == ERANGE || v < min || v > max)
        return cfg_fail(err, errlen, "%s: %s is out of range [%lld, %lld]", what, s, min, max);
    *out = v;
    return 0;
}

int cfg_parse_u64(const char *s, uint64_t *out, const char *what, char *err, size_t errlen) {
    char *end = NULL;
    if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
        return cfg_fail(err, errlen, "%s: expected a non-negative integer, got '%s'", what, s ? s : "");
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0') return cfg_fail(err, errlen, "%s: '%s' is not an integer", what, s);
    if (errno == ERANGE) return cfg_fail(err, errlen, "%s: %s is out of range", what, s);
    *out = (uint64_t)v;
    return 0;
}

int cfg_parse_float(const char *s, double min, double max, double *out, const char *what,
                    char *err, size_t errlen) {
    char *end = NULL;
    if (!s || !*s) return cfg_fail(err, errlen, "%s: expected a number, got an empty value", what);
    if (isspace((unsigned char)*s)) return cfg_fail(err, errlen, "%s: '%s' is not a number", what, s);
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0') return cfg_fail(err, errlen, "%s: '%s' is not a number", what, s);
    if (errno == ERANGE || !isfinite(v) || v < min || v > max)
        return cfg_fail(err, errlen, "%s: %s is out of range [%g, %g]", what, s, min, max);
    *out = v;
    return 0;
}
