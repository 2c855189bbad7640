/* mapfile: a whole file mapped read-only. The mapping is shared: two loads of one file, in one
 * process or two, use the same page-cache pages. Nothing here ever writes to the mapping. */
#ifndef LS_MAPFILE_H
#define LS_MAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *data; /* (size) bytes, PROT_READ, MAP_SHARED (or a private copy); NULL for an
                            empty file */
    size_t size;
} mapfile;

/* Process-wide, default off: map_open then reads the file into private anonymous memory
 * (read-only once filled) instead of mapping it, so that truncating or replacing the file can
 * no longer fault a reader. Set before loading, from one thread. */
void map_set_private_copy(bool on);

/* Maps path. Returns 0, or -1 with a message naming the file. */
int map_open(mapfile *m, const char *path, char *err, size_t errlen);
void map_close(mapfile *m);

#endif
