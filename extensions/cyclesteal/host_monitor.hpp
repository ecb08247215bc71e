// Host activity, sampled: how much CPU the host jobs used over the last interval, how
// much memory they hold, and whether they waited on memory (PSI).
//
// Sources, in order of preference: the host jobs' cgroups (cpuacct usage, memory
// usage), else their processes (/proc/PID/task/TID/schedstat CPU and wait time summed over
// the threads, and RSS). With no host job attached the host is "everything but the guests":
// /proc/stat busy time minus the guest class's CPU time, MemTotal - MemAvailable minus
// the guests' memory. PSI is the host job's v2 cgroup memory.pressure where there is
// one, else the system-wide /proc/pressure/memory.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "kernelside/cgroup.hpp"
#include "kernelside/pressure.hpp"
#include "kernelside/procfs.hpp"

namespace dynamos::cyclesteal {

struct HostReading {
  std::chrono::nanoseconds interval{0};  // since the previous reading
  std::chrono::nanoseconds host_cpu{0};  // host CPU time within it
  // host time runnable but waiting for a CPU within it (host jobs' threads; 0 when
  // system-wide: /proc has no such figure for "everything but the guests")
  std::chrono::nanoseconds host_wait{0};
  // host CPU demand: (CPU time + time runnable but waiting for a CPU) / (interval x
  // cpus). Demand rather than use, so that a host held back by other load (or by the
  // guests) still counts as busy.
  double cpu_busy = 0;
  uint64_t host_memory = 0;  // bytes, now
  double memory_psi = 0;     // share of the interval with some task waiting on memory
  bool system_wide = false;  // no host job attached: derived from /proc
};

class HostMonitor {
 public:
  static Result<HostMonitor> create(const kernelside::Layout& layout);

  // A host job: its cgroup (relative path, "" for none) and its processes.
  Result<void> add(uint64_t id, const std::string& cgroup, std::span<const pid_t> pids);
  void remove(uint64_t id);
  // The next reading starts a new interval (its own figures are zero).
  void restart() { primed_ = false; }
  size_t jobs() const { return jobs_.size(); }
  struct JobRecord {
    uint64_t id;
    std::string cgroup;
    std::vector<pid_t> pids;
  };
  std::vector<JobRecord> records() const;
  // The host jobs' cgroups (for memory protection).
  std::vector<kernelside::Group*> groups();
  unsigned cpus() const { return cpus_; }

  // A reading since the previous one. guest_cpu_ns and guest_memory are the guest
  // class's totals (cumulative CPU, current memory), subtracted in system-wide mode.
  Result<HostReading> read(uint64_t guest_cpu_ns, uint64_t guest_memory);

 private:
  struct Job {
    std::string cgroup;
    std::optional<kernelside::Group> group;
    std::vector<pid_t> pids;
    // Per thread CPU and wait time, so that exits never count negative.
    std::map<pid_t, uint64_t> last_cpu, last_wait;
    uint64_t last_group_cpu = 0;
  };
  HostMonitor(kernelside::Layout layout, unsigned cpus) : layout_(std::move(layout)), cpus_(cpus) {}
  // CPU time and wait time of the job since the previous call, ns.
  std::pair<uint64_t, uint64_t> job_cpu_delta(Job& job);
  uint64_t job_memory(const Job& job);

  kernelside::Layout layout_;
  unsigned cpus_;
  std::map<uint64_t, Job> jobs_;
  std::optional<kernelside::PressureSampler> psi_;
  std::chrono::steady_clock::time_point last_{};
  kernelside::SystemCpu last_system_{};
  uint64_t last_guest_cpu_ = 0;
  bool primed_ = false;
};

}  // namespace dynamos::cyclesteal
