// dynamos submit: an MPI job for the gang scheduler. gangd places it in the Ousterhout
// matrix and starts it with mpirun over a hostfile of its nodes (gang/gangd/launch.hpp).
#include <sys/stat.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdlib>
#include <iostream>

#include "base/units.hpp"
#include "cli/command.hpp"
#include "gang/client/control.hpp"

extern char** environ;

namespace po = boost::program_options;
using namespace dynamos;
namespace proto = dynamos::gang::proto;

namespace {

int run_submit(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos submit [--ranks R] [--nodes N] [--paging POLICY] [--name NAME]\n"
      "                      [--output FILE] [--mpi-args ARGS] [--mem-per-rank SIZE]\n"
      "                      [--time LIMIT] [--hold] [--json] -- PROGRAM [ARGS...]\n\n"
      "Submits an MPI job to the gang scheduler: gangd places its R ranks on N nodes (as\n"
      "few as they fit on when N is not given) in a time slot, and starts it with mpirun\n"
      "over a hostfile of those nodes, as you, in the current directory. Jobs sharing\n"
      "nodes alternate every quantum, all ranks of a job together. Prints 'job ID' on its\n"
      "last line; 'dynamos wait ID' waits for it. The ranks' output goes to FILE (default\n"
      "./dynamos-job<ID>.out). The ranks run in your environment (PATH, modules, ...).\n"
      "A job that does not fit now (slots, or memory: --mem-per-rank) waits, pending, in\n"
      "submission order; 'dynamos jobs' says why. --time ends it at its limit.\n"
      "--json prints {\"job\", \"name\", \"ranks\", \"nodes\", \"paging\", \"program\", \"cwd\"}\n"
      "instead (nodes 0: as few as fit).\n\noptions");
  unsigned ranks = 1, nodes = 0;
  std::string paging = "demand", name, output, mpi_args;
  desc.add_options()("help,h", "show this help")("ranks", po::value(&ranks)->default_value(1),
                                                 "MPI ranks")(
      "nodes", po::value(&nodes), "spread the ranks evenly over exactly N nodes")(
      "paging", po::value(&paging)->default_value("demand"),
      "paging policy at switches: demand, selective, aggressive, adaptive")(
      "name", po::value(&name), "job name (default: the program's name)")(
      "output", po::value(&output), "the ranks' output file")(
      "mpi-args", po::value(&mpi_args), "extra mpirun options for this job, e.g. '--map-by core'");
  bool json = false;
  cli::add_json_option(desc, json);
  std::string mem_text, time_text;
  bool hold = false;
  desc.add_options()("mem-per-rank", po::value(&mem_text),
                     "memory each rank commits on its node, e.g. 512M, 2G (default: the site's)")(
      "time", po::value(&time_text),
      "time limit, as Slurm's: minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]] or UNLIMITED")(
      "hold", po::bool_switch(&hold), "submit held: pending until 'dynamos release ID'");
  cli::add_socket_option(desc);
  // Everything after "--" belongs to the program, options included.
  std::vector<std::string> own, program;
  bool after = false;
  for (const auto& a : args) {
    if (!after && a == "--") {
      after = true;
      continue;
    }
    (after ? program : own).push_back(a);
  }
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto s = cli::parse_options("submit", own, desc, positional, vm)) return *s;
  if (!positional.empty() && program.empty()) program = positional, positional.clear();
  if (!positional.empty())
    return cli::error("submit", "put the program after '--' (unexpected '" + positional[0] + "')",
                      2);
  if (program.empty()) return cli::error("submit", "no PROGRAM given (try --help)", 2);
  if (ranks == 0) return cli::error("submit", "--ranks must be at least 1", 2);
  std::uint64_t mem_per_rank = 0, time_limit_s = 0;
  if (!mem_text.empty()) {
    auto mem = parse_size(mem_text);
    if (!mem) return cli::error("submit", "--mem-per-rank: " + mem.error().message(), 2);
    if (*mem == 0) return cli::error("submit", "--mem-per-rank must be more than 0", 2);
    mem_per_rank = *mem;
  }
  if (!time_text.empty()) {
    auto limit = parse_time_limit_s(time_text);
    if (!limit) return cli::error("submit", "--time: " + limit.error().message(), 2);
    time_limit_s = static_cast<std::uint64_t>(*limit);
  }
  char cwd_buf[4096];
  if (!::getcwd(cwd_buf, sizeof cwd_buf))
    return cli::error("submit", "cannot read the current directory");
  std::string cwd = cwd_buf;
  auto resolved = cli::resolve_program(program[0], cwd);
  if (!resolved) return cli::error("submit", resolved.error().message());
  if (name.empty()) name = program[0].substr(program[0].rfind('/') + 1);
  program[0] = *resolved;
  proto::JobSubmit req{name, ranks, nodes, paging, program, cwd, output, mpi_args, {}};
  // The ranks get this environment, as Slurm's --export=ALL (gang/mpirun_command.hpp).
  for (char** e = environ; *e; ++e)
    req.env.emplace_back(*e);
  req.mem_per_rank = mem_per_rank;
  req.time_limit_s = time_limit_s;
  req.hold = hold;
  auto r = cli::ask_for<proto::JobSubmitted>(cli::socket_path(vm), req, std::chrono::seconds(30));
  if (!r) return cli::error("submit", r.error().message());
  if (json) {
    cli::print_json({{"job", r->job},
                     {"name", name},
                     {"ranks", ranks},
                     {"nodes", nodes},
                     {"paging", paging},
                     {"program", program},
                     {"cwd", cwd}});
    return 0;
  }
  std::cout << "job " << r->job << "\n";
  return 0;
}

}  // namespace

DYNAMOS_COMMAND(submit, "submit", "submit an MPI job to the gang scheduler", run_submit);
