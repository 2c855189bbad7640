/* quant_mix: which type each tensor gets in a quantization file type. The rules are those of
 * llama.cpp's llama-quantize (its mixes are what users download and compare), restated as one
 * table; the shared llama.cpp-made kjv-demo files are the check (tests/test_quantize.py). No
 * I/O, no allocation; thread-safe. */
#include "quantize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* llama_ftype numbers as general.file_type records them. Q3_K, Q4_K and Q5_K name the _M mixes
 * (llama-quantize's aliases). */
static const quant_ftype ftypes[] = {
    {"F16", 1, DT_F16},       {"BF16", 32, DT_BF16},    {"Q8_0", 7, DT_Q8_0},
    {"Q4_0", 2, DT_Q4_0},     {"Q4_1", 3, DT_Q4_1},     {"Q5_0", 8, DT_Q5_0},
    {"Q5_1", 9, DT_Q5_1},     {"Q2_K", 10, DT_Q2_K},    {"Q3_K_M", 12, DT_Q3_K},
    {"Q4_K_M", 15, DT_Q4_K},  {"Q5_K_M", 17, DT_Q5_K},  {"Q6_K", 18, DT_Q6_K},
    {"IQ4_NL", 25, DT_IQ4_NL}, {"IQ4_XS", 30, DT_IQ4_XS},
};
#define N_FTYPES (sizeof ftypes / sizeof ftypes[0])

static const struct {
    const char *alias, *name;
} aliases[] = {{"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};

const quant_ftype *quant_ftype_find(const char *name) {
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcasecmp(name, aliases[i].alias)) name = aliases[i].name;
    for (size_t i = 0; i < N_FTYPES; i++)
        if (!strcasecmp(name, ftypes[i].name)) return &ftypes[i];
    return NULL;
}

const char *quant_ftype_names(void) {
    return "F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K(_M) Q4_K(_M) Q5_K(_M) Q6_K IQ4_NL IQ4_XS";
}

/* ---- the rules --------------------------------------------------------------------------- */

typedef enum { T_OUTPUT, T_ATTN_V, T_ATTN_OUTPUT, T_FFN_DOWN, T_OTHER } tensor_role;

/* Which layers a rule covers, for layer i of n. */
typedef enum {
    L_ALL,
    L_MORE_BITS,  /* i < n/8, i >= 7n/8, or every third layer between: (i - n/8) % 3 == 2 */
    L_FIRST_2,    /* i < 2 */
    L_FIRST_16TH, /* i < n/16 */
    L_FIRST_8TH,  /* i < n/8 */
    L_GQA_4,      /* every layer, when 4 or more query heads share a KV head */
    L_GQA_BELOW_4,
} layer_set;

/* The first rule that matches a tensor's role, the file type's base type and its layer gives
 * its type; no match keeps the base type. Base types stand for their file types (Q4_K: Q4_K_M).
 * The output matrix (rule in quant_tensor_type) gets Q6_K unless the base is Q8_0. */
static const struct {
    tensor_role role;
    dtype base;
    layer_set layers;
    dtype type;
} rules[] = {
    /* role         file type  layers         type */
    {T_ATTN_V,      DT_Q2_K,   L_GQA_4,       DT_Q4_K},
    {T_ATTN_V,      DT_Q2_K,   L_GQA_BELOW_4, DT_Q3_K},
    {T_ATTN_V,      DT_Q3_K,   L_FIRST_2,     DT_Q5_K},
    {T_ATTN_V,      DT_Q3_K,   L_ALL,         DT_Q4_K},
    {T_ATTN_V,      DT_Q4_K,   L_MORE_BITS,   DT_Q6_K},
    {T_ATTN_V,      DT_Q5_K,   L_MORE_BITS,   DT_Q6_K},
    {T_ATTN_V,      DT_IQ4_NL, L_GQA_4,       DT_Q5_K},
    {T_ATTN_V,      DT_IQ4_XS, L_GQA_4,       DT_Q5_K},
    {T_ATTN_OUTPUT, DT_Q2_K,   L_ALL,         DT_Q3_K},
    {T_ATTN_OUTPUT, DT_Q3_K,   L_ALL,         DT_Q4_K},
    {T_FFN_DOWN,    DT_Q2_K,   L_ALL,         DT_Q3_K},
    {T_FFN_DOWN,    DT_Q3_K,   L_FIRST_16TH,  DT_Q5_K},
    {T_FFN_DOWN,    DT_Q3_K,   L_ALL,         DT_Q4_K},
    {T_FFN_DOWN,    DT_Q4_K,   L_MORE_BITS,   DT_Q6_K},
    {T_FFN_DOWN,    DT_Q5_K,   L_MORE_BITS,   DT_Q6_K},
    {T_FFN_DOWN,    DT_IQ4_NL, L_FIRST_8TH,   DT_Q5_K},
    {T_FFN_DOWN,    DT_IQ4_XS, L_FIRST_8TH,   DT_Q5_K},
};

/* A block that does not divide the row length: the type llama.cpp falls back to (Q2_K and Q3_K
 * to Q4_0, as the shared kjv-demo-q2_k.gguf shows; some llama.cpp versions chose IQ4_NL). */
static const struct {
    dtype from, to;
} fallbacks[] = {
    {DT_Q2_K, DT_Q4_0},   {DT_Q3_K, DT_Q4_0},   {DT_IQ4_XS, DT_IQ4_NL},
    {DT_Q4_K, DT_Q5_0},   {DT_Q5_K, DT_Q5_1},   {DT_Q6_K, DT_Q8_0},
};

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static bool in_layers(layer_set set, int i, int n, int n_gqa) {
    switch (set) {
    case L_ALL: return true;
    case L_MORE_BITS: return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
    case L_FIRST_2: return i < 2;
    case L_FIRST_16TH: return i < n / 16;
    case L_FIRST_8TH: return i < n / 8;
    case L_GQA_4: return n_gqa >= 4;
    case L_GQA_BELOW_4: return n_gqa < 4;
    }
    return false;
}

bool quant_wants(const quant_tensor_info *ti) {
    return ti->n_dims >= 2 && ends_with(ti->name, "weight") && !strstr(ti->name, "_norm.weight");
}

static bool divides(dtype t, int64_t ne0) { return ne0 % dtype_block_elems(t) == 0; }

dtype quant_tensor_type(const quant_ftype *ft, bool pure, const quant_tensor_info *ti) {
    dtype t = ft->base;
    const bool quantized = dtype_block_elems(t) > 1;
    if (!pure && quantized) {
        const char *name = ti->name;
        const bool output = !strcmp(name, "output.weight") ||
                            (!ti->has_output && !strcmp(name, "token_embd.weight"));
        if (output) {
            if (!divides(t, ti->ne0)) return DT_Q8_0;
            return t == DT_Q8_0 ? t : DT_Q6_K;
        }
        tensor_role role = ends_with(name, "attn_v.weight")        ? T_ATTN_V
                           : ends_with(name, "attn_output.weight") ? T_ATTN_OUTPUT
                           : strstr(name, "ffn_down")              ? T_FFN_DOWN
                                                                   : T_OTHER;
        int layer = 0;
        if (!strncmp(name, "blk.", 4)) layer = atoi(name + 4);
        for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
            if (rules[i].role == role && rules[i].base == ft->base &&
                in_layers(rules[i].layers, layer, ti->n_layers, ti->n_gqa)) {
                t = rules[i].type;
                break;
            }
    }
    if (divides(t, ti->ne0)) return t;
    for (size_t i = 0; i < sizeof fallbacks / sizeof fallbacks[0]; i++)
        if (fallbacks[i].from == t) {
            t = fallbacks[i].to;
            break;
        }
    return divides(t, ti->ne0) ? t : DT_F16;
}
