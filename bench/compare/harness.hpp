// `dynamos bench compare`'s engine: calibrates each workload alone on the cluster, then
// for every repeat x workload x cycle-stealing mode x paging policy runs two jobs of the
// workload that share the same nodes (so the gang scheduler alternates them) with
// footprints that overcommit node memory, and measures while they run:
//
//  - makespan: first submission to the last job's end (gangd's times);
//  - lost time per switch: for each quantum of a job that began and ended with the job
//    frozen, Q - W/r0, where W is the work its rank 0 counted in its progress file
//    between the two frozen samples (exact: nothing moves while frozen), Q the time it
//    was running (from gangd's job states, sampled every 50 ms) and r0 its rate alone;
//  - switch latency: the agents' switch records (freeze, paging, thaw) of the rounds
//    that moved the jobs; pages paged out and in by the paging extension;
//  - major faults of both jobs (gangd's sums over their nodes);
//  - with cycle stealing: a dynamos-sweep guest on each node; its CPU time and work
//    during the run, and the host slowdown against the same run without guests;
//  - each job's RESULT line (verified=true) and exit code.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "bench/compare/cluster.hpp"
#include "bench/compare/config.hpp"
#include "bench/compare/results.hpp"

namespace dynamos::compare {

// What a hook sees of a run in progress.
struct LiveRun {
  const RunResult& run;
  std::vector<gang::proto::JobId> jobs;
  std::vector<std::string> nodes;  // the jobs' nodes
  double elapsed_s = 0;
};

struct Hooks {
  // Called once per run, after each job has had a quantum (demo: probes, upgrades).
  // Its time counts in the run's makespan; keep it short.
  std::function<void(Cluster&, const LiveRun&)> during_run;
  // Called once per run when it has ended and been measured, before the next starts.
  std::function<void(Cluster&, const RunResult&)> after_run;
  // Whether to print progress on standard error (default yes).
  bool progress = true;
};

class Harness {
 public:
  // `bin_dir` holds the workloads (dynamos-mpi-*, dynamos-sweep); `stop` is polled (Ctrl-C).
  Harness(CompareConfig config, Cluster& cluster, std::string bin_dir,
          const std::atomic<bool>* stop = nullptr);

  // Runs everything. Runs that fail are recorded with their error and the comparison
  // goes on; the result fails only when it cannot go on at all (cluster gone, Ctrl-C,
  // no workload calibrated). Partial results stay in `partial()`.
  Result<Comparison> run(const Hooks& hooks = {});
  const Comparison& partial() const { return comparison_; }

 private:
  struct Job;
  struct Guest;
  struct Pair;
  Result<void> calibrate(const WorkloadSpec& w, const Hooks& hooks);
  Result<SubmitRequest> new_job(Job& j, const std::string& name, const std::string& paging);
  // One run of two jobs, in phases: set up, watch, measure, report.
  RunResult run_pair(const WorkloadSpec& w, const std::string& policy, bool cyclesteal,
                     unsigned repeat, const Hooks& hooks);
  Result<void> record_earlier_rounds(Pair& p);
  Result<void> start_guests(Pair& p);
  Result<void> submit_jobs(Pair& p, const WorkloadSpec& w, const std::string& policy);
  Result<void> watch(Pair& p, const Hooks& hooks);
  Result<void> sample_jobs(Pair& p, double t);
  Result<void> check_placement(Pair& p);
  std::string progress_line(const Pair& p) const;
  void measure_guests(Pair& p);
  void collect_outcomes(Pair& p, const WorkloadSpec& w);
  void name_oom_kills(RunResult& run, const Result<std::uint64_t>& before);
  void measure_quanta(Pair& p);
  void measure_switches(Pair& p);
  void report(const Pair& p);
  std::vector<std::string> workload_argv(const WorkloadSpec& w, const std::string& progress,
                                         bool calibration) const;
  bool stopping() const { return stop_ && stop_->load(); }
  void status(const std::string& line, bool event);
  std::string eta() const;

  CompareConfig config_;
  Cluster& cluster_;
  std::string bin_dir_;
  const std::atomic<bool>* stop_;
  Comparison comparison_;
  std::vector<std::string> nodes_;      // the cluster's nodes that are up
  std::vector<std::string> job_nodes_;  // the first job_nodes of them (where jobs go)
  std::string work_dir_;
  std::string session_id_;  // this comparison's start and pid: names its runs' output files
  // Progress and ETA.
  double started_ = 0;
  unsigned runs_total_ = 0, runs_done_ = 0;
  double run_wall_sum_ = 0;
  double expected_run_s_ = 0;
  double current_run_start_ = 0;
  bool tty_ = false;
  double last_plain_status_ = 0;
  bool line_open_ = false;
};

}  // namespace dynamos::compare
