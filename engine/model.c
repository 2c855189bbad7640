/* model: placeholder until the module lands. */
#include "model.h"
