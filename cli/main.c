/* main: dispatches `llamaserve COMMAND ...` to the subcommand that owns it. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} commands[] = {
    {"serve", cmd_serve, "serve the OpenAI-compatible HTTP API"},
    {"generate", cmd_generate, "generate text from a prompt"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"inspect", cmd_inspect, "print a model file's metadata and tensors"},
    {"bench", cmd_bench, "measure prompt and generation speed (llama-bench style)"},
    {"perplexity", cmd_perplexity, "perplexity on a text file (llama-perplexity's method)"},
    {"quantize", cmd_quantize, "write a quantized copy of a model (llama-quantize's types)"},
    {"make-model", cmd_make_model, "write a random-weight model of a real shape"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: llamaserve COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
    fprintf(f, "\nRun 'llamaserve COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "llamaserve: unknown command '%s' (try 'llamaserve --help')\n", argv[1]);
    return 2;
}
