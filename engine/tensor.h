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
    DT_Q4_1 = 3,
    DT_Q5_0 = 6,
    DT_Q5_1 = 7,
    DT_Q8_0 = 8,
    DT_Q2_K = 10,
    DT_Q3_K = 11,
    DT_Q4_K = 12,
    DT_Q5_K = 13,
    DT_Q6_K = 14,
    DT_IQ4_NL = 20,
    DT_IQ4_XS = 23,
    DT_BF16 = 30,
} dtype;

#define QK 32    /* elements per block in Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL */
#define QK_K 256 /* elements per super-block in the K-quants and IQ4_XS */

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

/* The other block layouts, byte for byte as ggml writes them (all fields little-endian, F16
 * scales as bits). Sizes are checked by _Static_assert in tensor.c. */

/* Q4_1: value = d * nibble + m; nibbles laid out as in Q4_0. 20 bytes. */
typedef struct {
    uint16_t d, m;
    uint8_t qs[QK / 2];
} block_q4_1;

/* Q5_0: a 5-bit code per element: the nibble as in Q4_0, bit 4 from bit i of the little-endian
 * 32-bit qh; value = d * (code - 16). 22 bytes. */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
} block_q5_0;

/* Q5_1: codes as in Q5_0; value = d * code + m. 24 bytes. */
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
} block_q5_1;

/* Q2_K: 16 sub-blocks of 16; scales[i] holds sub-block i's 4-bit scale (low) and 4-bit min
 * (high); 2-bit codes, four per byte; value = d * scale * code - dmin * min. 84 bytes. */
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d, dmin;
} block_q2_K;

/* Q3_K: 16 sub-blocks of 16; 2 low bits in qs, the third bit in hmask (a clear bit subtracts 4);
 * sixteen 6-bit scales packed in 12 bytes, offset by 32; value = d * (scale - 32) * code.
 * 110 bytes. */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} block_q3_K;

/* Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes; value =
 * d * scale * nibble - dmin * min. 144 bytes. */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_K;

/* Q5_K: Q4_K plus a fifth bit per element in qh. 176 bytes. */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;

/* Q6_K: 16 sub-blocks of 16 with signed 8-bit scales; 6-bit codes as 4 low bits (ql) and 2 high
 * bits (qh); value = d * scale * (code - 32). 210 bytes. */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_K;

/* IQ4_NL: 4-bit indices into a fixed non-linear table of 16 values, nibbles as in Q4_0;
 * value = d * table[index]. 18 bytes. */
typedef struct {
    uint16_t d;
    uint8_t qs[QK / 2];
} block_iq4_nl;

/* IQ4_XS: IQ4_NL's table over 8 sub-blocks of 32, each with a 6-bit scale (4 low bits in
 * scales_l, 2 high bits in scales_h) offset by 32. 136 bytes. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;

/* The packed parts of the block types, shared by the dequantizers and the dot products. */
extern const int8_t iq4_levels[16]; /* IQ4_NL's and IQ4_XS's 16 values */
/* Q4_K/Q5_K: sub-block j's (0..7) 6-bit scale and min from the 12 packed scale bytes: bytes 0-3
 * hold the low 6 bits of scales 0-3, bytes 4-7 those of mins 0-3, bytes 8-11 the low 4 bits of
 * scale (low nibble) and min (high nibble) 4-7, whose top 2 bits sit in the top bits of bytes
 * 0-3 (scales) and 4-7 (mins). Inline: the SIMD kernels call it per sub-block. */
static inline void k4_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
/* Q3_K: the sixteen 6-bit scales, minus 32, from the 12 packed scale bytes. */
void q3_K_scales(int out[16], const uint8_t *scales);
/* Q5_0/Q5_1: code j (0..31) of a block: the nibble (element j < 16 low in qs[j], j >= 16 high in
 * qs[j - 16]) with bit j of the little-endian 32-bit qh as its fifth bit. */
static inline int q5_code(const uint8_t qh[4], const uint8_t qs[QK / 2], int j) {
    const uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                       (uint32_t)qh[3] << 24;
    const int lo = j < QK / 2 ? qs[j] & 0x0f : qs[j - QK / 2] >> 4;
    return lo | (int)((h >> j) & 1) << 4;
}

/* Activations quantized for the K-quants and IQ4_XS: 256 values as 8-bit codes with an F32
 * scale (d = max|x| / 127, as block_q8_act), and the sum of each 16 codes (for the mins).
 * Never stored in files. */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

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
    /* Q4_0, IQ4_NL, the K-quants and IQ4_XS only, or NULL: the same weights repacked for the
     * decode kernels in private memory (model_repack, x86.h mm_dec_repack), owned by the model;
     * data stays valid beside it */
    const void *packed;
} tensor;

/* "F32", "Q4_0", ...; NULL for a type this engine does not support. */
const char *dtype_name(uint32_t type);
bool dtype_supported(uint32_t type);
/* Elements per block (1 for F32/F16/BF16, 32 or 256 for the block types), bytes per block. */
int dtype_block_elems(dtype t);
size_t dtype_block_bytes(dtype t);
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t dtype_row_bytes(dtype t, int64_t n);
/* The same for every ggml tensor type a GGUF file may hold (a superset of what the engine
 * computes with; gguf.c checks a file's layout with them): name ("F32", "IQ2_XS", ...) or NULL
 * when unknown; elements and bytes per block (0 if unknown). */
const char *dtype_ggml_name(uint32_t type);
int dtype_ggml_block_elems(uint32_t type);
size_t dtype_ggml_block_bytes(uint32_t type);

int64_t tensor_nelements(const tensor *t);
/* Pointer to row r of a matrix. */
const void *tensor_row(const tensor *t, int64_t r);

/* Scalar conversions. F16 handles subnormals, infinities and NaN; F32->F16 and F32->BF16 round
 * to nearest even. */
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/* Byte offsets, within one block of type t, of its F16 scale fields (d; and m or dmin where the
 * type has one), ending with -1; for the types without F16 scales, only -1. Writers of random
 * blocks (make-model, tests) use it to put finite scales there. */
const int *dtype_f16_fields(dtype t);

/* Converts n elements of type t at src into out (n floats). n is a multiple of the block size.
 * Every supported type; the scalar reference the kernels are tested against. */
void dequantize_row(float *out, const void *src, dtype t, int64_t n);

/* Quantizes n floats (n a multiple of QK) into blocks, the way llama.cpp's reference quantizers
 * do: d = max|x| / 127 (Q8_0) or d = x_absmax_signed / -8 (Q4_0). */
void quantize_row_q8_0(block_q8_0 *out, const float *x, int64_t n);
void quantize_row_q4_0(block_q4_0 *out, const float *x, int64_t n);
void quantize_row_q8_act(block_q8_act *out, const float *x, int64_t n);
/* The inverse of dequantize_row for F32, F16, BF16, Q8_0 and Q4_0: n floats into a row of type
 * t at out (F32 copied, F16/BF16 rounded to nearest even, Q8_0/Q4_0 by the quantizers above).
 * Returns -1 (writing nothing) for a type it cannot encode. */
int quantize_row(void *out, const float *x, dtype t, int64_t n);

#endif
