// What dynamos-launch runs for a job: mpirun's command line and the environment it
// (and so every rank) gets. Kept apart from the supervisor so that tests can read the
// exact command line and environment a job would start with.
//
// How mpirun reaches the nodes (gangd --launch, dynamos-launch --mode):
//   virtual  every node is this host: dynamos-vrsh as the rsh agent, MPI over loopback TCP
//   ssh      real hosts: mpirun's own ssh launch
//   slurm    inside a Slurm allocation: Open MPI's Slurm launcher (orted started by srun
//            in a step that overlaps the agents' step), never ssh
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace dynamos::gang {

// The cluster's launcher setting when none is given (gangd --mpirun-args): ranks of
// several jobs share a node's CPUs in turns, so neither mpirun's slot check nor its
// binding of every job to the same first cores may apply.
inline constexpr const char* kDefaultMpirunArgs = "--oversubscribe --bind-to none";

struct MpirunPlan {
  std::string mpirun = "mpirun";
  std::string mode = "virtual";  // virtual | ssh | slurm
  std::string bindir;            // where dynamos-rank and dynamos-vrsh are
  std::string run_dir;           // the agents' sockets (dynamos-rank --run-dir)
  std::string hostfile;          // the job's nodes, "host slots=N" lines
  std::uint64_t job = 0;
  int ranks = 0;
  bool as_root = false;
  std::vector<std::string> cluster_args;  // the cluster's setting, before the job's
  std::vector<std::string> job_args;      // dynamos submit --mpi-args (may override)
  std::vector<std::string> program;       // the program and its arguments
};

// mpirun, its options, then dynamos-rank -- PROGRAM ARGS.
std::vector<std::string> mpirun_command(const MpirunPlan& plan);

// Words of an option string as a POSIX shell splits them without expansions: blanks
// separate, '...' and "..." quote, a backslash escapes the next character. An open quote
// is an error.
Result<std::vector<std::string>> split_words(std::string_view text);

struct RankUser {
  uid_t uid = 0;
  std::string name;  // "" when the uid has no passwd entry
  std::string home = "/";
};

// The environment mpirun runs in, NAME=VALUE strings. Like Slurm's --export=ALL it is
// the submitter's own (`submitted`: PATH, LD_LIBRARY_PATH, module and Spack settings reach
// the ranks), less what must not pass, plus what the launch path sets (see the .cpp);
// `own` is the launcher's environment, which holds the allocation in slurm mode.
// An empty `submitted` (a client that sends none) gives the minimal environment of old:
// a standard PATH, HOME and USER.
std::vector<std::string> rank_environment(const std::vector<std::string>& submitted,
                                          const std::vector<std::string>& own,
                                          const std::string& mode, const RankUser& user);

}  // namespace dynamos::gang
