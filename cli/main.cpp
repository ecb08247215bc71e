// dynamos: the operator's command line. Each command is a file beside this one.
#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cli/command.hpp"

namespace dynamos::cli {

std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}

int error(std::string_view command, std::string_view message, int status) {
  std::cerr << "dynamos " << command << ": " << message << "\n";
  return status;
}

void prefer_realtime() {
  sched_param p{};
  p.sched_priority = 1;
  (void)sched_setscheduler(0, SCHED_FIFO, &p);  // not permitted: stay as we are
}

std::optional<int> parse_options(std::string_view command, std::span<const std::string> args,
                                 const boost::program_options::options_description& desc,
                                 std::vector<std::string>& positional,
                                 boost::program_options::variables_map& vm) {
  namespace po = boost::program_options;
  po::options_description hidden;
  hidden.add_options()("dynamos-positional", po::value(&positional));
  po::positional_options_description pos;
  pos.add("dynamos-positional", -1);
  po::options_description all;
  all.add(desc).add(hidden);
  try {
    std::vector<std::string> a(args.begin(), args.end());
    po::store(po::command_line_parser(a).options(all).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    return error(command, e.what(), 2);
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  return std::nullopt;
}

}  // namespace dynamos::cli

namespace {

void usage(std::FILE* out) {
  auto commands = dynamos::cli::registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return std::string_view(a.name) < b.name; });
  std::fprintf(out,
               "usage: dynamos COMMAND [ARGS...]\n\n"
               "DynAMOS updates running code without restarting it, and gang-schedules MPI\n"
               "jobs with runtime-swappable paging and cycle-stealing extensions.\n\n"
               "commands:\n");
  for (const auto& c : commands)
    std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\nRun 'dynamos COMMAND --help' for a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    usage(stdout);
    return 0;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : dynamos::cli::registry()) {
    if (name == c.name) return c.run(args);
  }
  std::cerr << "dynamos: unknown command '" << name << "' (try 'dynamos --help')\n";
  return 2;
}
