/* common: the few helpers every engine module shares.
 * Errors are reported, never raised: a failing function returns -1 (or NULL) and writes a
 * one-line message into the caller's buffer (err, errlen). Library code never exits or aborts. */
#ifndef LS_COMMON_H
#define LS_COMMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LS_ERR_LEN 256 /* a comfortable size for an error buffer */

/* Formats a message into err (when err is not NULL) and returns -1, so that
 * `return ls_fail(err, errlen, "bad %s", x);` reads as one statement. */
int ls_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Checked size arithmetic: returns 0 and stores a*b (a+b) in *out, or -1 on overflow. */
int ls_mul_size(size_t a, size_t b, size_t *out);
int ls_add_size(size_t a, size_t b, size_t *out);

/* Allocates n zeroed bytes aligned to 64 (a cache line); free with free(). NULL on failure. */
void *ls_alloc(size_t n);

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
bool ls_utf8_valid(const char *s, size_t n);

/* Monotonic time in seconds. */
double ls_now(void);

/* A condition variable whose timed waits run on CLOCK_MONOTONIC, so that a step of the wall
 * clock can neither stall a timed wait nor make it spin. 0, or an errno value. */
int ls_cond_init_monotonic(pthread_cond_t *cv);
/* Waits on cv (made by ls_cond_init_monotonic, mu held) for at most ms milliseconds; returns
 * pthread_cond_timedwait's result (0, ETIMEDOUT, ...). */
int ls_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms);

/* What the SIMD kernels' helpers are declared with: forced inlining, so that each tile compiles
 * for its constant sizes and type. Not in sanitizer builds (meson defines LS_SANITIZED): there
 * every tile inlined into every type's kernel made engine/x86/avx512.c take 6 minutes to compile
 * under ASan+UBSan with gcc and 15 with clang's fuzzing build, against 43 s in release; with the
 * compiler's own choice, 16 s. The same code and, as the tests check, the same bits. */
#ifdef LS_SANITIZED
#define LS_FORCE_INLINE
#else
#define LS_FORCE_INLINE __attribute__((always_inline))
#endif

/* ThreadSanitizer does not instrument the SIMD kernels of x86/ (meson.build, mm_kernels_lib): it
 * checked each of their vector loads, which made the sanitizer's suite 10 times slower than the
 * release one. Their callers tell it instead what each call reads and writes, once per call
 * (engine/matmul.c per thread's share, forward.c per attention item), so that two threads'
 * shares that overlap are still reported. The weights, read-only while threads use them, are
 * not declared. meson defines LS_TSAN in the ThreadSanitizer build. */
#ifdef LS_TSAN
void __tsan_read_range(void *addr, unsigned long size);
void __tsan_write_range(void *addr, unsigned long size);
#define LS_TSAN_READ(p, n) __tsan_read_range((void *)(p), (unsigned long)(n))
#define LS_TSAN_WRITE(p, n) __tsan_write_range((void *)(p), (unsigned long)(n))
#else
#define LS_TSAN_READ(p, n) ((void)(p), (void)(n))
#define LS_TSAN_WRITE(p, n) ((void)(p), (void)(n))
#endif

/* FNV-1a over n bytes: the hash of the engine's small lookup tables (tokenizer pieces, grammar
 * rule names and stacks). */
static inline uint32_t ls_hash_bytes(const void *p, size_t n) {
    const unsigned char *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

#endif
