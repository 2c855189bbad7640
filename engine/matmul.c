/* matmul: placeholder until the module lands. */
#include "matmul.h"
