/* outlog: chunked append-only storage for the scheduler's output log (see outlog.h). Chunks
 * are linked, so a reader walks from its cursor to the new items without an index that would
 * have to grow (and move) under it. */
#include "outlog.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct outlog_chunk {
    outlog_chunk *next;   /* written before any item of it is published */
    unsigned char data[]; /* (per, item) */
};

void outlog_init(outlog *l, size_t item) {
    assert(item > 0);
    memset(l, 0, sizeof *l);
    l->item = item;
    l->per = item < OUTLOG_CHUNK_BYTES ? OUTLOG_CHUNK_BYTES / item : 1;
}

bool outlog_write(outlog *l, const void *items, size_t n) {
    if (n == 0) return true;
    size_t room = l->tail ? l->per - l->used : 0;
    /* the chunks it needs, allocated first so that a failure appends nothing */
    size_t need = n > room ? (n - room + l->per - 1) / l->per : 0;
    outlog_chunk *first = NULL, *last = NULL;
    for (size_t k = 0; k < need; k++) {
        outlog_chunk *c = malloc(sizeof *c + l->per * l->item);
        if (!c) {
            while (first) {
                outlog_chunk *next = first->next;
                free(first);
                first = next;
            }
            return false;
        }
        c->next = NULL;
        if (last)
            last->next = c;
        else
            first = c;
        last = c;
    }
    if (first) {
        if (l->tail)
            l->tail->next = first;
        else
            l->head = first;
    }
    const unsigned char *src = items;
    outlog_chunk *c = room > 0 ? l->tail : first;
    size_t off = room > 0 ? l->used : 0;
    while (n > 0) {
        if (off == l->per) c = c->next, off = 0;
        size_t k = l->per - off < n ? l->per - off : n;
        memcpy(c->data + off * l->item, src, k * l->item);
        src += k * l->item;
        off += k;
        n -= k;
        l->n += k;
    }
    l->tail = c;
    l->used = off;
    return true;
}

void outlog_read(const outlog *l, outlog_cursor *cur, size_t to, void *dst) {
    assert(to >= cur->pos); /* and published: l->n is the writer's, not read here */
    unsigned char *out = dst;
    while (cur->pos < to) {
        if (!cur->c)
            cur->c = l->head, cur->off = 0;
        else if (cur->off == l->per)
            cur->c = cur->c->next, cur->off = 0;
        size_t k = l->per - cur->off < to - cur->pos ? l->per - cur->off : to - cur->pos;
        memcpy(out, cur->c->data + cur->off * l->item, k * l->item);
        out += k * l->item;
        cur->off += k;
        cur->pos += k;
    }
}

void outlog_free(outlog *l) {
    for (outlog_chunk *c = l->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    l->head = l->tail = NULL;
    l->n = l->used = 0;
}
