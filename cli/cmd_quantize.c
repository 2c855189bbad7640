/* cmd_quantize: `llamaserve quantize IN OUT TYPE`, writes a GGUF copy of an F32/F16/BF16 model
 * (GGUF, or a llama2.c checkpoint with its tokenizer.bin) with its matrices quantized: the types
 * per tensor from engine/quant_mix.c, the codes from engine/quantize.c, rows split between
 * threads. All metadata is copied (general.file_type set); the file is written beside OUT under
 * a temporary name and renamed into place, so OUT is either whole or untouched, and the
 * temporary file is removed on failure and on SIGINT, SIGTERM and SIGHUP. */
#include "cli.h"

#include "args.h"
#include "common.h"
#include "gguf.h"
#include "gguf_write.h"
#include "llama2c.h"
#include "model.h"
#include "quantize.h"
#include "threadpool.h"
#include "tokenizer.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: llamaserve quantize IN OUT TYPE [--pure] [-t N] [--tokenizer PATH]\n"
            "\n"
            "Writes OUT, a GGUF copy of the F32/F16/BF16 model IN with its matrices quantized.\n"
            "\n"
            "  TYPE              a llama-quantize file type: F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1\n"
            "                    IQ4_NL IQ4_XS Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K (Q3_K, Q4_K, Q5_K\n"
            "                    are the _M mixes); case-insensitive. Its rules give the output\n"
            "                    matrix, attn_v, attn_output and some ffn_down layers a higher\n"
            "                    type, as llama.cpp does (docs/QUANTIZATION.md)\n"
            "  --pure            one type for every matrix: TYPE's base type (Q4_K for Q4_K_M);\n"
            "                    a row its block does not divide still falls back\n"
            "  -t, --threads N   threads that split each matrix's rows (default 2)\n"
            "  --tokenizer PATH  the tokenizer.bin of a llama2.c checkpoint IN (required then)\n"
            "  -h, --help        this help\n");
}

/* One tensor of the output: where its values come from and how it is written. */
typedef struct {
    char name[96];
    int n_dims;
    int64_t ne[4];
    dtype src_type;
    const void *src; /* in IN's mapping */
    dtype type;      /* as written */
    uint64_t offset, nbytes;
} qtensor;

typedef struct {
    gguf_file *gguf; /* a GGUF IN, or NULL */
    model *l2c;      /* a llama2.c IN, or NULL */
    qtensor *t;
    int n;
    int n_layers, n_gqa;
    uint64_t alignment;
} qinput;

#define ERR(...)                                                                                  \
    do {                                                                                          \
        fprintf(stderr, "llamaserve quantize: " __VA_ARGS__);                                     \
        fputc('\n', stderr);                                                                      \
    } while (0)

static bool is_gguf(const char *path) {
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(magic, "GGUF", 4);
}

static int add_tensor(qinput *in, const char *name, const tensor *t) {
    qtensor *q = &in->t[in->n++];
    snprintf(q->name, sizeof q->name, "%s", name);
    q->n_dims = t->n_dims;
    memcpy(q->ne, t->ne, sizeof q->ne);
    q->src_type = t->type;
    q->src = t->data;
    return 0;
}

/* The llama2.c checkpoint's weights under their GGUF names. */
static int open_llama2c(qinput *in, const char *path, const char *tok_path, char *err,
                        size_t errlen) {
    in->l2c = model_load(path, tok_path, err, errlen);
    if (!in->l2c) return -1;
    const model *m = in->l2c;
    in->t = calloc((size_t)(3 + 9 * m->cfg.n_layers), sizeof *in->t);
    if (!in->t) return snprintf(err, errlen, "out of memory"), -1;
    add_tensor(in, "token_embd.weight", &m->tok_embd);
    add_tensor(in, "output_norm.weight", &m->out_norm);
    if (m->output.data != m->tok_embd.data) add_tensor(in, "output.weight", &m->output);
    static const char *names[] = {"attn_norm", "attn_q",   "attn_k",    "attn_v",  "attn_output",
                                  "ffn_norm",  "ffn_gate", "ffn_down", "ffn_up"};
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_weights *w = &m->layers[l];
        const tensor *ts[] = {&w->attn_norm, &w->wq,     &w->wk,     &w->wv,  &w->wo,
                              &w->ffn_norm,  &w->w_gate, &w->w_down, &w->w_up};
        for (int k = 0; k < 9; k++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, names[k]);
            add_tensor(in, name, ts[k]);
        }
    }
    in->n_layers = m->cfg.n_layers;
    in->n_gqa = m->cfg.n_heads / m->cfg.n_kv_heads;
    in->alignment = 32;
    return 0;
}

static int open_gguf(qinput *in, const char *path, char *err, size_t errlen) {
    in->gguf = gguf_open(path, err, errlen);
    if (!in->gguf) return -1;
    const gguf_file *f = in->gguf;
    int64_t n_layers = 0, n_heads = 1, n_kv = 1;
    if (gguf_get_int(f, "llama.block_count", &n_layers, err, errlen) < 0 ||
        gguf_get_int(f, "llama.attention.head_count", &n_heads, err, errlen) < 0 ||
        gguf_get_int(f, "llama.attention.head_count_kv", &n_kv, err, errlen) < 0)
        return -1;
    in->n_layers = (int)n_layers;
    in->n_gqa = n_kv > 0 ? (int)(n_heads / n_kv) : 1;
    in->alignment = f->alignment;
    in->t = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *in->t);
    if (!in->t) return snprintf(err, errlen, "out of memory"), -1;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *g = &f->tensors[i];
        const char *tn = dtype_ggml_name(g->type);
        if (g->type != DT_F32 && g->type != DT_F16 && g->type != DT_BF16) {
            snprintf(err, errlen,
                     "tensor '%.*s' is %s: quantize needs an F32, F16 or BF16 model "
                     "(it never re-quantizes)",
                     (int)g->name.len, g->name.s, tn ? tn : "of an unknown type");
            return -1;
        }
        if (g->name.len >= sizeof in->t[0].name)
            return snprintf(err, errlen, "tensor name too long: '%.*s'", (int)g->name.len,
                            g->name.s), -1;
        qtensor *q = &in->t[in->n++];
        memcpy(q->name, g->name.s, g->name.len);
        q->n_dims = (int)g->n_dims;
        memcpy(q->ne, g->ne, sizeof q->ne);
        q->src_type = (dtype)g->type;
        q->src = g->data;
    }
    return 0;
}

/* Chooses every tensor's type and offset; returns the end of the data section. */
static uint64_t plan(qinput *in, const quant_ftype *ft, bool pure) {
    bool has_output = false;
    for (int i = 0; i < in->n; i++) has_output |= !strcmp(in->t[i].name, "output.weight");
    uint64_t off = 0;
    for (int i = 0; i < in->n; i++) {
        qtensor *q = &in->t[i];
        quant_tensor_info ti = {q->name, q->n_dims, q->ne[0], in->n_layers, in->n_gqa,
                                has_output};
        q->type = quant_wants(&ti) ? quant_tensor_type(ft, pure, &ti) : q->src_type;
        int64_t rows = 1;
        for (int d = 1; d < 4; d++) rows *= q->ne[d];
        q->offset = off;
        q->nbytes = dtype_row_bytes(q->type, q->ne[0]) * (uint64_t)rows;
        off = (off + q->nbytes + in->alignment - 1) / in->alignment * in->alignment;
    }
    return off;
}

/* ---- metadata --------------------------------------------------------------------------- */

/* The metadata of a llama2.c IN: its config as llama.* keys and its tokenizer. */
static void put_llama2c_kvs(gw_file *o, const model *m, const char *path) {
    const model_config *c = &m->cfg;
    const tokenizer *t = m->tok;
    const char *base = strrchr(path, '/');
    gw_kv_str(o, "general.architecture", "llama");
    gw_kv_str(o, "general.name", base ? base + 1 : path);
    gw_kv_u32(o, "llama.context_length", (uint32_t)c->ctx_len);
    gw_kv_u32(o, "llama.embedding_length", (uint32_t)c->dim);
    gw_kv_u32(o, "llama.block_count", (uint32_t)c->n_layers);
    gw_kv_u32(o, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
    gw_kv_u32(o, "llama.attention.head_count", (uint32_t)c->n_heads);
    gw_kv_u32(o, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    gw_kv_u32(o, "llama.rope.dimension_count", (uint32_t)c->rope_dim);
    gw_kv_f32(o, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    gw_kv_f32(o, "llama.rope.freq_base", c->rope_theta);
    gw_kv_u32(o, "llama.vocab_size", (uint32_t)c->vocab_size);
    gw_kv_str(o, "tokenizer.ggml.model", "llama");
    const int n = tok_n_vocab(t);
    gw_kv_array(o, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = tok_piece(t, i, &len);
        gw_strn(o, p, len);
    }
    gw_kv_array(o, "tokenizer.ggml.scores", GGUF_FLOAT32, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        float s = tok_score(t, i);
        gw_put(o, &s, 4);
    }
    gw_kv_array(o, "tokenizer.ggml.token_type", GGUF_INT32, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        int32_t ty = tok_type(t, i);
        gw_put(o, &ty, 4);
    }
    gw_kv_u32(o, "tokenizer.ggml.bos_token_id", (uint32_t)tok_bos(t));
    gw_kv_u32(o, "tokenizer.ggml.eos_token_id", (uint32_t)tok_eos(t));
    if (tok_unk(t) >= 0) gw_kv_u32(o, "tokenizer.ggml.unknown_token_id", (uint32_t)tok_unk(t));
}

/* The pairs quantize sets itself (never copied from IN). */
static bool replaced_key(const gguf_kv *kv) {
    return gguf_str_eq(kv->key, "general.file_type") ||
           gguf_str_eq(kv->key, "general.quantization_version");
}

static void put_header(gw_file *o, const qinput *in, const quant_ftype *ft, const char *path) {
    uint64_t n_kv = 2;
    if (in->gguf) {
        for (uint64_t i = 0; i < in->gguf->n_kv; i++) n_kv += !replaced_key(&in->gguf->kv[i]);
    } else {
        gw_file count = {NULL, 1, 0}; /* failed: counts the pairs, writes nothing */
        put_llama2c_kvs(&count, in->l2c, path);
        n_kv += count.n_kv;
    }
    gw_put(o, "GGUF", 4);
    gw_u32(o, 3);
    gw_u64(o, (uint64_t)in->n);
    gw_u64(o, n_kv);
    if (in->gguf) {
        for (uint64_t i = 0; i < in->gguf->n_kv; i++)
            if (!replaced_key(&in->gguf->kv[i])) gw_kv_copy(o, &in->gguf->kv[i]);
    } else {
        put_llama2c_kvs(o, in->l2c, path);
    }
    gw_kv_u32(o, "general.quantization_version", 2);
    gw_kv_u32(o, "general.file_type", (uint32_t)ft->file_type);
    for (int i = 0; i < in->n; i++) {
        const qtensor *q = &in->t[i];
        gw_str(o, q->name);
        gw_u32(o, (uint32_t)q->n_dims);
        for (int d = 0; d < q->n_dims; d++) gw_u64(o, (uint64_t)q->ne[d]);
        gw_u32(o, (uint32_t)q->type);
        gw_u64(o, q->offset);
    }
}

/* ---- the data ---------------------------------------------------------------------------- */

typedef struct {
    const qtensor *q;
    int64_t r0, r1; /* the rows of this step */
    uint8_t *out;   /* the whole tensor as written */
    float *scratch; /* (n_threads, ne0) */
} quant_job;

static void quant_rows(void *ctx, int ith, int nth) {
    const quant_job *j = ctx;
    const qtensor *q = j->q;
    const int64_t n = j->r1 - j->r0, a = j->r0 + n * ith / nth, b = j->r0 + n * (ith + 1) / nth;
    float *row = j->scratch + (size_t)ith * (size_t)q->ne[0];
    const size_t src_bytes = dtype_row_bytes(q->src_type, q->ne[0]);
    const size_t dst_bytes = dtype_row_bytes(q->type, q->ne[0]);
    for (int64_t r = a; r < b; r++) {
        dequantize_row(row, (const uint8_t *)q->src + (size_t)r * src_bytes, q->src_type,
                       q->ne[0]);
        quant_row(j->out + (size_t)r * dst_bytes, row, q->type, q->ne[0]);
    }
}

static void progress(bool tty, int i, int n, const qtensor *q, int64_t done, int64_t rows) {
    const char *from = dtype_name(q->src_type), *to = dtype_name(q->type);
    if (!tty) {
        if (done == rows)
            fprintf(stderr, "[%d/%d] %s %s -> %s (%lld x %lld)\n", i + 1, n, q->name, from, to,
                    (long long)q->ne[0], (long long)rows);
        return;
    }
    char bar[31];
    const int fill = (int)(30 * done / (rows ? rows : 1));
    for (int k = 0; k < 30; k++) bar[k] = k < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%3d/%d] %-28s %-5s -> %-6s [%s] %3d%%%s", i + 1, n, q->name, from, to,
            bar, (int)(100 * done / (rows ? rows : 1)), done == rows ? "\n" : "");
}

static int put_data(gw_file *o, const qinput *in, pool *p, const char *out_path, char *err,
                    size_t errlen) {
    size_t max_ne0 = 1;
    for (int i = 0; i < in->n; i++)
        if ((size_t)in->t[i].ne[0] > max_ne0) max_ne0 = (size_t)in->t[i].ne[0];
    float *scratch = malloc(max_ne0 * (size_t)pool_size(p) * sizeof *scratch);
    const bool tty = isatty(STDERR_FILENO);
    if (!scratch) return snprintf(err, errlen, "out of memory"), -1;
    int rc = 0;
    for (int i = 0; i < in->n && rc == 0; i++) {
        const qtensor *q = &in->t[i];
        const int64_t rows = q->ne[1] * q->ne[2] * q->ne[3];
        if (q->type == q->src_type) { /* norms and the like: as they are */
            gw_put(o, q->src, q->nbytes);
            progress(tty, i, in->n, q, rows, rows);
        } else {
            uint8_t *out = malloc(q->nbytes ? q->nbytes : 1);
            if (!out) {
                snprintf(err, errlen, "out of memory for %s", q->name);
                rc = -1;
                break;
            }
            const int64_t step = rows / 50 > 0 ? rows / 50 : 1;
            for (int64_t r = 0; r < rows; r += step) {
                quant_job j = {q, r, r + step < rows ? r + step : rows, out, scratch};
                pool_run(p, quant_rows, &j);
                progress(tty, i, in->n, q, j.r1, rows);
            }
            gw_put(o, out, q->nbytes);
            free(out);
        }
        const uint64_t end = q->nbytes % in->alignment;
        gw_zeros(o, end ? in->alignment - end : 0);
        if (o->failed) {
            snprintf(err, errlen, "cannot write %s: %s", out_path, strerror(errno));
            rc = -1;
        }
    }
    free(scratch);
    return rc;
}

/* The temporary file while it may exist (tmp_armed), for the signal handler: the path is whole
 * before tmp_armed is set, and tmp_armed is cleared once the name is gone (renamed or
 * unlinked). */
static char tmp[4096];
static volatile sig_atomic_t tmp_armed;

/* SIGINT, SIGTERM, SIGHUP while the file is written: remove it (unlink is async-signal-safe),
 * then die of the same signal, so the caller sees the usual status of an interrupted command. */
static void on_signal(int sig) {
    const int saved = errno; /* the raised signal may be delivered after we return (TSan) */
    if (tmp_armed) unlink(tmp);
    signal(sig, SIG_DFL);
    raise(sig);
    errno = saved;
}

/* SIGINT, SIGTERM and SIGHUP: the signals that interrupt a command. */
static const sigset_t *interrupt_signals(void) {
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    return &set;
}

/* Installs on_signal for the signals that interrupt a command (old: the three previous
 * actions), or puts old back (install false). */
static void interrupt_handlers(bool install, struct sigaction old[3]) {
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], install ? &sa : &old[i], install ? &old[i] : NULL);
}

/* Writes the whole file to a temporary name beside out_path and renames it into place. */
static int write_file(const char *out_path, const qinput *in, const quant_ftype *ft,
                      const char *in_path, pool *p, char *err, size_t errlen) {
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", out_path) >= (int)sizeof tmp)
        return snprintf(err, errlen, "output path too long"), -1;
    struct sigaction old[3];
    interrupt_handlers(true, old);
    /* the signals wait while the file is made and armed: one that came between mkstemp and
     * tmp_armed = 1 would leave the file behind (test_quantize_interrupt hit that window under
     * load). The pool's threads block them for good (cmd_quantize), so only this thread can
     * take them. */
    sigset_t prev;
    pthread_sigmask(SIG_BLOCK, interrupt_signals(), &prev);
    int fd = mkstemp(tmp);
    const int mk_errno = errno;
    if (fd >= 0) tmp_armed = 1;
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    if (fd < 0) {
        interrupt_handlers(false, old);
        return snprintf(err, errlen, "cannot write %s: %s", out_path, strerror(mk_errno)), -1;
    }
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um); /* as an ordinary new file, not mkstemp's 0600 */
    gw_file o = {fdopen(fd, "wb"), 0, 0};
    int rc = -1;
    if (!o.fp) {
        close(fd);
        snprintf(err, errlen, "cannot write %s: %s", out_path, strerror(errno));
        goto fail;
    }
    put_header(&o, in, ft, in_path);
    long here = ftell(o.fp);
    if (here < 0) o.failed = 1;
    const uint64_t end = (uint64_t)(here < 0 ? 0 : here) % in->alignment;
    gw_zeros(&o, end ? in->alignment - end : 0);
    if (o.failed) {
        snprintf(err, errlen, "cannot write %s: %s", out_path, strerror(errno));
        goto fail;
    }
    if (put_data(&o, in, p, out_path, err, errlen) != 0) goto fail;
    if (fflush(o.fp) != 0 || fsync(fileno(o.fp)) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", out_path, strerror(errno));
        goto fail;
    }
    rc = 0;
fail:
    if (o.fp && fclose(o.fp) != 0 && rc == 0) {
        snprintf(err, errlen, "cannot write %s: %s", out_path, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, out_path) != 0) {
        snprintf(err, errlen, "cannot rename to %s: %s", out_path, strerror(errno));
        rc = -1;
    }
    if (rc != 0) unlink(tmp);
    tmp_armed = 0; /* a signal before this unlinks a name that is gone: harmless */
    interrupt_handlers(false, old);
    return rc;
}

/* IN and OUT are the same file (also through a link or another spelling). */
static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int cmd_quantize(int argc, char **argv) {
    static const struct option opts[] = {{"pure", no_argument, 0, 'p'},
                                          {"threads", required_argument, 0, 't'},
                                          {"tokenizer", required_argument, 0, 'k'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    const char *tok_path = NULL;
    bool pure = false;
    long long n_threads = 2;
    char err[LS_ERR_LEN] = "";
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":ht:", opts, NULL)) != -1) {
        switch (c) {
        case 'p': pure = true; break;
        case 'k': tok_path = optarg; break;
        case 't':
            if (cfg_parse_int(optarg, 1, 256, &n_threads, "--threads", err, sizeof err) != 0) {
                ERR("%s", err);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        case ':': ERR("%s needs a value", argv[optind - 1]); return 2;
        default: ERR("unknown option '%s'", argv[optind - 1]); return 2;
        }
    }
    if (argc - optind != 3) {
        ERR("need IN OUT TYPE (see --help)");
        return 2;
    }
    const char *in_path = argv[optind], *out_path = argv[optind + 1];
    const quant_ftype *ft = quant_ftype_find(argv[optind + 2]);
    if (!ft) {
        ERR("unknown TYPE '%s' (one of %s)", argv[optind + 2], quant_ftype_names());
        return 2;
    }
    if (same_file(in_path, out_path)) {
        ERR("OUT is IN (%s): refusing to overwrite the input", out_path);
        return 2;
    }
    qinput in = {0};
    int rc = 1;
    pool *p = NULL;
    const char *subject = in_path; /* what an error is about: IN until it has been read */
    if (access(in_path, R_OK) != 0) {
        ERR("cannot read %s: %s", in_path, strerror(errno));
        return 1;
    }
    if (is_gguf(in_path)) {
        if (open_gguf(&in, in_path, err, sizeof err) != 0) goto done;
    } else if (!tok_path) {
        snprintf(err, sizeof err, "not a GGUF file; a llama2.c checkpoint needs --tokenizer PATH");
        goto done;
    } else if (open_llama2c(&in, in_path, tok_path, err, sizeof err) != 0) {
        goto done;
    }
    const uint64_t data_bytes = plan(&in, ft, pure);
    subject = NULL; /* write_file's messages name OUT */
    /* the pool's threads start with the interrupting signals blocked, so that they reach this
     * thread, which arms write_file's clean-up */
    sigset_t prev;
    pthread_sigmask(SIG_BLOCK, interrupt_signals(), &prev);
    p = pool_create((int)n_threads);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    if (!p) {
        snprintf(err, sizeof err, "cannot start %d threads", (int)n_threads);
        goto done;
    }
    if (write_file(out_path, &in, ft, in_path, p, err, sizeof err) != 0) goto done;
    int64_t n_params = 0;
    for (int i = 0; i < in.n; i++)
        n_params += in.t[i].ne[0] * in.t[i].ne[1] * in.t[i].ne[2] * in.t[i].ne[3];
    fprintf(stderr, "llamaserve quantize: wrote %s (%s%s, %.2f MB of weights, %.2f bits per "
                    "weight)\n", out_path, ft->name, pure ? ", pure" : "", data_bytes / 1e6,
            n_params ? 8.0 * (double)data_bytes / (double)n_params : 0.0);
    rc = 0;
done:
    if (rc != 0 && subject) ERR("%s: %s", subject, err);
    if (rc != 0 && !subject) ERR("%s", err);
    pool_destroy(p);
    gguf_close(in.gguf);
    if (in.l2c) model_free(in.l2c);
    free(in.t);
    return rc;
}
