/* tmp_holder: the child that test_tmp_cleanup.py kills. It takes a path from check_tmp_path
 * (check.h), creates the file, prints "holding PATH" and waits for its stdin to end; the test
 * then either sends it a signal or closes its stdin, and checks that the folder is gone. */
#include "check.h"

#include <stdio.h>

int main(void) {
    const char *path = check_tmp_path("held");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) return 1;
    fputs("held\n", f);
    fclose(f);
    printf("holding %s\n", path);
    fflush(stdout);
    while (getchar() != EOF) {
    }
    return 0;
}
