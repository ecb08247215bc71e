// Runs a workload (directly or under mpirun) with a deadline and captures its output.
#pragma once

#include <string>
#include <vector>

namespace dynamos::test {

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or the deadline
  bool timed_out = false;
  std::string output;  // stdout and stderr interleaved
  std::string stdout_text;
};

// Starts argv[0] (looked up in PATH) in its own process group; kills the group when
// `timeout_s` passes. Extra environment entries ("NAME=value") are added to the child's.
CommandResult run_command(const std::vector<std::string>& argv, double timeout_s,
                          const std::vector<std::string>& env = {});

// Starts a command in the background; wait() collects it like run_command.
class BackgroundCommand {
 public:
  BackgroundCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});
  ~BackgroundCommand();  // kills the process group if still running
  BackgroundCommand(const BackgroundCommand&) = delete;
  BackgroundCommand& operator=(const BackgroundCommand&) = delete;
  CommandResult wait(double timeout_s);
  bool started() const { return pid_ > 0; }

 private:
  int pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
};

// The mpirun command line prefix for `ranks` ranks on this machine (root-safe, oversubscribed).
std::vector<std::string> mpirun(int ranks);

// An environment for MPI children: sanitizer leak checks off (Open MPI keeps allocations
// to exit) and no attempts at network transports beyond shared memory and loopback.
std::vector<std::string> mpi_env();

// A fresh temporary directory, removed with its contents by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

bool in_ci();

}  // namespace dynamos::test
