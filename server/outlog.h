/* outlog: an append-only log of fixed-size items (a choice's text bytes, its token records)
 * kept in chunks that never move once written. One writer appends past the published end
 * without a lock; readers copy items below a count the writer has published (under a lock the
 * two share, or with release/acquire), also without a lock, since nothing they read ever
 * changes or moves. The log owns its chunks; they are freed with it. No I/O. */
#ifndef LS_OUTLOG_H
#define LS_OUTLOG_H

#include <stdbool.h>
#include <stddef.h>

#define OUTLOG_CHUNK_BYTES 4096 /* a chunk's items; at least one item whatever its size */

typedef struct outlog_chunk outlog_chunk;

typedef struct {
    size_t item;        /* bytes per item (immutable after outlog_init) */
    size_t per;         /* items per chunk (immutable) */
    outlog_chunk *head; /* the first chunk: written once, before the first item is published */
    outlog_chunk *tail; /* the writer's: the chunk it appends to */
    size_t n;           /* the writer's: items written (published or not) */
    size_t used;        /* the writer's: items in tail */
} outlog;

/* A reader's place in a log: it has copied items [0, pos). Zero-initialised: at the start. */
typedef struct {
    const outlog_chunk *c; /* the chunk holding item pos (or the one before, when full) */
    size_t off;            /* pos's offset in c, in items */
    size_t pos;
} outlog_cursor;

void outlog_init(outlog *l, size_t item);
/* Writer only: appends n items. False when memory runs out; then nothing was appended. */
bool outlog_write(outlog *l, const void *items, size_t n);
/* Any thread: copies items [cur->pos, to) into dst and moves cur to `to`, which must be at most
 * a count the writer has published to this thread. */
void outlog_read(const outlog *l, outlog_cursor *cur, size_t to, void *dst);
/* Frees the chunks; no reader may use the log any more. */
void outlog_free(outlog *l);

#endif
