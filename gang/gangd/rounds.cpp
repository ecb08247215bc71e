// gangd's switch rounds (Slurm's gang.c): the quantum loop that decides which jobs
// stop and start, and the round that carries it out on the nodes (one plan to each,
// switched at a common deadline; see the top of coordinator.cpp).
#include <algorithm>

#include "gang/gangd/coordinator_core.hpp"

namespace dynamos::gang {

asio::awaitable<void> CoordinatorCore::quantum_loop() {
  while (!stopped_) {
    bool expired = false;
    if (!replan_) {
      quantum_timer_.expires_after(quantum_);
      error_code ec;
      co_await quantum_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      expired = !ec;
    }
    if (stopped_) break;
    Matrix::Step step;
    if (replan_) {
      replan_ = false;
      step = matrix_.recompute();
    } else if (expired) {
      step = matrix_.advance();
    } else {
      continue;  // the quantum changed: re-arm with the new one
    }
    if (!step.changed()) continue;
    std::map<std::size_t, NodePlan> plan;
    for (JobId j : step.stopped) {
      if (auto it = jobs_.find(j); it != jobs_.end()) ++it->second.switches;
      if (const auto* p = matrix_.find(j))
        for (const auto& c : p->cells)
          plan[c.node].outgoing.push_back(j);
    }
    for (JobId j : step.started) {
      if (auto it = jobs_.find(j); it != jobs_.end()) ++it->second.switches;
      if (const auto* p = matrix_.find(j))
        for (const auto& c : p->cells)
          plan[c.node].incoming.push_back(j);
    }
    auto stats = co_await switch_round(std::move(plan));
    drive_cyclesteal();
    if (!stats.errors.empty())
      config_.log.warning("round " + std::to_string(stats.round) + ": " +
                          std::to_string(stats.failed) + " node(s) failed, " +
                          std::to_string(stats.unprepared) +
                          " failed to prepare; first: " + stats.errors.front());
  }
}

void CoordinatorCore::replan() {
  replan_ = true;
  quantum_timer_.cancel();
}

// Sends the SwitchOrder (with the round's deadline) to every node of the plan and marks
// its SwitchAck due. Nodes with the same plan (all of them in a broadcast, most when one
// gang spans the cluster) share one encoded frame.
void CoordinatorCore::send_plans(Round& r, const std::map<std::size_t, NodePlan>& plan) {
  r.awaiting.assign(nodes_.size(), 0);
  const NodePlan* framed = nullptr;
  Frame frame;
  for (auto& [node, p] : plan) {
    if (!nodes_[node].conn) {
      ++r.stats.failed;
      r.stats.errors.push_back("node " + nodes_[node].name + " is down");
      continue;
    }
    if (!framed || framed->outgoing != p.outgoing || framed->incoming != p.incoming) {
      auto f = make_frame(proto::SwitchOrder{r.stats.round, r.deadline_ns, p.outgoing, p.incoming});
      if (!f) {
        ++r.stats.failed;
        r.stats.errors.push_back("node " + nodes_[node].name + ": " + f.error().message());
        continue;
      }
      frame = *f;
      framed = &p;
    }
    if (!send_frame_to(node, frame)) continue;
    r.awaiting[node] = 1;
    ++r.pending;
  }
}

asio::awaitable<RoundStats> CoordinatorCore::switch_round(std::map<std::size_t, NodePlan> plan) {
  auto self = shared_from_this();
  while (round_running_ && !stopped_) {
    error_code ec;
    co_await round_gate_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  round_running_ = true;
  auto start = steady::now();
  Round r(io_);
  r.decision_ns = realtime_ns();
  r.stats.round = ++round_id_;
  r.stats.nodes = plan.size();
  current_ = &r;

  // Every node gets its plan with the common deadline; each switches at the deadline
  // (at once if its plan came later) and acknowledges.
  r.sent_ns = realtime_ns();
  r.deadline_ns = r.sent_ns + static_cast<std::uint64_t>(lead_.count());
  r.stats.lead = lead_;
  send_plans(r, plan);
  r.stats.send = steady::now() - start;
  auto until = start + lead_ + config_.switch_timeout;
  while (r.pending > 0 && !stopped_ && steady::now() < until) {
    r.wake.expires_at(until);
    error_code ec;
    co_await r.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  for (std::size_t node = 0; node < r.awaiting.size(); ++node)
    if (r.awaiting[node]) {
      ++r.stats.failed;
      r.stats.errors.push_back("node " + nodes_[node].name + " did not acknowledge the switch");
    }
  r.stats.total = steady::now() - start;
  finish_round(r);
  co_return r.stats;
}

// Derives the round's timings, adapts the next round's lead, ends the round.
void CoordinatorCore::finish_round(Round& r) {
  if (r.stats.switched > 0) {
    r.stats.skew = Nanos(static_cast<std::int64_t>(r.last_switch - r.first_switch));
    if (r.last_running > r.decision_ns)
      r.stats.running = Nanos(static_cast<std::int64_t>(r.last_running - r.decision_ns));
    if (r.last_receipt > r.sent_ns) {
      r.stats.delivery = Nanos(static_cast<std::int64_t>(r.last_receipt - r.sent_ns));
      // The next deadline must follow the last delivery: a quarter more and a
      // millisecond hold it (late stays 0 in the benchmarks); after a round with late
      // agents, twice the delivery.
      Nanos want =
          r.stats.late > 0 ? 2 * r.stats.delivery : r.stats.delivery + r.stats.delivery / 4 + 1ms;
      lead_ = std::clamp(want, config_.min_switch_lead, config_.max_switch_lead);
    }
  }
  current_ = nullptr;
  round_running_ = false;
  round_gate_.cancel();
  if (history_.size() >= 1000) history_.erase(history_.begin());
  history_.push_back(r.stats);
  if (config_.round_log) config_.round_log(r.stats);
}

asio::awaitable<RoundStats> CoordinatorCore::broadcast_round() {
  std::map<std::size_t, NodePlan> plan;
  for (std::size_t n = 0; n < nodes_.size(); ++n)
    if (nodes_[n].conn) plan[n] = {};
  co_return co_await switch_round(std::move(plan));
}

// Marks the node's ack in; the last one due wakes the round.
static bool ack_due(CoordinatorCore::Round& r, std::size_t node) {
  if (node >= r.awaiting.size() || !r.awaiting[node]) return false;
  r.awaiting[node] = 0;
  if (--r.pending == 0) r.wake.cancel();
  return true;
}

void CoordinatorCore::on_switch_ack(std::size_t node, const proto::SwitchAck& ack) {
  if (!current_ || ack.round != current_->stats.round) return;  // stale
  Round& r = *current_;
  if (!ack_due(r, node)) return;
  if (!ack.prepare_error.empty()) {
    ++r.stats.unprepared;
    r.stats.errors.push_back("node " + nodes_[node].name +
                             " failed to prepare (it switched all the same): " + ack.prepare_error);
  }
  if (ack.ok) {
    ++r.stats.switched;
    r.first_switch = std::min(r.first_switch, ack.switched_ns);
    r.last_switch = std::max(r.last_switch, ack.switched_ns);
    r.last_receipt = std::max(r.last_receipt, ack.received_ns);
    r.last_running = std::max(r.last_running, ack.running_ns);
    if (ack.received_ns > r.deadline_ns) ++r.stats.late;
    r.stats.max_switch_duration =
        std::max(r.stats.max_switch_duration, Nanos(static_cast<std::int64_t>(ack.duration_ns)));
  } else {
    ++r.stats.failed;
    r.stats.errors.push_back("node " + nodes_[node].name + " failed to switch: " + ack.error);
  }
}

void CoordinatorCore::round_lost_node(std::size_t node) {
  if (!current_) return;
  Round& r = *current_;
  if (ack_due(r, node)) {
    ++r.stats.failed;
    r.stats.errors.push_back("node " + nodes_[node].name + " disconnected during the round");
  }
}

}  // namespace dynamos::gang
