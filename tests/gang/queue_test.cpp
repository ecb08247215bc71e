// gangd's scheduling decisions: placement by memory within the overcommit factor,
// the pending queue in submission order, and backfill that never delays the head.
#include "gang/gangd/queue.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace dynamos;
using namespace dynamos::gang;

namespace {
constexpr std::uint64_t GiB = 1ull << 30;

// Nodes of 4 slots and 4 GiB each.
Matrix nodes(int n, int max_rows = 2) {
  std::vector<Matrix::NodeSpec> specs;
  for (int i = 0; i < n; ++i)
    specs.push_back({"n" + std::to_string(i), 4, 4 * GiB, true});
  return Matrix(specs, max_rows);
}
PendingJob job(JobId id, int ranks, std::uint64_t mem = 0, double factor = 1.0,
               std::int64_t limit = 0) {
  return PendingJob{id, Request{ranks, 0, mem, factor}, limit, false};
}
std::vector<JobId> ids(const PassResult& r) {
  std::vector<JobId> out;
  for (const auto& p : r.started)
    out.push_back(p.job);
  return out;
}
}  // namespace

TEST(Placement, DemandPairPastTheNodesMemoryWaitsAdaptivePairRuns) {
  // Two jobs of 4 ranks, 2.5 GiB each, on one node of 4 slots and 4 GiB: 5 GiB
  // committed is 1.25 times the node, past demand paging's factor 1.0, within adaptive
  // paging's 1.5.
  const std::uint64_t rank_mem = 5 * GiB / 8;
  auto demand = nodes(1);
  ASSERT_TRUE(demand.place(1, Request{4, 0, rank_mem, 1.0}));
  auto second = demand.place(2, Request{4, 0, rank_mem, 1.0});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::busy) << "it should wait, not be refused";
  auto why = demand.why_not(2, Request{4, 0, rank_mem, 1.0});
  EXPECT_NE(why.find("not enough memory"), std::string::npos) << why;
  EXPECT_EQ(demand.committed(0), 5 * GiB / 2);

  auto adaptive = nodes(1);
  ASSERT_TRUE(adaptive.place(1, Request{4, 0, rank_mem, 1.5}));
  auto both = adaptive.place(2, Request{4, 0, rank_mem, 1.5});
  ASSERT_TRUE(both) << both.error().message();
  EXPECT_EQ(both->row, 1) << "the second job time-shares the node";
  EXPECT_EQ(adaptive.committed(0), 5 * GiB);
  ASSERT_TRUE(adaptive.remove(1));
  EXPECT_EQ(adaptive.committed(0), 5 * GiB / 2) << "removal gives the memory back";
}

TEST(Placement, JobThatCanNeverFitIsRefusedWithTheReason) {
  auto m = nodes(2);
  auto r = m.place(1, Request{2, 2, 5 * GiB, 1.0});  // 5 GiB a rank, nodes of 4 GiB
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message().find("5GiB a rank"), std::string::npos) << r.error().message();
  EXPECT_FALSE(m.place(2, Request{9, 0, 0, 1.0})) << "9 ranks on 8 slots";
  EXPECT_EQ(m.jobs(), 0u);
}

TEST(Placement, RanksSpreadByMemoryWhenSlotsWouldPackThem) {
  auto m = nodes(2);
  // 4 ranks of 1.5 GiB: slots would pack them on n0, memory allows 2 there (3 GiB).
  auto p = m.place(1, Request{4, 0, 3 * GiB / 2, 1.0});
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_EQ(p->cells.size(), 2u);
  EXPECT_EQ(p->cells[0].ranks, 2);
  EXPECT_EQ(p->cells[1].ranks, 2);
}

TEST(Placement, DrainedNodeTakesNoNewJobAndUnknownMemoryTakesNoMemoryJob) {
  auto m = nodes(2);
  m.set_node_open(0, false);
  auto p = m.place(1, 4);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->cells[0].node, 1u);
  auto q = m.place(2, Request{4, 0, 0, 1.0});  // n1 is now full in row 0, row 1 has n1
  ASSERT_TRUE(q);
  EXPECT_EQ(q->cells[0].node, 1u);
  EXPECT_FALSE(m.place(3, 1)) << "only the drained node has room";
  m.set_node_open(0, true);
  m.set_node_memory(0, 0);
  EXPECT_FALSE(m.place(3, Request{1, 0, GiB, 1.0})) << "node memory unknown";
  EXPECT_TRUE(m.place(4, 1)) << "a job without a memory request still fits";
}

TEST(Queue, StartsInSubmissionOrderAndHoldsWhatDoesNotFit) {
  auto m = nodes(1, 1);
  auto r = schedule_pass(m, {job(1, 2), job(2, 2), job(3, 1)}, {}, 0);
  EXPECT_EQ(ids(r), (std::vector<JobId>{1, 2}));
  EXPECT_EQ(r.head, 3u);
  EXPECT_NE(r.reasons[3].find("no room"), std::string::npos) << r.reasons[3];
}

TEST(Queue, HeldJobIsSkippedNeverRefusedJobIsReported) {
  auto m = nodes(1, 1);
  auto held = job(1, 4);
  held.held = true;
  auto r = schedule_pass(m, {held, job(2, 9), job(3, 2)}, {}, 0);
  EXPECT_EQ(ids(r), (std::vector<JobId>{3}));
  EXPECT_EQ(r.reasons[1], "held");
  EXPECT_TRUE(r.refused.contains(2));
  EXPECT_EQ(r.head, 0u);
}

TEST(Queue, BackfillsAShortJobButNotOneThatWouldDelayTheHead) {
  // One row of 2 nodes. Job 10 runs on n0 until t=100; n1 is free. The head needs
  // both nodes (spread over 2), so it waits until t=100.
  auto m = nodes(2, 1);
  ASSERT_TRUE(m.place(10, 4));
  std::map<JobId, std::int64_t> ends{{10, 100}};
  PendingJob head{1, Request{8, 2, 0, 1.0}, 0, false};
  auto long_job = job(2, 4, 0, 1.0, 500);  // fits n1 now, would still run at t=100
  auto no_limit = job(3, 4);               // fits n1 now, no limit: could run forever
  auto short_job = job(4, 4, 0, 1.0, 60);  // fits n1 now, done by t=60
  auto r = schedule_pass(m, {head, long_job, no_limit, short_job}, ends, 0);
  EXPECT_EQ(r.head, 1u);
  EXPECT_EQ(r.shadow_s, 100);
  EXPECT_EQ(ids(r), (std::vector<JobId>{4}));
  EXPECT_EQ(r.backfilled, 1u);
  EXPECT_NE(r.reasons[2].find("delay"), std::string::npos) << r.reasons[2];
  EXPECT_NE(r.reasons[3].find("waiting behind job 1"), std::string::npos) << r.reasons[3];
}

TEST(Queue, BackfillsAJobTheHeadDoesNotNeed) {
  // The head needs n0 and n1 (which job 10 holds, no limit); n2 is for anyone.
  auto m = nodes(3, 1);
  ASSERT_TRUE(m.place(10, Request{8, 2, 0, 1.0}));
  PendingJob head{1, Request{8, 2, 0, 1.0}, 0, false};
  auto r = schedule_pass(m, {head, job(2, 4)}, {}, 0);
  EXPECT_EQ(r.head, 1u);
  EXPECT_EQ(r.shadow_s, -1) << "job 10 has no limit";
  EXPECT_EQ(ids(r), (std::vector<JobId>{2}));
  EXPECT_EQ(m.find(2)->cells[0].node, 2u);
}

// The property backfill must keep: whatever started, the head still fits once the
// jobs that end by its shadow time are gone. Random clusters, queues and limits.
TEST(Queue, BackfillNeverDelaysTheHeadOnRandomQueues) {
  std::mt19937 rng(21);
  int checked = 0;
  for (int round = 0; round < 300; ++round) {
    auto m = nodes(6, 2);
    std::map<JobId, std::int64_t> ends;
    std::uniform_int_distribution<int> ranks(1, 10), mem(0, 3), lim(0, 4);
    JobId id = 100;
    for (int i = 0; i < 8; ++i) {
      if (m.place(id, Request{ranks(rng), 0, mem(rng) * GiB / 2, 1.5}) && lim(rng) > 0)
        ends[id] = lim(rng) * 50;
      ++id;
    }
    std::vector<PendingJob> queue;
    for (JobId j = 1; j <= 12; ++j)
      queue.push_back(job(j, ranks(rng) + 4, mem(rng) * GiB / 2, 1.5, lim(rng) * 40));
    auto before = m;
    auto r = schedule_pass(m, queue, ends, 0);
    if (r.head == 0 || r.shadow_s < 0) continue;
    // At the shadow time: running jobs and backfilled jobs that ended are gone.
    for (const auto& [j, end] : ends)
      if (end <= r.shadow_s) (void)m.remove(j);
    for (const auto& q : queue)
      if (m.find(q.id) && q.limit_s > 0 && q.limit_s <= r.shadow_s) (void)m.remove(q.id);
    const auto& h = queue[r.head - 1];
    EXPECT_TRUE(m.place(h.id, h.req)) << "round " << round << ": backfill delayed job " << r.head;
    ++checked;
  }
  EXPECT_GT(checked, 30) << "too few random queues had a head with a known shadow time";
}
