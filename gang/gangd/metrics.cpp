#include "gang/gangd/metrics.hpp"

#include <map>

namespace dynamos::gang {

namespace {

double seconds(Nanos d) {
  return static_cast<double>(d.count()) / 1e9;
}

}  // namespace

void record_round(metrics::Registry& r, const RoundStats& round) {
  const auto buckets = metrics::latency_buckets();
  const char* help =
      "switch round latency: phase running is the decision to every incoming rank running, "
      "phase total the decision to the last node's acknowledgement";
  r.observe("dynamos_gang_switch_round_seconds", help, seconds(round.running), buckets,
            {{"phase", "running"}});
  r.observe("dynamos_gang_switch_round_seconds", help, seconds(round.total), buckets,
            {{"phase", "total"}});
  r.add("dynamos_gang_switch_rounds_total", "switch rounds sent");
  r.add("dynamos_gang_switch_round_node_failures_total",
        "nodes that failed a round or never answered it", static_cast<double>(round.failed));
  r.add("dynamos_gang_switch_round_late_nodes_total",
        "nodes that received a round's switch after its deadline", static_cast<double>(round.late));
}

void collect_coordinator(metrics::Registry& r, const Coordinator& c) {
  auto jobs = c.list_jobs(0).jobs;
  std::map<std::string, int> by_state;
  r.clear("dynamos_gang_jobs");
  for (const char* s : {"running", "frozen", "pending", "done", "failed", "cancelled"})
    by_state[s] = 0;
  for (const auto& j : jobs) {
    ++by_state[j.state];
    const metrics::Labels job = {{"job", std::to_string(j.job)}, {"name", j.name}};
    r.set_counter("dynamos_job_cpu_seconds_total", "CPU time of a job's ranks, all nodes",
                  static_cast<double>(j.cpu_ns) / 1e9, job);
    r.set_counter("dynamos_job_switches_total", "gang switches a job went through",
                  static_cast<double>(j.switches), job);
    r.set_counter("dynamos_job_major_faults_total", "major page faults of a job's ranks",
                  static_cast<double>(j.major_faults), job);
  }
  for (const auto& [state, n] : by_state)
    r.set("dynamos_gang_jobs", "jobs by state", n, {{"state", state}});

  r.clear("dynamos_gang_nodes");
  std::map<std::string, int> nodes_by_state{{"up", 0}, {"down", 0}};
  for (const auto& n : c.list_nodes(0).nodes) {
    ++nodes_by_state[n.state];
    r.set("dynamos_node_memory_bytes", "a node's memory: total, and available as last reported",
          static_cast<double>(n.mem_total), {{"node", n.name}, {"kind", "total"}});
    r.set("dynamos_node_memory_bytes", "a node's memory: total, and available as last reported",
          static_cast<double>(n.mem_available), {{"node", n.name}, {"kind", "available"}});
  }
  for (const auto& [state, n] : nodes_by_state)
    r.set("dynamos_gang_nodes", "nodes by state", n, {{"state", state}});
  r.set("dynamos_gang_quantum_seconds", "the time slice", seconds(c.quantum()));
}

}  // namespace dynamos::gang
