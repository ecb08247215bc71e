// Command lines of the launch programs (dynamos-launch, dynamos-rank): options, then "--"
// and the program with its arguments.
#pragma once

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

namespace dynamos::gang {

// Parses argv[1..split) into `vm`. Returns the exit status when the program is to stop
// now: 2 for bad options (the message on stderr, prefixed by `program`), 0 after
// printing the help for --help; nullopt to go on.
inline std::optional<int> parse_launch_options(
    const char* program, int split, char** argv,
    const boost::program_options::options_description& opts,
    boost::program_options::variables_map& vm) {
  namespace po = boost::program_options;
  try {
    po::store(po::command_line_parser(split, argv).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "%s: %s (try --help)\n", program, e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  return std::nullopt;
}

}  // namespace dynamos::gang
