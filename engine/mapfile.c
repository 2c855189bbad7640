/* mapfile: read-only shared mmap of a model file, or a private copy (map_set_private_copy). */
#include "mapfile.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_bool private_copy;

void map_set_private_copy(bool on) { atomic_store(&private_copy, on); }

/* The whole file into fresh private memory, then made read-only. MAP_FAILED on error (errno). */
static void *read_private(int fd, size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return p;
    for (size_t off = 0; off < size;) {
        ssize_t n = pread(fd, (char *)p + off, size - off, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO; /* the file shrank while we read it */
            munmap(p, size);
            errno = e;
            return MAP_FAILED;
        }
        off += (size_t)n;
    }
    mprotect(p, size, PROT_READ);
    return p;
}

int map_open(mapfile *m, const char *path, char *err, size_t errlen) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ls_fail(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ls_fail(err, errlen, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ls_fail(err, errlen, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        const bool copy = atomic_load(&private_copy);
        void *p = copy ? read_private(fd, (size_t)st.st_size)
                       : mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return ls_fail(err, errlen, "%s: %s: %s", path, copy ? "read" : "mmap", strerror(e));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void map_close(mapfile *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}
