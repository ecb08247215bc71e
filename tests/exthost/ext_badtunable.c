/* Test extension whose descriptor registers a default outside its own range. */
#include "tests/exthost/test_extension.h"

static const dynamos_tunable tunables[] = {
    {"budget", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "2G", "0", "1G", NULL, "budget"},
};

TEST_EXTENSION("badtunable", "1.0", TEST_TUNABLES(tunables))
