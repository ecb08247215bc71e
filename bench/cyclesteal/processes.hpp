// The benchmark's processes: a spawned workload (killed and reaped on destruction, its
// stdout captured), and per-thread accounting from /proc/PID/task/TID/schedstat that
// survives threads coming and going (sampled often; each thread's last sample counts).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dynamos::bench {

class Process {
 public:
  // Starts argv[0] with argv; nice_value applied in the child before exec when set.
  // before_exec runs in the parent while the child waits just before exec: a hook that
  // moves the child into its cgroups, so that the program runs there from its first
  // instruction (as a rank does through dynamos-rank).
  Process(const std::vector<std::string>& argv, std::optional<int> nice_value = std::nullopt,
          const std::function<void(pid_t)>& before_exec = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  pid_t pid() const { return pid_; }
  // Non-blocking: whether it exited (then exit_status() is valid).
  bool exited();
  // Blocks until it exits or timeout passes (pidfd); then as exited().
  bool wait_exit(std::chrono::milliseconds timeout);
  int exit_status() const { return status_; }
  void kill();
  // Everything it wrote to stdout (read once it exited).
  std::string output();

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int pidfd_ = -1;
  int status_ = -1;
  bool reaped_ = false;
  std::string out_;
};

// Sums CPU time and wait time over every thread a process ever had while sampled.
class ThreadAccount {
 public:
  void sample(pid_t pid);
  double cpu_s() const;
  double wait_s() const;
  uint64_t threads_seen() const { return last_.size(); }

 private:
  struct Times {
    uint64_t cpu = 0, wait = 0;
  };
  std::map<std::pair<pid_t, pid_t>, Times> last_;
};

}  // namespace dynamos::bench
