/* threadpool: placeholder until the module lands. */
#include "threadpool.h"
