/* Test extension whose init fails, with a message. */
#include "tests/exthost/test_extension.h"

static int init(const dynamos_ext_host* host) {
  host->set_error(host, "open /nonexistent/device: No such file or directory");
  return -1;
}

static const dynamos_tunable tunables[] = {
    {"depth", DYNAMOS_TUNABLE_INTEGER, DYNAMOS_TUNABLE_RUNTIME, "3", "1", "9", NULL, "depth"},
};

TEST_EXTENSION("initfail", "1.0", .description = "init always fails", TEST_TUNABLES(tunables),
               .init = init)
