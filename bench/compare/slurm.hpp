// `dynamos bench compare --schedulers slurm,slurm+dynamos,dynamos`: the same pair of
// memory-overcommitted MPI jobs time-sliced by Slurm's own gang scheduler, by Slurm's
// gang scheduler with dynamosd --follow slurm paging at its switches, and by DynAMOS's
// gang scheduler inside a Slurm allocation, on one node of the Slurm test bed
// (scripts/slurm-testbed.sh up --gang --spank dynamos_spank.so --limit-memory, swap on
// zram), Slurm's time slice (at least 5 s) the quantum of all three.
//
// Each workload is first run alone (sbatch, no partner: never suspended) for its rate r0
// and iterations per second; each job of the pair then runs --work seconds' worth of
// iterations. Under slurm and slurm+dynamos both jobs go in with sbatch (slurm+dynamos:
// --dynamos-paging=POLICY); under dynamos one allocation of the node (salloc --mem) runs
// `dynamos cluster up --slurm --quantum <time slice>` and the harness submits the pair to
// that gangd. Every 10 ms it looks at both jobs: rank 0's progress file (work and the
// time of its last progress), whether the job is suspended (Slurm: its rank stopped,
// state T, by Slurm's SIGTSTP/SIGSTOP; DynAMOS: gangd's job state), the rank's major
// faults and, while suspended, its resident size. From those (measure.hpp): makespan
// (first submission to the last job's end, wall clock), lost time per switch (Q - W/r0
// over the quanta that began and ended suspended, as for DynAMOS's own runs), the switch
// gaps and the overlap. Verified: each job's RESULT line says verified. A run whose pair
// did not start (the allocation's cluster, dynamosd or a submission failed) runs once
// more; the first attempt's error stays in retried_after.
#pragma once

#include <atomic>
#include <string>

#include "bench/compare/results.hpp"

namespace dynamos::compare {

struct SlurmBed {
  std::string testbed;  // scripts/slurm-testbed.sh
  std::string zram;     // scripts/zram-swap.sh (dynamos-zram-swap)
  std::string bin_dir;  // dynamos, dynamosd, the workloads
  std::string lib_dir;  // dynamos_spank.so, libdynamos_ext_paging.so
};

// The test bed's scripts where this build finds them: next to the program, else in the
// source tree it was built from.
SlurmBed default_slurm_bed(const std::string& bin_dir);

// Brings the test bed up (none may be up), runs everything, brings it down again (also on
// failure and on `stop`). Runs that fail are recorded with their error; the result fails
// only when the comparison cannot go on (test bed, calibration, Ctrl-C). Needs root.
Result<Comparison> run_slurm_comparison(const CompareConfig& config, const SlurmBed& bed,
                                        const std::atomic<bool>* stop, Comparison& partial);

}  // namespace dynamos::compare
