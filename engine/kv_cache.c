/* kv_cache: placeholder until the module lands. */
#include "kv_cache.h"
