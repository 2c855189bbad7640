/* forward: placeholder until the module lands. */
#include "forward.h"
