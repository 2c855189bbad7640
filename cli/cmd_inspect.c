/* cmd_inspect: placeholder until the command lands. */
#include "cli.h"

#include <stdio.h>

int cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "llamaserve inspect: not implemented yet\n");
    return 1;
}
