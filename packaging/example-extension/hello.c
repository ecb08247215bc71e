/* A minimal DynAMOS extension: one tunable, one operation.
 *   call "greet" -> "<greeting>, <args>" */
#include <stdio.h>
#include <string.h>

#include "core/extension_abi.h"

static const char* const greetings[] = {"hello", "hi", "good day", NULL};
static const dynamos_tunable tunables[] = {
    {"greeting", DYNAMOS_TUNABLE_ENUM, DYNAMOS_TUNABLE_RUNTIME, "hello", NULL, NULL, greetings,
     "the word the extension greets with"},
};

static const dynamos_ext_host* host;

static int init(const dynamos_ext_host* h) {
  host = h;
  return 0;
}

static int call(const char* op, const char* args, dynamos_ext_buffer* reply) {
  if (strcmp(op, "greet") != 0) {
    host->set_error(host, "unknown operation");
    return 1;
  }
  char text[256];
  int n = snprintf(text, sizeof text, "%s, %s", greetings[host->get_integer(host, 0)], args);
  return host->append(reply, text, (size_t)n);
}

static const dynamos_extension descriptor = {
    .abi = DYNAMOS_EXTENSION_ABI,
    .size = sizeof(dynamos_extension),
    .name = "hello",
    .version = "1.0",
    .description = "greets; an example of an extension built outside the tree",
    .tunables = tunables,
    .tunable_count = sizeof tunables / sizeof tunables[0],
    .init = init,
    .call = call,
};

DYNAMOS_EXTENSION_DEFINE(descriptor)
