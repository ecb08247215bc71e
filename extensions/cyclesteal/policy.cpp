#include "extensions/cyclesteal/policy.hpp"

#include <algorithm>

namespace dynamos::cyclesteal {

Activity::Verdict Activity::update(const HostSample& s, Clock::time_point now,
                                   const ActivityRules& rules) {
  Verdict v;
  if (s.cpu_busy > rules.busy_threshold) {
    v.turned_busy = !busy_;
    busy_ = true;
    last_busy_ = now;
  } else if (busy_ && (!last_busy_ || now - *last_busy_ >= rules.idle_period)) {
    busy_ = false;
  }
  v.busy = busy_;
  v.settled = !busy_;
  return v;
}

Action decide(Policy policy, const Activity::Verdict& v, bool frozen) {
  switch (policy) {
    case Policy::linger:
      return frozen ? Action::thaw : Action::none;
    case Policy::pause:
      if (v.busy && !frozen) return Action::freeze;
      if (v.settled && frozen) return Action::thaw;
      return Action::none;
    case Policy::evict:
      // A guest that is running while the host is busy is evicted; the node agent
      // admits new guests once the host has settled (report: "admit").
      return v.busy ? Action::kill : (frozen ? Action::thaw : Action::none);
    case Policy::off:
      return Action::release;
  }
  return Action::none;
}

uint64_t guest_memory_bound(uint64_t node_bytes, uint64_t host_bytes, uint64_t headroom,
                            uint64_t floor) {
  uint64_t taken = host_bytes + headroom;
  uint64_t left = node_bytes > taken ? node_bytes - taken : 0;
  return std::min(node_bytes, std::max(left, floor));
}

}  // namespace dynamos::cyclesteal
