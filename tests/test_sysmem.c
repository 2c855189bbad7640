/* test_sysmem: server/sysmem.c. MemAvailable and the cgroup limits (v2 memory.max, v1
 * memory.limit_in_bytes, up the hierarchy, "max" and v1's huge "unlimited") read from a folder
 * of fake /proc and /sys files; the KV cache fit arithmetic and its suggestions; the message. */
#include "check.h"
#include "sysmem.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/test_sysmem_XXXXXX";
static char made[32][600];
static int n_made;

/* Writes root/rel (making its folders) and remembers it for the cleanup. */
static void put_file(const char *rel, const char *text) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(path, 0755) == 0) snprintf(made[n_made++], sizeof made[0], "%s", path);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void rm_file(const char *rel) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    unlink(path);
}

static void test_read(void) {
    sysmem_info mi;
    sysmem_read(root, &mi);
    CHECK(mi.mem_available == SYSMEM_NONE && mi.cgroup_limit == SYSMEM_NONE &&
              mi.available == SYSMEM_NONE,
          "nothing known");

    put_file("proc/meminfo", "MemTotal:       2000 kB\nMemFree:         10 kB\n"
                             "MemAvailable:    1000 kB\nBuffers: 5 kB\n");
    sysmem_read(root, &mi);
    CHECK(mi.mem_available == 1024000 && mi.available == 1024000 && !mi.cgroup_file[0],
          "meminfo: %llu", (unsigned long long)mi.mem_available);

    /* v2: the parent's limit binds the child, whose own is "max" */
    put_file("proc/self/cgroup", "0::/a/b\n");
    put_file("sys/fs/cgroup/a/b/memory.max", "max\n");
    put_file("sys/fs/cgroup/a/memory.max", "500000\n");
    sysmem_read(root, &mi);
    CHECK(mi.cgroup_limit == 500000 && mi.available == 500000 &&
              strstr(mi.cgroup_file, "/sys/fs/cgroup/a/memory.max"),
          "v2: %llu %s", (unsigned long long)mi.cgroup_limit, mi.cgroup_file);
    /* a limit above MemAvailable: MemAvailable is what is left */
    put_file("sys/fs/cgroup/a/memory.max", "5000000000\n");
    sysmem_read(root, &mi);
    CHECK(mi.cgroup_limit == 5000000000ULL && mi.available == 1024000, "v2 high: %llu",
          (unsigned long long)mi.available);
    rm_file("sys/fs/cgroup/a/memory.max");
    put_file("sys/fs/cgroup/memory.max", "700000\n"); /* the namespace root: a container's */
    sysmem_read(root, &mi);
    CHECK(mi.cgroup_limit == 700000, "v2 root: %llu", (unsigned long long)mi.cgroup_limit);
    rm_file("sys/fs/cgroup/memory.max");

    /* v1 (hybrid, as on this machine): the memory controller's own hierarchy */
    put_file("proc/self/cgroup", "9:cpu,cpuacct:/\n4:memory:/x/y\n0::/\n");
    put_file("sys/fs/cgroup/memory/x/y/memory.limit_in_bytes", "9223372036854771712\n");
    put_file("sys/fs/cgroup/memory/memory.limit_in_bytes", "300000\n");
    sysmem_read(root, &mi);
    CHECK(mi.cgroup_limit == 300000 && mi.available == 300000, "v1: %llu",
          (unsigned long long)mi.cgroup_limit);
    put_file("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    sysmem_read(root, &mi);
    CHECK(mi.cgroup_limit == SYSMEM_NONE && mi.available == 1024000, "v1 unlimited");
    put_file("proc/self/cgroup", "4:cpuset,memory:/x/y\n");
    put_file("sys/fs/cgroup/memory/x/memory.limit_in_bytes", "400000\n");
    sysmem_read(root, &mi);
    CHECK(mi.cgroup_limit == 400000, "v1 with several controllers: %llu",
          (unsigned long long)mi.cgroup_limit);
}

static void test_fit(void) {
    sysmem_fit fit;
    /* 4 slots x 256 tokens x 2048 bytes = 2 MiB */
    CHECK(sysmem_kv_fit(2048, 4, 256, 2 << 20, &fit) == 0 && fit.need == 2 << 20, "fits exactly");
    CHECK(sysmem_kv_fit(2048, 4, 256, SYSMEM_NONE, &fit) == 0, "unknown memory: no refusal");
    CHECK(sysmem_kv_fit(2048, 4, 256, (2 << 20) - 1, &fit) == 1, "one byte short");
    CHECK(fit.max_ctx == 255 && fit.max_parallel == 3, "%d %d", fit.max_ctx, fit.max_parallel);
    CHECK(sysmem_kv_fit(2048, 4, 256, 1 << 20, &fit) == 1 && fit.max_ctx == 128 &&
              fit.max_parallel == 2,
          "%d %d", fit.max_ctx, fit.max_parallel);
    /* the suggestion is the largest that fits: one more does not */
    uint64_t avail = 24727912448ULL;
    CHECK(sysmem_kv_fit(2048, 256, 1048576, avail, &fit) == 1, "512 GiB");
    CHECK(fit.need == 549755813888ULL, "%llu", (unsigned long long)fit.need);
    CHECK(2048ULL * 256 * (uint64_t)fit.max_ctx <= avail &&
              2048ULL * 256 * (uint64_t)(fit.max_ctx + 1) > avail,
          "max_ctx %d", fit.max_ctx);
    CHECK(2048ULL * 1048576 * (uint64_t)fit.max_parallel <= avail &&
              2048ULL * 1048576 * (uint64_t)(fit.max_parallel + 1) > avail,
          "max_parallel %d", fit.max_parallel);
    /* capped at what config accepts; 0 when not even one fits */
    CHECK(sysmem_kv_fit(1, 256, 1048576, (1ULL << 28) - 1, &fit) == 1 && fit.max_ctx == 1048575 &&
              fit.max_parallel == 255,
          "%d %d", fit.max_ctx, fit.max_parallel);
    CHECK(sysmem_kv_fit(1 << 20, 4, 100, 1 << 20, &fit) == 1 && fit.max_ctx == 0 &&
              fit.max_parallel == 0,
          "%d %d", fit.max_ctx, fit.max_parallel);
}

static void test_message(void) {
    sysmem_info mi = {.mem_available = 2 << 20, .cgroup_limit = 1 << 20, .available = 1 << 20};
    snprintf(mi.cgroup_file, sizeof mi.cgroup_file, "/sys/fs/cgroup/memory.max");
    sysmem_fit fit;
    sysmem_kv_fit(2048, 4, 256, mi.available, &fit);
    char msg[1024];
    sysmem_kv_message(&fit, &mi, 4, 256, "f32", msg, sizeof msg);
    const char *want[] = {"4 slots x 256 tokens",
                          "2.0 MiB",
                          "1.0 MiB is available",
                          "cgroup limit in /sys/fs/cgroup/memory.max",
                          "--ctx-size 128 with --parallel 4 (-c 512)",
                          "--parallel 2 with --ctx-size 256",
                          "--kv-type f16"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(msg, want[i]), "lacks '%s': %s", want[i], msg);
    mi.cgroup_limit = SYSMEM_NONE;
    mi.available = mi.mem_available = 1 << 20;
    sysmem_kv_fit(1 << 20, 4, 100, mi.available, &fit);
    sysmem_kv_message(&fit, &mi, 4, 100, "f16", msg, sizeof msg);
    CHECK(strstr(msg, "MemAvailable") && strstr(msg, "no cgroup limit") &&
              strstr(msg, "Not even one token") && !strstr(msg, "kv-type"),
          "%s", msg);

    char b[32];
    sysmem_format_bytes(800, b, sizeof b);
    CHECK(!strcmp(b, "800 B"), "%s", b);
    sysmem_format_bytes(1536, b, sizeof b);
    CHECK(!strcmp(b, "1.5 KiB"), "%s", b);
    sysmem_format_bytes(549755813888ULL, b, sizeof b);
    CHECK(!strcmp(b, "512.0 GiB"), "%s", b);
}

int main(void) {
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_read();
    test_fit();
    test_message();
    /* the files, then the folders, deepest first */
    const char *files[] = {"proc/meminfo",
                           "proc/self/cgroup",
                           "sys/fs/cgroup/a/b/memory.max",
                           "sys/fs/cgroup/memory/x/y/memory.limit_in_bytes",
                           "sys/fs/cgroup/memory/x/memory.limit_in_bytes",
                           "sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        rm_file(files[i]);
    while (n_made > 0)
        rmdir(made[--n_made]);
    rmdir(root);
    return check_summary();
}
