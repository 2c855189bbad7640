/* test_forward: placeholder until the module's tests land. */
#include "check.h"

int main(void) { return check_summary(); }
