// The policy arithmetic and the working-set run algebra of the paging extension.
#include <gtest/gtest.h>

#include "extensions/paging/policy.hpp"
#include "extensions/paging/working_set.hpp"

using namespace dynamos::paging;

namespace {
constexpr uint64_t MiB = 1ull << 20;

PlanInput node(uint64_t free, uint64_t swapped, uint64_t outgoing) {
  PlanInput in;
  in.free_bytes = free;
  in.incoming_ws_bytes = swapped;
  in.incoming_swapped_bytes = swapped;
  in.outgoing_resident_bytes = outgoing;
  in.prefetch_budget = 1024 * MiB;
  in.reserve_bytes = 16 * MiB;  // (the tunable defaults to 32MiB)
  return in;
}
}  // namespace

TEST(PagingPolicy, NamesRoundTrip) {
  for (int i = 0; i < kPolicyCount; ++i) {
    auto p = static_cast<Policy>(i);
    EXPECT_EQ(parse_policy(policy_name(p)), p) << policy_name(p);
  }
  EXPECT_FALSE(parse_policy("lru").has_value());
}

TEST(PagingPolicy, DemandDoesNothing) {
  SwitchPlan p = plan_switch(Policy::demand, node(100 * MiB, 700 * MiB, 700 * MiB));
  EXPECT_FALSE(p.pageout_all);
  EXPECT_EQ(p.pageout_bytes, 0u);
  EXPECT_EQ(p.prefetch_bytes, 0u);
  EXPECT_FALSE(p.background_write);
}

TEST(PagingPolicy, AggressivePagesOutEverything) {
  SwitchPlan p = plan_switch(Policy::aggressive, node(900 * MiB, 10 * MiB, 700 * MiB));
  EXPECT_TRUE(p.pageout_all) << "aggressive pages out all of the outgoing job, even with room";
  EXPECT_EQ(p.prefetch_bytes, 0u);
}

TEST(PagingPolicy, SelectivePagesOutOnlyTheShortfall) {
  // 700 MiB to come back, 300 free, 16 reserve: 416 MiB must leave.
  SwitchPlan p = plan_switch(Policy::selective, node(300 * MiB, 700 * MiB, 700 * MiB));
  EXPECT_EQ(p.pageout_bytes, 416 * MiB);
  EXPECT_EQ(p.prefetch_bytes, 0u);
  // Enough room: nothing leaves.
  EXPECT_EQ(plan_switch(Policy::selective, node(800 * MiB, 700 * MiB, 700 * MiB)).pageout_bytes,
            0u);
  // Never more than the outgoing job has resident.
  EXPECT_EQ(plan_switch(Policy::selective, node(0, 700 * MiB, 100 * MiB)).pageout_bytes, 100 * MiB);
}

TEST(PagingPolicy, AdaptiveMakesRoomForThePrefetchWithinTheBudget) {
  PlanInput in = node(300 * MiB, 700 * MiB, 700 * MiB);
  SwitchPlan p = plan_switch(Policy::adaptive, in);
  EXPECT_EQ(p.pageout_bytes, 416 * MiB);
  EXPECT_EQ(p.prefetch_bytes, 700 * MiB);
  EXPECT_TRUE(p.background_write);
  in.prefetch_budget = 200 * MiB;  // a small budget: less prefetch, less page-out
  p = plan_switch(Policy::adaptive, in);
  EXPECT_EQ(p.prefetch_bytes, 200 * MiB);
  EXPECT_EQ(p.pageout_bytes, 0u);
  // The node cannot hold it all: prefetch only what fits after the page-out.
  p = plan_switch(Policy::adaptive, node(0, 700 * MiB, 300 * MiB));
  EXPECT_EQ(p.pageout_bytes, 300 * MiB);
  EXPECT_EQ(p.prefetch_bytes, 284 * MiB);
}

TEST(PagingPolicy, WithoutSwapEveryPolicyIsDemand) {
  for (int i = 0; i < kPolicyCount; ++i) {
    PlanInput in = node(0, 700 * MiB, 700 * MiB);
    in.swap = false;
    SwitchPlan p = plan_switch(static_cast<Policy>(i), in);
    EXPECT_EQ(p.effective, Policy::demand) << policy_name(static_cast<Policy>(i));
    EXPECT_FALSE(p.pageout_all);
    EXPECT_EQ(p.pageout_bytes + p.prefetch_bytes, 0u);
  }
}

TEST(PagingWorkingSet, SubtractAndIntersect) {
  std::vector<Range> a = {{0x1000, 0x4000}, {0x10000, 0x2000}};
  std::vector<Range> b = {{0x2000, 0x1000}, {0x11000, 0x4000}};
  EXPECT_EQ(subtract(a, b),
            (std::vector<Range>{{0x1000, 0x1000}, {0x3000, 0x2000}, {0x10000, 0x1000}}));
  EXPECT_EQ(intersect(a, b), (std::vector<Range>{{0x2000, 0x1000}, {0x11000, 0x1000}}));
  EXPECT_EQ(subtract(a, {}), a);
  EXPECT_TRUE(intersect(a, {}).empty());
}

TEST(PagingWorkingSet, RecencyPutsPagesFaultedInSinceTheSampleFirst) {
  WorkingSet now{{{42, {{0x1000, 0x3000}, {0x8000, 0x1000}}}}};
  WorkingSet sample{{{42, {{0x1000, 0x1000}}}}};
  WorkingSet ordered = order_by_recency(now, &sample);
  ASSERT_EQ(ordered.processes.size(), 1u);
  EXPECT_EQ(ordered.processes[0].runs,
            (std::vector<Range>{{0x8000, 0x1000}, {0x2000, 0x2000}, {0x1000, 0x1000}}));
  EXPECT_EQ(ordered.bytes(), now.bytes());
  // Without a sample: high addresses first. Page-out order is the reverse.
  WorkingSet plain = order_by_recency(now, nullptr);
  EXPECT_EQ(plain.processes[0].runs.front(), (Range{0x8000, 0x1000}));
  EXPECT_EQ(reversed(plain).processes[0].runs.front(), (Range{0x1000, 0x3000}));
}

TEST(PagingWorkingSet, SplitKeepsOrderAndLimit) {
  WorkingSet ws{{{1, {{0x10000, 0x3000}}}, {2, {{0x1000, 0x2000}}}}};
  auto chunks = split(ws, 0x2000, 0x4000);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].processes[0].runs, (std::vector<Range>{{0x10000, 0x2000}}));
  EXPECT_EQ(chunks[1].processes.size(), 2u);
  EXPECT_EQ(chunks[1].processes[0].runs, (std::vector<Range>{{0x12000, 0x1000}}));
  EXPECT_EQ(chunks[1].processes[1].runs, (std::vector<Range>{{0x1000, 0x1000}}));
}
