/* test_fingerprint: server/fingerprint.c. The hash depends on the build version, the file's
 * size, its head and its sampled pages, never on its path; a byte between sampled pages is not
 * read (the sampling is what keeps a multi-GB file cheap); a missing file is an error. */
#include "check.h"
#include "fingerprint.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define SIZE ((3u << 20) + 12345u) /* head, then sampled pages about 8 KiB apart */

static char *data;

/* Writes data[0, n) to a fresh temporary file; returns its path (static buffer per slot). */
static const char *put(int slot, size_t n) {
    static char paths[2][64];
    snprintf(paths[slot], sizeof paths[slot], "/tmp/test_fingerprint_%d_XXXXXX", slot);
    int fd = mkstemp(paths[slot]);
    if (fd < 0 || write(fd, data, n) != (ssize_t)n) {
        perror("temporary file");
        exit(1);
    }
    close(fd);
    return paths[slot];
}

static uint64_t hash_of(size_t n, const char *version) {
    const char *p = put(0, n);
    uint64_t h = 0;
    char err[256];
    CHECK(fp_hash_file(p, version, &h, err, sizeof err) == 0, "%s", err);
    unlink(p);
    return h;
}

int main(void) {
    data = malloc(SIZE);
    for (size_t i = 0; i < SIZE; i++) data[i] = (char)(i * 2654435761u >> 13);
    uint64_t base = hash_of(SIZE, "v1");
    CHECK(hash_of(SIZE, "v1") == base, "the same file at another path hashes alike");
    CHECK(hash_of(SIZE, "v2") != base, "another build version");
    CHECK(hash_of(SIZE - 1, "v1") != base, "another size");
    data[100] ^= 1; /* in the head */
    CHECK(hash_of(SIZE, "v1") != base, "a byte in the head");
    data[100] ^= 1;
    data[SIZE - 1] ^= 1; /* in the last page */
    CHECK(hash_of(SIZE, "v1") != base, "a byte in the last page");
    data[SIZE - 1] ^= 1;
    /* samples are (SIZE - head - page) / 255 apart from the head on: one falls on the head's
     * end, the next 4 KiB past a sample's end are not read */
    data[(1u << 20) + 4096 + 100] ^= 1;
    CHECK(hash_of(SIZE, "v1") == base, "a byte between sampled pages is not read");
    data[(1u << 20) + 4096 + 100] ^= 1;
    CHECK(hash_of(100, "v1") != hash_of(101, "v1"), "small files hash whole");
    char fp[FP_LEN], err[256];
    CHECK(fp_model_fingerprint("/nonexistent/model.gguf", fp, err, sizeof err) == -1 &&
              strstr(err, "/nonexistent/model.gguf"), "a missing file: %s", err);
    const char *p = put(1, 5000);
    CHECK(fp_model_fingerprint(p, fp, err, sizeof err) == 0 && strlen(fp) == FP_LEN - 1 &&
              !strncmp(fp, "fp_", 3) && strspn(fp + 3, "0123456789abcdef") == 16,
          "format: %s", fp);
    CHECK(fp_build_version()[0], "a build version");
    unlink(p);
    free(data);
    return check_summary();
}
