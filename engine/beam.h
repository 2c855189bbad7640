/* beam: beam search (placeholder; the interface lands with the implementation). */
#ifndef LS_BEAM_H
#define LS_BEAM_H
#endif
