// gangd's side of the launch path: starts a placed job's supervisor (dynamos-launch),
// which runs mpirun over a hostfile of the job's nodes and reports the job's exit.
//
//   gangd --launch virtual   every node is this host: mpirun reaches the "nodes" through
//                            dynamos-vrsh and MPI runs over loopback TCP (dynamos cluster up)
//   gangd --launch ssh       real hosts: mpirun's own ssh launch, one agent per host
//   gangd --launch slurm     inside a Slurm allocation: Open MPI's Slurm launcher (srun),
//                            never ssh (dynamos cluster up --slurm)
//   gangd --launch none      jobs are placed only (tests attach processes themselves)
//
// The job's environment (the submitter's) goes to dynamos-launch in a file of the launch
// directory, <run-dir>/launch/job<ID>.env (mode 0600, NAME=VALUE entries each ended by a
// NUL byte), which dynamos-launch reads and removes.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/error.hpp"
#include "gang/gangd/journal.hpp"
#include "gang/launch_path.hpp"
#include "gang/mpirun_command.hpp"
#include "gang/protocol.hpp"
#include "kernelside/spawn.hpp"

namespace dynamos::gang {

struct LaunchConfig {
  std::string mode = "virtual";  // virtual | ssh | slurm
  std::string launcher;          // path of dynamos-launch
  std::string run_dir = "/run/dynamos";
  std::string control_socket;  // gangd's, for the exit report
  std::string mpirun = "mpirun";
  std::string mpirun_args = kDefaultMpirunArgs;  // the cluster's, before each job's own
};

// Checks the job can be started (its owner exists, its directory is there, its
// --mpi-args split into words) and starts its supervisor in the background with the
// request's output file ("" = default <cwd>/dynamos-job<ID>.out), extra mpirun options
// and environment. Returns once the supervisor has detached.
Result<void> launch_job(const LaunchConfig& config, const JournalJob& job,
                        const proto::JobSubmit& request);

using kernelside::spawn_program;  // kernelside/spawn.hpp: the one spawner

}  // namespace dynamos::gang
