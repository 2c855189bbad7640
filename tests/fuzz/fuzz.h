/* fuzz.h: what the libFuzzer targets (fuzz_*.c) share. Each target defines
 * LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize when it loads a vocabulary once); it is built
 * twice: with clang's -fsanitize=fuzzer by scripts/fuzz.sh, and with replay.c's main by the
 * ordinary build, which replays the corpus and the regressions in every test suite. Targets link
 * fuzz_mapfile.c in place of engine/mapfile.c, so that a loader's read past the end of its input
 * is a heap overflow AddressSanitizer sees. Test code: a broken property aborts. */
#ifndef LS_FUZZ_H
#define LS_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* A property every input must keep; aborts (a crash to libFuzzer, a failure to the replay). */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input as a file for the loaders that take a path: one memfd, rewritten per input; the
 * returned /proc/self/fd path stays valid for the process. */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz-input", MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) abort();
    for (size_t off = 0; off < size;) {
        ssize_t n = pwrite(fd, data + off, size - off, (off_t)off);
        if (n <= 0) abort();
        off += (size_t)n;
    }
    return path;
}

/* ../shared/models, or $LS_MODELS_DIR (what the meson tests set). */
static inline const char *fuzz_models_dir(void) {
    const char *d = getenv("LS_MODELS_DIR");
    return d && *d ? d : FUZZ_MODELS_DIR;
}

/* Exit status for "the models this target needs are absent": meson counts it as skipped. */
#define FUZZ_SKIP 77

#endif
