/* Test extension "every": one tunable of every type, a veto in on_tunable, and a call
 * hook that reads values back the way an extension does (host->get_*). */
#include <stdio.h>
#include <string.h>

#include "tests/exthost/test_extension.h"

enum { LEVEL, RATIO, PERIOD, BUDGET, POLICY, VERBOSE, SLOTS, COUNT };

static const char* const policies[] = {"demand", "selective", "aggressive", "adaptive", NULL};

static const dynamos_tunable tunables[COUNT] = {
    [LEVEL] = {"level", DYNAMOS_TUNABLE_INTEGER, DYNAMOS_TUNABLE_RUNTIME, "10", "0", "100", NULL,
               "how hard to try, 0 to 100"},
    [RATIO] = {"ratio", DYNAMOS_TUNABLE_FLOAT, DYNAMOS_TUNABLE_RUNTIME, "0.5", "0", "1", NULL,
               "share of something, 0 to 1"},
    [PERIOD] = {"period", DYNAMOS_TUNABLE_DURATION, DYNAMOS_TUNABLE_RUNTIME, "250ms", "1ms", "10s",
                NULL, "sampling period"},
    [BUDGET] = {"budget", DYNAMOS_TUNABLE_SIZE, DYNAMOS_TUNABLE_RUNTIME, "64M", "4K", "1G", NULL,
                "prefetch budget in bytes"},
    [POLICY] = {"policy", DYNAMOS_TUNABLE_ENUM, DYNAMOS_TUNABLE_RUNTIME, "adaptive", NULL, NULL,
                policies, "paging policy"},
    [VERBOSE] = {"verbose", DYNAMOS_TUNABLE_BOOLEAN, DYNAMOS_TUNABLE_RUNTIME, "false", NULL, NULL,
                 NULL, "log every tick"},
    [SLOTS] = {"slots", DYNAMOS_TUNABLE_INTEGER, 0, "4", "1", "64", NULL,
               "table size, fixed at load"},
};

static const dynamos_ext_host* host;

static int init(const dynamos_ext_host* h) {
  host = h;
  return 0;
}

static int on_tunable(uint32_t index, const dynamos_tunable_value* value) {
  /* A constraint the host cannot express: level 13 is refused. */
  if (index == LEVEL && value->integer == 13) {
    host->set_error(host, "level 13 is reserved");
    return 1;
  }
  return 0;
}

static int call(const char* op, const char* args, dynamos_ext_buffer* reply) {
  char text[64];
  if (strcmp(op, "get") != 0) {
    host->set_error(host, "unknown operation");
    return 1;
  }
  for (uint32_t i = 0; i < COUNT; ++i) {
    if (strcmp(args, tunables[i].name) != 0) continue;
    if (tunables[i].type == DYNAMOS_TUNABLE_FLOAT)
      snprintf(text, sizeof text, "%g", host->get_float(host, i));
    else
      snprintf(text, sizeof text, "%lld", (long long)host->get_integer(host, i));
    return host->append(reply, text, strlen(text));
  }
  host->set_error(host, "no such tunable");
  return 1;
}

static int tick(const dynamos_ext_subject* subject, dynamos_ext_buffer* report) {
  char text[256];
  int n =
      snprintf(text, sizeof text, "{\"id\":%llu,\"name\":\"%s\",\"pids\":%zu,\"policy\":\"%s\"}",
               (unsigned long long)subject->id, subject->name, subject->pid_count, subject->policy);
  return report ? host->append(report, text, (size_t)n) : 0;
}

TEST_EXTENSION("every", "1.0", .description = "a tunable of every type", TEST_TUNABLES(tunables),
               .init = init, .on_tunable = on_tunable, .tick = tick, .call = call)
