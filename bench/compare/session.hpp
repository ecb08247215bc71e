// A whole comparison from the command line's point of view: the cluster (used when
// gangd answers, else started for the run and torn down after it, also on failure and
// Ctrl-C), the harness, and the output files. Shared by `dynamos bench compare` and
// `dynamos demo`.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

#include "bench/compare/harness.hpp"
#include "bench/compare/slurm.hpp"

namespace dynamos::compare {

// SIGINT, SIGTERM and SIGHUP set the flag instead of killing the process, so that
// what was started is torn down. Installed once; returns the flag.
const std::atomic<bool>& install_stop_handlers();

struct Session {
  CompareConfig config;
  unsigned slots = 0;                     // of a cluster the session starts (0: ranks per node)
  bool keep_cluster = false;              // leave a cluster the session started running
  bool print_table = true;                // results.md's table on standard output at the end
  std::string command = "bench compare";  // for error messages
  Hooks hooks;
};

// What happened, for callers that go on (the demo).
struct SessionOutcome {
  int status = 1;         // the command's exit status: 0 all runs verified, 1 otherwise
  bool complete = false;  // every run ran and the cluster went down, uninterrupted
  Comparison comparison;
  bool started_cluster = false;
};

// Starts a cluster if needed, runs, writes DIR/results.{json,md} and the plots, tears down.
// `before_teardown` runs while the cluster is still up (the demo's own steps).
SessionOutcome run_session(Session s, const std::function<void(Cluster&)>& before_teardown = {});

// --schedulers with slurm or slurm+dynamos: the comparison on the Slurm test bed
// (slurm.hpp), which it brings up and down; writes the same outputs.
SessionOutcome run_slurm_session(Session s, const SlurmBed& bed);

}  // namespace dynamos::compare
