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
#include <ranges>
#include <sstream>
#include <thread>

#include "bench/compare/session.hpp"
#include "bench/workload/progress.hpp"
#include "bench/workload/size.hpp"
#include "cli/command.hpp"
#include "gang/client/control.hpp"

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

// The guest on the idle node: started at the first run's hook, ended before teardown.
struct Guest {
  std::string node;
  pid_t pid = -1;
  std::string progress;
  bool cyclesteal_on = false;
};

int run_demo(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos demo [--quick] [--out DIR]\n"
      "       dynamos demo --engine     the in-process engine demo (dynamos-demo)\n\n"
      "Starts a virtual cluster (3 nodes, swap on zram), runs two memory-overcommitted MPI\n"
      "jobs gang-scheduled under demand paging and then under adaptive paging, turns cycle\n"
      "stealing on for a guest on the idle node, probes a running rank's MPI calls,\n"
      "upgrades the paging extension in place, prints the comparison and tears everything\n"
      "down. Root; about 3 minutes (--quick: about a minute).\n\noptions");
  bool quick = false, engine = false;
  std::string out = "dynamos-demo-results";
  desc.add_options()("help,h", "show this help")("quick", po::bool_switch(&quick),
                                                 "smaller and shorter (at most 90 s)")(
      "engine", po::bool_switch(&engine), "run the engine demo (dynamos-demo) instead")(
      "out", po::value(&out)->default_value(out), "where results.json, results.md and plots go");
  cli::add_socket_option(desc);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto status = cli::parse_options("demo", args, desc, positional, vm)) return *status;
  const std::string bin = compare::self_dir();
  if (engine) {
    const std::string demo = (fs::path(bin) / "dynamos-demo").string();
    std::vector<char*> argv{const_cast<char*>(demo.c_str())};
    for (auto& p : positional)
      argv.push_back(const_cast<char*>(p.c_str()));
    argv.push_back(nullptr);
    ::execv(demo.c_str(), argv.data());
    return cli::error("demo", "running " + demo + ": " + std::strerror(errno) +
                                  " (build it: cmake --build build --target dynamos-demo)");
  }
  if (!positional.empty())
    return cli::error("demo", "unexpected argument '" + positional[0] + "'", 2);

  // What the demo needs, checked before anything starts.
  if (::geteuid() != 0)
    return cli::error("demo", "the demo sets up cgroups and swap: run it as root (sudo)");
  if (!on_path("mpirun"))
    return cli::error("demo",
                      "mpirun is missing (apt-get install openmpi-bin, or run scripts/setup.sh)");
  for (const char* p : {"dynamos-mpi-stencil", "dynamos-sweep", "gangd", "dynamosd"})
    if (!fs::exists(fs::path(bin) / p))
      return cli::error("demo", (fs::path(bin) / p).string() +
                                    " is missing (build everything: scripts/build.sh)");
  const std::string paging_so =
      fs::weakly_canonical(fs::path(bin) / ".." / "lib" / "libdynamos_ext_paging.so").string();
  if (!fs::exists(paging_so))
    return cli::error("demo", paging_so + " is missing (build everything: scripts/build.sh)");
  if (!on_path("gnuplot"))
    std::fprintf(stderr, "note: gnuplot is missing (apt-get install gnuplot-nox): no plot\n");

  const double t_start = now_s();
  compare::Session s;
  auto& c = s.config;
  c.workloads = {*compare::parse_workload("stencil")};
  c.policies = {"demand", "adaptive"};
  c.cyclesteal = {false};
  c.nodes = 3;
  c.job_nodes = 2;  // the third node stays idle: the guest's
  c.ranks_per_node = 1;
  c.mem_per_node = quick ? (192ull << 20) : (384ull << 20);
  c.overcommit = quick ? 1.4 : 1.5;
  c.quantum = quick ? std::chrono::seconds(2) : std::chrono::seconds(3);
  c.work_s = quick ? 3 : 8;
  c.calibrate_s = quick ? 2 : 3;
  c.out_dir = out;
  c.quick = quick;
  c.run_timeout = std::chrono::seconds(quick ? 60 : 150);
  if (vm.count("socket")) c.socket = vm["socket"].as<std::string>();
  c.argv = {"dynamos", "demo"};
  c.argv.insert(c.argv.end(), args.begin(), args.end());
  s.command = "demo";
  s.print_table = false;

  std::fprintf(stderr,
               "DynAMOS demo: two MPI stencil jobs of %s a rank on 2 of 3 virtual nodes of %s\n"
               "(together %.1fx a node's memory), gang-scheduled with a %s quantum, first under\n"
               "demand paging (what Slurm does), then under adaptive paging (DynAMOS's paging\n"
               "extension). Ctrl-C stops it and cleans up.\n",
               workload::format_size(compare::footprint_per_rank(c, c.mem_per_node)).c_str(),
               workload::format_size(c.mem_per_node).c_str(), c.overcommit,
               compare::format_duration(c.quantum).c_str());
  step("1. virtual cluster, swap on zram, calibration of the workload alone");

  Guest guest;
  const auto& stop = compare::install_stop_handlers();
  bool probed = false, upgraded = false;
  std::string probe_output, upgrade_output;

  s.hooks.during_run = [&](compare::Cluster& cluster, const compare::LiveRun& live) {
    // Cycle stealing on the node the jobs leave idle, from the first run on.
    if (guest.node.empty()) {
      auto nodes = cluster.nodes();
      if (nodes)
        for (const auto& n : *nodes)
          if (n.state == "up" &&
              std::find(live.nodes.begin(), live.nodes.end(), n.name) == live.nodes.end())
            guest.node = n.name;
      if (guest.node.empty()) {
        std::fprintf(stderr, "   (no idle node for a guest)\n");
      } else {
        step("2. cycle stealing on the idle node " + guest.node + " (policy linger), guest " +
             "dynamos-sweep started there");
        if (auto r = cluster.cyclesteal(guest.node, true, "linger"); !r) {
          std::fprintf(stderr, "   cycle stealing: %s\n", r.error().message().c_str());
        } else {
          guest.cyclesteal_on = true;
          guest.progress = (fs::absolute(fs::path(out) / "work" / "demo-guest.progress")).string();
          fs::remove(guest.progress);
          auto pid =
              cluster.guest_run(guest.node,
                                {(fs::path(bin) / "dynamos-sweep").string(), "--mem", "32M",
                                 "--seconds", "100000", "--progress-file", guest.progress, "-q"},
                                fs::absolute(fs::path(out) / "work").string());
          if (!pid)
            std::fprintf(stderr, "   guest: %s\n", pid.error().message().c_str());
          else
            guest.pid = *pid;
          std::fprintf(stderr, "   guest pid %d on %s\n", guest.pid, guest.node.c_str());
        }
      }
      std::fprintf(stderr, "\n");
    }
    if (live.run.policy != "adaptive" || stop.load()) return;

    // A probe in a running rank: wait until one job runs, probe its rank for 2.5 quanta
    // (so that the reading falls in its next quantum: a frozen rank cannot be read).
    step("3. probe injected into a running rank: its MPI calls counted while it runs");
    const double q = c.quantum.count() / 1e9;
    for (int attempt = 0; attempt < 2 && !probed && !stop.load(); ++attempt) {
      const double deadline = now_s() + 4 * q;
      gang::proto::JobId running = 0;
      std::string node;
      while (!running && now_s() < deadline && !stop.load()) {
        if (auto jobs = cluster.jobs())
          for (const auto& j : *jobs)
            if ((j.job == live.jobs[0] || j.job == live.jobs[1]) && j.state == "running" &&
                !j.nodes.empty()) {
              running = j.job;
              node = j.nodes.front();
            }
        if (!running) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (!running) break;
      auto pids = cluster.job_pids(running, node);
      if (!pids) {
        std::fprintf(stderr, "   job-pids: %s\n", pids.error().message().c_str());
        break;
      }
      pid_t rank = 0;
      for (pid_t p : *pids)
        if (exe_of(p).starts_with("dynamos-mpi-")) rank = p;
      if (!rank) {
        std::fprintf(stderr, "   no rank of job %lu found on %s\n",
                     static_cast<unsigned long>(running), node.c_str());
        break;
      }
      char secs[32];
      std::snprintf(secs, sizeof secs, "%.2f", 2.5 * q);
      std::fprintf(stderr,
                   "   $ dynamos probe %d MPI_Sendrecv MPI_Allreduce --seconds %s   "
                   "(rank 0 of job %lu on %s)\n",
                   rank, secs, static_cast<unsigned long>(running), node.c_str());
      auto r = cluster.cli(
          {"probe", std::to_string(rank), "MPI_Sendrecv", "MPI_Allreduce", "--seconds", secs},
          std::chrono::seconds(30));
      if (r) {
        probe_output = r->out;
        probed = true;
        std::fprintf(stderr, "%s", r->out.c_str());
      } else {
        std::fprintf(stderr, "   probe: %s%s\n", r.error().message().c_str(),
                     attempt == 0 ? " (trying once more)" : "");
      }
    }

    step("4. paging extension upgraded in place on every node while the jobs run");
    std::fprintf(stderr, "   $ dynamos ext upgrade paging %s\n", paging_so.c_str());
    if (auto r = cluster.ext_upgrade("paging", paging_so)) {
      upgraded = true;
      upgrade_output = *r;
      std::fprintf(stderr, "%s", r->c_str());
    } else {
      std::fprintf(stderr, "   upgrade: %s\n", r.error().message().c_str());
    }
    std::fprintf(stderr, "\n");
  };

  auto end_guest = [&](compare::Cluster& cluster) {
    if (guest.pid > 0) {
      double cpu = NAN;
      {
        std::ifstream f("/proc/" + std::to_string(guest.pid) + "/stat");
        std::string t((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        if (auto p = t.rfind(')'); p != std::string::npos) {
          std::istringstream in(t.substr(p + 2));
          std::string field;
          unsigned long long ut = 0, st = 0;
          for (int i = 3; i <= 15 && in >> field; ++i) {
            if (i == 14) ut = std::stoull(field);
            if (i == 15) st = std::stoull(field);
          }
          cpu = static_cast<double>(ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
        }
      }
      std::uint64_t work = 0;
      if (auto r = workload::ProgressReader::open(guest.progress))
        if (auto smp = r->sample()) work = smp->work;
      std::fprintf(stderr, "   the guest on %s got %.1f s of CPU and swept %s on the idle node\n",
                   guest.node.c_str(), cpu, workload::format_size(work).c_str());
      ::kill(guest.pid, SIGKILL);
      guest.pid = -1;
    }
    if (guest.cyclesteal_on) {
      (void)cluster.cyclesteal(guest.node, false, "");
      guest.cyclesteal_on = false;
    }
  };

  auto outcome = compare::run_session(std::move(s), [&](compare::Cluster& cluster) {
    step("5. cycle stealing off, guest ended");
    end_guest(cluster);
  });
  if (guest.pid > 0) ::kill(guest.pid, SIGKILL);  // a failed or interrupted run

  step("6. comparison (demand vs adaptive paging), everything torn down");
  if (!outcome.comparison.summary.empty()) {
    auto md = compare::results_markdown(outcome.comparison);
    auto a = md.find("\n|");
    auto b = md.find("\n\n", a == std::string::npos ? 0 : a + 1);
    if (a != std::string::npos)
      std::printf("%s\n", md.substr(a + 1, b == std::string::npos ? b : b - a).c_str());
    for (const auto& p : outcome.comparison.plots)
      std::printf("plot: %s\n", (fs::path(out) / p).string().c_str());
  }
  // Demand paging on overcommitted nodes can get a rank killed by the kernel (the v1
  // memory controller's OOM killer, when reclaim cannot keep up with the incoming job's
  // faults): an outcome the tour shows, not a failure of it. Anything else that fails a
  // run fails the demo.
  bool runs_ok = !outcome.comparison.runs.empty();
  for (const auto& r : outcome.comparison.runs) {
    if (r.verified && r.error.empty()) continue;
    bool killed = false, wrong = false;
    for (const auto& j : r.jobs) {
      killed = killed || j.exit_code == 128 + SIGKILL;
      wrong = wrong || (j.verified && !*j.verified);
    }
    if (r.policy == "demand" && killed && !wrong) {
      std::printf(
          "under demand paging a rank was killed by the kernel (SIGKILL, exit code 137: "
          "the memory controller's OOM killer, see dmesg), what adaptive paging "
          "avoids\n");
      continue;
    }
    runs_ok = false;
  }
  std::printf("probe of a running rank: %s; paging extension upgraded in place: %s\n",
              probed ? "shown above" : "FAILED", upgraded ? "yes" : "FAILED");
  std::printf("demo took %.0f s\n", now_s() - t_start);
  return outcome.complete && runs_ok && probed && upgraded ? 0 : 1;
}

}  // namespace

DYNAMOS_COMMAND(demo, "demo",
                "the tour: gang-scheduled MPI jobs, adaptive paging, cycle stealing, probes",
                run_demo);
