// The command-line handling the benchmark programs share: one way to parse, to answer
// --help and to report a bad option.
#pragma once

#include <boost/program_options.hpp>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace dynamos::workload {

// "PROGRAM: MESSAGE[SUFFIX]" on standard error; the exit status of a usage error, 2.
inline int usage_error(std::string_view program, const std::string& message,
                       std::string_view suffix = "") {
  std::cerr << program << ": " << message << suffix << "\n";
  return 2;
}

// Parses argv with `desc` (and `positional`) into `vm`. An exit status when the program
// should stop there: 0 after --help (`help` prints it; by default `desc`), 2 after a bad
// option (reported as usage_error does, with `suffix`).
inline std::optional<int> parse_command_line(
    int argc, char** argv, const boost::program_options::options_description& desc,
    boost::program_options::variables_map& vm, std::string_view program,
    std::string_view suffix = "",
    const boost::program_options::positional_options_description* positional = nullptr,
    const std::function<void()>& help = {}) {
  namespace po = boost::program_options;
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    return usage_error(program, e.what(), suffix);
  }
  if (vm.count("help")) {
    if (help)
      help();
    else
      std::cout << desc << "\n";
    return 0;
  }
  return std::nullopt;
}

}  // namespace dynamos::workload
