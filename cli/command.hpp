// The dynamos CLI is one program with one command per concern. A command lives in
// its own file and registers itself here with DYNAMOS_COMMAND; main.cpp only
// dispatches. A command receives the arguments after its name and returns the exit
// status. Errors are one line on standard error ("dynamos NAME: what went wrong").
#pragma once

#include <boost/program_options.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dynamos::cli {

struct Command {
  const char* name;     // "patch", "kernel", "cluster", ...
  const char* summary;  // one line for `dynamos --help`
  int (*run)(std::span<const std::string> args);
};

std::vector<Command>& registry();

struct Registrar {
  explicit Registrar(Command c) { registry().push_back(c); }
};

// Prints "dynamos <command>: <message>" on standard error and returns `status`.
int error(std::string_view command, std::string_view message, int status = 1);

// Runs the calling process at real-time priority when it may (root): a command that
// stops a busy process for a moment must not wait behind that process's threads for a
// fair share of the CPU. Its work is short and it sleeps while it waits.
void prefer_realtime();

// Parses a command's arguments: the options in `desc` (which should have --help),
// and every other argument into `positional`. Returns an exit status when the
// command should stop here (0 after printing --help, 2 after a bad option).
std::optional<int> parse_options(std::string_view command, std::span<const std::string> args,
                                 const boost::program_options::options_description& desc,
                                 std::vector<std::string>& positional,
                                 boost::program_options::variables_map& vm);

// --json, the same on every command that prints a result: the result as one JSON
// object (an array for a list) on standard output, with stable field names (documented
// in docs/operations.md); errors stay one line on standard error with a non-zero exit.
inline void add_json_option(boost::program_options::options_description& desc, bool& json) {
  desc.add_options()("json", boost::program_options::bool_switch(&json),
                     "print the result as JSON on standard output (see docs/operations.md)");
}
// Takes "--json" out of `args` (commands that read their arguments by position).
inline bool take_json_flag(std::vector<std::string>& args) {
  auto n = std::erase(args, std::string("--json"));
  return n > 0;
}
inline void print_json(const nlohmann::ordered_json& j) {
  std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

}  // namespace dynamos::cli

#define DYNAMOS_COMMAND(ident, name, summary, fn)            \
  static ::dynamos::cli::Registrar dynamos_command_##ident { \
    ::dynamos::cli::Command {                                \
      name, summary, fn                                      \
    }                                                        \
  }
