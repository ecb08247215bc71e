// The machine's cores, NUMA nodes and memory (hwloc), and CPU list strings as cgroups
// and taskset write them ("0-3,6"). The node agent places virtual nodes and jobs with it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace dynamos::kernelside {

struct Core {
  unsigned index = 0;          // logical index, 0..cores-1
  std::vector<unsigned> cpus;  // OS indexes of its hardware threads (what cpusets use)
  int numa_node = -1;          // OS index of its NUMA node, -1 if unknown
};

struct NumaNode {
  unsigned os_index = 0;
  uint64_t memory_bytes = 0;
  std::vector<unsigned> cpus;
};

struct Topology {
  std::vector<Core> cores;
  std::vector<NumaNode> numa_nodes;  // at least one
  uint64_t memory_bytes = 0;         // total
  unsigned cpu_count() const;

  // Splits the cores into `parts` groups of whole cores as even as possible, keeping
  // NUMA nodes together where the split allows; each as a CPU list. Errc::invalid_argument
  // when there are fewer cores than parts.
  Result<std::vector<std::string>> split_cores(unsigned parts) const;
};

// Through hwloc, restricted to the CPUs and memory this process may use.
Result<Topology> read_topology();

// "0-3,6" <-> {0,1,2,3,6}
Result<std::vector<unsigned>> parse_cpu_list(std::string_view text);
std::string format_cpu_list(std::vector<unsigned> cpus);

}  // namespace dynamos::kernelside
