// /proc readers: a process's mappings (maps, smaps), its counters (stat), its threads,
// and the system's memory and CPU counters. Each has a pure parser, unit-tested, and a
// reader that names the file and pid in its errors.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace dynamos::kernelside {

// One line of /proc/PID/maps.
struct Mapping {
  uintptr_t start = 0, end = 0;
  bool read = false, write = false, exec = false, shared = false;
  uint64_t offset = 0;
  std::string dev;  // "fd:01"
  uint64_t inode = 0;
  std::string path;  // file path, "[heap]", "[stack]", "[anon:name]", or empty

  size_t size() const { return end - start; }
  // Private memory not backed by a file: what process_madvise PAGEOUT sends to swap.
  bool anonymous() const;
  // Kernel-provided areas ([vdso], [vvar], [vsyscall]) that madvise refuses.
  bool special() const;
};

Result<std::vector<Mapping>> parse_maps(std::string_view text);
Result<std::vector<Mapping>> read_maps(pid_t pid);

// One entry of /proc/PID/smaps: the mapping and its counters in bytes
// ("Rss", "Pss", "Anonymous", "Swap", "Referenced", "Locked", ...).
struct SmapsEntry {
  Mapping mapping;
  std::map<std::string, uint64_t> fields;
  std::string vm_flags;  // "rd wr mr mw me ac"
  uint64_t get(const std::string& key) const;
  bool locked() const;  // VmFlags has "lo": madvise PAGEOUT skips it
};

Result<std::vector<SmapsEntry>> parse_smaps(std::string_view text);
Result<std::vector<SmapsEntry>> read_smaps(pid_t pid);
// /proc/PID/smaps_rollup: the totals over all mappings (cheaper than smaps).
Result<std::map<std::string, uint64_t>> read_smaps_rollup(pid_t pid);

// The counters of /proc/PID/stat (or /proc/PID/task/TID/stat) that callers use.
struct ProcStat {
  pid_t pid = 0;
  std::string comm;
  char state = '?';
  pid_t ppid = 0;
  uint64_t minflt = 0, majflt = 0;
  std::chrono::nanoseconds utime{0}, stime{0};
  int priority = 0, nice = 0;
  unsigned num_threads = 0;
  uint64_t starttime_ticks = 0;
  uint64_t rss_pages = 0;
  int processor = -1;   // CPU last run on
  unsigned policy = 0;  // SCHED_*
};

Result<ProcStat> parse_stat(std::string_view text);
Result<ProcStat> read_stat(pid_t pid);
Result<ProcStat> read_thread_stat(pid_t pid, pid_t tid);

// /proc/PID/schedstat or /proc/PID/task/TID/schedstat: CPU time in nanoseconds (not
// clock ticks), time spent runnable but waiting for a CPU, and the number of timeslices.
struct SchedStat {
  std::chrono::nanoseconds on_cpu{0}, waiting{0};
  uint64_t timeslices = 0;
};
Result<SchedStat> parse_schedstat(std::string_view text);
Result<SchedStat> read_schedstat(pid_t pid);  // the whole process (all threads)
Result<SchedStat> read_thread_schedstat(pid_t pid, pid_t tid);

// The thread ids of a process (/proc/PID/task), sorted.
Result<std::vector<pid_t>> list_threads(pid_t pid);

// /proc/meminfo in bytes ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree", ...).
Result<std::map<std::string, uint64_t>> read_meminfo();

// The first line of /proc/stat: system-wide CPU time by state, summed over CPUs.
struct SystemCpu {
  std::chrono::nanoseconds user{0}, nice{0}, system{0}, idle{0}, iowait{0}, irq{0}, softirq{0},
      steal{0};
  std::chrono::nanoseconds busy() const { return user + nice + system + irq + softirq + steal; }
  std::chrono::nanoseconds total() const { return busy() + idle + iowait; }
};
Result<SystemCpu> parse_system_cpu(std::string_view proc_stat);
Result<SystemCpu> read_system_cpu();

}  // namespace dynamos::kernelside
