/* tensor: placeholder until the module lands. */
#include "tensor.h"
