/* What every test extension here shares: its descriptor's ABI header, name and
 * version, and the exported symbols. Use once, at file scope, with the rest of the
 * descriptor's fields as designated initializers:
 *   TEST_EXTENSION("name", "1.0", .description = "...", .init = init)
 * (packaging/example-extension/hello.c spells its descriptor out, as an example). */
#pragma once

#include "core/extension_abi.h"

#define TEST_EXTENSION(ext_name, ext_version, ...)                                \
  static const dynamos_extension descriptor = {.abi = DYNAMOS_EXTENSION_ABI,      \
                                               .size = sizeof(dynamos_extension), \
                                               .name = ext_name,                  \
                                               .version = ext_version,            \
                                               __VA_ARGS__};                      \
  DYNAMOS_EXTENSION_DEFINE(descriptor)

/* The descriptor fields naming a static array of tunables. */
#define TEST_TUNABLES(array) .tunables = array, .tunable_count = sizeof array / sizeof array[0]
