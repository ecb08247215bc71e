// dynamos bench compare: paging policies (and cycle stealing) compared on MPI workloads
// gang-scheduled on a cluster. The engine is bench/compare/ (harness.hpp says what is
// measured and how, session.hpp the cluster's lifetime); this file is the command line.
#include <boost/program_options.hpp>
#include <cmath>
#include <iostream>

#include "bench/compare/process.hpp"
#include "bench/compare/session.hpp"
#include "bench/workload/size.hpp"
#include "cli/command.hpp"
#include "extensions/cyclesteal/policy.hpp"
#include "gang/client/control.hpp"

namespace po = boost::program_options;
using namespace dynamos;

namespace {

constexpr const char* kUsage =
    "usage: dynamos bench compare --workloads LIST --policies LIST [--nodes N]\n"
    "         [--mem-per-node SIZE] [--overcommit X] [--quantum D] [--repeat K] [--out DIR]\n"
    "         [--cyclesteal on|off|both] [--quick] [more options below]\n\n"
    "Runs each workload as two gang-scheduled jobs sharing the same nodes (so they\n"
    "alternate every quantum) whose footprints together need X times a node's memory,\n"
    "under each paging policy (and with and without cycle-stealing guests), K times, and\n"
    "writes DIR/results.json, DIR/results.md and DIR/*.png. Uses the cluster whose gangd\n"
    "answers on the socket, else starts a virtual one (root) and tears it down after.\n\n"
    "Workloads: stencil, cg, ft, is (bench/mpi, calibrated alone first, then run for a\n"
    "fixed number of iterations and verified), or an external MPI program as one value\n"
    "--workloads 'cmd:/path/to/prog ARGS...' (run as given; verified when it prints a\n"
    "RESULT line, else by its exit status; no lost-time figure without a progress file).\n\n"
    "--schedulers slurm,slurm+dynamos,dynamos runs the pair on one node of the Slurm test\n"
    "bed (scripts/slurm-testbed.sh, brought up and down here; root, nothing else may use\n"
    "it): Slurm's own gang scheduler alone (demand paging), with dynamosd --follow slurm\n"
    "paging at its switches, and DynAMOS's gang scheduler inside a Slurm allocation, all\n"
    "with Slurm's time slice as quantum (--quantum, whole seconds, at least 5s; default 5s).\n\n"
    "options";

// What the Slurm test bed's comparison cannot do: one node of one CPU, one rank a job,
// built-in workloads, Slurm's time slice as quantum; "" when the options fit. Sets the
// quantum's default there (5 s, Slurm's minimum time slice).
std::string slurm_options_refused(compare::CompareConfig& c, const po::variables_map& vm,
                                  const std::string& quantum) {
  for (const char* o : {"nodes", "job-nodes", "ranks-per-node", "slots", "keep-cluster", "socket",
                        "stage", "pass-if"})
    if (vm.count(o) && !vm[o].defaulted())
      return std::string("--") + o + " does not apply with --schedulers " + "slurm or " +
             "slurm+dynamos (one node of the Slurm test bed, one rank a job)";
  if (c.cyclesteal != std::vector<bool>{false})
    return "--cyclesteal does not apply with --schedulers slurm or slurm+dynamos";
  for (const auto& w : c.workloads)
    if (!w.builtin)
      return "--schedulers slurm or slurm+dynamos runs the built-in workloads only, not '" +
             w.name + "'";
  for (const auto& p : c.policies)
    if (p == compare::kSequential)
      return "--policies sequential does not apply with --schedulers slurm or slurm+dynamos";
  if (!vm.count("quantum")) c.quantum = std::chrono::seconds(5);
  const auto ns = c.quantum.count();
  if (ns < 5'000'000'000 || ns % 1'000'000'000 != 0)
    return "--quantum " + quantum +
           ": Slurm's time slice is whole seconds, at least 5s (SchedulerTimeSlice)";
  return "";
}

int bench_compare(std::span<const std::string> args) {
  po::options_description desc(kUsage);
  std::vector<std::string> workloads;
  std::string policies = "demand,adaptive", cyclesteal = "off", schedulers = "dynamos",
              mem = "512M", quantum = "2s", guest_mem = "16M";
  compare::Session s;
  auto& c = s.config;
  double work = 0, calibrate = 0;
  unsigned timeout = 600;
  desc.add_options()("help,h", "show this help")(
      "workloads", po::value(&workloads)->composing(),
      "stencil,cg,ft,is or 'cmd:PROGRAM ARGS' (repeatable)")(
      "policies", po::value(&policies)->default_value(policies),
      "paging policies: demand, selective, aggressive, adaptive, or sequential (the two jobs "
      "one after the other, the baseline of gang scheduling; comma-separated)")(
      "nodes", po::value(&c.nodes)->default_value(2), "nodes of a cluster it starts")(
      "job-nodes", po::value(&c.job_nodes)->default_value(0),
      "nodes each job spans (0: all; fewer leave idle nodes)")(
      "ranks-per-node", po::value(&c.ranks_per_node)->default_value(1), "ranks of a job a node")(
      "mem-per-node", po::value(&mem)->default_value(mem), "node memory of a cluster it starts")(
      "overcommit", po::value(&c.overcommit)->default_value(1.5),
      "both jobs' footprints over a node's memory")(
      "quantum", po::value(&quantum), "gang quantum (default 2s; set on a running cluster too)")(
      "repeat", po::value(&c.repeat)->default_value(1), "repeats of every run")(
      "out", po::value(&c.out_dir)->default_value(c.out_dir), "output folder")(
      "schedulers", po::value(&schedulers)->default_value(schedulers),
      "who time-slices the pair: dynamos (its own cluster), or any of slurm, slurm+dynamos, "
      "dynamos on the Slurm test bed (comma-separated)")(
      "cyclesteal", po::value(&cyclesteal)->default_value(cyclesteal),
      "on, off or both: a dynamos-sweep guest on every node during the runs")(
      "guest-policy", po::value(&c.guest_policy)->default_value(c.guest_policy),
      "cycle-stealing policy: linger, pause or evict")(
      "guest-mem", po::value(&guest_mem)->default_value(guest_mem), "each guest's working set")(
      "work", po::value(&work), "seconds of work each job does alone (default 8, --quick 3)")(
      "calibrate", po::value(&calibrate),
      "seconds each workload runs alone first (default 3, --quick 2)")(
      "timeout", po::value(&timeout)->default_value(timeout), "seconds a run may take at most")(
      "slots", po::value(&s.slots)->default_value(0),
      "slots a node of a cluster it starts (0: ranks per node)")(
      "keep-cluster", po::bool_switch(&s.keep_cluster), "leave a cluster it started running")(
      "stage", po::value(&c.stage)->composing(),
      "a file copied afresh into each job's own folder, where the job then runs "
      "(repeatable; e.g. HPCC's hpccinf.txt)")(
      "pass-if", po::value(&c.pass_if),
      "FILE:REGEX: an external program's job is verified when FILE in its folder has a "
      "line matching REGEX (HPCC: 'hpccoutf.txt:^Success=1$')")(
      "quick", po::bool_switch(&c.quick),
      "small and short: 192M nodes, 3 s of work, 2 s calibration (defaults only)");
  cli::add_socket_option(desc);
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto status = cli::parse_options("bench compare", args, desc, positional, vm)) return *status;
  if (!positional.empty())
    return cli::error("bench compare", "unexpected argument '" + positional[0] + "'", 2);
  if (workloads.empty())
    return cli::error("bench compare", "give --workloads (e.g. --workloads stencil,cg)", 2);

  auto w = compare::parse_workloads(workloads);
  if (!w) return cli::error("bench compare", w.error().message(), 2);
  c.workloads = std::move(*w);
  auto p = compare::parse_policies(policies);
  if (!p) return cli::error("bench compare", p.error().message(), 2);
  c.policies = std::move(*p);
  auto cs = compare::parse_cyclesteal(cyclesteal);
  if (!cs) return cli::error("bench compare", cs.error().message(), 2);
  c.cyclesteal = std::move(*cs);
  if (!cyclesteal::is_guest_policy(c.guest_policy))
    return cli::error("bench compare",
                      "--guest-policy takes linger, pause or evict, not '" + c.guest_policy + "'",
                      2);
  if (c.quick) {
    if (vm["mem-per-node"].defaulted()) mem = "192M";
  }
  auto m = workload::parse_size(mem);
  if (!m || *m < (32ull << 20))
    return cli::error("bench compare", "--mem-per-node '" + mem + "' is not a size of 32M or more",
                      2);
  c.mem_per_node = *m;
  auto gm = workload::parse_size(guest_mem);
  if (!gm || *gm < (1ull << 20))
    return cli::error("bench compare",
                      "--guest-mem '" + guest_mem + "' is not a size of 1M or more", 2);
  c.guest_mem = *gm;
  auto q = compare::parse_duration(quantum);
  if (!q) return cli::error("bench compare", "--quantum: " + q.error().message(), 2);
  c.quantum = *q;
  c.quantum_given = vm.count("quantum") > 0;
  c.work_s = vm.count("work") ? work : (c.quick ? 3 : 8);
  c.calibrate_s = vm.count("calibrate") ? calibrate : (c.quick ? 2 : 3);
  if (!(c.calibrate_s >= 0.5 && c.calibrate_s <= 600))
    return cli::error("bench compare", "--calibrate must be between 0.5 and 600 seconds", 2);
  if (timeout < 10) return cli::error("bench compare", "--timeout must be at least 10 seconds", 2);
  c.run_timeout = std::chrono::seconds(timeout);
  if (c.nodes < 1 || c.nodes > 64)
    return cli::error("bench compare", "--nodes must be between 1 and 64", 2);
  if (vm.count("socket")) c.socket = vm["socket"].as<std::string>();
  auto sched = compare::parse_schedulers(schedulers);
  if (!sched) return cli::error("bench compare", sched.error().message(), 2);
  c.schedulers = std::move(*sched);
  if (compare::on_slurm(c)) {
    if (auto bad = slurm_options_refused(c, vm, quantum); !bad.empty())
      return cli::error("bench compare", bad, 2);
    c.nodes = 1;
  }
  // Everything that does not depend on the cluster is checked now.
  if (auto v = compare::validate(c, c.job_nodes ? std::max(c.job_nodes, c.nodes) : c.nodes); !v)
    return cli::error("bench compare", v.error().message(), 2);
  c.argv = {"dynamos", "bench", "compare"};
  c.argv.insert(c.argv.end(), args.begin(), args.end());
  s.command = "bench compare";
  if (compare::on_slurm(c))
    return compare::run_slurm_session(std::move(s), compare::default_slurm_bed(compare::self_dir()))
        .status;
  return compare::run_session(std::move(s)).status;
}

int run_bench(std::span<const std::string> args) {
  if (args.empty() || args[0] == "-h" || args[0] == "--help") {
    std::cout << "usage: dynamos bench compare [options]   (see dynamos bench compare --help)\n";
    return args.empty() ? 2 : 0;
  }
  if (args[0] != "compare")
    return cli::error("bench", "unknown benchmark '" + args[0] + "' (there is: compare)", 2);
  return bench_compare(args.subspan(1));
}

}  // namespace

DYNAMOS_COMMAND(bench, "bench",
                "compare paging policies and cycle stealing on gang-scheduled MPI workloads",
                run_bench);
