/* Test extension built "for ABI 99": the host must refuse it without calling anything.
 * It also exports the v1 entry point, which aborts the process if ever called. */
#include <stdlib.h>

#include "core/extension_abi.h"

__attribute__((visibility("default"))) const uint32_t dynamos_extension_abi = 99;

__attribute__((visibility("default"))) const dynamos_extension* dynamos_extension_entry_v1(void) {
  abort();
}
