/* Test extension "counter", built three times from this file:
 *   COUNTER_BUILD=1  the running build
 *   COUNTER_BUILD=2  its upgrade: imports the state of build 1, adds a tunable
 *   COUNTER_BUILD=3  an upgrade whose import refuses the state
 * Every call of "next" adds `step` to one counter and answers "<build> <counter>",
 * so a test can tell which build answered and that no count was lost or repeated. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/exthost/test_extension.h"

#ifndef COUNTER_BUILD
#error "define COUNTER_BUILD"
#endif
#define STRINGIFY2(x) #x
#define STRINGIFY(x) STRINGIFY2(x)

static const dynamos_tunable tunables[] = {
    {"step", DYNAMOS_TUNABLE_INTEGER, DYNAMOS_TUNABLE_RUNTIME, "1", "1", "1000", NULL,
     "added to the counter by each call"},
#if COUNTER_BUILD >= 2
    {"pace", DYNAMOS_TUNABLE_DURATION, DYNAMOS_TUNABLE_RUNTIME, "1s", "1ms", "1min", NULL,
     "a tunable only build 2 and later have"},
#endif
};

static const dynamos_ext_host* host;
static _Atomic uint64_t counter;

static void say(const char* what) {
  char line[128];
  snprintf(line, sizeof line, "build " STRINGIFY(COUNTER_BUILD) " %s, counter %llu", what,
           (unsigned long long)atomic_load(&counter));
  host->log(host, DYNAMOS_LOG_INFO, line);
}

static int init(const dynamos_ext_host* h) {
  host = h;
  say("init");
  return 0;
}

static void fini(uint32_t reason) {
  say(reason == DYNAMOS_FINI_UNLOAD     ? "fini unload"
      : reason == DYNAMOS_FINI_UPGRADED ? "fini upgraded"
                                        : "fini abandoned");
}

static int export_state(dynamos_ext_buffer* out) {
  uint64_t value = atomic_load(&counter);
  if (host->append(out, "CNT1", 4) || host->append(out, &value, sizeof value)) {
    host->set_error(host, "out of memory");
    return 1;
  }
  return 0;
}

static int import_state(const void* data, size_t size) {
#if COUNTER_BUILD == 3
  (void)data;
  (void)size;
  host->set_error(host, "state format CNT1 is not supported by build 3");
  return 1;
#else
  uint64_t value;
  if (size != 4 + sizeof value || memcmp(data, "CNT1", 4) != 0) {
    host->set_error(host, "unknown state format");
    return 1;
  }
  memcpy(&value, (const char*)data + 4, sizeof value);
  atomic_store(&counter, value);
  return 0;
#endif
}

static int reply_count(dynamos_ext_buffer* reply, uint64_t value) {
  char text[64];
  int n = snprintf(text, sizeof text, STRINGIFY(COUNTER_BUILD) " %llu", (unsigned long long)value);
  return reply ? host->append(reply, text, (size_t)n) : 0;
}

static int call(const char* op, const char* args, dynamos_ext_buffer* reply) {
  if (strcmp(op, "next") == 0) {
    uint64_t step = (uint64_t)host->get_integer(host, 0);
    return reply_count(reply, atomic_fetch_add(&counter, step) + step);
  }
  if (strcmp(op, "count") == 0) return reply_count(reply, atomic_load(&counter));
  if (strcmp(op, "sleep") == 0) {
    /* Stays inside this build for `args` milliseconds: a call the upgrade must wait for. */
    long ms = strtol(args, NULL, 10);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    return reply_count(reply, atomic_load(&counter));
  }
  host->set_error(host, "unknown operation");
  return 1;
}

static int tick(const dynamos_ext_subject* subject, dynamos_ext_buffer* report) {
  (void)subject;
  return reply_count(report, atomic_fetch_add(&counter, 1) + 1);
}

TEST_EXTENSION("counter", STRINGIFY(COUNTER_BUILD) ".0",
               .description = "counts calls, carries the count across upgrades",
               TEST_TUNABLES(tunables), .init = init, .fini = fini, .export_state = export_state,
               .import_state = import_state, .tick = tick, .call = call)
