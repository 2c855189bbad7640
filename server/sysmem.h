/* sysmem: how much memory the machine lets this process have, and whether the KV cache of
 * parallel x ctx_size fits in it, so that serve can refuse a setting that would fail or swap
 * later, and say which setting fits. Reads /proc and /sys under a root prefix ("" = this
 * machine; tests give a folder of their own files). No state; thread-safe. */
#ifndef LS_SYSMEM_H
#define LS_SYSMEM_H

#include <stddef.h>
#include <stdint.h>

#define SYSMEM_NONE UINT64_MAX /* no limit, or unknown */

typedef struct {
    uint64_t mem_available; /* MemAvailable of /proc/meminfo, bytes; SYSMEM_NONE = unknown */
    uint64_t cgroup_limit;  /* the lowest memory limit of this process's cgroup and its
                               ancestors (v2 memory.max, v1 memory.limit_in_bytes); SYSMEM_NONE */
    uint64_t available;     /* the smaller of the two; SYSMEM_NONE when neither is known */
    char cgroup_file[512];  /* the file cgroup_limit came from; "" = none */
} sysmem_info;

/* Fills out from root's proc/meminfo, proc/self/cgroup and sys/fs/cgroup. Missing files are not
 * errors: what they would say is SYSMEM_NONE. */
void sysmem_read(const char *root, sysmem_info *out);

typedef struct {
    uint64_t need;    /* bytes of KV cache the setting asks for */
    int max_ctx;      /* the largest ctx_size that fits with the same parallel (0: none) */
    int max_parallel; /* the largest parallel that fits with the same ctx_size (0: none) */
} sysmem_fit;

/* Whether parallel slots of ctx tokens, per_token bytes each (kv_bytes_per_token), fit in
 * available bytes: 0 when they do, 1 when not, with the largest settings that do in out (capped
 * at the configurable maxima, 1048576 tokens and 256 slots). out->need is set either way. */
int sysmem_kv_fit(uint64_t per_token, int parallel, int ctx, uint64_t available, sysmem_fit *out);

/* The refusal for a fit that failed, one line naming the setting, the sizes, where the limit
 * came from and the settings that fit. */
void sysmem_kv_message(const sysmem_fit *fit, const sysmem_info *mi, int parallel, int ctx,
                       const char *kv_type, char *out, size_t n);

/* "512.0 GiB", "3.5 MiB", "800 B": binary units, one decimal. */
void sysmem_format_bytes(uint64_t bytes, char *out, size_t n);

#endif
