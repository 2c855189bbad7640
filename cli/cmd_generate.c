/* cmd_generate: placeholder until the command lands. */
#include "cli.h"

#include <stdio.h>

int cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "llamaserve generate: not implemented yet\n");
    return 1;
}
