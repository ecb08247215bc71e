#include "bench/workload/interrupt.hpp"

#include <signal.h>

#include <atomic>

namespace dynamos::workload {
namespace {

std::atomic<bool> stop{false};

}  // namespace

void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { stop = true; };
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

bool interrupted() {
  return stop;
}

}  // namespace dynamos::workload
