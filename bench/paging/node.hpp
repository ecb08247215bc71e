// A gang-scheduled node in miniature, for the switch benchmark and the paging tests:
// a memory cgroup standing for the node's RAM, one child cgroup per job (memory and
// freezer), and jobs that are dynamos-sweep processes reporting their progress.
//
// Everything it creates is removed by the destructors: the groups with their
// processes killed, the job's files. Errors are values (Result).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "bench/workload/progress.hpp"
#include "bench/workload/result_line.hpp"
#include "kernelside/cgroup.hpp"

namespace dynamos::paging_bench {

// A temporary directory, removed with its files on destruction.
class TempDir {
 public:
  static Result<TempDir> create(const std::string& prefix);
  TempDir(TempDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  TempDir(const TempDir&) = delete;
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string p) : path_(std::move(p)) {}
  std::string path_;
};

// A cgroup removed (with its subtree, processes killed) on destruction.
class OwnedGroup {
 public:
  explicit OwnedGroup(kernelside::Group g) : group_(std::move(g)) {}
  OwnedGroup(const OwnedGroup&) = delete;
  ~OwnedGroup();
  kernelside::Group& operator*() { return group_; }
  kernelside::Group* operator->() { return &group_; }

 private:
  kernelside::Group group_;
};

struct JobSpec {
  std::string sweep;  // path of dynamos-sweep
  uint64_t memory = 700ull << 20;
  double seconds = 60;  // the sweep's own run time, from its data being ready
  uint64_t seed = 1;
  std::string pattern = "sequential";
  uint64_t iterations = 0;  // > 0: this many sweeps of the working set instead of `seconds`
};

// One job: a dynamos-sweep process in its own cgroup.
class Job {
 public:
  // Starts the sweep inside `group` (attached before it executes anything).
  static Result<std::unique_ptr<Job>> start(const JobSpec& spec, kernelside::Group group,
                                            const std::string& dir, const std::string& name);
  ~Job();  // kills and reaps the process if still running

  pid_t pid() const { return pid_; }
  kernelside::Group& group() { return group_; }
  const std::string& name() const { return name_; }

  // Waits until the workload has set its data up and runs.
  Result<void> wait_running(std::chrono::milliseconds timeout);
  Result<workload::ProgressSample> sample() const;
  // Waits for the process to exit and parses its result line.
  Result<workload::ResultFields> finish(std::chrono::milliseconds timeout);
  bool exited();  // reaps it if it has
  void kill();    // SIGKILL and reap now

 private:
  Job(kernelside::Group g, std::string name) : group_(std::move(g)), name_(std::move(name)) {}
  kernelside::Group group_;
  std::string name_;
  std::string progress_path_, output_path_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  workload::ProgressReader progress_;
  bool have_progress_ = false;
};

// Major faults of a process so far (0 when it is gone).
uint64_t major_faults(pid_t pid);

// The directory of the running program (for default paths of sibling programs).
std::string program_dir();

// Swap for a run: scripts/zram-swap.sh up when no swap is active, down on destruction.
class SwapSetup {
 public:
  // source_dir: the repository (for the script). size: zram disk size.
  SwapSetup(const std::string& source_dir, const std::string& size);
  ~SwapSetup();
  bool active() const { return active_; }
  bool created() const { return created_; }
  const std::string& message() const { return message_; }

 private:
  std::string script_;
  bool active_ = false, created_ = false;
  std::string message_;
};

}  // namespace dynamos::paging_bench
