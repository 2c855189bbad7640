/* llama2c: the legacy llama2.c checkpoint format (a header of seven int32, then every weight as
 * F32 in run.c's memory_map_weights order). Internal to the engine: model.c and the inspect
 * command use it; everyone else goes through model_load. Never copies weights: the views point
 * into the mapping. */
#ifndef LS_LLAMA2C_H
#define LS_LLAMA2C_H

#include "model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LLAMA2C_HEADER_BYTES 28

/* Where each weight array of a checkpoint lies: byte offsets from the start of the file and
 * counts of floats, all checked against size_t overflow. */
typedef struct {
    model_config cfg;
    bool shared_classifier; /* vocab_size in the header was positive: output = token embedding */
    size_t tok_embd, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis_real,
        freq_cis_imag, wcls; /* byte offsets; wcls == tok_embd when shared */
    size_t file_size;        /* the exact size the header implies */
} llama2c_layout;

/* Parses the header of a size-byte file and computes its layout. Returns 0, or -1 with a message
 * when the header is invalid or the file size is not exactly what it implies. */
int llama2c_parse(const uint8_t *data, size_t size, llama2c_layout *out, char *err, size_t errlen);

/* Maps path into m->map and sets m->cfg, the tensor views and m->layers (no tokenizer).
 * On error m may hold partial state: the caller frees it with model_free. */
int llama2c_load_weights(model *m, const char *path, char *err, size_t errlen);

#endif
