// The ABI glue shared by the extensions: their descriptor, built from the hooks each
// defines under the same names (init, fini, export_state, import_state, on_tunable,
// attach, detach, tick, call); switch_out and switch_in are given (nullptr for none).
#pragma once

#include "core/extension_abi.h"

#define DYNAMOS_EXTENSION_DESCRIPTOR(NAME, VERSION, DESCRIPTION, TUNABLES, TUNABLE_COUNT, \
                                     SWITCH_OUT, SWITCH_IN)                               \
  dynamos_extension {                                                                     \
    .abi = DYNAMOS_EXTENSION_ABI, .size = sizeof(dynamos_extension), .name = NAME,        \
    .version = VERSION, .description = DESCRIPTION, .tunables = TUNABLES,                 \
    .tunable_count = TUNABLE_COUNT, .reserved = 0, .init = init, .fini = fini,            \
    .export_state = export_state, .import_state = import_state, .on_tunable = on_tunable, \
    .attach = attach, .detach = detach, .switch_out = SWITCH_OUT, .switch_in = SWITCH_IN, \
    .tick = tick, .call = call,                                                           \
  }
