// dynamos demo: the README's main command. On one machine it starts a virtual cluster,
// runs two memory-overcommitted MPI jobs gang-scheduled under demand paging and then
// under adaptive paging, turns cycle stealing on for a guest on the node the jobs leave
// idle, injects a probe into a running rank and shows its MPI call counts, upgrades the
// paging extension in place while the jobs run, prints the comparison table and tears
// everything down (also on Ctrl-C or failure). `--engine` runs the in-process engine
// demo (dynamos-demo) instead.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <ranges>
#include <sstream>
#include <thread>

#include "bench/compare/session.hpp"
#include "bench/workload/progress.hpp"
#include "bench/workload/size.hpp"
#include "cli/command.hpp"
#include "gang/client/control.hpp"
#include "kernelside/procfs.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace dynamos;

namespace {

double now_s() {
  return workload::monotonic_ns() / 1e9;
}

void step(const std::string& what) {
  std::fprintf(stderr, "\n==> %s\n", what.c_str());
}

bool on_path(const std::string& program) {
  if (const char* path = std::getenv("PATH"))
    for (auto dir : std::string_view(path) | std::views::split(':'))
      if (fs::exists(fs::path(std::string_view(dir)) / program)) return true;
  return false;
}

std::string exe_of(pid_t pid) {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  return ec ? std::string() : p.filename().string();
}

// CPU seconds of a process (utime + stime), NaN when it is gone.
double cpu_seconds(pid_t pid) {
  auto st = kernelside::read_stat(pid);
  return st ? std::chrono::duration<double>(st->utime + st->stime).count() : NAN;
}

// The guest on the idle node: started at the first run's hook, ended before teardown.
struct Guest {
  std::string node;
  pid_t pid = -1;
  std::string progress;
  bool cyclesteal_on = false;
};

// The demo's options.
struct DemoOptions {
  bool quick = false, engine = false;
  std::string out = "dynamos-demo-results";
  std::string bin;  // where the dynamos programs are
  std::string paging_so;
};

// `dynamos demo --engine`: hands over to dynamos-demo; returns only when that fails.
int run_engine_demo(const std::string& bin, const std::vector<std::string>& positional) {
  const std::string demo = (fs::path(bin) / "dynamos-demo").string();
  std::vector<char*> argv{const_cast<char*>(demo.c_str())};
  for (auto& p : positional)
    argv.push_back(const_cast<char*>(p.c_str()));
  argv.push_back(nullptr);
  ::execv(demo.c_str(), argv.data());
  return cli::error("demo", "running " + demo + ": " + std::strerror(errno) +
                                " (build it: cmake --build build --target dynamos-demo)");
}

// What the demo needs, checked before anything starts: an exit status when something
// is missing.
std::optional<int> check_prerequisites(const DemoOptions& o) {
  if (::geteuid() != 0)
    return cli::error("demo", "the demo sets up cgroups and swap: run it as root (sudo)");
  if (!on_path("mpirun"))
    return cli::error("demo",
                      "mpirun is missing (apt-get install openmpi-bin, or run scripts/setup.sh)");
  for (const char* p : {"dynamos-mpi-stencil", "dynamos-sweep", "gangd", "dynamosd"})
    if (!fs::exists(fs::path(o.bin) / p))
      return cli::error("demo", (fs::path(o.bin) / p).string() +
                                    " is missing (build everything: scripts/build.sh)");
  if (!fs::exists(o.paging_so))
    return cli::error("demo", o.paging_so + " is missing (build everything: scripts/build.sh)");
  if (!on_path("gnuplot"))
    std::fprintf(stderr, "note: gnuplot is missing (apt-get install gnuplot-nox): no plot\n");
  return std::nullopt;
}

// The comparison the demo runs: stencil, demand then adaptive, 2 of 3 nodes.
compare::Session demo_session(const DemoOptions& o, const po::variables_map& vm,
                              std::span<const std::string> args) {
  compare::Session s;
  auto& c = s.config;
  c.workloads = {*compare::parse_workload("stencil")};
  c.policies = {"demand", "adaptive"};
  c.cyclesteal = {false};
  c.nodes = 3;
  c.job_nodes = 2;  // the third node stays idle: the guest's
  c.ranks_per_node = 1;
  c.mem_per_node = o.quick ? (192ull << 20) : (384ull << 20);
  c.overcommit = o.quick ? 1.4 : 1.5;
  c.quantum = o.quick ? std::chrono::seconds(2) : std::chrono::seconds(3);
  c.work_s = o.quick ? 3 : 8;
  c.calibrate_s = o.quick ? 2 : 3;
  c.out_dir = o.out;
  c.quick = o.quick;
  c.run_timeout = std::chrono::seconds(o.quick ? 60 : 150);
  if (vm.count("socket")) c.socket = vm["socket"].as<std::string>();
  c.argv = {"dynamos", "demo"};
  c.argv.insert(c.argv.end(), args.begin(), args.end());
  s.command = "demo";
  s.print_table = false;
  return s;
}

void print_intro(const compare::CompareConfig& c) {
  std::fprintf(stderr,
               "DynAMOS demo: two MPI stencil jobs of %s a rank on 2 of 3 virtual nodes of %s\n"
               "(together %.1fx a node's memory), gang-scheduled with a %s quantum, first under\n"
               "demand paging (what Slurm does), then under adaptive paging (DynAMOS's paging\n"
               "extension). Ctrl-C stops it and cleans up.\n",
               workload::format_size(compare::footprint_per_rank(c, c.mem_per_node)).c_str(),
               workload::format_size(c.mem_per_node).c_str(), c.overcommit,
               compare::format_duration(c.quantum).c_str());
}

// The tour's steps inside the comparison's runs, and what they found.
class Tour {
 public:
  Tour(const DemoOptions& o, double quantum_s, const std::atomic<bool>& stop)
      : o_(o), quantum_s_(quantum_s), stop_(stop) {}

  // The hook of each run (after each job has had a quantum).
  void during_run(compare::Cluster& cluster, const compare::LiveRun& live) {
    job_nodes_ = live.nodes;
    if (guest_.node.empty()) start_guest(cluster, live);
    if (live.run.policy != "adaptive" || stop_.load()) return;
    step("3. probe injected into a running rank: its MPI calls counted while it runs");
    for (int attempt = 0; attempt < 2 && !probed_ && !stop_.load(); ++attempt)
      if (!probe_rank(cluster, live, attempt)) break;
    upgrade_paging(cluster);
  }

  // After each run: the OOM kills the nodes' memory controllers counted during it.
  void after_run(compare::Cluster& cluster, const compare::RunResult& run) {
    auto kills = cluster.oom_kills(job_nodes_);
    if (!kills) {
      oom_error_ = kills.error().message();
      return;
    }
    oom_kills_[run.policy] += *kills - oom_total_;
    oom_total_ = *kills;
  }

  // Before teardown: what the guest got, then the guest and cycle stealing ended.
  void end_guest(compare::Cluster& cluster);
  // A guest still running after a failed or interrupted session.
  void kill_guest() {
    if (guest_.pid > 0) ::kill(guest_.pid, SIGKILL);
  }

  bool probed() const { return probed_; }
  bool upgraded() const { return upgraded_; }
  // OOM kills counted during the runs of a policy (nullopt: not readable, see oom_error).
  std::optional<std::uint64_t> oom_kills(const std::string& policy) const {
    if (!oom_error_.empty()) return std::nullopt;
    auto it = oom_kills_.find(policy);
    return it == oom_kills_.end() ? 0 : it->second;
  }
  const std::string& oom_error() const { return oom_error_; }

 private:
  void start_guest(compare::Cluster& cluster, const compare::LiveRun& live);
  bool probe_rank(compare::Cluster& cluster, const compare::LiveRun& live, int attempt);
  void upgrade_paging(compare::Cluster& cluster);

  const DemoOptions& o_;
  const double quantum_s_;
  const std::atomic<bool>& stop_;
  Guest guest_;
  bool probed_ = false, upgraded_ = false;
  std::vector<std::string> job_nodes_;
  std::map<std::string, std::uint64_t> oom_kills_;  // policy -> kills during its runs
  std::uint64_t oom_total_ = 0;
  std::string oom_error_;
};

// Cycle stealing on the node the jobs leave idle, from the first run on.
void Tour::start_guest(compare::Cluster& cluster, const compare::LiveRun& live) {
  if (auto nodes = cluster.nodes())
    for (const auto& n : *nodes)
      if (n.state == "up" &&
          std::find(live.nodes.begin(), live.nodes.end(), n.name) == live.nodes.end())
        guest_.node = n.name;
  if (guest_.node.empty()) {
    std::fprintf(stderr, "   (no idle node for a guest)\n\n");
    return;
  }
  step("2. cycle stealing on the idle node " + guest_.node + " (policy linger), guest " +
       "dynamos-sweep started there");
  if (auto r = cluster.cyclesteal(guest_.node, true, "linger"); !r) {
    std::fprintf(stderr, "   cycle stealing: %s\n\n", r.error().message().c_str());
    return;
  }
  guest_.cyclesteal_on = true;
  const fs::path work = fs::absolute(fs::path(o_.out) / "work");
  guest_.progress = (work / "demo-guest.progress").string();
  fs::remove(guest_.progress);
  auto pid = cluster.guest_run(guest_.node,
                               {(fs::path(o_.bin) / "dynamos-sweep").string(), "--mem", "32M",
                                "--seconds", "100000", "--progress-file", guest_.progress, "-q"},
                               work.string());
  if (!pid)
    std::fprintf(stderr, "   guest: %s\n", pid.error().message().c_str());
  else
    guest_.pid = *pid;
  std::fprintf(stderr, "   guest pid %d on %s\n\n", guest_.pid, guest_.node.c_str());
}

// A rank of `job` on `node`: a process of the job's group that runs a dynamos-mpi-*
// program. Right after a job starts, its group holds only the launch path (orted, the
// dynamos-rank wrapper before its exec), so this looks again until `deadline`; if no
// rank appears, the error names what the group held.
Result<pid_t> find_rank(compare::Cluster& cluster, gang::proto::JobId job, const std::string& node,
                        double deadline) {
  std::string seen;
  for (;;) {
    auto pids = cluster.job_pids(job, node);
    if (!pids) return fail(Errc::not_found, "job-pids: " + pids.error().message());
    seen.clear();
    for (pid_t p : *pids) {
      auto exe = exe_of(p);
      if (exe.starts_with("dynamos-mpi-")) return p;
      seen += (seen.empty() ? "" : ", ") + std::to_string(p) + " (" + (exe.empty() ? "gone" : exe) +
              ")";
    }
    if (now_s() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return fail(Errc::not_found, "no rank of job " + std::to_string(job) + " found on " + node +
                                   ": its group held " + (seen.empty() ? "no process" : seen));
}

// A probe in a running rank: waits until one job runs, probes its rank for 2.5 quanta (so
// that the reading falls in its next quantum: a frozen rank cannot be read). False when
// another attempt is pointless.
bool Tour::probe_rank(compare::Cluster& cluster, const compare::LiveRun& live, int attempt) {
  const double deadline = now_s() + 4 * quantum_s_;
  gang::proto::JobId running = 0;
  std::string node;
  while (!running && now_s() < deadline && !stop_.load()) {
    if (auto jobs = cluster.jobs())
      for (const auto& j : *jobs)
        if ((j.job == live.jobs[0] || j.job == live.jobs[1]) && j.state == "running" &&
            !j.nodes.empty()) {
          running = j.job;
          node = j.nodes.front();
        }
    if (!running) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!running) return false;
  auto rank = find_rank(cluster, running, node, now_s() + 2 * quantum_s_);
  if (!rank) {
    std::fprintf(stderr, "   %s%s\n", rank.error().message().c_str(),
                 attempt == 0 ? " (trying once more)" : "");
    return true;
  }
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f", 2.5 * quantum_s_);
  std::fprintf(stderr,
               "   $ dynamos probe %d MPI_Sendrecv MPI_Allreduce --seconds %s   "
               "(rank 0 of job %lu on %s)\n",
               *rank, secs, static_cast<unsigned long>(running), node.c_str());
  auto r = cluster.cli(
      {"probe", std::to_string(*rank), "MPI_Sendrecv", "MPI_Allreduce", "--seconds", secs},
      std::chrono::seconds(30));
  if (!r) {
    std::fprintf(stderr, "   probe: %s%s\n", r.error().message().c_str(),
                 attempt == 0 ? " (trying once more)" : "");
    return true;
  }
  probed_ = true;
  std::fprintf(stderr, "%s", r->out.c_str());
  return true;
}

void Tour::upgrade_paging(compare::Cluster& cluster) {
  step("4. paging extension upgraded in place on every node while the jobs run");
  std::fprintf(stderr, "   $ dynamos ext upgrade paging %s\n", o_.paging_so.c_str());
  if (auto r = cluster.ext_upgrade("paging", o_.paging_so)) {
    upgraded_ = true;
    std::fprintf(stderr, "%s", r->c_str());
  } else {
    std::fprintf(stderr, "   upgrade: %s\n", r.error().message().c_str());
  }
  std::fprintf(stderr, "\n");
}

void Tour::end_guest(compare::Cluster& cluster) {
  if (guest_.pid > 0) {
    const double cpu = cpu_seconds(guest_.pid);
    std::uint64_t work = 0;
    if (auto r = workload::ProgressReader::open(guest_.progress))
      if (auto smp = r->sample()) work = smp->work;
    std::fprintf(stderr, "   the guest on %s got %.1f s of CPU and swept %s on the idle node\n",
                 guest_.node.c_str(), cpu, workload::format_size(work).c_str());
    ::kill(guest_.pid, SIGKILL);
    guest_.pid = -1;
  }
  if (guest_.cyclesteal_on) {
    (void)cluster.cyclesteal(guest_.node, false, "");
    guest_.cyclesteal_on = false;
  }
}

// results.md's table and the plots, on standard output.
void print_comparison(const compare::SessionOutcome& outcome, const std::string& out) {
  if (outcome.comparison.summary.empty()) return;
  auto md = compare::results_markdown(outcome.comparison);
  auto a = md.find("\n|");
  auto b = md.find("\n\n", a == std::string::npos ? 0 : a + 1);
  if (a != std::string::npos)
    std::printf("%s\n", md.substr(a + 1, b == std::string::npos ? b : b - a).c_str());
  for (const auto& p : outcome.comparison.plots)
    std::printf("plot: %s\n", (fs::path(out) / p).string().c_str());
}

// Whether the runs went as the tour expects. Demand paging on overcommitted nodes can
// get a rank OOM-killed by the nodes' memory controller (when reclaim cannot keep up
// with the incoming job's faults): an outcome the tour shows, not a failure of it, once
// the memory cgroups' OOM counters confirm it. Anything else that fails a run (a rank
// killed by another signal or by someone else, a wrong result) fails the demo.
bool judge_runs(const compare::SessionOutcome& outcome, const Tour& tour) {
  bool runs_ok = !outcome.comparison.runs.empty();
  if (!tour.oom_error().empty()) {
    std::printf("OOM kills: the counters could not be read (%s)\n", tour.oom_error().c_str());
  } else if (runs_ok) {
    std::string counts;
    for (const auto& p : outcome.comparison.config.policies)
      counts += (counts.empty() ? "" : ", ") + p + " " + std::to_string(*tour.oom_kills(p));
    std::printf("OOM kills counted in %s during the runs: %s\n",
                compare::Cluster::oom_scope().c_str(), counts.c_str());
  }
  for (const auto& r : outcome.comparison.runs) {
    if (r.verified && r.error.empty()) continue;
    int signal = 0;
    bool wrong = false;
    for (const auto& j : r.jobs) {
      if (j.exit_code > 128 && j.exit_code < 128 + 65) signal = j.exit_code - 128;
      wrong = wrong || (j.verified && !*j.verified);
    }
    if (signal == 0 || wrong) {
      runs_ok = false;
      continue;
    }
    const char* name = sigabbrev_np(signal);
    auto kills = tour.oom_kills(r.policy);
    if (signal == SIGKILL && kills && *kills > 0 && r.policy == "demand") {
      std::printf(
          "under demand paging a rank was killed by the kernel: the memory controller's OOM "
          "killer (%llu OOM kill%s in %s; SIGKILL, exit code 137), what adaptive paging "
          "avoids\n",
          static_cast<unsigned long long>(*kills), *kills == 1 ? "" : "s",
          compare::Cluster::oom_scope().c_str());
      continue;
    }
    std::printf(
        "under %s paging a rank was killed by SIG%s (exit code %d), not by the memory "
        "controller's OOM killer (%s)\n",
        r.policy.c_str(), name ? name : std::to_string(signal).c_str(), 128 + signal,
        kills ? (compare::Cluster::oom_scope() + " counted no OOM kill during the run").c_str()
              : ("OOM counters unreadable: " + tour.oom_error()).c_str());
    runs_ok = false;
  }
  return runs_ok;
}

int run_demo(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos demo [--quick] [--out DIR]\n"
      "       dynamos demo --engine     the in-process engine demo (dynamos-demo)\n\n"
      "Starts a virtual cluster (3 nodes, swap on zram), runs two memory-overcommitted MPI\n"
      "jobs gang-scheduled under demand paging and then under adaptive paging, turns cycle\n"
      "stealing on for a guest on the idle node, probes a running rank's MPI calls,\n"
      "upgrades the paging extension in place, prints the comparison and tears everything\n"
      "down. Root; about 3 minutes (--quick: about a minute).\n\noptions");
  DemoOptions o;
  desc.add_options()("help,h", "show this help")("quick", po::bool_switch(&o.quick),
                                                 "smaller and shorter (at most 90 s)")(
      "engine", po::bool_switch(&o.engine), "run the engine demo (dynamos-demo) instead")(
      "out", po::value(&o.out)->default_value(o.out),
      "where results.json, results.md and plots go");
  cli::add_socket_option(desc);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto status = cli::parse_options("demo", args, desc, positional, vm)) return *status;
  o.bin = compare::self_dir();
  if (o.engine) return run_engine_demo(o.bin, positional);
  if (!positional.empty())
    return cli::error("demo", "unexpected argument '" + positional[0] + "'", 2);
  o.paging_so =
      fs::weakly_canonical(fs::path(o.bin) / ".." / "lib" / "libdynamos_ext_paging.so").string();
  if (auto status = check_prerequisites(o)) return *status;

  const double t_start = now_s();
  compare::Session s = demo_session(o, vm, args);
  print_intro(s.config);
  step("1. virtual cluster, swap on zram, calibration of the workload alone");
  Tour tour(o, s.config.quantum.count() / 1e9, compare::install_stop_handlers());
  s.hooks.during_run = [&](compare::Cluster& cluster, const compare::LiveRun& live) {
    tour.during_run(cluster, live);
  };
  s.hooks.after_run = [&](compare::Cluster& cluster, const compare::RunResult& run) {
    tour.after_run(cluster, run);
  };
  auto outcome = compare::run_session(std::move(s), [&](compare::Cluster& cluster) {
    step("5. cycle stealing off, guest ended");
    tour.end_guest(cluster);
  });
  tour.kill_guest();  // a failed or interrupted run

  step("6. comparison (demand vs adaptive paging), everything torn down");
  print_comparison(outcome, o.out);
  const bool runs_ok = judge_runs(outcome, tour);
  std::printf("probe of a running rank: %s; paging extension upgraded in place: %s\n",
              tour.probed() ? "shown above" : "FAILED", tour.upgraded() ? "yes" : "FAILED");
  std::printf("demo took %.0f s\n", now_s() - t_start);
  return outcome.complete && runs_ok && tour.probed() && tour.upgraded() ? 0 : 1;
}

}  // namespace

DYNAMOS_COMMAND(demo, "demo",
                "the tour: gang-scheduled MPI jobs, adaptive paging, cycle stealing, probes",
                run_demo);
