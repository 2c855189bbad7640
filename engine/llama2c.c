/* llama2c: reads legacy llama2.c checkpoints (run.c's format): seven int32 header fields, then
 * every weight in F32, layer tensors contiguous across layers. Owns nothing beyond the mapping it
 * puts in model->map; never copies or converts a weight, and accepts a file only when its size
 * is exactly what the header implies. */
#include "llama2c.h"
#include "common.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Appends an array of n floats at *pos: stores its offset in *at and advances *pos. */
static int place(size_t *pos, size_t *at, size_t n_floats) {
    size_t bytes;
    if (ls_mul_size(n_floats, sizeof(float), &bytes) != 0) return -1;
    *at = *pos;
    return ls_add_size(*pos, bytes, pos);
}

/* a*b*c floats, checked. */
static int count3(size_t a, size_t b, size_t c, size_t *out) {
    size_t ab;
    return ls_mul_size(a, b, &ab) != 0 || ls_mul_size(ab, c, out) != 0 ? -1 : 0;
}

int llama2c_parse(const uint8_t *data, size_t size, llama2c_layout *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (size < LLAMA2C_HEADER_BYTES)
        return ls_fail(err, errlen,
                       "truncated llama2.c checkpoint: %zu bytes, the header alone is %d", size,
                       LLAMA2C_HEADER_BYTES);
    int32_t h[7];
    memcpy(h, data, sizeof h);
    model_config *c = &out->cfg;
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    out->shared_classifier = h[5] > 0;
    c->vocab_size = h[5] == INT32_MIN ? 0 : abs(h[5]);
    c->ctx_len = h[6];
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    c->rope_dim = c->head_dim;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    if (model_check_config(c, err, errlen) != 0) return -1;

    size_t dim = (size_t)c->dim, hidden = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim, vocab = (size_t)c->vocab_size;
    size_t n, pos = LLAMA2C_HEADER_BYTES;
    int bad = 0;
    bad |= ls_mul_size(vocab, dim, &n) || place(&pos, &out->tok_embd, n);
    bad |= ls_mul_size(L, dim, &n) || place(&pos, &out->rms_att, n);
    bad |= count3(L, dim, dim, &n) || place(&pos, &out->wq, n);
    bad |= count3(L, dim, kv_dim, &n) || place(&pos, &out->wk, n);
    bad |= count3(L, dim, kv_dim, &n) || place(&pos, &out->wv, n);
    bad |= count3(L, dim, dim, &n) || place(&pos, &out->wo, n);
    bad |= ls_mul_size(L, dim, &n) || place(&pos, &out->rms_ffn, n);
    bad |= count3(L, dim, hidden, &n) || place(&pos, &out->w1, n);
    bad |= count3(L, hidden, dim, &n) || place(&pos, &out->w2, n);
    bad |= count3(L, dim, hidden, &n) || place(&pos, &out->w3, n);
    bad |= place(&pos, &out->rms_final, dim);
    /* freq_cis_real and freq_cis_imag: (seq_len, head_size/2) each, unused (RoPE is computed) */
    bad |= ls_mul_size((size_t)c->ctx_len, (size_t)c->head_dim / 2, &n) ||
           place(&pos, &out->freq_cis_real, n) || place(&pos, &out->freq_cis_imag, n);
    if (out->shared_classifier)
        out->wcls = out->tok_embd;
    else
        bad |= ls_mul_size(vocab, dim, &n) || place(&pos, &out->wcls, n);
    if (bad) return ls_fail(err, errlen, "llama2.c header implies a size that overflows");
    out->file_size = pos;
    if (size != pos)
        return ls_fail(
            err, errlen,
            "llama2.c checkpoint size %zu does not match the %zu bytes its header implies "
            "(dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d, seq_len %d)",
            size, pos, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, h[5],
            c->ctx_len);
    return 0;
}

/* An F32 view at byte offset off of the mapping: a matrix of ne1 rows of ne0, or a vector. */
static tensor view(const model *m, size_t off, int64_t ne0, int64_t ne1) {
    tensor t = {.data = m->map.data + off, .type = DT_F32, .n_dims = 2, .ne = {ne0, ne1, 1, 1}};
    return t;
}

static tensor vec(const model *m, size_t off, int64_t ne0) {
    tensor t = {.data = m->map.data + off, .type = DT_F32, .n_dims = 1, .ne = {ne0, 1, 1, 1}};
    return t;
}

int llama2c_load_weights(model *m, const char *path, char *err, size_t errlen) {
    char sub[LS_ERR_LEN];
    llama2c_layout lay;
    if (map_open(&m->map, path, err, errlen) != 0) return -1;
    if (llama2c_parse(m->map.data, m->map.size, &lay, sub, sizeof sub) != 0)
        return ls_fail(err, errlen, "%s: %s", path, sub);
    m->cfg = lay.cfg;
    const model_config *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return ls_fail(err, errlen, "%s: out of memory", path);
    size_t dim = (size_t)c->dim, hidden = (size_t)c->hidden_dim;
    size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim, f = sizeof(float);
    m->tok_embd = view(m, lay.tok_embd, c->dim, c->vocab_size);
    m->out_norm = vec(m, lay.rms_final, c->dim);
    m->output = view(m, lay.wcls, c->dim, c->vocab_size);
    for (size_t l = 0; l < (size_t)c->n_layers; l++) {
        /* the file size check above bounds every one of these offsets */
        layer_weights *w = &m->layers[l];
        w->attn_norm = vec(m, lay.rms_att + l * dim * f, c->dim);
        w->wq = view(m, lay.wq + l * dim * dim * f, c->dim, c->dim);
        w->wk = view(m, lay.wk + l * kv_dim * dim * f, c->dim, (int64_t)kv_dim);
        w->wv = view(m, lay.wv + l * kv_dim * dim * f, c->dim, (int64_t)kv_dim);
        w->wo = view(m, lay.wo + l * dim * dim * f, c->dim, c->dim);
        w->ffn_norm = vec(m, lay.rms_ffn + l * dim * f, c->dim);
        w->w_gate = view(m, lay.w1 + l * hidden * dim * f, c->dim, c->hidden_dim);
        w->w_down = view(m, lay.w2 + l * hidden * dim * f, c->hidden_dim, c->dim);
        w->w_up = view(m, lay.w3 + l * hidden * dim * f, c->dim, c->hidden_dim);
    }
    return 0;
}
