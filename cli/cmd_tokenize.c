/* cmd_tokenize: placeholder until the command lands. */
#include "cli.h"

#include <stdio.h>

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "llamaserve tokenize: not implemented yet\n");
    return 1;
}
