// Cycle stealing on idle nodes, driven by gangd: after every switch round, every node
// with no running job in the current slot gets `cyclesteal on POLICY`, the others
// `cyclesteal on pause`; turning it off sends `cyclesteal off` to the nodes gangd set.
// gangd's own requests travel as NodeRequests like an operator's node commands.
#include "extensions/cyclesteal/policy.hpp"
#include "gang/gangd/coordinator_core.hpp"
#include "gang/node_ops.hpp"

namespace dynamos::gang {

Result<void> CoordinatorCore::set_cyclesteal(std::uint32_t uid, const proto::SetCycleSteal& m) {
  if (uid != 0) return fail(Errc::not_permitted, "only root may turn cycle stealing on or off");
  if (m.enable && !cyclesteal::is_guest_policy(m.policy))
    return fail(Errc::invalid_argument,
                "unknown cycle-stealing policy '" + m.policy + "' (linger, pause or evict)");
  cyclesteal_idle_ = m.enable;
  if (m.enable) cyclesteal_policy_ = m.policy;
  config_.log(m.enable ? "cycle stealing on idle nodes: " + m.policy : "cycle stealing off");
  drive_cyclesteal();
  return {};
}

// Sends each node the policy it should have now, when that differs from what it has
// (or was last asked for). Off: only the nodes gangd itself set are turned off.
void CoordinatorCore::drive_cyclesteal() {
  std::vector<bool> idle(nodes_.size(), false);
  for (std::size_t n : matrix_.idle_nodes())
    if (n < idle.size()) idle[n] = true;
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    Node& node = nodes_[n];
    if (!node.conn) continue;
    std::string want;
    if (cyclesteal_idle_)
      want = idle[n] ? cyclesteal_policy_ : "pause";
    else if (node.guest_policy_by_gangd && node.guest_policy != "off")
      want = "off";
    if (want.empty()) continue;
    const std::string& has =
        node.guest_policy_pending.empty() ? node.guest_policy : node.guest_policy_pending;
    if (has != want) send_cyclesteal(n, want);
  }
}

void CoordinatorCore::send_cyclesteal(std::size_t node, const std::string& policy) {
  std::uint64_t id = next_request_++;
  cyclesteal_requests_[id] = {node, policy};
  nodes_[node].guest_policy_pending = policy;
  std::vector<std::string> args =
      policy == "off" ? std::vector<std::string>{"off"} : std::vector<std::string>{"on", policy};
  send_to(node, proto::NodeRequest{id, 0, std::string(ops::cyclesteal), std::move(args)});
}

bool CoordinatorCore::on_cyclesteal_reply(std::size_t node, const proto::NodeReply& m) {
  auto it = cyclesteal_requests_.find(m.request);
  if (it == cyclesteal_requests_.end()) return false;
  if (it->second.first != node) return true;  // forged: ignore
  Node& n = nodes_[node];
  const std::string policy = it->second.second;
  cyclesteal_requests_.erase(it);
  if (n.guest_policy_pending == policy) n.guest_policy_pending.clear();
  if (m.ok) {
    n.guest_policy = policy;
    n.guest_policy_by_gangd = true;
  } else {
    config_.log.warning("node " + n.name + ": cyclesteal " + policy + ": " + m.output);
  }
  return true;
}

// An explicit `dynamos cyclesteal on|off --node` that succeeded: the node's policy is
// the operator's now (gangd's idle driving overrides it at its next change).
void CoordinatorCore::note_cyclesteal_command(const proto::NodeCommand& cmd,
                                              const std::vector<proto::NodeResult>& results) {
  if (cmd.args.empty()) return;
  std::string policy = cmd.args[0] == "off" ? "off" : cmd.args.size() > 1 ? cmd.args[1] : "";
  if (policy.empty()) return;
  for (const auto& r : results) {
    auto n = node_for(r.node);
    if (!r.ok || !n) continue;
    nodes_[*n].guest_policy = policy;
    nodes_[*n].guest_policy_by_gangd = false;
  }
}

void CoordinatorCore::forget_cyclesteal(std::size_t node) {
  nodes_[node].guest_policy = "unknown";
  nodes_[node].guest_policy_pending.clear();
  std::erase_if(cyclesteal_requests_, [&](const auto& r) { return r.second.first == node; });
}

}  // namespace dynamos::gang
