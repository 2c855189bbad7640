/* sampler: placeholder until the module lands. */
#include "sampler.h"
