/* quantize: float rows into every block type the engine reads (the layouts of tensor.h), and
 * the per-tensor type rules of llama.cpp's quantization mixes (Q4_K_M, ...). Pure functions: no
 * I/O, no allocation, thread-safe; `llamaserve quantize` (cli/cmd_quantize.c) owns the files. */
#ifndef LS_QUANTIZE_H
#define LS_QUANTIZE_H

#include "tensor.h"

#include <stdbool.h>
#include <stdint.h>

/* Quantizes n floats (n a multiple of dtype_block_elems(t)) into dtype_row_bytes(t, n) bytes
 * at out. Every type dtype_supported knows: F32, F16 and BF16 by rounding, Q8_0 as
 * quantize_row_q8_0, the others by a small search over each block's scale (and min) for the
 * least squared error. Returns 0, or -1 (writing nothing) for a type it cannot encode. */
int quant_row(void *out, const float *x, dtype t, int64_t n);

/* A quantization file type as llama.cpp's llama-quantize names it: the type of most matrices,
 * the number general.file_type records, and whether its mix rules apply (they apply to every
 * quantized type unless --pure; F16 and BF16 have none). */
typedef struct {
    const char *name;  /* canonical name: "Q4_K_M", "Q8_0", ... */
    int file_type;     /* llama_ftype: 15 for Q4_K_M, ... */
    dtype base;        /* the type of most matrices */
} quant_ftype;

/* The file type for a TYPE argument (case-insensitive). Q3_K, Q4_K and Q5_K are the mixes
 * Q3_K_M, Q4_K_M and Q5_K_M, as in llama-quantize; the plain types come with --pure. NULL when
 * unknown. */
const quant_ftype *quant_ftype_find(const char *name);
/* The accepted TYPE names, space-separated (for messages). */
const char *quant_ftype_names(void);

/* What the mix rules need to know about one tensor and its model. */
typedef struct {
    const char *name;  /* GGUF tensor name, NUL-terminated: "blk.3.ffn_down.weight" */
    int n_dims;
    int64_t ne0;       /* row length */
    int n_layers;      /* the model's block count */
    int n_gqa;         /* query heads per KV head */
    bool has_output;   /* the model has its own output.weight (else token_embd is the output) */
} quant_tensor_info;

/* Whether a tensor is quantized at all: a 2-D (or higher) tensor whose name ends in "weight",
 * norms excepted. Others are copied as they are. */
bool quant_wants(const quant_tensor_info *ti);
/* The type a quantized tensor gets in file type ft: ft's base type changed by llama.cpp's rules
 * for the output matrix, attn_v, attn_output and ffn_down (unless pure), then changed to the
 * fallback type when its block does not divide the row length (Q2_K, Q3_K -> Q4_0; IQ4_XS ->
 * IQ4_NL; Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; F16 when even that does not divide). */
dtype quant_tensor_type(const quant_ftype *ft, bool pure, const quant_tensor_info *ti);

#endif
