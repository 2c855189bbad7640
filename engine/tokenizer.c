/* tokenizer: placeholder until the module lands. */
#include "tokenizer.h"
