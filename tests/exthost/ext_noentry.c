/* Test extension with the ABI symbol but no entry point. */
#include "core/extension_abi.h"

__attribute__((visibility("default"))) const uint32_t dynamos_extension_abi = DYNAMOS_EXTENSION_ABI;

__attribute__((visibility("default"))) int not_the_entry_point(void) {
  return 1;
}
