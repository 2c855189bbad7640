/* fingerprint: system_fingerprint from the build version and a sampled hash of the model file
 * (see fingerprint.h). Reads the file with pread, a few MB at most; never maps or reads it
 * whole. */
#include "fingerprint.h"

#include "build_version.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FP_HEAD (1u << 20)  /* bytes hashed from the start of the file */
#define FP_PAGE 4096u       /* each sampled page */
#define FP_SAMPLES 256      /* pages sampled evenly through the rest, the last one included */

const char *fp_build_version(void) {
    return LS_BUILD_VERSION;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Hashes n bytes of fd from off (fewer at the end of the file). buf holds FP_HEAD bytes. */
static int hash_range(int fd, uint64_t off, size_t n, char *buf, uint64_t *h) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    *h = fnv1a(*h, buf, got);
    return 0;
}

int fp_hash_file(const char *path, const char *version, uint64_t *hash, char *err,
                 size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ls_fail(err, errlen, "%s: %s", path, strerror(errno));
    char *buf = malloc(FP_HEAD);
    struct stat st;
    int rc = -1;
    if (!buf) {
        ls_fail(err, errlen, "out of memory");
        goto done;
    }
    if (fstat(fd, &st) != 0) {
        ls_fail(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size, h = 0xcbf29ce484222325ull;
    h = fnv1a(h, version, strlen(version) + 1);
    h = fnv1a(h, &size, sizeof size);
    if (hash_range(fd, 0, FP_HEAD, buf, &h) != 0) goto read_fail;
    if (size > FP_HEAD + FP_PAGE) { /* sample k of FP_SAMPLES at an even step; the last ends it */
        uint64_t span = size - FP_HEAD - FP_PAGE;
        for (int k = 0; k < FP_SAMPLES; k++)
            if (hash_range(fd, FP_HEAD + span / (FP_SAMPLES - 1) * (uint64_t)k, FP_PAGE, buf,
                           &h) != 0)
                goto read_fail;
        if (hash_range(fd, size - FP_PAGE, FP_PAGE, buf, &h) != 0) goto read_fail;
    } else if (size > FP_HEAD && hash_range(fd, FP_HEAD, (size_t)(size - FP_HEAD), buf, &h)) {
        goto read_fail;
    }
    *hash = h;
    rc = 0;
    goto done;
read_fail:
    ls_fail(err, errlen, "%s: %s", path, strerror(errno));
done:
    free(buf);
    close(fd);
    return rc;
}

int fp_model_fingerprint(const char *path, char out[FP_LEN], char *err, size_t errlen) {
    uint64_t h;
    if (fp_hash_file(path, fp_build_version(), &h, err, errlen) != 0) return -1;
    snprintf(out, FP_LEN, "fp_%016llx", (unsigned long long)h);
    return 0;
}
