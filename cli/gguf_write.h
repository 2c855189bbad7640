/* gguf_write: the pieces of a GGUF v3 file as the CLI's writers (make-model, quantize) emit
 * them, to a stdio stream: little-endian scalars, strings, metadata pairs (new or copied from an
 * open gguf_file) and zero padding. A write error is remembered in the gw_file (checked once at
 * the end); nothing allocates. Not thread-safe per gw_file. */
#ifndef LS_GGUF_WRITE_H
#define LS_GGUF_WRITE_H

#include "gguf.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *fp;
    int failed;    /* set by the first short write; later writes do nothing */
    uint64_t n_kv; /* metadata pairs written so far (a failed gw_file counts without writing) */
} gw_file;

void gw_put(gw_file *o, const void *p, size_t n);
void gw_u32(gw_file *o, uint32_t v);
void gw_u64(gw_file *o, uint64_t v);
void gw_str(gw_file *o, const char *s);            /* u64 length, then the bytes */
void gw_strn(gw_file *o, const char *s, size_t n);
void gw_zeros(gw_file *o, size_t n);

/* A metadata pair: key, type, value. */
void gw_kv_u32(gw_file *o, const char *key, uint32_t v);
void gw_kv_f32(gw_file *o, const char *key, float v);
void gw_kv_str(gw_file *o, const char *key, const char *v);
/* The header of an array pair; the caller writes n elements of type elem after it. */
void gw_kv_array(gw_file *o, const char *key, gguf_type elem, uint64_t n);
/* A pair copied as it is in an open file: scalars re-encoded, strings and arrays as their
 * (validated) bytes. */
void gw_kv_copy(gw_file *o, const gguf_kv *kv);

#endif
