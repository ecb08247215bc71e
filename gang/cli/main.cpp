// dynamos: the operator's command line. Each command is a file beside this one.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "gang/cli/command.hpp"

namespace dynamos::cli {

std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}

int error(std::string_view command, std::string_view message, int status) {
  std::cerr << "dynamos " << command << ": " << message << "\n";
  return status;
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
