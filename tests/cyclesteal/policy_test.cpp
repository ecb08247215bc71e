// The cycle-stealing rules without the kernel: busy/idle hysteresis, what each policy
// does, and the guests' memory bound.
#include <gtest/gtest.h>

#include "extensions/cyclesteal/policy.hpp"

using namespace dynamos::cyclesteal;
using namespace std::chrono_literals;

TEST(CycleStealPolicy, NamesRoundTrip) {
  for (Policy p : {Policy::linger, Policy::pause, Policy::evict, Policy::off})
    EXPECT_EQ(parse_policy(policy_name(p)), p);
  EXPECT_FALSE(parse_policy("Linger").has_value()) << "names are exact, as on the CLI";
  EXPECT_FALSE(parse_policy("").has_value());
}

TEST(CycleStealPolicy, BusyAtOnceIdleOnlyAfterTheIdlePeriod) {
  Activity a;
  ActivityRules rules{0.5, 300ms};
  auto t = Clock::time_point{} + 10s;
  auto v = a.update({0.1, 0}, t, rules);
  EXPECT_FALSE(v.busy);
  EXPECT_TRUE(v.settled);
  v = a.update({0.9, 0}, t += 100ms, rules);
  EXPECT_TRUE(v.busy && v.turned_busy) << "one sample over the threshold makes the host busy";
  v = a.update({0.1, 0}, t += 100ms, rules);
  EXPECT_TRUE(v.busy) << "still busy within the idle period";
  v = a.update({0.95, 0}, t += 100ms, rules);
  EXPECT_TRUE(v.busy);
  EXPECT_FALSE(v.turned_busy) << "a burst while busy is not a new transition";
  v = a.update({0.1, 0}, t += 200ms, rules);
  EXPECT_TRUE(v.busy) << "200 ms quiet < 300 ms idle period";
  v = a.update({0.1, 0}, t += 100ms, rules);
  EXPECT_FALSE(v.busy);
  EXPECT_TRUE(v.settled) << "300 ms quiet: settled";
  EXPECT_FALSE(a.update({0.5, 0}, t += 100ms, rules).busy) << "the threshold itself is not busy";
}

TEST(CycleStealPolicy, WhatEachPolicyDoes) {
  Activity::Verdict busy{true, true, false}, idle{false, false, true};
  EXPECT_EQ(decide(Policy::linger, busy, false), Action::none);
  EXPECT_EQ(decide(Policy::linger, idle, true), Action::thaw) << "a frozen guest under linger runs";
  EXPECT_EQ(decide(Policy::pause, busy, false), Action::freeze);
  EXPECT_EQ(decide(Policy::pause, busy, true), Action::none);
  EXPECT_EQ(decide(Policy::pause, idle, true), Action::thaw);
  EXPECT_EQ(decide(Policy::pause, idle, false), Action::none);
  EXPECT_EQ(decide(Policy::evict, busy, false), Action::kill);
  EXPECT_EQ(decide(Policy::evict, idle, false), Action::none);
  EXPECT_EQ(decide(Policy::off, idle, false), Action::release);
}

TEST(CycleStealPolicy, MemoryBoundIsNodeMinusHostMinusHeadroomWithinFloorAndNode) {
  constexpr uint64_t M = 1 << 20;
  EXPECT_EQ(guest_memory_bound(1024 * M, 300 * M, 100 * M, 64 * M), 624 * M);
  EXPECT_EQ(guest_memory_bound(1024 * M, 1000 * M, 100 * M, 64 * M), 64 * M)
      << "never below the floor";
  EXPECT_EQ(guest_memory_bound(1024 * M, 0, 0, 64 * M), 1024 * M);
  EXPECT_EQ(guest_memory_bound(32 * M, 0, 0, 64 * M), 32 * M) << "never above the node";
}
