// dynamosd's metrics (served on /metrics with --metrics-listen), read at each scrape:
// per job CPU seconds, resident and swapped bytes and major faults from the job's
// cgroup; the node's memory; the paging extension's page-outs and page-ins at switches
// and in the background, and the incoming jobs' major faults in their first second,
// from the switch records; guests' CPU seconds and the host jobs' run-queue wait while
// guests ran, from the cycle-stealing extension's report; extension builds (loads and
// upgrades); live updates of jobs' ranks applied and reverted (agent_ops_patch.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "base/metrics.hpp"

namespace dynamos::core {
class ExtensionHost;
}

namespace dynamos::gang {

class NodeAgent;

// Live updates of jobs' ranks this agent carried out, one a rank (dynamosd's patch and
// revert ops count them; the metrics read them at each scrape).
struct LiveUpdateCounts {
  std::atomic<std::uint64_t> applied{0}, reverted{0};
  std::atomic<std::uint64_t> patch_failures{0}, revert_failures{0};
};

class NodeMetrics {
 public:
  // `cyclesteal`: the cycle-stealing extension's name in `host` ("" when not loaded).
  NodeMetrics(NodeAgent& agent, core::ExtensionHost* host, std::string node,
              std::string cyclesteal = "", const LiveUpdateCounts* updates = nullptr)
      : agent_(agent),
        host_(host),
        node_(std::move(node)),
        cyclesteal_(std::move(cyclesteal)),
        updates_(updates) {}
  // A collector for the registry: refreshes every series from the agent.
  void collect(metrics::Registry& r);

 private:
  void collect_jobs(metrics::Registry& r);
  void collect_switches(metrics::Registry& r);
  void collect_cyclesteal(metrics::Registry& r);
  void collect_updates(metrics::Registry& r);
  NodeAgent& agent_;
  core::ExtensionHost* host_;
  std::string node_;
  std::string cyclesteal_;
  const LiveUpdateCounts* updates_;
  std::uint64_t last_round_ = 0;  // switch records up to this round are counted
};

}  // namespace dynamos::gang
