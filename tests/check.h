/* check: the smallest test harness that does the job. CHECK records a failure with its location
 * and goes on; a test program ends with `return check_summary();`, which prints the counts and
 * returns non-zero when anything failed. Header-only; each test is one executable. */
#ifndef LS_CHECK_H
#define LS_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_n_pass, check_n_fail;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_n_pass++;                                                                        \
        } else {                                                                                   \
            check_n_fail++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* The whole file, NUL-terminated (its length in *len when len is not NULL); NULL when it cannot
 * be read. Caller frees. */
static inline char *check_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) s[n] = '\0';
    if (s && len) *len = (size_t)n;
    return s;
}

/* A file under ../shared/models (LS_MODELS_DIR is set by meson). */
static inline const char *check_model_path(const char *name) {
    static char buf[32][1024];
    static int next;
    const char *dir = getenv("LS_MODELS_DIR");
    char *out = buf[next++ % 32];
    snprintf(out, 1024, "%s/%s", dir ? dir : "../shared/models", name);
    return out;
}

/* A file under tests/ in the source tree (LS_TESTS_DIR is set by meson). */
static inline const char *check_test_path(const char *name) {
    static char buf[8][1024];
    static int next;
    const char *dir = getenv("LS_TESTS_DIR");
    char *out = buf[next++ % 8];
    snprintf(out, 1024, "%s/%s", dir ? dir : "tests", name);
    return out;
}

static inline int check_summary(void) {
    printf("%d checks passed, %d failed\n", check_n_pass, check_n_fail);
    return check_n_fail ? 1 : 0;
}

#endif
