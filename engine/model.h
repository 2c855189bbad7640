/* model: the blueprint (hyper-parameters) and the weights of one LLaMA-2-family model, loaded
 * from a GGUF file or a llama2.c checkpoint. The weights are views into one read-only shared
 * mapping and are never converted wholesale; a loaded model is immutable and may be used by any
 * number of threads at once. */
#ifndef LS_MODEL_H
#define LS_MODEL_H

#include "gguf.h"
#include "mapfile.h"
#include "tensor.h"
#include "tokenizer.h"

typedef struct {
    int dim;        /* embedding length (C) */
    int n_layers;   /* transformer blocks */
    int n_heads;    /* query heads */
    int n_kv_heads; /* key/value heads; divides n_heads */
    int head_dim;   /* dim / n_heads */
    int hidden_dim; /* SwiGLU feed-forward width */
    int vocab_size;
    int ctx_len;    /* training context length (a default, not a limit we enforce) */
    int rope_dim;   /* leading dimensions of each head that RoPE rotates (usually head_dim) */
    float rope_theta;
    float rope_scale; /* linear RoPE scaling (llama.rope.scaling.factor): every frequency is
                         divided by it; 0 or 1: none */
    float norm_eps;
} model_config;

typedef struct {
    tensor attn_norm; /* (dim) F32 */
    tensor wq;        /* (n_heads * head_dim, dim): ne = {dim, n_heads*head_dim} */
    tensor wk;        /* (n_kv_heads * head_dim, dim) */
    tensor wv;        /* (n_kv_heads * head_dim, dim) */
    tensor wo;        /* (dim, n_heads * head_dim) */
    tensor ffn_norm;  /* (dim) F32 */
    tensor w_gate;    /* (hidden_dim, dim)   "w1" in llama2.c, ffn_gate in GGUF */
    tensor w_down;    /* (dim, hidden_dim)   "w2", ffn_down */
    tensor w_up;      /* (hidden_dim, dim)   "w3", ffn_up */
} layer_weights;

typedef struct {
    model_config cfg;
    tensor tok_embd;  /* (vocab_size, dim) */
    tensor out_norm;  /* (dim) F32 */
    tensor output;    /* (vocab_size, dim); the same view as tok_embd when tied */
    const float *rope_factors; /* (rope_dim / 2) rope_freqs.weight (Llama 3.1+): pair i's
                                  frequency is divided by rope_factors[i]; NULL when absent */
    layer_weights *layers; /* (n_layers) */
    tokenizer *tok;   /* NULL when the file carries none and none was given */
    gguf_file *gguf;  /* the parsed GGUF file, or NULL for a llama2.c checkpoint */
    mapfile map;      /* the llama2.c checkpoint mapping (GGUF files own theirs) */
    void *packed;     /* model_repack's private copy of the quantized matrices, or NULL */
    char path[512];
} model;

/* Loads a model from path, choosing the format by content (GGUF magic, else llama2.c).
 * tokenizer_path: a llama2.c tokenizer.bin, or a GGUF/ .bin to take it from; NULL uses the
 * model's own (GGUF metadata) or, for a llama2.c checkpoint, "tokenizer.bin" beside it if
 * present. Every size, offset and shape is checked against the file before use.
 * Returns NULL with a message on error. Caller frees with model_free. */
model *model_load(const char *path, const char *tokenizer_path, char *err, size_t errlen);
void model_free(model *m);

/* Loads only a tokenizer: from a GGUF file's metadata (a vocabulary-only GGUF is fine) or from a
 * llama2.c tokenizer.bin. NULL with a message on error; caller frees with tok_free. */
tokenizer *model_load_tokenizer(const char *path, char *err, size_t errlen);

/* The opt-in --repack: copies every Q4_0 and IQ4_NL matrix (by whole groups of 16 rows) and
 * every K-quant and IQ4_XS one (groups of 8) into private memory in the layout of the AVX-512
 * VNNI decode kernels (x86.h mm_dec_repack), which the AVX2 ones read too, and points each
 * tensor's `packed` at its copy; the mapped weights stay in use for everything else (prefill,
 * other CPUs). Costs *bytes (returned; 0 when there is nothing to repack: none of those types,
 * or no AVX2) of private
 * memory, freed by model_free. The results are the
 * same bits. Call once, before any forward pass, from one thread. -1 when the memory is lacking
 * (the model is unchanged). */
int model_repack(model *m, size_t *bytes);

/* Bytes of weights read to generate one token (every matrix once). */
size_t model_weight_bytes(const model *m);

/* Checks a config's ranges and divisibility, for the loaders of both formats (gguf in model.c,
 * llama2.c in llama2c.c). 0, or -1 with a message. */
int model_check_config(const model_config *c, char *err, size_t errlen);

/* What the weights hold: parameters and bytes in all, and per element type (a tied output
 * matrix counted once, as it is stored once). */
#define MODEL_MAX_TYPES 8
typedef struct {
    int64_t n_params;
    size_t bytes;
    int n_tensors;
    int n_types;
    struct {
        dtype type;
        int n_tensors;
        int64_t n_params;
        size_t bytes;
    } types[MODEL_MAX_TYPES]; /* (n_types), in order of first appearance */
} model_stats;
void model_get_stats(const model *m, model_stats *out);

#endif
