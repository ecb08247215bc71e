// Hostfiles in Open MPI's syntax, the list of nodes gangd schedules on:
//
//   # comment
//   node01 slots=4
//   node02 slots=4 max_slots=8
//   node03                 # slots defaults to 1
//
// One host per line (or a Slurm hostlist, `node[01-04] slots=4`, gang/hostlist.hpp,
// every host of it with those options), then key=value options (slots, max_slots / max-slots); a
// `#` starts a comment. A host listed twice adds its slots, as mpirun does. Errors name the file,
// the line and what is wrong.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace dynamos::gang {

struct HostEntry {
  std::string name;
  int slots = 1;
  int max_slots = 0;  // 0: not given
};

// Parses hostfile text; `origin` names it in error messages.
Result<std::vector<HostEntry>> parse_hostfile(std::string_view text, const std::string& origin);
Result<std::vector<HostEntry>> read_hostfile(const std::string& path);

// The text of a hostfile for mpirun, one "host slots=N" line per entry.
std::string format_hostfile(const std::vector<HostEntry>& hosts);

}  // namespace dynamos::gang
