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
  collect_cyclesteal(r);
  collect_updates(r);
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
  if (auto q = agent_.quantum_ns())
    r.set("dynamos_node_quantum_seconds", "gangd's quantum as this node's agent last heard it",
          static_cast<double>(q) / 1e9, {{"node", node_}});
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

// The host jobs' CPU and run-queue wait over the intervals in which guests ran, from
// the cycle-stealing extension's report: rate(waiting) / (rate(running) + rate(waiting))
// is the share of the host's demand the guests made it wait; the gauge is that share
// since the extension started.
void NodeMetrics::collect_cyclesteal(metrics::Registry& r) {
  if (!host_ || cyclesteal_.empty()) return;
  auto report = host_->call(cyclesteal_, "report", "");
  if (!report) return;
  auto j = nlohmann::json::parse(*report, nullptr, false);
  if (!j.is_object()) return;
  auto number = [&](const char* key) -> std::optional<double> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
  };
  const char* help =
      "host jobs' CPU time (running) and time runnable but waiting for a CPU (waiting) "
      "while cycle-stealing guests ran";
  if (auto v = number("host_cpu_s_while_guest"))
    r.set_counter("dynamos_cyclesteal_host_seconds_total", help, *v,
                  {{"node", node_}, {"state", "running"}});
  if (auto v = number("host_wait_s_while_guest"))
    r.set_counter("dynamos_cyclesteal_host_seconds_total", help, *v,
                  {{"node", node_}, {"state", "waiting"}});
  if (auto v = number("host_wait_share_while_guest"))
    r.set("dynamos_cyclesteal_host_wait_share",
          "share of the host jobs' CPU demand spent waiting for a CPU while guests ran, since "
          "the extension started",
          *v, {{"node", node_}});
}

void NodeMetrics::collect_updates(metrics::Registry& r) {
  if (!updates_) return;
  const char* help = "live updates of jobs' ranks carried out by this agent, one a rank";
  const char* failed = "live updates of jobs' ranks this agent refused or failed, one a request";
  r.set_counter("dynamos_live_updates_total", help, static_cast<double>(updates_->applied),
                {{"node", node_}, {"action", "applied"}});
  r.set_counter("dynamos_live_updates_total", help, static_cast<double>(updates_->reverted),
                {{"node", node_}, {"action", "reverted"}});
  r.set_counter("dynamos_live_update_failures_total", failed,
                static_cast<double>(updates_->patch_failures),
                {{"node", node_}, {"action", "patch"}});
  r.set_counter("dynamos_live_update_failures_total", failed,
                static_cast<double>(updates_->revert_failures),
                {{"node", node_}, {"action", "revert"}});
}

}  // namespace dynamos::gang
