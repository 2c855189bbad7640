/* x86_target: the target attributes and the inline helpers' declaration that every SIMD file of
 * engine/x86/ uses (internal to them; x86_simd.h and attention_x86.h include it). Function-level
 * targets rather than per-file -m flags: with -mavx2 on a file the compiler may use AVX2 (or VEX
 * encodings) anywhere in it, the CPUID probes included, and the library must start on any
 * x86-64. */
#ifndef LS_X86_TARGET_H
#define LS_X86_TARGET_H

#include "common.h"

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline LS_FORCE_INLINE TARGET
#define TARGET512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE512 static inline LS_FORCE_INLINE TARGET512

#endif
