#include "extensions/paging/policy.hpp"

#include <algorithm>
#include <array>

namespace dynamos::paging {

namespace {
constexpr std::array<const char*, kPolicyCount> kNames = {"demand", "selective", "aggressive",
                                                          "adaptive"};
}

const char* policy_name(Policy p) {
  return kNames[static_cast<int>(p)];
}

std::optional<Policy> parse_policy(std::string_view name) {
  for (int i = 0; i < kPolicyCount; ++i)
    if (name == kNames[i]) return static_cast<Policy>(i);
  return std::nullopt;
}

SwitchPlan plan_switch(Policy policy, const PlanInput& in) {
  SwitchPlan plan;
  if (!in.swap) return plan;  // nothing can leave memory: stop and continue only
  plan.effective = policy;
  // What the incoming job will fault back in, as far as the node can hold it.
  uint64_t wanted = in.incoming_swapped_bytes + in.reserve_bytes;
  uint64_t shortfall = wanted > in.free_bytes ? wanted - in.free_bytes : 0;
  switch (policy) {
    case Policy::demand:
      break;
    case Policy::aggressive:
      plan.pageout_all = true;
      break;
    case Policy::selective:
      plan.pageout_bytes = std::min(shortfall, in.outgoing_resident_bytes);
      break;
    case Policy::adaptive: {
      // Prefetch only what the budget allows, and page out only what that prefetch
      // (plus the reserve) needs: the rest of the outgoing job leaves in the background.
      uint64_t prefetch = std::min(in.incoming_swapped_bytes, in.prefetch_budget);
      uint64_t need = prefetch + in.reserve_bytes;
      uint64_t out = need > in.free_bytes ? need - in.free_bytes : 0;
      plan.pageout_bytes = std::min(out, in.outgoing_resident_bytes);
      // The node may be too small for the whole prefetch even after the page-out.
      uint64_t room = in.free_bytes + plan.pageout_bytes;
      room = room > in.reserve_bytes ? room - in.reserve_bytes : 0;
      plan.prefetch_bytes = std::min(prefetch, room);
      plan.background_write = true;
      break;
    }
  }
  return plan;
}

}  // namespace dynamos::paging
