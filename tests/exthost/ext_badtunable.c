/* Test extension whose descriptor registers a default outside its own range. */
#include "core/extension_abi.h"

static const dynamos_tunable tunables[] = {
    {"budget", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "2G", "0", "1G", NULL, "budget"},
};

static const dynamos_extension descriptor = {
    .abi = DYNAMOS_EXTENSION_ABI,
    .size = sizeof(dynamos_extension),
    .name = "badtunable",
    .version = "1.0",
    .tunables = tunables,
    .tunable_count = 1,
};

DYNAMOS_EXTENSION_DEFINE(descriptor)
