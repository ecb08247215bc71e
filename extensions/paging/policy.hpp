// Paging policies at a gang switch, and the arithmetic that turns a policy and the
// node's state into a plan: how much of the outgoing job to page out at the switch,
// how much of the incoming job's working set to prefetch, whether to keep writing the
// outgoing job out in the background during the quantum.
//
// Pure functions: the extension measures, this decides, working_set.hpp acts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "extensions/name_table.hpp"

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
// THE list of the names (the `policy` tunable's choices, the CLI's and gangd's checks),
// in enum order, null-terminated as the tunable's choices are.
inline constexpr const char* kPolicyNames[kPolicyCount + 1] = {"demand", "selective", "aggressive",
                                                               "adaptive", nullptr};
inline const char* policy_name(Policy p) {
  return dynamos::ext::enum_name(kPolicyNames, p);
}
inline std::optional<Policy> parse_policy(std::string_view name) {
  return dynamos::ext::parse_enum_name<Policy>(kPolicyNames, name);
}
// The names as strings, for option checks and help texts.
inline const std::vector<std::string>& policy_names() {
  static const std::vector<std::string> names(kPolicyNames, kPolicyNames + kPolicyCount);
  return names;
}

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

// ---- the arithmetic of carrying a plan out ----

// Whether the node has room for `bytes` more while keeping `reserve` free.
bool room_for(uint64_t free_bytes, uint64_t bytes, uint64_t reserve);

// The prefetch at the switch took `prefetched` bytes of chunks of the given sizes, in
// order: how many leading chunks it covered (the rest follow on ticks).
std::size_t chunks_prefetched(std::span<const uint64_t> chunk_bytes, uint64_t prefetched);

// Background write-out is rate-limited: credit (bytes allowed) accrues at `rate` bytes a
// second; a write happens once a chunk's worth has accrued, the chunk at most 4 MiB
// (short calls keep ticks short); credit never piles up beyond one batch.
double accrue_credit(double credit, uint64_t rate_bytes_per_s, uint64_t elapsed_ns);
uint64_t background_chunk(uint64_t batch_bytes);
double cap_credit(double credit, uint64_t batch_bytes);

// Seconds from start_ns to end_ns (0 when end is not after start).
double seconds_between(uint64_t start_ns, uint64_t end_ns);

// ---- whether the node's memory cgroup lets it swap ----

// v2: memory.swap.max as read ("max" or bytes); only 0 forbids swap.
bool v2_swap_allowed(std::string_view swap_max);
// v1: memory + swap (memory.memsw.limit_in_bytes, nullopt when the file is missing: no
// swap accounting) against the memory limit (nullopt: unlimited). Swap is forbidden only
// when a memory limit is set and memory + swap is no higher: with no memory limit the
// group may swap whatever memsw says (both read "unlimited" on a fresh group).
bool v1_swap_allowed(std::optional<uint64_t> memory_limit, std::optional<uint64_t> memsw_limit);

}  // namespace dynamos::paging
