/* cmd_tokenize: `llamaserve tokenize`, the token ids of a text, for checking the tokenizer
 * against other implementations and for scripting. Reads only the tokenizer (never the weights)
 * and treats its input as bytes: nothing is stripped, re-encoded or rejected. */
#include "cli.h"

#include "common.h"
#include "model.h"
#include "tokenizer.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: llamaserve tokenize --model PATH [--no-bos] [--parse-special] [--] [TEXT]\n"
               "\n"
               "Prints the token ids of TEXT, separated by spaces, on one line. Without TEXT, all\n"
               "of standard input is tokenized as it is (bytes, newlines included).\n"
               "\n"
               "  -m, --model PATH   a GGUF model or vocabulary, or a llama2.c tokenizer.bin\n"
               "      --no-bos       do not prepend the BOS token\n"
               "      --parse-special  read the spelling of a control token in the text\n"
               "                     (<|eot_id|>, <s>, ...) as that token; without it, such\n"
               "                     text is plain text\n"
               "  -h, --help         this help\n");
}

typedef struct {
    const char *model, *text;
    bool no_bos, parse_special;
} tok_opts;

/* 0: run, 1: help was asked for, -1: a usage error in err. */
static int parse(tok_opts *o, int argc, char **argv, char *err, size_t errlen) {
    enum { O_NO_BOS = 256, O_PARSE_SPECIAL };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"no-bos", no_argument, 0, O_NO_BOS},
                                         {"parse-special", no_argument, 0, O_PARSE_SPECIAL},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    *o = (tok_opts){0};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case O_NO_BOS:
            o->no_bos = true;
            break;
        case O_PARSE_SPECIAL:
            o->parse_special = true;
            break;
        case 'h':
            return 1;
        case ':':
            return ls_fail(err, errlen, "%s needs a value", argv[optind - 1]);
        default:
            /* optopt names an unknown short option inside a cluster such as "-xyz"; argv[optind
             * - 1] is only right for a long one. A text that starts with '-' goes after "--". */
            if (optopt)
                return ls_fail(err, errlen,
                               "unknown option '-%c' (put a text that starts with "
                               "'-' after --)",
                               optopt);
            return ls_fail(err, errlen, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) o->text = argv[optind++];
    if (optind < argc)
        return ls_fail(err, errlen, "unexpected argument '%s' (quote the text as one argument)",
                       argv[optind]);
    if (!o->model) return ls_fail(err, errlen, "--model is required");
    return 0;
}

/* Reads all of f into a malloc'd buffer; NULL on a read error or when memory runs out. */
static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!bigger) {
            free(buf);
            return NULL;
        }
        buf = bigger;
        cap *= 2;
    }
    if (buf && ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int cmd_tokenize(int argc, char **argv) {
    char err[LS_ERR_LEN];
    tok_opts o;
    int prc = parse(&o, argc, argv, err, sizeof err);
    int parsed = cli_parsed(prc, "tokenize", usage, err);
    if (parsed >= 0) return parsed;
    int status = 1;
    char *input = NULL;
    int32_t *ids = NULL;
    tokenizer *t = model_load_tokenizer(o.model, err, sizeof err);
    if (!t) goto fail;

    const char *text = o.text;
    size_t len = text ? strlen(text) : 0;
    if (!text) {
        input = read_all(stdin, &len);
        if (!input) {
            snprintf(err, sizeof err, "cannot read standard input");
            goto fail;
        }
        text = input;
    }
    bool bos = !o.no_bos;
    int (*encode)(const tokenizer *, const char *, size_t, bool, int32_t *, int) =
        o.parse_special ? tok_encode_special : tok_encode;
    int n = encode(t, text, len, bos, NULL, 0);
    ids = n >= 0 ? malloc(sizeof *ids * (size_t)(n > 0 ? n : 1)) : NULL;
    if (!ids || encode(t, text, len, bos, ids, n) != n) {
        snprintf(err, sizeof err, "cannot tokenize %zu bytes of text", len);
        goto fail;
    }
    for (int i = 0; i < n; i++)
        printf(i ? " %d" : "%d", (int)ids[i]);
    putchar('\n');
    if (fflush(stdout) != 0 || ferror(stdout)) {
        snprintf(err, sizeof err, "cannot write the ids to standard output");
        goto fail;
    }
    status = 0;
fail:
    if (status) fprintf(stderr, "llamaserve tokenize: %s\n", err);
    free(ids);
    free(input);
    tok_free(t);
    return status;
}
