/* replay: a main for a fuzz target without libFuzzer, so the ordinary test suites (release,
 * ASan+UBSan, TSan) run every input of the target's corpus and regression folders through
 * LLVMFuzzerTestOneInput. Arguments: files or folders (a folder that does not exist is skipped:
 * regressions/<target>/ appears with the first crash). Fails when no input was found. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) return -1;
    /* an exact-size copy, so a read past the input is caught as in libFuzzer */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) return -1;
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays path (a file, or every file in a folder, in name order); returns inputs run, -1 on
 * error. */
static int replay_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return replay_file(path) == 0 ? 1 : -1;
    struct dirent **names;
    int n = scandir(path, &names, NULL, NULL);
    if (n < 0) return -1;
    char **files = calloc((size_t)n + 1, sizeof *files);
    int k = 0, ran = 0;
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.' && files) {
            size_t len = strlen(path) + strlen(names[i]->d_name) + 2;
            files[k] = malloc(len);
            if (files[k]) snprintf(files[k++], len, "%s/%s", path, names[i]->d_name);
        }
        free(names[i]);
    }
    free(names);
    if (!files) return -1;
    qsort(files, (size_t)k, sizeof *files, cmp_names);
    for (int i = 0; i < k; i++) {
        if (ran >= 0) ran = replay_file(files[i]) == 0 ? ran + 1 : -1;
        free(files[i]);
    }
    free(files);
    return ran;
}

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int n = replay_path(argv[i]);
        if (n < 0) {
            fprintf(stderr, "replay: cannot read %s\n", argv[i]);
            return 1;
        }
        printf("%s: %d inputs\n", argv[i], n);
        total += n;
    }
    if (total == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    printf("replayed %d inputs\n", total);
    return 0;
}
