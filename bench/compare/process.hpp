// Child processes of the harness: the dynamos CLI's own commands and workloads run
// outside the cluster (calibration under plain mpirun). Each child gets a process group
// of its own so that ending it ends what it started (mpirun's ranks).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/error.hpp"

namespace dynamos::compare {

struct Finished {
  int exit_code = -1;  // 128 + signal when killed by one
  std::string out;     // standard output
  std::string err;     // standard error
  bool timed_out = false;
};

// Runs argv (PATH searched) to its end or the timeout (then its group is terminated).
// `extra_env`: NAME=VALUE entries added to the environment. Fails only when it cannot
// be started.
Result<Finished> run_command(const std::vector<std::string>& argv,
                             std::chrono::milliseconds timeout,
                             const std::vector<std::string>& extra_env = {});

// The path of the running program (/proc/self/exe) and the folder it is in.
std::string self_exe();
std::string self_dir();

// Now, as ISO 8601 UTC ("2026-12-03T20:00:00Z").
std::string utc_now();

// "a b 'c d'": argv as a shell would need it, for messages.
std::string shell_join(const std::vector<std::string>& argv);

}  // namespace dynamos::compare
