// gangd's side of the launch path: starts a placed job's supervisor (dynamos-launch),
// which runs mpirun over a hostfile of the job's nodes and reports the job's exit.
//
//   gangd --launch virtual   every node is this host: mpirun reaches the "nodes" through
//                            dynamos-vrsh and MPI runs over loopback TCP (dynamos cluster up)
//   gangd --launch ssh       real hosts: mpirun's own ssh launch, one agent per host
//   gangd --launch none      jobs are placed only (tests attach processes themselves)
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/error.hpp"
#include "gang/gangd/journal.hpp"
#include "kernelside/spawn.hpp"

namespace dynamos::gang {

struct LaunchConfig {
  std::string mode = "virtual";  // virtual | ssh
  std::string launcher;          // path of dynamos-launch
  std::string run_dir = "/run/dynamos";
  std::string control_socket;  // gangd's, for the exit report
  std::string mpirun = "mpirun";
};

// Checks the job can be started (its owner exists, its directory is there) and starts
// its supervisor in the background; `output` is the job's output file ("" = default
// <cwd>/dynamos-job<ID>.out). Returns once the supervisor has detached.
Result<void> launch_job(const LaunchConfig& config, const JournalJob& job,
                        const std::string& output);

// The socket of a node's agent for its ranks (gang/dynamosd/rank_socket.hpp) under `run_dir`.
inline std::string rank_socket_path(const std::string& run_dir, const std::string& node) {
  return run_dir + "/agent-" + node + ".sock";
}

using kernelside::spawn_program;  // kernelside/spawn.hpp: the one spawner

// The index of the first "--" in argv (what follows is a program and its arguments),
// or argc when there is none.
int dashes_index(int argc, char** argv);

// The dynamos-launch next to the running program (gangd and dynamos live beside it).
std::string sibling_program(const std::string& name);

}  // namespace dynamos::gang
