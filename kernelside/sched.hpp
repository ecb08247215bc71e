// Scheduling class and nice value per thread, and over all threads of a process.
// Linux keeps both per thread; a new thread inherits its creator's.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"

namespace dynamos::kernelside {

enum class Policy {
  other,  // SCHED_OTHER: the default, weighted by nice
  batch,  // SCHED_BATCH: like other, but treated as CPU-bound (fewer wakeup preemptions)
  idle,   // SCHED_IDLE: runs only when nothing else wants the CPU (weight 3 against 1024)
};
const char* policy_name(Policy p);

struct ThreadSched {
  Policy policy = Policy::other;
  int nice = 0;
};

Result<void> set_thread_policy(pid_t tid, Policy policy);
Result<void> set_thread_nice(pid_t tid, int nice);  // -20..19
Result<ThreadSched> thread_sched(pid_t tid);

struct ProcessSchedReport {
  size_t threads_set = 0;   // threads changed
  size_t threads_gone = 0;  // threads that exited before they could be changed
};

// Sets the policy (and nice, when given) of every thread of pid, repeating the walk
// over /proc/PID/task until a pass finds no thread it has not set, so that threads
// created meanwhile are covered too.
Result<ProcessSchedReport> set_process_policy(pid_t pid, Policy policy,
                                              std::optional<int> nice = std::nullopt);

// CPU affinity of one thread, e.g. "1" or "0-3,6".
Result<void> set_thread_affinity(pid_t tid, const std::string& cpu_list);

}  // namespace dynamos::kernelside
