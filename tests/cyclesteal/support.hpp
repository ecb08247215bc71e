// Helpers for the cycle-stealing tests: the extension loaded into a host and unloaded
// at the end, a sweep of guest classes left by test processes that died before their
// cleanup ran, and small probes of threads and processes.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "core/extension_host.hpp"
#include "kernelside/cgroup.hpp"
#include "tests/kernelside/support.hpp"

namespace dynamos::cyclesteal::test {

// The root rule (KERNELSIDE_REQUIRE_ROOT), ASSERT_OK and Child: tests/kernelside/support.hpp.
using kernelside::test::Child;

// Memory shared with children (MAP_SHARED), for switching their behaviour.
struct Shared {
  std::atomic<int> host_busy{0};
  std::atomic<int> grow_mib{0};
  std::atomic<int> start_threads{0};
};
Shared* make_shared_page();  // zeroed, unmapped at exit

// Spins forever (a CPU-hungry guest or host).
[[noreturn]] void spin();

// The cgroup (relative path) of a thread in the hierarchy of `controller` ("memory").
std::string thread_cgroup(pid_t pid, pid_t tid, const std::string& controller);
// CPU time of a process (all threads), seconds.
double cpu_seconds(pid_t pid);

// Guest classes of test processes that died ("dynamos-guests-PID" with PID gone), and
// this process's own class after a failed test.
void sweep_classes(const kernelside::Layout& layout, bool own_too);

// The extension loaded into a fresh host; unloaded (guests released) on destruction.
class Loaded {
 public:
  Loaded();
  ~Loaded();
  core::ExtensionHost* operator->() { return host_.get(); }
  std::string error;  // non-empty when loading failed
  // call("report") as text ("" with a test failure when it fails).
  std::string report();

 private:
  std::unique_ptr<core::ExtensionHost> host_;
};

// A number field of a flat JSON text (the first "key":value), NaN when missing.
double json_number(const std::string& json, const std::string& key);
bool json_true(const std::string& json, const std::string& key);

}  // namespace dynamos::cyclesteal::test
