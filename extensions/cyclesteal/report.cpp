// The cycle-stealing extension's report (call "report"): policy, totals, guests, reactions.
#include <algorithm>

#include "extensions/cyclesteal/ext_state.hpp"

namespace dynamos::cyclesteal::ext {

namespace {

Json stats_json(const KindStats& k) {
  std::vector<double> l = k.latencies;
  std::sort(l.begin(), l.end());
  Json o = {{"count", k.count}};
  o["latency_ms_median"] = l.empty() ? Json(nullptr) : Json(l[l.size() / 2]);
  o["latency_ms_max"] = l.empty() ? Json(nullptr) : Json(l.back());
  return o;
}

Json guests_json() {
  Json guests = Json::array();
  for (auto& [id, g] : state->guests) {
    bool managed = state->cls && state->cls->has(id);
    size_t n = 0;
    if (managed)
      if (auto p = state->cls->pids(id)) n = p->size();
    guests.push_back({{"id", id},
                      {"name", g.name},
                      {"policy", policy_name(effective(g))},
                      {"managed", managed},
                      {"frozen", managed && state->cls->frozen(id)},
                      {"processes", n}});
  }
  return guests;
}

}  // namespace

Json report_json() {
  Json o;
  o["policy"] = policy_name(state->policy);
  o["interval_ms"] = static_cast<double>(tunable(INTERVAL)) * 1e-6;
  o["cpu_priority"] = state->cls ? cpu_priority_name(state->cls->priority()) : "none";
  o["guest_class"] = state->cls ? state->cls->path() : std::string();
  o["samples"] = state->samples;
  o["wall_s"] = state->wall_s;
  o["host_cpu_s"] = state->host_cpu_s;
  o["guest_cpu_s"] = state->guest_cpu_s;
  o["idle_cpu_s"] = state->idle_cpu_s;
  o["guest_idle_share"] = state->idle_cpu_s > 0 ? state->guest_cpu_s / state->idle_cpu_s : 0.0;
  // The host's run-queue wait share while guests ran: wait / (CPU + wait).
  o["host_cpu_s_while_guest"] = state->host_cpu_guest_s;
  o["host_wait_s_while_guest"] = state->host_wait_guest_s;
  const double demand = state->host_cpu_guest_s + state->host_wait_guest_s;
  o["host_wait_share_while_guest"] = demand > 0 ? state->host_wait_guest_s / demand : 0.0;
  o["host_source"] = state->monitor->jobs() ? "jobs" : "system";
  o["host_jobs_weighted"] = state->boosted.size();
  o["host_busy"] = state->last.cpu_busy;
  o["host_is_busy"] = state->activity.busy();
  o["host_memory_bytes"] = state->last.host_memory;
  o["memory_psi"] = state->last.memory_psi;
  o["admit"] = state->admit;
  o["guests"] = guests_json();
  uint64_t mem = 0;
  if (state->cls)
    if (auto m = state->cls->memory_bytes()) mem = *m;
  o["guest_memory_bytes"] = mem;
  o["guest_memory_bound"] =
      state->cls && state->cls->bound() ? Json(*state->cls->bound()) : Json(nullptr);
  o["guest_pages_out"] = state->pages_out;
  o["bound_shortfalls"] = state->short_of_bound;
  o["processes_evicted"] = state->killed;
  Json kinds;
  for (const char* k : {"pause", "thaw", "evict", "shrink"})
    kinds[k] = stats_json(state->kinds[k]);
  o["reactions"] = std::move(kinds);
  Json recent = Json::array();
  for (const Reaction& r : state->recent)
    recent.push_back({{"kind", r.kind},
                      {"guest", r.guest},
                      {"at_ns", r.at_ns},
                      {"latency_ms", r.latency_ms},
                      {"act_ms", r.act_ms},
                      {"pages", r.pages}});
  o["recent_reactions"] = std::move(recent);
  o["errors"] = state->errors;
  return o;
}

}  // namespace dynamos::cyclesteal::ext
