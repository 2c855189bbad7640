/* beam: placeholder until the module lands. */
#include "beam.h"
