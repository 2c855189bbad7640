/* fingerprint: OpenAI's system_fingerprint, a stable name for "this build serving this model
 * file". A hash of the build's version (git revision at build time, else the project version)
 * and of the model file: its size, its first MiB (a GGUF header, metadata and tensor infos
 * start there) and pages sampled evenly through the rest, so that a multi-GB file costs a few
 * MB of reads. Same build and file: same value across restarts; another file: another value.
 * Thread-safe (no state); called once at startup. */
#ifndef LS_FINGERPRINT_H
#define LS_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

#define FP_LEN 20 /* "fp_" + 16 hex digits + NUL */

/* The version this binary was built from (e.g. "v0.1.0-12-gabcdef0" or "0.1.0"). Static text. */
const char *fp_build_version(void);

/* Writes "fp_<16 hex>" for the file at path and this build into out. 0, or -1 with a message
 * in err when the file cannot be read. */
int fp_model_fingerprint(const char *path, char out[FP_LEN], char *err, size_t errlen);

/* The hash itself, for tests: FNV-1a 64 of version, size and the sampled bytes of the file. */
int fp_hash_file(const char *path, const char *version, uint64_t *hash, char *err,
                 size_t errlen);

#endif
