/* tensor: the stored element types of weights, their block layouts (as GGUF defines them), and
 * conversion between them and F32. A tensor is a read-only view into the model mapping; this
 * module never allocates and never copies weights. */
#ifndef LS_TENSOR_H
#define LS_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Element types, numbered as ggml_type in the GGUF specification. */
typedef enum {
    DT_F32 = 0,
    DT_F16 = 1,
    DT_Q4_0 = 2,
    DT_Q8_0 = 8,
    DT_BF16 = 30,
} dtype;

#define QK 32 /* elements per block in Q8_0 and Q4_0 */

/* Q8_0: 32 signed bytes and one F16 scale; value = d * qs[i]. 34 bytes. */
typedef struct {
    uint16_t d; /* F16 bits */
    int8_t qs[QK];
} block_q8_0;

/* Q4_0: 32 nibbles and one F16 scale. Element i (i < 16) is the low nibble of qs[i], element
 * i + 16 its high nibble; value = d * (nibble - 8). 18 bytes. */
typedef struct {
    uint16_t d; /* F16 bits */
    uint8_t qs[QK / 2];
} block_q4_0;

/* Activations quantized for integer dot products against Q8_0/Q4_0 weights: like Q8_0 but with
 * an F32 scale (never stored in files). */
typedef struct {
    float d;
    int8_t qs[QK];
} block_q8_act;

typedef struct {
    const void *data; /* rows of ne[0] elements of `type`, row-major, in the mapping */
    dtype type;
    int n_dims;
    int64_t ne[4]; /* ne[0] is the row length (the fastest-moving dimension), as in GGUF */
} tensor;

/* "F32", "Q4_0", ...; NULL for a type this engine does not support. */
const char *dtype_name(uint32_t type);
bool dtype_supported(uint32_t type);
/* Elements per block (1 for F32/F16/BF16, 32 for Q8_0/Q4_0), bytes per block. */
int dtype_block_elems(dtype t);
size_t dtype_block_bytes(dtype t);
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t dtype_row_bytes(dtype t, int64_t n);

int64_t tensor_nelements(const tensor *t);
/* Pointer to row r of a matrix. */
const void *tensor_row(const tensor *t, int64_t r);

/* Scalar conversions. F16 handles subnormals, infinities and NaN; F32->F16 and F32->BF16 round
 * to nearest even. */
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/* Converts n elements of type t at src into out (n floats). n is a multiple of the block size. */
void dequantize_row(float *out, const void *src, dtype t, int64_t n);

/* Quantizes n floats (n a multiple of QK) into blocks, the way llama.cpp's reference quantizers
 * do: d = max|x| / 127 (Q8_0) or d = x_absmax_signed / -8 (Q4_0). */
void quantize_row_q8_0(block_q8_0 *out, const float *x, int64_t n);
void quantize_row_q4_0(block_q4_0 *out, const float *x, int64_t n);
void quantize_row_q8_act(block_q8_act *out, const float *x, int64_t n);
/* The inverse of dequantize_row: n floats into a row of type t at out (F32 copied, F16/BF16
 * rounded to nearest even, Q8_0/Q4_0 by the quantizers above). */
void quantize_row(void *out, const float *x, dtype t, int64_t n);

#endif
