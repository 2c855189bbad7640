/* cmd_generate: `llamaserve generate`, text from a prompt on the command line. Generated text
 * goes to stdout as it is produced (or the ids, with --token-ids), timings to stderr. */
#include "cli.h"

#include "args.h"
#include "beam.h"
#include "common.h"
#include "config.h"
#include "forward.h"
#include "model.h"
#include "sampler.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: llamaserve generate [--model PATH] [options]\n"
            "\n"
            "Generates text from a prompt and prints it as it is produced.\n"
            "\n"
            "  -m, --model PATH        model file (GGUF or llama2.c .bin); default: the embedded\n"
            "                          demo model (kjv-demo-q8_0.gguf)\n"
            "      --tokenizer PATH    tokenizer (llama2.c tokenizer.bin or GGUF); default: the\n"
            "                          model's own, or tokenizer.bin beside a .bin checkpoint\n"
            "  -p, --prompt TEXT       prompt; without it generation starts from BOS alone\n"
            "  -n, --n-predict N       tokens to generate (default 128; stops early at EOS)\n"
            "      --temperature T     0 for greedy (default 0.8)\n"
            "      --top-k K           keep the K most likely tokens, 0 = off (default 40)\n"
            "      --top-p P           nucleus sampling, 1 = off (default 0.95)\n"
            "      --min-p P           drop tokens below P x the best one, 0 = off (default 0.05)\n"
            "      --repeat-penalty R  penalise recent tokens, 1 = off (default 1)\n"
            "  -s, --seed S            random seed (default: random, printed on stderr)\n"
            "      --beams B           beam search with B beams (deterministic; ignores sampling)\n"
            "      --length-penalty L  beam score = logprob / length^L (default 1)\n"
            "  -t, --threads N         threads for the matrix work (default 2)\n"
            "      --ctx-size N        KV cache size in tokens (default: the model's context)\n"
            "      --bf16-dot M        BF16 weights on BF16-rounded activations, as serve's:\n"
            "                          auto (default; where the CPU has AVX512_BF16), on, off\n"
            "      --token-ids         print the generated token ids, separated by spaces\n"
            "  -h, --help              this help\n");
}

typedef struct {
    const char *model, *tokenizer, *prompt;
    int n_predict, top_k, threads, beams, ctx_size;
    double temperature, top_p, min_p, repeat_penalty, length_penalty;
    uint64_t seed;
    bool seed_set, token_ids;
    cfg_bf16_dot bf16_dot;
} gen_opts;

static int parse(gen_opts *o, int argc, char **argv, char *err, size_t errlen) {
    enum { O_TOKENIZER = 256, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_REP, O_BEAMS, O_LP, O_CTX, O_IDS,
           O_BF16DOT };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},      {"tokenizer", required_argument, 0, O_TOKENIZER},
        {"prompt", required_argument, 0, 'p'},     {"n-predict", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP},   {"min-p", required_argument, 0, O_MINP},
        {"repeat-penalty", required_argument, 0, O_REP}, {"seed", required_argument, 0, 's'},
        {"beams", required_argument, 0, O_BEAMS},  {"length-penalty", required_argument, 0, O_LP},
        {"threads", required_argument, 0, 't'},    {"ctx-size", required_argument, 0, O_CTX},
        {"token-ids", no_argument, 0, O_IDS},      {"help", no_argument, 0, 'h'},
        {"bf16-dot", required_argument, 0, O_BF16DOT}, {0, 0, 0, 0}};
    *o = (gen_opts){.n_predict = 128, .top_k = 40, .threads = 2, .temperature = 0.8,
                    .top_p = 0.95, .min_p = 0.05, .repeat_penalty = 1.0, .length_penalty = 1.0};
    long long v;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:p:n:s:t:h", opts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm': o->model = optarg; break;
        case O_TOKENIZER: o->tokenizer = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'n':
            rc = cfg_parse_int(optarg, 0, 1 << 20, &v, "--n-predict", err, errlen);
            o->n_predict = (int)v;
            break;
        case O_TEMP:
            rc = cfg_parse_float(optarg, 0, 100, &o->temperature, "--temperature", err, errlen);
            break;
        case O_TOPK:
            rc = cfg_parse_int(optarg, 0, 1 << 30, &v, "--top-k", err, errlen);
            o->top_k = (int)v;
            break;
        case O_TOPP: rc = cfg_parse_float(optarg, 0, 1, &o->top_p, "--top-p", err, errlen); break;
        case O_MINP: rc = cfg_parse_float(optarg, 0, 1, &o->min_p, "--min-p", err, errlen); break;
        case O_REP:
            rc = cfg_parse_float(optarg, 0.01, 100, &o->repeat_penalty, "--repeat-penalty", err,
                                 errlen);
            break;
        case 's':
            rc = cfg_parse_u64(optarg, &o->seed, "--seed", err, errlen);
            o->seed_set = true;
            break;
        case O_BEAMS:
            rc = cfg_parse_int(optarg, 1, BEAM_MAX_WIDTH, &v, "--beams", err, errlen);
            o->beams = (int)v;
            break;
        case O_LP:
            rc = cfg_parse_float(optarg, -10, 10, &o->length_penalty, "--length-penalty", err,
                                 errlen);
            break;
        case 't':
            rc = cfg_parse_int(optarg, 1, 256, &v, "--threads", err, errlen);
            o->threads = (int)v;
            break;
        case O_CTX:
            rc = cfg_parse_int(optarg, 1, 1 << 20, &v, "--ctx-size", err, errlen);
            o->ctx_size = (int)v;
            break;
        case O_IDS: o->token_ids = true; break;
        case O_BF16DOT: rc = cli_bf16_dot_parse(optarg, &o->bf16_dot, err, errlen); break;
        case 'h': return 1;
        case ':': return ls_fail(err, errlen, "%s needs a value", argv[optind - 1]);
        default: /* optopt names an unknown short option, even inside a cluster like -xq */
            if (optopt) return ls_fail(err, errlen, "unknown option '-%c'", optopt);
            return ls_fail(err, errlen, "unknown option '%s'", argv[optind - 1]);
        }
        if (rc) return -1;
    }
    if (optind < argc) return ls_fail(err, errlen, "unexpected argument '%s'", argv[optind]);
    if (cli_bf16_dot(o->bf16_dot, err, errlen)) return -1;
    if (!o->model) {
        static char demo[4096]; /* the embedded demo model, when no --model is given */
        if (cfg_find_demo_model(demo, sizeof demo, err, errlen)) return -1;
        o->model = demo;
        fprintf(stderr, "llamaserve generate: no --model given: using the embedded demo model %s\n",
                demo);
    }
    return 0;
}

/* Writes one generated token: its id, or the text it completes. buf holds
 * tok_stream_cap bytes, so that no token's text is cut. */
static void emit(const gen_opts *o, tok_stream *ts, int id, int i, char *buf, size_t cap) {
    if (o->token_ids) {
        printf(i ? " %d" : "%d", id);
    } else {
        size_t n = tok_stream_feed(ts, id, buf, cap);
        fwrite(buf, 1, n, stdout);
    }
    fflush(stdout);
}

static void finish(const gen_opts *o, tok_stream *ts, char *buf, size_t cap) {
    if (!o->token_ids) {
        size_t n = tok_stream_flush(ts, buf, cap);
        fwrite(buf, 1, n, stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
}

/* What a generation holds from setup to the end: the model, its threads and forward context,
 * the prompt's ids (then the generated ones) and the output state. */
typedef struct {
    model *m;
    pool *p;
    fwd_ctx *f;
    int32_t *ids;   /* (cap) prompt, then generated tokens */
    float *logits;  /* (vocab_size) */
    char *piece;    /* (piece_cap) a token's text, whole */
    size_t piece_cap;
    int n_ctx, n_prompt, cap, n_gen;
    tok_stream ts;
    double t_prefill, t_gen0;
} gen_run;

static void gen_free(gen_run *g) {
    fwd_free(g->f);
    pool_destroy(g->p);
    model_free(g->m);
    free(g->ids);
    free(g->logits);
    free(g->piece);
}

/* Loads the model, tokenizes the prompt into g->ids and starts the threads. */
static int gen_setup(gen_run *g, const gen_opts *o, char *err, size_t errlen) {
    if (!(g->m = cli_load_model(o->model, o->tokenizer, true, err, errlen))) return -1;
    const model *m = g->m;
    g->n_ctx = o->ctx_size ? o->ctx_size : m->cfg.ctx_len;
    const char *prompt = o->prompt ? o->prompt : "";
    g->n_prompt = tok_encode(m->tok, prompt, strlen(prompt), true, NULL, 0);
    if (g->n_prompt < 1) return ls_fail(err, errlen, "cannot tokenize the prompt");
    if (g->n_prompt >= g->n_ctx)
        return ls_fail(err, errlen, "the prompt has %d tokens; the context holds %d", g->n_prompt,
                       g->n_ctx);
    g->cap = g->n_prompt + o->n_predict;
    if (g->cap > g->n_ctx) g->cap = g->n_ctx;
    g->ids = malloc((size_t)g->cap * sizeof *g->ids);
    g->logits = malloc((size_t)m->cfg.vocab_size * sizeof *g->logits);
    g->piece_cap = tok_stream_cap(m->tok);
    g->piece = malloc(g->piece_cap);
    if (!g->ids || !g->logits || !g->piece) return ls_fail(err, errlen, "out of memory");
    tok_encode(m->tok, prompt, strlen(prompt), true, g->ids, g->cap);
    if (!(g->p = cli_pool(o->threads, err, errlen))) return -1;
    if (!(g->f = fwd_create(m, FWD_STEP_ROWS, g->p, err, errlen))) return -1;
    tok_stream_init(&g->ts, m->tok, g->n_prompt == 1);
    return 0;
}

/* --beams: the best of o->beams beams, written once the search ends. */
static int gen_beams(gen_run *g, const gen_opts *o, char *err, size_t errlen) {
    if (g->cap - g->n_prompt < 1)
        return ls_fail(err, errlen, "--beams needs at least one token to generate (-n)");
    beam_params bp;
    beam_params_default(&bp);
    bp.width = o->beams;
    bp.n_best = 1;
    bp.max_new_tokens = g->cap - g->n_prompt;
    bp.length_penalty = (float)o->length_penalty;
    bp.eos_id = tok_eos(g->m->tok);
    beam_result best;
    int n_out = 0;
    g->t_gen0 = ls_now();
    if (beam_search(g->m, g->f, g->ids, g->n_prompt, &bp, &best, &n_out, err, errlen) != 0)
        return -1;
    for (int i = 0; i < best.n_tokens; i++)
        emit(o, &g->ts, best.tokens[i], g->n_gen++, g->piece, g->piece_cap);
    finish(o, &g->ts, g->piece, g->piece_cap);
    fprintf(stderr, "beam search: %d beams, log-probability %.4f, score %.4f\n", o->beams,
            best.logprob, best.score);
    beam_results_free(&best, n_out);
    return 0;
}

/* The sampler o asks for; its seed is printed when it is random and matters. */
static sampler *gen_sampler(const gen_opts *o, int vocab_size) {
    sampler_params sp;
    sampler_params_default(&sp);
    sp.temperature = (float)o->temperature;
    sp.top_k = o->top_k;
    sp.top_p = (float)o->top_p;
    sp.min_p = (float)o->min_p;
    sp.repeat_penalty = (float)o->repeat_penalty;
    sp.penalty_last_n = 64;
    sp.seed = o->seed_set ? o->seed : ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
    if (!o->seed_set && o->temperature > 0)
        fprintf(stderr, "seed: %llu\n", (unsigned long long)sp.seed);
    return sampler_create(&sp, vocab_size);
}

/* Sampling: the prompt as one batch (logits for its last row only), then one token per step
 * until an end-of-generation token or g->cap tokens in all. */
static int gen_sample(gen_run *g, const gen_opts *o, char *err, size_t errlen) {
    const model *m = g->m;
    int rc = -1;
    int32_t *pos = NULL, *seq = NULL;
    sampler *smp = NULL;
    kv_cache *kv = kv_create(&m->cfg, g->n_ctx, KV_F32, err, errlen);
    if (!kv) return -1;
    if (!(smp = gen_sampler(o, m->cfg.vocab_size))) {
        ls_fail(err, errlen, "out of memory");
        goto done;
    }
    pos = malloc((size_t)g->cap * sizeof *pos);
    seq = calloc((size_t)g->cap, sizeof *seq);
    if (!pos || !seq) {
        ls_fail(err, errlen, "out of memory");
        goto done;
    }
    for (int i = 0; i < g->cap; i++) pos[i] = i;
    double tp = ls_now();
    fwd_batch b = {.n_tokens = g->n_prompt, .token = g->ids, .pos = pos, .seq = seq};
    rc = fwd_decode(g->f, &kv, 1, &b, g->logits, err, errlen);
    g->t_prefill = ls_now() - tp;
    g->t_gen0 = ls_now();
    int n = g->n_prompt;
    while (rc == 0 && n < g->cap) {
        int id = sampler_sample(smp, g->logits, g->ids, n, 0, NULL);
        if (tok_is_eog(m->tok, id)) break; /* EOS, <|eot_id|>, <|im_end|>, ... */
        g->ids[n] = id;
        emit(o, &g->ts, id, g->n_gen++, g->piece, g->piece_cap);
        if (++n == g->cap) break;
        fwd_batch step = {.n_tokens = 1, .token = &g->ids[n - 1], .pos = &pos[n - 1], .seq = seq};
        rc = fwd_decode(g->f, &kv, 1, &step, g->logits, err, errlen);
    }
    finish(o, &g->ts, g->piece, g->piece_cap);
done:
    free(pos);
    free(seq);
    sampler_free(smp);
    kv_free(kv);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    char err[LS_ERR_LEN] = "";
    gen_opts o;
    int prc = parse(&o, argc, argv, err, sizeof err);
    int parsed = cli_parsed(prc, "generate", usage, err);
    if (parsed >= 0) return parsed;
    gen_run g = {0};
    double t0 = ls_now();
    int rc = gen_setup(&g, &o, err, sizeof err);
    double t_load = ls_now() - t0;
    if (rc == 0)
        rc = o.beams > 0 ? gen_beams(&g, &o, err, sizeof err) : gen_sample(&g, &o, err, sizeof err);
    if (rc == 0) {
        double t_gen = ls_now() - g.t_gen0;
        fprintf(stderr,
                "load %.3f s | prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s\n",
                t_load, g.n_prompt, g.t_prefill > 0 ? g.n_prompt / g.t_prefill : 0.0, g.n_gen,
                t_gen > 0 ? g.n_gen / t_gen : 0.0);
    } else {
        fprintf(stderr, "llamaserve generate: %s\n", err);
    }
    gen_free(&g);
    return rc == 0 ? 0 : 1;
}
