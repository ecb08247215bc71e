#include "extensions/paging/policy.hpp"

#include <algorithm>

namespace dynamos::paging {

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

bool room_for(uint64_t free_bytes, uint64_t bytes, uint64_t reserve) {
  return free_bytes >= bytes + reserve;
}

std::size_t chunks_prefetched(std::span<const uint64_t> chunk_bytes, uint64_t prefetched) {
  std::size_t n = 0;
  for (uint64_t covered = 0; n < chunk_bytes.size() && covered < prefetched; ++n)
    covered += chunk_bytes[n];
  return n;
}

double accrue_credit(double credit, uint64_t rate_bytes_per_s, uint64_t elapsed_ns) {
  return credit + static_cast<double>(rate_bytes_per_s) * (static_cast<double>(elapsed_ns) / 1e9);
}

uint64_t background_chunk(uint64_t batch_bytes) {
  return std::min<uint64_t>(batch_bytes, 4ull << 20);
}

double cap_credit(double credit, uint64_t batch_bytes) {
  return std::min(credit, static_cast<double>(batch_bytes));
}

double seconds_between(uint64_t start_ns, uint64_t end_ns) {
  return end_ns > start_ns ? static_cast<double>(end_ns - start_ns) / 1e9 : 0;
}

bool v2_swap_allowed(std::string_view swap_max) {
  return swap_max.substr(0, swap_max.find_first_of(" \n")) != "0";
}

bool v1_swap_allowed(std::optional<uint64_t> memory_limit, std::optional<uint64_t> memsw_limit) {
  return !memory_limit || !memsw_limit || *memsw_limit > *memory_limit;
}

}  // namespace dynamos::paging
