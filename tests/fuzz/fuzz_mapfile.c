/* fuzz_mapfile: engine/mapfile.c's contract for the fuzz targets and their replays. The file is
 * read into a heap block of exactly its size instead of being mapped, so that AddressSanitizer
 * reports a read even one byte past the end (a mapping's last page hides such reads). The
 * linker takes these definitions and never pulls engine/mapfile.o out of the engine library. */
#include "mapfile.h"

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void map_set_private_copy(bool on) {
    (void)on;
}

int map_open(mapfile *m, const char *path, char *err, size_t errlen) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ls_fail(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ls_fail(err, errlen, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *p = size ? malloc(size) : NULL;
    if (size && !p) {
        close(fd);
        return ls_fail(err, errlen, "%s: out of memory", path);
    }
    for (size_t off = 0; off < size;) {
        ssize_t n = pread(fd, p + off, size - off, (off_t)off);
        if (n <= 0) {
            free(p);
            close(fd);
            return ls_fail(err, errlen, "%s: read error", path);
        }
        off += (size_t)n;
    }
    close(fd);
    m->data = p;
    m->size = size;
    return 0;
}

void map_close(mapfile *m) {
    free((void *)m->data);
    m->data = NULL;
    m->size = 0;
}
