// gangd's metrics (served on /metrics with --metrics-listen): switch rounds as they end,
// and at every scrape the jobs, nodes and quantum as the coordinator holds them.
#pragma once

#include "base/metrics.hpp"
#include "gang/gangd/coordinator.hpp"

namespace dynamos::gang {

// One switch round: its latencies (decision to every incoming rank running, decision
// to the last node's ack) and its counts.
void record_round(metrics::Registry& registry, const RoundStats& round);

// Jobs by state, per job CPU seconds, switches and major faults (from the agents'
// reports), nodes by state with their memory, the quantum.
void collect_coordinator(metrics::Registry& registry, const Coordinator& coordinator);

}  // namespace dynamos::gang
