// Stopping a benchmark cleanly on SIGINT or SIGTERM: the handler only sets a flag; the
// benchmark stops at its next check, so that its destructors and the end of main undo
// what it set up (groups, guests, swap).
#pragma once

namespace dynamos::workload {

// Installs the handlers for SIGINT and SIGTERM.
void catch_stop_signals();

// Whether one of them came since.
bool interrupted();

}  // namespace dynamos::workload
