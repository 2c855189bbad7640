/* routes: the one table of HTTP routes, as an X-macro, so that http.c (dispatch, the API key)
 * and metrics.c (requests counted per route) list the same paths. X(path, method, kind,
 * public): kind is http.c's handler (R_*); public routes are answered without the API key
 * (PUB_ALWAYS), or without it while public_models is on (PUB_MODELS). */
#ifndef LS_ROUTES_H
#define LS_ROUTES_H

enum { PUB_NO, PUB_ALWAYS, PUB_MODELS };

/* clang-format off */
#define HTTP_ROUTES(X)                                                   \
    X("/health",              "GET",  R_HEALTH,         PUB_ALWAYS)     \
    X("/v1/health",           "GET",  R_HEALTH,         PUB_ALWAYS)     \
    X("/v1/models",           "GET",  R_MODELS,         PUB_MODELS)     \
    X("/models",              "GET",  R_MODELS,         PUB_MODELS)     \
    X("/metrics",             "GET",  R_METRICS,        PUB_NO)         \
    X("/v1/completions",      "POST", R_COMPLETIONS,    PUB_NO)         \
    X("/v1/chat/completions", "POST", R_CHAT,           PUB_NO)         \
    X("/chat/completions",    "POST", R_CHAT,           PUB_NO)         \
    X("/completion",          "POST", R_NATIVE,         PUB_NO)         \
    X("/completions",         "POST", R_NATIVE,         PUB_NO)         \
    X("/tokenize",            "POST", R_TOKENIZE,       PUB_NO)         \
    X("/detokenize",          "POST", R_DETOKENIZE,     PUB_NO)         \
    X("/apply-template",      "POST", R_APPLY_TEMPLATE, PUB_NO)         \
    X("/props",               "GET",  R_PROPS,          PUB_NO)         \
    X("/slots",               "GET",  R_SLOTS,          PUB_NO)         \
    X("/v1/responses",        "POST", R_RESPONSES,      PUB_NO)         \
    X("/v1/embeddings",       "POST", R_EMBEDDINGS,     PUB_NO)         \
    X("/embeddings",          "POST", R_EMBEDDINGS_LLAMA, PUB_NO) /* llama.cpp's own shape */
/* clang-format on */

#endif
