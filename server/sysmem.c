/* sysmem: MemAvailable and the cgroup memory limit, and the KV cache arithmetic against them.
 * Why MemAvailable rather than MemFree: it counts the page cache the kernel can drop, which is
 * what a new allocation can really have. Why the cgroup too: in a container MemAvailable is the
 * host's, and the container is killed at its own limit long before. */
#include "sysmem.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CTX 1048576 /* the largest ctx_size config accepts */
#define MAX_PARALLEL 256
/* cgroup v1 writes "no limit" as a page-rounded LLONG_MAX; anything this large is none */
#define UNLIMITED_FLOOR (UINT64_C(1) << 62)

/* A limit file: v2 "max" or a number of bytes. SYSMEM_NONE when absent or unlimited. */
static uint64_t read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return SYSMEM_NONE;
    char line[64] = "";
    uint64_t v = SYSMEM_NONE;
    if (fgets(line, sizeof line, f) && strncmp(line, "max", 3)) {
        char *end;
        unsigned long long x = strtoull(line, &end, 10);
        if (end != line && x < UNLIMITED_FLOOR) v = x;
    }
    fclose(f);
    return v;
}

/* The lowest limit on the way from dir/path up to dir itself (a parent's limit binds its
 * children too). */
static void walk_cgroup(const char *dir, const char *path, const char *file, sysmem_info *out) {
    char rel[512];
    snprintf(rel, sizeof rel, "%s", path);
    for (;;) {
        size_t len = strlen(rel);
        while (len > 0 && rel[len - 1] == '/')
            rel[--len] = '\0';
        char p[1024];
        snprintf(p, sizeof p, "%s%s/%s", dir, rel, file);
        uint64_t v = read_limit(p);
        if (v < out->cgroup_limit) {
            out->cgroup_limit = v;
            snprintf(out->cgroup_file, sizeof out->cgroup_file, "%.*s",
                     (int)sizeof out->cgroup_file - 1, p);
        }
        if (len == 0) return;
        char *slash = strrchr(rel, '/');
        if (!slash) return;
        *slash = '\0';
    }
}

static void read_cgroup(const char *root, sysmem_info *out) {
    char p[512];
    snprintf(p, sizeof p, "%s/proc/self/cgroup", root);
    FILE *f = fopen(p, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* "hierarchy-id:controllers:path"; v2 is "0::path" */
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        char dir[512];
        if (!*controllers) {
            snprintf(dir, sizeof dir, "%s/sys/fs/cgroup", root);
            walk_cgroup(dir, path, "memory.max", out);
        } else {
            bool memory = false;
            for (const char *c = controllers; *c;) {
                size_t n = strcspn(c, ",");
                memory = memory || (n == 6 && !strncmp(c, "memory", 6));
                c += n + (c[n] == ',');
            }
            if (!memory) continue;
            snprintf(dir, sizeof dir, "%s/sys/fs/cgroup/memory", root);
            walk_cgroup(dir, path, "memory.limit_in_bytes", out);
        }
    }
    fclose(f);
}

void sysmem_read(const char *root, sysmem_info *out) {
    memset(out, 0, sizeof *out);
    out->mem_available = out->cgroup_limit = out->available = SYSMEM_NONE;
    char p[512];
    snprintf(p, sizeof p, "%s/proc/meminfo", root);
    FILE *f = fopen(p, "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) out->mem_available = kb * 1024;
        fclose(f);
    }
    read_cgroup(root, out);
    out->available =
        out->mem_available < out->cgroup_limit ? out->mem_available : out->cgroup_limit;
}

int sysmem_kv_fit(uint64_t per_token, int parallel, int ctx, uint64_t available, sysmem_fit *out) {
    /* per_token <= 2^30 and parallel x ctx <= 2^28 for any model we load: no overflow */
    out->need = per_token * (uint64_t)parallel * (uint64_t)ctx;
    out->max_ctx = MAX_CTX;
    out->max_parallel = MAX_PARALLEL;
    if (available == SYSMEM_NONE || out->need <= available) return 0;
    uint64_t c = per_token && parallel ? available / (per_token * (uint64_t)parallel) : 0;
    uint64_t p = per_token && ctx ? available / (per_token * (uint64_t)ctx) : 0;
    out->max_ctx = c > MAX_CTX ? MAX_CTX : (int)c;
    out->max_parallel = p > MAX_PARALLEL ? MAX_PARALLEL : (int)p;
    return 1;
}

void sysmem_format_bytes(uint64_t bytes, char *out, size_t n) {
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024) {
        snprintf(out, n, "%" PRIu64 " B", bytes);
        return;
    }
    double v = (double)bytes / 1024;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, n, "%.1f %s", v, units[u]);
}

void sysmem_kv_message(const sysmem_fit *fit, const sysmem_info *mi, int parallel, int ctx,
                       const char *kv_type, char *out, size_t n) {
    char need[32], avail[32], source[600];
    sysmem_format_bytes(fit->need, need, sizeof need);
    sysmem_format_bytes(mi->available, avail, sizeof avail);
    if (mi->cgroup_limit < mi->mem_available)
        snprintf(source, sizeof source, "the cgroup limit in %s", mi->cgroup_file);
    else
        snprintf(source, sizeof source, "MemAvailable in /proc/meminfo%s",
                 mi->cgroup_limit == SYSMEM_NONE ? "; no cgroup limit" : "");
    int len = snprintf(out, n,
                       "the KV cache does not fit in memory: %d slots x %d tokens (--parallel x "
                       "--ctx-size) of %s need %s, and %s is available (%s).",
                       parallel, ctx, kv_type, need, avail, source);
    if (len < 0 || (size_t)len >= n) return;
    if (fit->max_ctx > 0)
        len += snprintf(out + len, n - (size_t)len,
                        " The largest that fits: --ctx-size %d with --parallel %d (-c %lld)",
                        fit->max_ctx, parallel, (long long)fit->max_ctx * parallel);
    else
        len += snprintf(out + len, n - (size_t)len,
                        " Not even one token per slot fits with --parallel %d", parallel);
    if (len < 0 || (size_t)len >= n) return;
    if (fit->max_parallel > 0)
        len += snprintf(out + len, n - (size_t)len, ", or --parallel %d with --ctx-size %d",
                        fit->max_parallel, ctx);
    if (len < 0 || (size_t)len >= n) return;
    snprintf(out + len, n - (size_t)len, "%s",
             !strcmp(kv_type, "f32") ? "; --kv-type f16 halves the cache." : ".");
}
