/* Test extension whose init fails, with a message. */
#include "core/extension_abi.h"

static int init(const dynamos_ext_host* host) {
  host->set_error(host, "open /nonexistent/device: No such file or directory");
  return -1;
}

static const dynamos_tunable tunables[] = {
    {"depth", DYNAMOS_TUNABLE_INTEGER, DYNAMOS_TUNABLE_RUNTIME, "3", "1", "9", NULL, "depth"},
};

static const dynamos_extension descriptor = {
    .abi = DYNAMOS_EXTENSION_ABI,
    .size = sizeof(dynamos_extension),
    .name = "initfail",
    .version = "1.0",
    .description = "init always fails",
    .tunables = tunables,
    .tunable_count = 1,
    .init = init,
};

DYNAMOS_EXTENSION_DEFINE(descriptor)
