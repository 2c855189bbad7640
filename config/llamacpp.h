/* llamacpp: the flags a llama.cpp server user types, as data for cfg_load. Some are our flags
 * under llama.cpp's spelling (a single dash and several letters, which getopt cannot take as a
 * short option); the rest are flags we have no use for, each with what to do instead. Pure
 * lookups on constant tables: thread-safe, no state, no I/O. */
#ifndef LS_LLAMACPP_H
#define LS_LLAMACPP_H

#include <stddef.h>

/* Our long option for a llama.cpp spelling ("-np" -> "--parallel", "-ctk" -> "--kv-type"); NULL
 * when arg is not one. arg is one whole command-line word ("--cache-type-k=q8_0" is none). */
const char *cfg_llamacpp_alias(const char *arg);

/* For a llama.cpp flag that llamaserve does not take: a one-line hint naming our nearest
 * equivalent ("llamaserve runs on the CPU; drop it"), with llama.cpp's long spelling of the
 * flag written into long_name (cap bytes, cut to fit). NULL when arg (up to any '=') is not one.
 * No spelling in the table is one of our flags. */
const char *cfg_llamacpp_hint(const char *arg, char *long_name, size_t cap);

#endif
