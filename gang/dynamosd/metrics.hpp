// dynamosd's metrics (served on /metrics with --metrics-listen), read at each scrape:
// per job CPU seconds, resident and swapped bytes and major faults from the job's
// cgroup; the node's memory; the paging extension's page-outs and page-ins at switches
// and in the background, and the incoming jobs' major faults in their first second,
// from the switch records; guests' CPU seconds; extension builds (loads and upgrades).
#pragma once

#include <map>
#include <string>

#include "base/metrics.hpp"

namespace dynamos::core {
class ExtensionHost;
}

namespace dynamos::gang {

class NodeAgent;

class NodeMetrics {
 public:
  NodeMetrics(NodeAgent& agent, core::ExtensionHost* host, std::string node)
      : agent_(agent), host_(host), node_(std::move(node)) {}
  // A collector for the registry: refreshes every series from the agent.
  void collect(metrics::Registry& r);

 private:
  void collect_jobs(metrics::Registry& r);
  void collect_switches(metrics::Registry& r);
  NodeAgent& agent_;
  core::ExtensionHost* host_;
  std::string node_;
  std::uint64_t last_round_ = 0;  // switch records up to this round are counted
};

}  // namespace dynamos::gang
