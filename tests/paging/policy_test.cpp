// The policy arithmetic and the working-set run algebra of the paging extension.
#include <gtest/gtest.h>

#include "extensions/paging/policy.hpp"
#include "extensions/paging/state.hpp"
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

TEST(PagingPolicy, TheNameListIsTheTunablesChoiceList) {
  ASSERT_EQ(policy_names().size(), static_cast<size_t>(kPolicyCount));
  for (int i = 0; i < kPolicyCount; ++i)
    EXPECT_EQ(policy_names()[static_cast<size_t>(i)], kPolicyNames[i]);
  EXPECT_EQ(kPolicyNames[kPolicyCount], nullptr) << "the choices must end with a null";
}

TEST(PagingPlanArithmetic, RoomKeepsTheReserveFree) {
  EXPECT_TRUE(room_for(100 * MiB, 68 * MiB, 32 * MiB));
  EXPECT_FALSE(room_for(100 * MiB, 69 * MiB, 32 * MiB));
  EXPECT_TRUE(room_for(0, 0, 0));
}

TEST(PagingPlanArithmetic, ChunksPrefetchedAreTheLeadingOnesCovered) {
  const uint64_t sizes[] = {4 * MiB, 4 * MiB, 4 * MiB, 2 * MiB};
  EXPECT_EQ(chunks_prefetched(sizes, 0), 0u);
  EXPECT_EQ(chunks_prefetched(sizes, 4 * MiB), 1u);
  EXPECT_EQ(chunks_prefetched(sizes, 5 * MiB), 2u) << "a chunk begun counts as fetched";
  EXPECT_EQ(chunks_prefetched(sizes, 14 * MiB), 4u);
  EXPECT_EQ(chunks_prefetched(sizes, 100 * MiB), 4u);
  EXPECT_EQ(chunks_prefetched({}, 1), 0u);
}

TEST(PagingPlanArithmetic, BackgroundCreditAccruesAtTheRateAndIsCapped) {
  // 512 MiB/s for 10 ms: 5.12 MiB.
  EXPECT_DOUBLE_EQ(accrue_credit(0, 512 * MiB, 10'000'000), 512.0 * MiB / 100);
  EXPECT_DOUBLE_EQ(accrue_credit(MiB, 0, 10'000'000), MiB);
  EXPECT_EQ(background_chunk(32 * MiB), 4 * MiB);
  EXPECT_EQ(background_chunk(64 * 1024), 64u * 1024);
  EXPECT_DOUBLE_EQ(cap_credit(100.0 * MiB, 32 * MiB), 32.0 * MiB);
  EXPECT_DOUBLE_EQ(cap_credit(MiB, 32 * MiB), MiB);
}

TEST(PagingPlanArithmetic, SecondsBetweenNeverGoesNegative) {
  EXPECT_DOUBLE_EQ(seconds_between(1'000'000'000, 3'500'000'000), 2.5);
  EXPECT_DOUBLE_EQ(seconds_between(5, 3), 0.0);
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

// #16: a v1 group with neither a memory nor a memory+swap limit (both files read the
// "unlimited" value) was taken for a group that forbids swap, so every policy acted as
// demand in it.
TEST(PagingSwapAllowed, AV1GroupWithBothLimitsUnlimitedMaySwap) {
  EXPECT_TRUE(v1_swap_allowed(std::nullopt, 9223372036854771712ull));
}

TEST(PagingSwapAllowed, AV1GroupWhoseMemswEqualsItsMemoryLimitMayNotSwap) {
  EXPECT_FALSE(v1_swap_allowed(1024 * MiB, 1024 * MiB));
  EXPECT_FALSE(v1_swap_allowed(1024 * MiB, 512 * MiB));
  EXPECT_TRUE(v1_swap_allowed(1024 * MiB, 1025 * MiB));
  EXPECT_TRUE(v1_swap_allowed(1024 * MiB, 9223372036854771712ull));
  EXPECT_TRUE(v1_swap_allowed(1024 * MiB, std::nullopt)) << "no swap accounting: no swap limit";
}

TEST(PagingSwapAllowed, AV2GroupMaySwapUnlessSwapMaxIsZero) {
  EXPECT_FALSE(v2_swap_allowed("0\n"));
  EXPECT_FALSE(v2_swap_allowed("0"));
  EXPECT_TRUE(v2_swap_allowed("max\n"));
  EXPECT_TRUE(v2_swap_allowed("1048576\n"));
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

// The hand-over of an upgrade in place: everything the new build needs comes back.
TEST(PagingState, RoundTripsThroughTheHandOver) {
  PagingState s;
  Job& j = s.jobs[7];
  j.id = 7;
  j.name = "job \"seven\"";
  j.cgroup = "dynamos/n0/job7";
  j.pids = {101, 102};
  j.ws.processes = {{101, {{0x1000, 0x3000}, {0x8000, 0x1000}}}, {102, {{0x20000, 0x1000}}}};
  j.ws_recorded = true;
  j.work_at_resume = 2.5;
  j.record = 3;
  j.prefetch_rest.push_back(WorkingSet{{{101, {{0x9000, 0x1000}}}}});
  s.jobs[8].id = 8;
  SwitchRecord r;
  r.number = 3;
  r.in_job = 7;
  r.policy = "adaptive";
  r.effective = "adaptive";
  r.lost_s = 0.25;
  r.warning = "a \"quoted\" word";
  s.history.push_back(r);
  s.switches = 3;
  s.has_pending_out = true;
  s.pending_out = 8;
  s.background_credit = 1234.5;

  auto back = import_state(export_state(s));
  ASSERT_TRUE(back) << back.error().message();
  ASSERT_EQ(back->jobs.size(), 2u);
  const Job& k = back->jobs.at(7);
  EXPECT_EQ(k.name, j.name);
  EXPECT_EQ(k.cgroup, j.cgroup);
  EXPECT_EQ(k.pids, j.pids);
  ASSERT_EQ(k.ws.processes.size(), 2u);
  EXPECT_EQ(k.ws.processes[0].runs, j.ws.processes[0].runs);
  EXPECT_EQ(k.ws.processes[1].pid, 102);
  EXPECT_TRUE(k.ws_recorded);
  EXPECT_EQ(k.work_at_resume, 2.5);
  EXPECT_FALSE(back->jobs.at(8).work_at_resume.has_value());
  ASSERT_EQ(k.prefetch_rest.size(), 1u);
  EXPECT_EQ(k.prefetch_rest[0].processes[0].runs, j.prefetch_rest[0].processes[0].runs);
  ASSERT_EQ(back->history.size(), 1u);
  EXPECT_EQ(to_json(back->history[0]), to_json(r));
  EXPECT_EQ(back->switches, 3u);
  EXPECT_TRUE(back->has_pending_out);
  EXPECT_EQ(back->pending_out, 8u);
  EXPECT_DOUBLE_EQ(back->background_credit, 1234.5);
}

TEST(PagingState, RefusesAStateOfAnotherFormat) {
  auto other = import_state(R"({"format":"dynamos-paging-state/0","jobs":[]})");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, dynamos::Errc::version_mismatch);
  EXPECT_FALSE(import_state("cyclesteal-state 1\n"));
}

TEST(PagingSwitchRecord, JsonKeepsItsFieldNames) {
  SwitchRecord r;
  r.number = 1;
  r.policy = "demand";
  std::string j = to_json(r);
  for (const char* key : {"switch",
                          "out_job",
                          "in_job",
                          "policy",
                          "effective_policy",
                          "switch_s",
                          "pageout_s",
                          "prefetch_s",
                          "free_bytes",
                          "ws_recorded",
                          "ws_pages",
                          "pages_out",
                          "pages_in",
                          "background_pages_out",
                          "background_pages_in",
                          "majflt_first_s",
                          "lost_s",
                          "quantum_s",
                          "processes_gone",
                          "warning"})
    EXPECT_NE(j.find("\"" + std::string(key) + "\":"), std::string::npos) << key << " in " << j;
  EXPECT_EQ(j.rfind("{\"switch\":1,", 0), 0u) << j;
}
