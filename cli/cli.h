/* cli: the subcommands of the llamaserve binary. Each takes the arguments after its name
 * (argv[0] is the subcommand) and returns the process exit status; each prints a one-line
 * error and returns 2 on a bad flag, 1 on a failure such as an unreadable model. */
#ifndef LS_CLI_H
#define LS_CLI_H

#include "config.h"
#include "model.h"
#include "threadpool.h"

#include <stdbool.h>
#include <stdio.h>

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_make_model(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

/* Shared steps (cli_common.c). What a subcommand does with its parse()'s answer prc (0: go on,
 * 1: --help, else an error in err): returns -1 to go on, 0 after printing the usage to stdout,
 * 2 after printing "llamaserve NAME: err" to stderr. */
int cli_parsed(int prc, const char *name, void (*usage)(FILE *), const char *err);
/* model_load, and with need_tokenizer a model without one is an error too. NULL with a
 * message; caller frees with model_free. */
model *cli_load_model(const char *path, const char *tokenizer_path, bool need_tokenizer,
                      char *err, size_t errlen);
/* pool_create(threads); NULL with "cannot start N threads". */
pool *cli_pool(int threads, char *err, size_t errlen);
/* BF16 weights on BF16 activations (matmul.h mm_set_bf16_dot) as mode asks: auto = on where
 * the CPU has AVX512_BF16 (and AVX-512 is allowed), on = the same or an error, off = F32
 * activations. 0, or -1 with a message. */
int cli_bf16_dot(cfg_bf16_dot mode, char *err, size_t errlen);
/* --bf16-dot's value: auto, on or off. 0, or -1 with a message. */
int cli_bf16_dot_parse(const char *s, cfg_bf16_dot *mode, char *err, size_t errlen);

#endif
