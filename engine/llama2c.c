/* llama2c: placeholder */
#include "model.h"
