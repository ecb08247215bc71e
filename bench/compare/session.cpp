#include "bench/compare/session.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "bench/compare/process.hpp"
#include "bench/workload/size.hpp"

namespace dynamos::compare {

namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true);
}

void say(const std::string& command, const std::string& what) {
  std::fprintf(stderr, "dynamos %s: %s\n", command.c_str(), what.c_str());
}

}  // namespace

const std::atomic<bool>& install_stop_handlers() {
  static bool installed = [] {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGINT, SIGTERM, SIGHUP})
      sigaction(sig, &sa, nullptr);
    return true;
  }();
  (void)installed;
  return g_stop;
}

namespace {

// Outputs, also of a partial comparison (marked by its runs' errors).
void write_outputs(const Session& s, SessionOutcome& out) {
  if (!out.comparison.runs.empty() || !out.comparison.calibration.empty()) {
    if (auto p = write_plots(out.comparison); !p) say(s.command, p.error().message());
    if (auto w = write_results(out.comparison); !w)
      say(s.command, w.error().message());
    else
      std::fprintf(
          stderr, "results: %s/results.json, %s/results.md%s\n", s.config.out_dir.c_str(),
          s.config.out_dir.c_str(),
          out.comparison.plots.empty() ? "" : (", plots " + s.config.out_dir + "/*.png").c_str());
  }
}

// The table on standard output and the exit status.
SessionOutcome finish(const Session& s, SessionOutcome& out, bool complete) {
  const auto& stop = install_stop_handlers();
  if (s.print_table && !out.comparison.summary.empty()) {
    auto md = results_markdown(out.comparison);
    // The table only: from the first '|' line to the last.
    auto start = md.find("\n|");
    auto end = md.find("\n\n", start == std::string::npos ? 0 : start + 1);
    if (start != std::string::npos)
      std::printf("%s\n",
                  md.substr(start + 1, end == std::string::npos ? end : end - start).c_str());
  }

  bool all_verified = !out.comparison.runs.empty();
  for (const auto& r : out.comparison.runs)
    if (!r.verified || !r.error.empty()) all_verified = false;
  if (stop.load()) say(s.command, "interrupted: stopped and cleaned up");
  out.complete = complete && !stop.load();
  out.status = out.complete && all_verified ? 0 : 1;
  return std::move(out);
}

}  // namespace

SessionOutcome run_session(Session s, const std::function<void(Cluster&)>& before_teardown) {
  SessionOutcome out;
  const auto& stop = install_stop_handlers();
  Cluster cluster(self_exe(), s.config.socket);

  if (cluster.reachable()) {
    std::fprintf(stderr, "using the cluster that gangd at %s runs\n", cluster.socket().c_str());
    if (s.config.quantum_given) {
      if (auto r = cluster.set_quantum(s.config.quantum); !r) {
        say(s.command, "setting the quantum: " + r.error().message());
        return out;
      }
      std::fprintf(stderr, "quantum set to %s on the running cluster (it stays so)\n",
                   format_duration(s.config.quantum).c_str());
    }
  } else {
    if (::geteuid() != 0) {
      say(s.command, "no cluster is running at " + cluster.socket() +
                         " and starting one needs root (run as root, or start one with "
                         "'dynamos cluster up')");
      return out;
    }
    std::fprintf(stderr, "starting a virtual cluster: %u nodes of %s, quantum %s...\n",
                 s.config.nodes, workload::format_size(s.config.mem_per_node).c_str(),
                 format_duration(s.config.quantum).c_str());
    if (auto r = cluster.up(s.config.nodes, s.config.mem_per_node, s.config.quantum,
                            s.slots ? s.slots : s.config.ranks_per_node);
        !r) {
      say(s.command, "starting the cluster: " + r.error().message());
      (void)cluster.down();  // whatever part of it started
      return out;
    }
    out.started_cluster = true;
  }

  Harness harness(s.config, cluster, self_dir(), &stop);
  auto result = harness.run(s.hooks);
  std::fprintf(stderr, "\n");
  bool complete = true;
  if (result) {
    out.comparison = std::move(*result);
  } else {
    complete = false;
    say(s.command, result.error().message());
    out.comparison = harness.partial();
    summarise(out.comparison);
  }
  if (before_teardown && complete && !stop.load()) before_teardown(cluster);

  write_outputs(s, out);
  // The logs of a cluster it started go with the results (down removes them).
  if (out.started_cluster) {
    const fs::path state =
        cluster.state_dir().empty() ? fs::path("/run/dynamos") : fs::path(cluster.state_dir());
    const fs::path logs = fs::path(s.config.out_dir) / "work" / "cluster-logs";
    std::error_code ec;
    fs::create_directories(logs, ec);
    for (const auto& e : fs::directory_iterator(state, ec))
      if (e.path().extension() == ".log")
        fs::copy_file(e.path(), logs / e.path().filename(), fs::copy_options::overwrite_existing,
                      ec);
  }

  if (out.started_cluster && !s.keep_cluster) {
    std::fprintf(stderr, "tearing the virtual cluster down...\n");
    if (auto r = cluster.down(); !r) {
      say(s.command, "tearing the cluster down: " + r.error().message());
      complete = false;
    }
  }

  return finish(s, out, complete);
}

SessionOutcome run_slurm_session(Session s, const SlurmBed& bed) {
  SessionOutcome out;
  const auto& stop = install_stop_handlers();
  auto result = run_slurm_comparison(s.config, bed, &stop, out.comparison);
  std::fprintf(stderr, "\n");
  if (!result) say(s.command, result.error().message());
  write_outputs(s, out);
  return finish(s, out, result.has_value());
}

}  // namespace dynamos::compare
