// gangd's scheduler journal: pending jobs, holds, ended jobs and drained nodes come
// back after a crash; a torn last line is cut off; the history stays bounded and the
// file compacted.
#include "gang/gangd/history.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::gang;

namespace {
QueuedJob queued(std::uint64_t id) {
  QueuedJob q;
  q.id = id;
  q.uid = 1000;
  q.submitted_ns = id * 1000;
  q.req.name = "job" + std::to_string(id);
  q.req.argv = {"/bin/app", "--x"};
  q.req.env = {"PATH=/usr/bin"};
  q.req.mem_per_rank = 1 << 20;
  q.req.time_limit_s = 60;
  return q;
}
proto::JobInfo ended(std::uint64_t id, const std::string& state) {
  proto::JobInfo info;
  info.job = id;
  info.state = state;
  info.exit_code = state == "done" ? 0 : 1;
  info.ended_ns = id;
  info.major_faults = 7;
  return info;
}
}  // namespace

TEST(SchedJournal, PendingRunningEndedAndDrainedComeBackAfterACrash) {
  test::TempDir dir;
  auto path = dir / "sched";
  {
    SchedState s;
    auto j = SchedJournal::open(path, 100, s);
    ASSERT_TRUE(j) << j.error().message();
    ASSERT_TRUE(j->queued(queued(1), s));
    ASSERT_TRUE(j->queued(queued(2), s));
    ASSERT_TRUE(j->queued(queued(3), s));
    ASSERT_TRUE(j->started(1, 5000, s));
    ASSERT_TRUE(j->held(2, true, s));
    ASSERT_TRUE(j->started(3, 6000, s));
    ASSERT_TRUE(j->ended(ended(3, "failed"), s));
    ASSERT_TRUE(j->node_admin("n2", {true, "disk"}, s));
  }  // no clean shutdown: what was written is all there is
  SchedState s;
  auto j = SchedJournal::open(path, 100, s);
  ASSERT_TRUE(j) << j.error().message();
  ASSERT_EQ(s.running.size(), 1u);
  EXPECT_EQ(s.running.at(1).started_ns, 5000u);
  EXPECT_EQ(s.running.at(1).req.env, std::vector<std::string>{"PATH=/usr/bin"});
  ASSERT_EQ(s.pending.size(), 1u);
  EXPECT_TRUE(s.pending.at(2).held);
  EXPECT_EQ(s.pending.at(2).req.time_limit_s, 60u);
  ASSERT_EQ(s.history.size(), 1u);
  EXPECT_EQ(s.history[0].major_faults, 7u);
  EXPECT_TRUE(s.requeueable.contains(3)) << "a failed job keeps its submission for requeue";
  EXPECT_EQ(s.nodes.at("n2").reason, "disk");
  EXPECT_EQ(s.max_id, 3u);
}

TEST(SchedJournal, TornLastLineIsCutOffDamageBeforeTheEndIsAnError) {
  test::TempDir dir;
  auto path = dir / "sched";
  {
    SchedState s;
    auto j = SchedJournal::open(path, 100, s);
    ASSERT_TRUE(j->queued(queued(1), s));
  }
  std::ofstream(path, std::ios::app) << "{\"k\":\"queued\",\"id\":2,\"ui";
  SchedState s;
  auto j = SchedJournal::open(path, 100, s);
  ASSERT_TRUE(j) << j.error().message();
  EXPECT_EQ(s.pending.size(), 1u);
  ASSERT_EQ(s.warnings.size(), 1u);
  EXPECT_NE(s.warnings[0].find("torn"), std::string::npos) << s.warnings[0];

  std::ofstream(path, std::ios::trunc) << "garbage\n"
                                       << "{\"k\":\"started\",\"id\":1,\"t\":1}\n";
  SchedState bad;
  auto broken = SchedJournal::open(path, 100, bad);
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message().find("damaged record"), std::string::npos)
      << broken.error().message();
}

TEST(SchedJournal, HistoryIsBoundedAndTheFileCompacted) {
  test::TempDir dir;
  auto path = dir / "sched";
  SchedState s;
  auto j = SchedJournal::open(path, 50, s);
  ASSERT_TRUE(j);
  for (std::uint64_t id = 1; id <= 300; ++id) {
    ASSERT_TRUE(j->queued(queued(id), s));
    ASSERT_TRUE(j->started(id, id, s));
    ASSERT_TRUE(j->ended(ended(id, id % 2 ? "failed" : "done"), s));
  }
  EXPECT_EQ(s.history.size(), 50u);
  EXPECT_EQ(s.history.front().job, 251u);
  EXPECT_LE(s.requeueable.size(), 50u);
  EXPECT_LT(j->records(), 3u * 50 * 2 + 64 + 3) << "the file was not compacted";
  SchedState again;
  ASSERT_TRUE(SchedJournal::open(path, 50, again));
  EXPECT_EQ(again.history.size(), 50u);
  EXPECT_EQ(again.history.back().job, 300u);
  EXPECT_TRUE(again.requeueable.contains(299));
}

TEST(SchedJournal, RefusesASymlinkInItsPlace) {
  test::TempDir dir;
  auto target = dir / "elsewhere";
  std::ofstream(target) << "";
  auto path = dir / "sched";
  ASSERT_EQ(::symlink(target.c_str(), path.c_str()), 0);
  SchedState s;
  auto j = SchedJournal::open(path, 10, s);
  ASSERT_FALSE(j) << "followed a symlink planted where the journal goes";
}
