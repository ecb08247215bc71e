#include "gang/dynamosd/metrics.hpp"

#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/extension_host.hpp"
#include "gang/dynamosd/node_agent.hpp"

namespace dynamos::gang {

void NodeMetrics::collect(metrics::Registry& r) {
  collect_jobs(r);
  collect_switches(r);
  if (auto cpu = agent_.guests_group().cpu_usage())
    r.set_counter("dynamos_guest_cpu_seconds_total", "CPU time of the node's cycle-stealing guests",
                  static_cast<double>(cpu->count()) / 1e9, {{"node", node_}});
  if (host_)
    for (const auto& e : host_->list())
      r.set_counter("dynamos_extension_builds_total",
                    "extension builds loaded: the first load and every upgrade in place", e.builds,
                    {{"node", node_}, {"extension", e.name}});
}

void NodeMetrics::collect_jobs(metrics::Registry& r) {
  const char* memory_help = "a node's memory: total, and available";
  const auto& node = agent_.node_group();
  if (auto max = node.memory_max(); max && *max) {
    r.set("dynamos_node_memory_bytes", memory_help, static_cast<double>(**max),
          {{"node", node_}, {"kind", "total"}});
    if (auto cur = node.memory_current(); cur && **max > *cur)
      r.set("dynamos_node_memory_bytes", memory_help, static_cast<double>(**max - *cur),
            {{"node", node_}, {"kind", "available"}});
  }
  r.clear("dynamos_job_node_resident_bytes");
  r.clear("dynamos_job_node_swapped_bytes");
  // One read of each job group's cpu usage and memory.stat a scrape.
  for (JobId job : agent_.jobs()) {
    auto group = agent_.job_group(job);
    if (!group) continue;
    const metrics::Labels l = {{"node", node_}, {"job", std::to_string(job)}};
    if (auto cpu = group->cpu_usage())
      r.set_counter("dynamos_job_node_cpu_seconds_total", "CPU time of a job's ranks on this node",
                    static_cast<double>(cpu->count()) / 1e9, l);
    auto st = group->memory_stat();
    if (!st) continue;
    auto value = [&](const char* key) -> std::optional<double> {
      auto it = st->find(key);
      if (it == st->end()) return std::nullopt;
      return static_cast<double>(it->second);
    };
    if (auto v = value("pgmajfault"))
      r.set_counter("dynamos_job_node_major_faults_total",
                    "major page faults of a job's ranks on this node", *v, l);
    if (auto v = value("anon"))
      r.set("dynamos_job_node_resident_bytes", "anonymous memory of a job's ranks resident here",
            *v, l);
    if (auto v = value("swap"))
      r.set("dynamos_job_node_swapped_bytes", "memory of a job's ranks swapped out", *v, l);
  }
}

// Switch records not counted yet: their node-side duration, and the paging report's
// page counts (one JSON object a line).
void NodeMetrics::collect_switches(metrics::Registry& r) {
  const metrics::Labels node = {{"node", node_}};
  for (const auto& s : agent_.switch_history()) {
    if (s.round <= last_round_) continue;
    last_round_ = s.round;
    r.observe("dynamos_node_switch_seconds",
              "a node's part of a switch round: freeze, paging, thaw",
              static_cast<double>(s.total.count()) / 1e9, metrics::latency_buckets(), node);
    std::istringstream lines(s.paging_report);
    for (std::string line; std::getline(lines, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_object()) continue;
      auto add = [&](const char* field, const char* name, const char* help,
                     const metrics::Labels& labels) {
        if (auto it = j.find(field); it != j.end() && it->is_number())
          r.add(name, help, it->get<double>(), labels);
      };
      const char* pages = "pages the paging extension moved, at switches and in the background";
      add("pages_out", "dynamos_paging_pages_total", pages,
          {{"node", node_}, {"direction", "out"}, {"when", "switch"}});
      add("pages_in", "dynamos_paging_pages_total", pages,
          {{"node", node_}, {"direction", "in"}, {"when", "switch"}});
      add("background_pages_out", "dynamos_paging_pages_total", pages,
          {{"node", node_}, {"direction", "out"}, {"when", "background"}});
      add("background_pages_in", "dynamos_paging_pages_total", pages,
          {{"node", node_}, {"direction", "in"}, {"when", "background"}});
      add("majflt_first_s", "dynamos_paging_major_faults_after_switch_total",
          "major faults of incoming jobs in their first second after a switch", node);
    }
  }
}

}  // namespace dynamos::gang
