/* gguf: a validating reader for GGUF v2/v3 files. The file is mapped read-only; keys, strings,
 * metadata arrays and tensor data point into the mapping. Every count, length, offset and size is
 * checked against the mapping before it is used, so a truncated or hostile file yields an error
 * that names the problem, never a read outside the mapping. */
#ifndef LS_GGUF_H
#define LS_GGUF_H

#include "mapfile.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGUF_UINT8 = 0,
    GGUF_INT8 = 1,
    GGUF_UINT16 = 2,
    GGUF_INT16 = 3,
    GGUF_UINT32 = 4,
    GGUF_INT32 = 5,
    GGUF_FLOAT32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_UINT64 = 10,
    GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12,
} gguf_type;

typedef struct {
    const char *s; /* into the mapping; NOT NUL-terminated; valid UTF-8 (checked) */
    uint64_t len;
} gguf_str;

typedef struct gguf_value gguf_value;
struct gguf_value {
    gguf_type type;
    union {
        uint64_t u; /* UINT8..UINT64 */
        int64_t i;  /* INT8..INT64 */
        double f;   /* FLOAT32, FLOAT64 */
        bool b;
        gguf_str str;
        struct { /* a view into the mapping: read elements with gguf_arr_get */
            gguf_type elem;
            uint64_t n;
            const uint8_t *data;   /* the first element's bytes (validated at open) */
            uint64_t nbytes;       /* bytes of all n elements */
            const uint64_t *index; /* strings and arrays at the top level: the offset from data
                                      of every GGUF_ARR_STRIDE-th element (owned by the file);
                                      NULL otherwise (elements are found by walking) */
        } arr;
    };
};

typedef struct {
    gguf_str key;
    gguf_value value;
} gguf_kv;

typedef struct {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[4];   /* ne[0] fastest; unused dimensions are 1 */
    uint32_t type;   /* ggml type number */
    uint64_t offset; /* relative to the start of the data section */
    const void *data;
    uint64_t nbytes;
} gguf_tensor;

#define GGUF_MAX_DEPTH 4 /* arrays nest at most this deep (an array of arrays is depth 2) */
/* Metadata arrays are not copied: a value is a view of its bytes in the mapping, so metadata
 * costs memory in proportion to the file (an index entry of 8 bytes per GGUF_ARR_STRIDE
 * elements of variable size, each of which takes at least 8 bytes in the file). */
#define GGUF_ARR_STRIDE 64

typedef struct {
    mapfile map;
    uint32_t version;
    uint64_t alignment;
    uint64_t n_kv;
    gguf_kv *kv; /* (n_kv), in file order */
    uint64_t n_tensors;
    gguf_tensor *tensors; /* (n_tensors), in file order */
    uint64_t data_offset; /* file offset of the data section (aligned); tensor offsets add to it */
    uint64_t *kv_order;   /* (n_kv) indices of kv sorted by key, for lookups (internal) */
    uint64_t *tensor_order; /* (n_tensors) indices sorted by name (internal) */
} gguf_file;

/* Opens and validates path. NULL with a message on error; caller frees with gguf_close. */
gguf_file *gguf_open(const char *path, char *err, size_t errlen);
void gguf_close(gguf_file *f);

/* Lookups: NULL when absent. */
const gguf_value *gguf_get(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed lookups: return 0 and store the value; 1 when the key is absent; -1 (with a message
 * naming the key) when it has the wrong type or an out-of-range value. Integer getters accept
 * any integer type whose value fits. */
int gguf_get_int(const gguf_file *f, const char *key, int64_t *out, char *err, size_t errlen);
int gguf_get_float(const gguf_file *f, const char *key, double *out, char *err, size_t errlen);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, char *err, size_t errlen);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, char *err, size_t errlen);

/* An array value whose elements all have type elem: 0 and *out; 1 when absent; -1 (with a
 * message naming the key) when the key is not an array of elem. */
int gguf_get_array(const gguf_file *f, const char *key, gguf_type elem, const gguf_value **out,
                   char *err, size_t errlen);
/* Element i of array a, decoded from the mapping into *out as gguf_get returns values (a string
 * or a nested array is again a view; FLOAT32 widens to f). 0, or -1 when a is not an array or i
 * is out of range. Strings and arrays are found from the nearest index entry (top-level arrays)
 * or by walking from the first element (nested arrays). Allocates nothing; thread-safe. */
int gguf_arr_get(const gguf_value *a, uint64_t i, gguf_value *out);

bool gguf_str_eq(gguf_str s, const char *c);
/* "uint32", "string", ...; "?" for a number outside the enum. */
const char *gguf_type_name(gguf_type t);


#endif
