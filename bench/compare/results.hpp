// What one comparison measured, its summary over repeats, and how it is written:
// results.json (everything), results.md (the table) and PNG plots drawn by gnuplot.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "bench/compare/config.hpp"

namespace dynamos::compare {

// A workload alone on the cluster (no partner, so never switched): its rate r0.
struct Calibration {
  std::string workload;
  // Units of work per second of rank 0 at full speed: the best one-second window of the
  // run alone or of any quantum of the comparison's runs (a machine shared with other
  // work calibrates low now and then; a quantum can never beat full speed).
  double r0 = 0;
  double r0_alone = 0;           // the calibration run's best window
  std::string unit;              // "points", "nonzeros", ...
  double iterations_per_s = 0;   // from its RESULT line
  std::uint64_t iterations = 0;  // what each job of the comparison runs
  std::uint64_t footprint_per_rank = 0;
  double seconds = 0;  // the calibration run's timed part
  bool verified = false;
};

// One job of a run.
struct JobOutcome {
  std::uint64_t id = 0;
  std::string state;  // "done", "failed", ...
  int exit_code = -1;
  std::string reason;
  std::optional<bool> verified;  // nullopt: no RESULT line (external program)
  double seconds = 0;            // its RESULT's timed part (0 without one)
  std::uint64_t iterations = 0;
  double checksum = NAN;
  std::uint64_t major_faults = 0;
  std::uint64_t switches = 0;
  double cpu_s = 0;
  std::string output_file;
};

// One pair of jobs under one policy (and cycle-stealing mode), one repeat.
struct RunResult {
  std::string scheduler = kSchedulerDynamos;  // who time-sliced the pair (config.hpp)
  std::string workload;
  std::string policy;
  bool cyclesteal = false;
  unsigned repeat = 0;  // from 1
  std::vector<JobOutcome> jobs;
  double makespan_s = 0;           // first submission to last end (gangd's clock)
  double lost_s_per_switch = NAN;  // mean of Q - W/r0 over measured quanta, both jobs
  std::vector<double> lost_s;      // per measured quantum
  std::vector<std::pair<double, double>> quanta;  // (Q seconds, work done) of those quanta
  double best_rate = 0;                           // best one-second rate of rank 0 inside a quantum
  unsigned switch_rounds = 0;                     // rounds on the nodes that moved one of the jobs
  double switch_ms_median = NAN;                  // the agents' switch time (freeze, paging, thaw)
  double switch_ms_max = NAN;
  std::uint64_t major_faults = 0;             // both jobs, over their nodes
  std::uint64_t pages_out = 0, pages_in = 0;  // the paging extension's, at switches
  double guest_cpu_s = NAN;    // cycle stealing: CPU time the guests got during the run
  double guest_work = NAN;     // units (bytes swept) the guests did during the run
  double host_slowdown = NAN;  // makespan / the same run's makespan without cycle stealing
  // From the workloads' progress time stamps (on the Slurm test bed): median time from
  // the outgoing job's last progress to the incoming job's first, their number, and the
  // share of looks at which both jobs progressed (measure.hpp: switch_gaps, overlap_share).
  double switch_gap_s = NAN;
  unsigned switch_gaps = 0;
  double overlap = NAN;
  // What stays in memory of a job while it is suspended: the median of its rank's
  // resident bytes sampled while suspended (both jobs), and its footprint to compare.
  double suspended_rss_bytes = NAN;
  std::uint64_t footprint_bytes = 0;
  bool verified = false;  // every job ended with exit 0 and, with a RESULT, verified
  // OOM kills the memory controllers of the jobs' nodes counted during the run (a
  // killed rank's cause; -1: the counters were unreadable).
  std::int64_t oom_kills = 0;
  std::string error;  // "" when the run went through
  // A job that failed before its workload had set up its data (MPI start-up) makes the
  // harness run the pair once more; the first attempt's error is kept here.
  bool startup_failure = false;
  std::string retried_after;
};

// Mean, sample standard deviation, minimum and maximum of the finite values.
struct Stat {
  unsigned n = 0;
  double mean = NAN, sd = NAN, min = NAN, max = NAN;
};
Stat stat_of(const std::vector<double>& values);

// One row of the table: a workload under one policy and cycle-stealing mode.
struct SummaryRow {
  std::string scheduler = kSchedulerDynamos;
  std::string workload, policy;
  bool cyclesteal = false;
  Stat makespan_s, lost_s_per_switch, major_faults, switch_ms, host_slowdown, guest_cpu_s,
      guest_work, switch_gap_s, overlap, suspended_rss_bytes;
  // Against the first row of the same workload and mode: the first scheduler's first policy
  // (with --schedulers slurm,...: Slurm's gang scheduler alone).
  double makespan_vs_first = NAN;  // mean makespan / the first policy's (same workload, mode)
  double lost_vs_first = NAN;
  unsigned runs = 0, verified_runs = 0;
};

struct Comparison {
  CompareConfig config;
  std::uint64_t node_memory = 0;  // of each node, as the cluster reports it
  unsigned cluster_nodes = 0;
  std::string started, ended;  // ISO 8601 UTC
  double wall_s = 0;
  std::vector<Calibration> calibration;
  std::vector<RunResult> runs;
  std::vector<SummaryRow> summary;
  std::vector<std::string> plots;  // file names in the output folder
};

// run.oom_kills from two readings of an OOM-kill counter taken before and after the run
// (-1 when either failed); a failed run with kills counted names the OOM killer first in
// its error, `scope` saying where the kills were counted.
void count_oom_kills(RunResult& run, const Result<std::uint64_t>& before,
                     const Result<std::uint64_t>& after, const std::string& scope);

// r0 per workload (the calibration's or a faster quantum's), then every run's lost time
// per quantum Q - W/r0 and its mean.
void finish_lost_time(Comparison& c);

// Pairs cycle-stealing runs with their runs without (same workload, policy, repeat) for
// host_slowdown, then groups runs into rows, in the order workloads x policies x modes.
void summarise(Comparison& c);

std::string results_json(const Comparison& c);
std::string results_markdown(const Comparison& c);

// Writes results.json and results.md into the output folder (created when missing).
Result<void> write_results(const Comparison& c);
// Draws the plots (gnuplot, PNG) into the output folder and records their names in
// c.plots: makespan.png (per workload and policy, with the spread over repeats) and
// lost-per-switch.png. Fails with a clear message when gnuplot is missing.
Result<void> write_plots(Comparison& c);

// "12.3 ± 0.4" (n > 1), "12.3" (n = 1), "-" (no value).
std::string format_stat(const Stat& s, int precision);

}  // namespace dynamos::compare
