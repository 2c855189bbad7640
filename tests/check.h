/* check: the smallest test harness that does the job. CHECK records a failure with its location
 * and goes on; a test program ends with `return check_summary();`, which prints the counts and
 * returns non-zero when anything failed. check_tmp_path hands out temporary files that are gone
 * after the test, even one killed by meson's timeout. Header-only; each test is one executable. */
#ifndef LS_CHECK_H
#define LS_CHECK_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* --- temporary files --- */

#define CHECK_TMP_MAX 32 /* paths one test may ask for */

typedef struct {
    char dir[32];                   /* /tmp/ls-test-XXXXXX; "" until the first check_tmp_path */
    char paths[CHECK_TMP_MAX][160]; /* (n) handed out, removed at the end */
    volatile sig_atomic_t n;
} check_tmp_area;

static inline check_tmp_area *check_tmp_get(void) {
    static check_tmp_area a;
    return &a;
}

/* Removes every path handed out, then the folder: unlink and rmdir only, both
 * async-signal-safe, so the signal handler may call it too. */
static inline void check_tmp_remove(void) {
    check_tmp_area *a = check_tmp_get();
    for (int i = a->n; i-- > 0;)
        unlink(a->paths[i]);
    if (a->dir[0]) rmdir(a->dir);
}

/* SIGTERM (meson's timeout), SIGINT, SIGHUP: clean up, then die of the same signal. errno is
 * put back: under TSan the raised signal is delivered after the handler returns, into code
 * that may still read errno (TSan reports a handler that changes it). */
static inline void check_tmp_on_signal(int sig) {
    const int saved = errno;
    check_tmp_remove();
    signal(sig, SIG_DFL);
    raise(sig);
    errno = saved;
}

/* The path of name in this test's temporary folder, made on the first call (the same name gives
 * the same path). The file is the
 * caller's to create (or a child's); it and the folder are removed at exit and when SIGTERM,
 * SIGINT or SIGHUP ends the test, so a killed test leaves nothing under /tmp. NULL, with a
 * message on stderr, when the folder cannot be made or after CHECK_TMP_MAX paths. Main thread
 * only, before the test starts threads. */
static inline const char *check_tmp_path(const char *name) {
    check_tmp_area *a = check_tmp_get();
    if (!a->dir[0]) {
        snprintf(a->dir, sizeof a->dir, "/tmp/ls-test-XXXXXX");
        if (!mkdtemp(a->dir)) {
            perror("mkdtemp");
            a->dir[0] = '\0';
            return NULL;
        }
        atexit(check_tmp_remove);
        struct sigaction sa = {.sa_handler = check_tmp_on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
    }
    for (int i = 0; i < a->n; i++) /* the same name again: the same path */
        if (!strcmp(strrchr(a->paths[i], '/') + 1, name)) return a->paths[i];
    if (a->n >= CHECK_TMP_MAX) {
        fprintf(stderr, "check_tmp_path: more than %d paths\n", CHECK_TMP_MAX);
        return NULL;
    }
    char path[sizeof a->paths[0]];
    snprintf(path, sizeof path, "%s/%s", a->dir, name);
    memcpy(a->paths[a->n], path, sizeof path);
    a->n = a->n + 1; /* after the path is whole: a signal in between sees n paths, all whole */
    return a->paths[a->n - 1];
}

static inline int check_summary(void) {
    printf("%d checks passed, %d failed\n", check_n_pass, check_n_fail);
    return check_n_fail ? 1 : 0;
}

#endif
