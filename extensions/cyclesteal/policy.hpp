// The decisions of cycle stealing, apart from the kernel: when the host counts as busy,
// what each policy does about it, and how large the guests' memory may be. Pure
// functions and a small state machine, so that the rules can be read in one screen.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "extensions/name_table.hpp"

namespace dynamos::cyclesteal {

using Clock = std::chrono::steady_clock;

// Named as on the CLI and in the `policy` tunable, in the tunable's choice order.
enum class Policy {
  linger,  // guests keep running at idle priority whatever the host does (Linger-Longer)
  pause,   // guests are frozen while the host is busy, thawed after an idle period
  evict,   // guests are killed when the host turns busy (immediate eviction, as Condor)
  off,     // guests are released: no idle class, no bound, nothing left behind
};
// THE list of the names (the `policy` tunable's choices, the CLI's, gangd's and
// dynamosd's checks), in enum order, null-terminated as the tunable's choices are.
inline constexpr int kPolicyCount = 4;
inline constexpr const char* kPolicyNames[kPolicyCount + 1] = {"linger", "pause", "evict", "off",
                                                               nullptr};
inline const char* policy_name(Policy p) {
  return dynamos::ext::enum_name(kPolicyNames, p);
}
inline std::optional<Policy> parse_policy(std::string_view name) {
  return dynamos::ext::parse_enum_name<Policy>(kPolicyNames, name);
}
// Whether `name` is a policy that runs guests ("cyclesteal on POLICY"): all but off.
inline bool is_guest_policy(std::string_view name) {
  auto p = parse_policy(name);
  return p && *p != Policy::off;
}

// What the host did over one sampling interval.
struct HostSample {
  double cpu_busy = 0;    // host CPU time over (interval x node CPUs), 0..1
  double memory_psi = 0;  // share of the interval in which some host task waited on memory
};

struct ActivityRules {
  double busy_threshold = 0.5;  // cpu_busy above this: the host is busy
  std::chrono::nanoseconds idle_period{std::chrono::seconds(1)};  // quiet this long: idle
};

// Whether the host is busy, with hysteresis: busy at once when a sample crosses the
// threshold, idle again only after idle_period without such a sample.
class Activity {
 public:
  struct Verdict {
    bool busy = false;         // a sample within idle_period crossed the threshold
    bool turned_busy = false;  // this sample made it busy (it was settled idle before)
    bool settled = false;      // idle for idle_period: paused guests may be thawed
  };
  Verdict update(const HostSample& s, Clock::time_point now, const ActivityRules& rules);
  bool busy() const { return busy_; }

 private:
  bool busy_ = false;
  std::optional<Clock::time_point> last_busy_;
};

// What a guest under `policy` needs now, given the verdict and its current state.
enum class Action { none, freeze, thaw, kill, release };
Action decide(Policy policy, const Activity::Verdict& v, bool frozen);

// The guests' memory bound: what the node has, minus the host's working set and the
// headroom kept free for its growth, but never below floor (the guests would only
// thrash) nor above the node.
uint64_t guest_memory_bound(uint64_t node_bytes, uint64_t host_bytes, uint64_t headroom,
                            uint64_t floor);

}  // namespace dynamos::cyclesteal
