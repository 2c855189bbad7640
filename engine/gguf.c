/* gguf: placeholder until the module lands. */
#include "gguf.h"
