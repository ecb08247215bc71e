// The Ousterhout matrix: placement respects slots, jobs sharing nodes alternate every
// quantum, a job alone on its nodes is never switched.
#include "gang/gangd/matrix.hpp"

#include <gtest/gtest.h>

using namespace dynamos;
using namespace dynamos::gang;

namespace {
Matrix four_by_four() {
  return Matrix({{"n0", 4}, {"n1", 4}, {"n2", 4}, {"n3", 4}});
}
bool contains(const std::vector<JobId>& v, JobId j) {
  return std::find(v.begin(), v.end(), j) != v.end();
}
}  // namespace

TEST(Matrix, PacksAndSpreadsRanks) {
  auto m = four_by_four();
  auto a = m.place(1, 6);  // packed: 4 on n0, 2 on n1
  ASSERT_TRUE(a.has_value()) << a.error().message();
  ASSERT_EQ(a->cells.size(), 2u);
  EXPECT_EQ(a->cells[0].ranks, 4);
  EXPECT_EQ(a->cells[1].ranks, 2);
  EXPECT_EQ(a->row, 0);

  auto b = m.place(2, 5, 2);  // spread over 2 nodes: 3 + 2, needs 3 free on each
  ASSERT_TRUE(b.has_value()) << b.error().message();
  EXPECT_EQ(b->row, 0);
  EXPECT_EQ(b->cells[0].node, 2u);
  EXPECT_EQ(b->cells[0].ranks, 3);
  EXPECT_EQ(b->cells[1].ranks, 2);
  EXPECT_EQ(b->ranks(), 5);

  auto c = m.place(3, 8, 4);  // 2 on each node: does not fit row 0 (n0 full), new row
  ASSERT_TRUE(c.has_value()) << c.error().message();
  EXPECT_EQ(c->row, 1);
  EXPECT_EQ(m.rows(), 2);
}

TEST(Matrix, RefusesJobsThatCanNeverFit) {
  auto m = four_by_four();
  auto r = m.place(1, 17);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message().find("16 slots"), std::string::npos) << r.error().message();
  EXPECT_FALSE(m.place(2, 10, 2)) << "5 ranks per node on 4-slot nodes";
  EXPECT_FALSE(m.place(3, 4, 5)) << "more nodes than the cluster has";
  EXPECT_FALSE(m.place(4, 0));
  ASSERT_TRUE(m.place(5, 1));
  EXPECT_FALSE(m.place(5, 1)) << "the same job twice";
}

TEST(Matrix, FullMatrixIsBusy) {
  Matrix m({{"n0", 1}}, 2);
  ASSERT_TRUE(m.place(1, 1));
  ASSERT_TRUE(m.place(2, 1));
  auto r = m.place(3, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::busy) << r.error().message();
}

TEST(Matrix, JobsOnSameNodesAlternateEveryQuantum) {
  auto m = four_by_four();
  ASSERT_TRUE(m.place(1, 16));
  ASSERT_TRUE(m.place(2, 16));
  auto s = m.recompute();
  EXPECT_EQ(s.started, std::vector<JobId>{1});
  for (int q = 0; q < 6; ++q) {
    JobId in = q % 2 == 0 ? 2 : 1, out = q % 2 == 0 ? 1 : 2;
    s = m.advance();
    EXPECT_EQ(s.started, std::vector<JobId>{in}) << "quantum " << q;
    EXPECT_EQ(s.stopped, std::vector<JobId>{out}) << "quantum " << q;
    EXPECT_TRUE(m.is_running(in));
    EXPECT_FALSE(m.is_running(out));
  }
}

TEST(Matrix, JobAloneOnItsNodesIsNeverSwitched) {
  auto m = four_by_four();
  ASSERT_TRUE(m.place(1, 8, 2));  // n0, n1, row 0
  ASSERT_TRUE(m.place(2, 8, 2));  // n2, n3, row 0 too
  ASSERT_TRUE(m.place(3, 8, 2));  // n0, n1, row 1: alternates with job 1
  m.recompute();
  for (int q = 0; q < 8; ++q) {
    auto s = m.advance();
    EXPECT_FALSE(contains(s.stopped, 2)) << "job 2 shares no node yet was stopped at quantum " << q;
    EXPECT_TRUE(m.is_running(2)) << "quantum " << q;
    EXPECT_TRUE(m.is_running(1) != m.is_running(3)) << "jobs 1 and 3 must alternate, quantum " << q;
  }
  // A single job: never any change at all.
  Matrix solo({{"a", 2}, {"b", 2}});
  ASSERT_TRUE(solo.place(7, 3));
  solo.recompute();
  for (int q = 0; q < 4; ++q)
    EXPECT_FALSE(solo.advance().changed());
}

TEST(Matrix, FreeCellsOfTheActiveRowAreFilled) {
  auto m = four_by_four();
  ASSERT_TRUE(m.place(1, 16));    // row 0, all nodes
  ASSERT_TRUE(m.place(2, 4, 1));  // row 1, n0
  ASSERT_TRUE(m.place(3, 4, 1));  // row 1, n1
  ASSERT_TRUE(m.remove(1));
  // Row 0 is empty now, jobs 2 and 3 run together; n2 and n3 idle.
  m.recompute();
  EXPECT_TRUE(m.is_running(2));
  EXPECT_TRUE(m.is_running(3));
  EXPECT_EQ(m.idle_nodes(), (std::vector<std::size_t>{2, 3}));
  EXPECT_EQ(m.jobs_on(0), std::vector<JobId>{2});
  EXPECT_FALSE(m.render().empty());
}

TEST(Matrix, RestoreChecksFit) {
  auto m = four_by_four();
  Placement p{9, 2, {{0, 4}, {1, 4}}};
  ASSERT_TRUE(m.restore(p)) << "restore into a later row";
  EXPECT_EQ(m.find(9)->row, 2);
  Placement q{10, 2, {{0, 1}}};
  auto r = m.restore(q);
  ASSERT_FALSE(r) << "n0 is full in row 2";
  EXPECT_FALSE(m.restore(Placement{11, 0, {{7, 1}}})) << "unknown node index";
}
