// What `dynamos bench compare` runs: the workloads, paging policies, cycle-stealing
// modes and the cluster's shape, parsed and checked before anything starts.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "base/units.hpp"
#include "extensions/paging/policy.hpp"

namespace dynamos::compare {

// A workload: one of the built-in MPI workloads (bench/mpi, run with a fixed amount of
// work calibrated from a run alone, a progress file and a verified RESULT line), or an
// external MPI program given as "cmd:PROGRAM ARGS..." (run as given; verified when it
// prints a RESULT line with "verified":true, else by its exit status alone).
struct WorkloadSpec {
  std::string name;                 // "stencil", "cg", "ft", "is", or "cmd:<program's name>"
  bool builtin = true;              //
  std::string program;              // built-in: dynamos-mpi-NAME; external: the program
  std::vector<std::string> args;    // external: its arguments
  bool power_of_two_ranks = false;  // ft
};

// The baseline gang scheduling is compared with: the two jobs one after the other (the
// second submitted when the first has ended, demand paging, no switch between them).
inline constexpr const char* kSequential = "sequential";

// Who time-slices the pair: DynAMOS's gang scheduler on a cluster of its own (the
// default, `dynamos`), or on the Slurm test bed (scripts/slurm-testbed.sh, one node):
// Slurm's own gang scheduler alone (`slurm`, demand paging: Slurm only suspends and
// resumes), Slurm's gang scheduler with dynamosd --follow slurm paging at its switches
// (`slurm+dynamos`), and DynAMOS's gang scheduler inside a Slurm allocation (`dynamos`
// when given together with either). bench/compare/slurm.hpp runs the Slurm side.
inline constexpr const char* kSchedulerDynamos = "dynamos";
inline constexpr const char* kSchedulerSlurm = "slurm";
inline constexpr const char* kSchedulerSlurmFollow = "slurm+dynamos";
// A --schedulers value: slurm, slurm+dynamos, dynamos, comma-separated, each once.
Result<std::vector<std::string>> parse_schedulers(std::string_view list);

inline const std::vector<std::string>& builtin_workloads() {
  static const std::vector<std::string> w{"stencil", "cg", "ft", "is"};
  return w;
}

Result<WorkloadSpec> parse_workload(std::string_view spec);
// A --workloads value: names separated by commas ("stencil,cg"); a value that starts
// with "cmd:" is one external program with its arguments (commas included).
Result<std::vector<WorkloadSpec>> parse_workloads(const std::vector<std::string>& values);
Result<std::vector<std::string>> parse_policies(std::string_view list);
// "on", "off" or "both" (off first).
Result<std::vector<bool>> parse_cyclesteal(std::string_view mode);
// "2s", "500ms", "1.5" (seconds), "1m".
using dynamos::format_duration;
using dynamos::parse_duration;  // base/units.hpp

struct CompareConfig {
  std::vector<WorkloadSpec> workloads;
  std::vector<std::string> policies{"demand", "adaptive"};
  std::vector<bool> cyclesteal{false};
  std::vector<std::string> schedulers{kSchedulerDynamos};
  unsigned nodes = 2;                         // of a cluster the harness starts
  unsigned job_nodes = 0;                     // nodes each job spans (0: all of the cluster)
  unsigned ranks_per_node = 1;                //
  std::uint64_t mem_per_node = 512ull << 20;  // of a cluster the harness starts
  double overcommit = 1.5;                    // both jobs' footprints / node memory
  std::chrono::nanoseconds quantum = std::chrono::seconds(2);
  bool quantum_given = false;  // set it on a running cluster too
  unsigned repeat = 1;
  std::string out_dir = "compare-results";
  double work_s = 8;                      // seconds of work per job, alone
  double calibrate_s = 3;                 // run alone to measure r0
  std::string guest_policy = "linger";    // with cycle stealing
  std::uint64_t guest_mem = 16ull << 20;  // each guest's working set
  std::chrono::seconds run_timeout{600};  // one pair of jobs
  std::string socket;                     // gangd's control socket
  bool quick = false;
  // Files copied afresh into each job's own folder (work/<job name>/), where the job then
  // runs: an external program's input (HPCC reads hpccinf.txt from its directory and
  // writes hpccoutf.txt there, so two jobs cannot share one).
  std::vector<std::string> stage;
  // "FILE:REGEX": a job is verified when FILE in its folder has a line matching REGEX
  // (HPCC: 'hpccoutf.txt:^Success=1$'); "" = by its RESULT line or exit status.
  std::string pass_if;

  // The arguments of `bench compare` that make the same run (for results.json).
  std::vector<std::string> argv;
};

// --pass-if's parts.
struct PassIf {
  std::string file, regex;
};
Result<PassIf> parse_pass_if(const std::string& spec);

// A built-in workload's command line: footprint per rank, progress file, quiet, and
// either `seconds` of work (calibration) or a fixed number of iterations.
std::vector<std::string> builtin_argv(const std::string& bin_dir, const WorkloadSpec& w,
                                      std::uint64_t footprint, const std::string& progress,
                                      std::optional<double> seconds, std::uint64_t iterations);

// Whether the comparison runs on the Slurm test bed (a scheduler other than dynamos).
bool on_slurm(const CompareConfig& c);

// Checks the combination (ft and a rank count that is not a power of two, sizes...).
Result<void> validate(const CompareConfig& c, unsigned cluster_nodes);

// The footprint per rank: overcommit x node memory, shared by two jobs, split over the
// ranks each job has on a node.
std::uint64_t footprint_per_rank(const CompareConfig& c, std::uint64_t node_memory);

}  // namespace dynamos::compare
