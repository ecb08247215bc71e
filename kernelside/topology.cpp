#include "kernelside/topology.hpp"

#include <hwloc.h>

#include <algorithm>
#include <charconv>

#include "kernelside/fs.hpp"

namespace dynamos::kernelside {

namespace {

std::vector<unsigned> bitmap_to_vector(hwloc_const_bitmap_t set) {
  std::vector<unsigned> out;
  if (!set) return out;
  for (int i = hwloc_bitmap_first(set); i >= 0; i = hwloc_bitmap_next(set, i))
    out.push_back(static_cast<unsigned>(i));
  return out;
}

struct TopologyHandle {
  hwloc_topology_t t = nullptr;
  ~TopologyHandle() {
    if (t) hwloc_topology_destroy(t);
  }
};

}  // namespace

unsigned Topology::cpu_count() const {
  unsigned n = 0;
  for (auto& c : cores)
    n += static_cast<unsigned>(c.cpus.size());
  return n;
}

Result<Topology> read_topology() {
  TopologyHandle h;
  if (hwloc_topology_init(&h.t) != 0) return fail_errno("hwloc_topology_init");
  if (hwloc_topology_load(h.t) != 0) return fail_errno("hwloc_topology_load");
  Topology topo;
  int ncores = hwloc_get_nbobjs_by_type(h.t, HWLOC_OBJ_CORE);
  for (int i = 0; i < ncores; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(h.t, HWLOC_OBJ_CORE, static_cast<unsigned>(i));
    Core c;
    c.index = static_cast<unsigned>(i);
    c.cpus = bitmap_to_vector(obj->cpuset);
    // The NUMA node whose CPUs include this core.
    hwloc_obj_t node = nullptr;
    while ((node = hwloc_get_next_obj_by_type(h.t, HWLOC_OBJ_NUMANODE, node)) != nullptr)
      if (node->cpuset && hwloc_bitmap_isincluded(obj->cpuset, node->cpuset)) {
        c.numa_node = static_cast<int>(node->os_index);
        break;
      }
    topo.cores.push_back(std::move(c));
  }
  if (topo.cores.empty()) {
    // Some virtual machines report no cores, only processing units: one core each.
    int npu = hwloc_get_nbobjs_by_type(h.t, HWLOC_OBJ_PU);
    for (int i = 0; i < npu; ++i) {
      hwloc_obj_t pu = hwloc_get_obj_by_type(h.t, HWLOC_OBJ_PU, static_cast<unsigned>(i));
      topo.cores.push_back(Core{static_cast<unsigned>(i), {pu->os_index}, -1});
    }
  }
  hwloc_obj_t node = nullptr;
  while ((node = hwloc_get_next_obj_by_type(h.t, HWLOC_OBJ_NUMANODE, node)) != nullptr) {
    NumaNode n;
    n.os_index = node->os_index;
    n.memory_bytes = node->attr ? node->attr->numanode.local_memory : 0;
    n.cpus = bitmap_to_vector(node->cpuset);
    topo.memory_bytes += n.memory_bytes;
    topo.numa_nodes.push_back(std::move(n));
  }
  if (topo.numa_nodes.empty())
    return fail(Errc::unsupported, "hwloc found no NUMA node (not even the machine's memory)");
  hwloc_obj_t root = hwloc_get_root_obj(h.t);
  if (root && root->total_memory > topo.memory_bytes) topo.memory_bytes = root->total_memory;
  return topo;
}

Result<std::vector<std::string>> Topology::split_cores(unsigned parts) const {
  if (parts == 0 || parts > cores.size())
    return fail(Errc::invalid_argument, "cannot split " + std::to_string(cores.size()) +
                                            " cores into " + std::to_string(parts) + " parts");
  // Cores ordered by NUMA node, then cut into consecutive slices.
  std::vector<Core> ordered = cores;
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const Core& a, const Core& b) { return a.numa_node < b.numa_node; });
  std::vector<std::string> out;
  size_t at = 0;
  for (unsigned p = 0; p < parts; ++p) {
    size_t n = ordered.size() / parts + (p < ordered.size() % parts ? 1 : 0);
    std::vector<unsigned> cpus;
    for (size_t i = 0; i < n; ++i, ++at)
      cpus.insert(cpus.end(), ordered[at].cpus.begin(), ordered[at].cpus.end());
    out.push_back(format_cpu_list(cpus));
  }
  return out;
}

Result<std::vector<unsigned>> parse_cpu_list(std::string_view text) {
  std::vector<unsigned> out;
  auto words = split_words(text);
  if (words.size() > 1)
    return fail(Errc::invalid_argument, "bad CPU list '" + std::string(text) + "'");
  std::string_view s = words.empty() ? std::string_view() : words[0];
  auto bad = [&] {
    return fail(Errc::invalid_argument,
                "bad CPU list '" + std::string(text) + "' (expected e.g. 0-3,6)");
  };
  while (!s.empty()) {
    size_t comma = s.find(',');
    auto item = s.substr(0, comma);
    size_t dash = item.find('-');
    unsigned lo = 0, hi = 0;
    auto a = item.substr(0, dash);
    if (std::from_chars(a.data(), a.data() + a.size(), lo).ptr != a.data() + a.size() || a.empty())
      return bad();
    hi = lo;
    if (dash != std::string_view::npos) {
      auto b = item.substr(dash + 1);
      if (std::from_chars(b.data(), b.data() + b.size(), hi).ptr != b.data() + b.size() ||
          b.empty() || hi < lo)
        return bad();
    }
    if (hi - lo > 65536) return bad();
    for (unsigned c = lo; c <= hi; ++c)
      out.push_back(c);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
    if (s.empty()) return bad();
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string format_cpu_list(std::vector<unsigned> cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1)
      ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += '-' + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace dynamos::kernelside
