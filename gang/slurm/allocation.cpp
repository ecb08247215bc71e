#include "gang/slurm/allocation.hpp"

#include <charconv>
#include <cstdlib>

#include "gang/hostlist.hpp"

namespace dynamos::gang::slurm {
namespace {

bool to_unsigned(std::string_view s, unsigned& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

}  // namespace

Result<std::vector<unsigned>> expand_cpus_per_node(std::string_view text, std::size_t nodes) {
  auto bad = [&](const std::string& why) {
    return fail(Errc::invalid_argument,
                "SLURM_JOB_CPUS_PER_NODE '" + std::string(text) + "': " + why);
  };
  std::vector<unsigned> cpus;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    auto item = text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    unsigned count = 0, times = 1;
    auto paren = item.find('(');
    if (paren != std::string_view::npos) {
      // "2(x3)": 2 CPUs on each of 3 nodes
      if (item.size() < paren + 4 || item.substr(paren, 2) != "(x" || item.back() != ')' ||
          !to_unsigned(item.substr(paren + 2, item.size() - paren - 3), times) || times == 0)
        return bad("'" + std::string(item) + "' is not N or N(xM)");
      item = item.substr(0, paren);
    }
    if (!to_unsigned(item, count) || count == 0)
      return bad("'" + std::string(item) + "' is not a positive CPU count");
    if (cpus.size() + times > nodes) break;  // reported below
    cpus.insert(cpus.end(), times, count);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (cpus.size() != nodes)
    return bad("does not give one count for each of the " + std::to_string(nodes) + " nodes");
  return cpus;
}

Result<Allocation> allocation_from_env(const Getenv& getenv) {
  auto get = [&](const char* name) {
    const char* v = getenv(name);
    return std::string(v ? v : "");
  };
  Allocation a;
  a.job_id = get("SLURM_JOB_ID");
  auto list = get("SLURM_JOB_NODELIST");
  if (a.job_id.empty() || list.empty())
    return fail(Errc::invalid_argument,
                "not inside a Slurm allocation (no SLURM_JOB_ID or SLURM_JOB_NODELIST): run it "
                "under salloc or in an sbatch script");
  auto nodes = expand_hostlist(list);
  if (!nodes) return fail(Errc::invalid_argument, "SLURM_JOB_NODELIST: " + nodes.error().message());
  a.nodes = std::move(*nodes);
  auto cpus_text = get("SLURM_JOB_CPUS_PER_NODE");
  if (cpus_text.empty()) return fail(Errc::invalid_argument, "SLURM_JOB_CPUS_PER_NODE is not set");
  auto cpus = expand_cpus_per_node(cpus_text, a.nodes.size());
  if (!cpus) return std::unexpected(cpus.error());
  a.cpus = std::move(*cpus);
  if (auto mem = get("SLURM_MEM_PER_NODE"); !mem.empty()) {
    unsigned mb = 0;
    if (!to_unsigned(mem, mb) || mb == 0)
      return fail(Errc::invalid_argument,
                  "SLURM_MEM_PER_NODE '" + mem + "' is not a positive number of megabytes");
    a.mem_per_node = std::uint64_t{mb} << 20;
  }
  return a;
}

Result<Allocation> allocation_from_env() {
  return allocation_from_env([](const char* name) { return std::getenv(name); });
}

std::string job_cgroup(std::string_view proc_self_cgroup, std::string_view job_id) {
  const std::string component = "/job_" + std::string(job_id);
  while (!proc_self_cgroup.empty()) {
    auto eol = proc_self_cgroup.find('\n');
    auto line = proc_self_cgroup.substr(0, eol);
    proc_self_cgroup.remove_prefix(eol == std::string_view::npos ? proc_self_cgroup.size()
                                                                 : eol + 1);
    // "ID:CONTROLLERS:PATH"; the path may hold ':' itself
    auto second = line.find(':', line.find(':') + 1);
    if (second == std::string_view::npos) continue;
    auto path = std::string(line.substr(second + 1)) + "/";
    auto at = path.find(component + "/");
    if (at != std::string::npos) return path.substr(0, at + component.size());
  }
  return "";
}

std::string cgroup_parent(std::string_view proc_self_cgroup, std::string_view job_id) {
  auto job = job_cgroup(proc_self_cgroup, job_id);
  if (job.empty()) return "dynamos-slurm-" + std::string(job_id);
  return job.substr(1) + "/dynamos";
}

}  // namespace dynamos::gang::slurm
