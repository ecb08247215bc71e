// The Slurm allocation DynAMOS runs inside (dynamos cluster up --slurm), read from the
// environment salloc, sbatch and srun give their commands:
//
//   SLURM_JOB_ID             the allocation ("42")
//   SLURM_JOB_NODELIST       its nodes, a hostlist ("n[1-3]", gang/hostlist.hpp)
//   SLURM_JOB_CPUS_PER_NODE  CPUs per node in order, runs compressed: "2(x3)", "4,2(x2)"
//   SLURM_MEM_PER_NODE       memory per node in megabytes, when the job asked for it
//
// and, on a node inside a step (the agents' srun), the Slurm job's own cgroup, under
// which the job groups go so that Slurm keeps accounting, limits and cleanup.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace dynamos::gang::slurm {

struct Allocation {
  std::string job_id;
  std::vector<std::string> nodes;
  std::vector<unsigned> cpus;      // per node, in the order of `nodes`
  std::uint64_t mem_per_node = 0;  // bytes; 0: not given (the node's memory)
};

// A variable of the environment, or nullptr (std::getenv by default; tests pass a map).
using Getenv = std::function<const char*(const char*)>;

// The allocation of the environment; an error names what is missing or malformed
// (outside an allocation: "not inside a Slurm allocation ...").
Result<Allocation> allocation_from_env(const Getenv& getenv);
Result<Allocation> allocation_from_env();

// "2(x3),1" -> {2, 2, 2, 1}; must give exactly `nodes` counts.
Result<std::vector<unsigned>> expand_cpus_per_node(std::string_view text, std::size_t nodes);

// The Slurm job's cgroup path in the hierarchy that `proc_self_cgroup` (the text of
// /proc/self/cgroup of a process inside the job's step) lists first with one, e.g.
// "/system.slice/slurmstepd.scope/job_42" (cgroup v2) or "/slurm/uid_0/job_42"
// (v1); "" when the process is in no cgroup of that job (proctrack/linuxproc,
// task/none, as on the test bed).
std::string job_cgroup(std::string_view proc_self_cgroup, std::string_view job_id);

// Where a node's job groups go: under the Slurm job's cgroup when it has one
// ("<job cgroup>/dynamos", relative to the hierarchy's root), else a dynamos cgroup
// named after the job, "dynamos-slurm-<job id>".
std::string cgroup_parent(std::string_view proc_self_cgroup, std::string_view job_id);

}  // namespace dynamos::gang::slurm
