// Paging policies at a gang switch, and the arithmetic that turns a policy and the
// node's state into a plan: how much of the outgoing job to page out at the switch,
// how much of the incoming job's working set to prefetch, whether to keep writing the
// outgoing job out in the background during the quantum.
//
// Pure functions: the extension measures, this decides, working_set.hpp acts.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace dynamos::paging {

// Named as on the CLI and in subject->policy.
enum class Policy {
  demand,      // stop and continue only: the kernel pages on demand
  selective,   // page out the outgoing job only as far as the incoming working set needs
  aggressive,  // page out all of the outgoing job
  adaptive,    // page-out from free memory, prefetch the incoming working set (most
               // recently used first), background write-out during the quantum
};
inline constexpr int kPolicyCount = 4;
const char* policy_name(Policy p);
std::optional<Policy> parse_policy(std::string_view name);

struct PlanInput {
  uint64_t free_bytes = 0;              // node memory not in use now (limit - usage)
  uint64_t incoming_ws_bytes = 0;       // the incoming job's working set recorded at its switch-out
  uint64_t incoming_swapped_bytes = 0;  // ... of which is not resident now
  uint64_t outgoing_resident_bytes = 0;  // the outgoing job's resident anonymous memory
  uint64_t prefetch_budget = 0;          // tunable: bytes prefetched at most
  uint64_t reserve_bytes = 0;  // kept free beyond the working set (the job's first allocations,
                               // the kernel's own watermarks)
  bool swap = true;            // any swap active: without it nothing can be paged out
};

struct SwitchPlan {
  Policy effective = Policy::demand;  // demand when the policy cannot act (no swap)
  bool pageout_all = false;           // all of the outgoing job (aggressive)
  uint64_t pageout_bytes = 0;         // else this much, least recently used first
  uint64_t prefetch_bytes = 0;        // of the incoming working set, most recent first
  bool background_write = false;      // write the rest of the outgoing job out during the quantum
};

SwitchPlan plan_switch(Policy policy, const PlanInput& in);

}  // namespace dynamos::paging
