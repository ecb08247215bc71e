// Facts of the launch path that gangd, dynamosd and the launch programs share: where a
// node's rank socket is, where a program's siblings are, where a command line's program
// begins. (gangd's side of the launch is gang/gangd/launch.hpp; the programs are in
// gang/launch/.)
#pragma once

#include <string>

namespace dynamos::gang {

// The socket of a node's agent for its ranks (gang/dynamosd/rank_socket.hpp) under `run_dir`.
inline std::string rank_socket_path(const std::string& run_dir, const std::string& node) {
  return run_dir + "/agent-" + node + ".sock";
}

// The index of the first "--" in argv (what follows is a program and its arguments),
// or argc when there is none.
int dashes_index(int argc, char** argv);

// A program next to the running one (gangd, dynamos and the launch programs live side
// by side).
std::string sibling_program(const std::string& name);

}  // namespace dynamos::gang
