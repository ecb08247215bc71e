// gangd's scheduler through its control API, without agents: jobs wait when they do not
// fit and start when room appears, held jobs wait for release, a drained node takes no
// job, ended jobs are in the history after a restart, the hostfile is reread.
#include <gtest/gtest.h>

#include <fstream>

#include "gang/gangd/coordinator.hpp"
#include "testkit/cluster_harness.hpp"
#include "tests/gang/test_util.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace std::chrono_literals;
using test::Cluster;

namespace {

CoordinatorConfig one_node(const std::string& journal = "") {
  CoordinatorConfig cfg;
  cfg.hosts.push_back({"n0", 2, 0});
  cfg.secret = Secret::from_bytes(std::vector<std::uint8_t>(32, 'k'));
  cfg.quantum = 1h;
  cfg.max_rows = 1;  // one time slot: a second job of 2 ranks must wait
  cfg.journal_path = journal;
  return cfg;
}

proto::JobSubmit job(const std::string& name, bool hold = false) {
  proto::JobSubmit s{name, 2, 0, "demand", {"/bin/" + name}, "/", ""};
  s.hold = hold;
  return s;
}

proto::Message ask(Cluster& c, const proto::Message& m, std::uint32_t uid = 0) {
  return c.call([&] { return c.coordinator->handle_control(uid, m); });
}

proto::JobInfo info(Cluster& c, JobId id, bool all = false) {
  auto list = std::get<proto::JobList>(ask(c, proto::ListJobs{all}));
  for (const auto& j : list.jobs)
    if (j.job == id) return j;
  return {};
}

std::string error_of(const proto::Message& m) {
  auto* e = std::get_if<proto::ErrorMsg>(&m);
  return e ? e->message : "";
}

}  // namespace

TEST(Scheduler, PendingJobsStartWhenRoomAppearsAndEveryStateSurvivesARestart) {
  test::TempDir dir;
  JobId a = 0, b = 0, h = 0;
  {
    Cluster c;
    ASSERT_TRUE(c.start_coordinator(one_node(dir / "journal")));
    a = c.call([&] { return c.coordinator->submit(1000, job("a")); }).value();
    b = c.call([&] { return c.coordinator->submit(1000, job("b")); }).value();
    h = c.call([&] { return c.coordinator->submit(1000, job("h", true)); }).value();
    EXPECT_EQ(info(c, a).state, "running");
    EXPECT_EQ(info(c, b).state, "pending");
    EXPECT_NE(info(c, b).reason.find("time slots are full"), std::string::npos)
        << info(c, b).reason;
    EXPECT_EQ(info(c, h).reason, "held");
    ASSERT_TRUE(c.call([&] { return c.coordinator->job_exited(1000, {a, 0, ""}); }));
    EXPECT_NE(info(c, b).state, "pending") << "b did not start when a ended";
    EXPECT_EQ(info(c, h).state, "pending");
  }  // gangd goes away without a word (its journals are all it has)
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(one_node(dir / "journal")));
  EXPECT_EQ(info(c, a, true).state, "done") << "the ended job is not in the history";
  EXPECT_NE(info(c, b).state, "pending");
  EXPECT_EQ(info(c, h).state, "pending");
  EXPECT_EQ(info(c, h).reason, "held");
  // Someone else's job: not theirs to release.
  EXPECT_NE(error_of(ask(c, proto::JobControl{h, "release"}, 1001)).find("another user"),
            std::string::npos);
  EXPECT_TRUE(std::holds_alternative<proto::Ok>(ask(c, proto::JobControl{h, "release"}, 1000)));
  EXPECT_NE(info(c, h).reason.find("no room"), std::string::npos) << info(c, h).reason;
  ASSERT_TRUE(c.call([&] { return c.coordinator->cancel(1000, b); }));
  EXPECT_NE(info(c, h).state, "pending") << "h did not start when b was cancelled";
  auto history = std::get<proto::JobList>(ask(c, proto::ListHistory{0})).jobs;
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].job, a);
  EXPECT_EQ(history[1].state, "cancelled");
  EXPECT_GT(history[1].started_ns, 0u);
  // Requeue: a cancelled job again, under a new id; a done one is refused.
  auto again = ask(c, proto::JobControl{b, "requeue"}, 1000);
  ASSERT_TRUE(std::holds_alternative<proto::JobSubmitted>(again)) << error_of(again);
  EXPECT_GT(std::get<proto::JobSubmitted>(again).job, h);
  EXPECT_NE(error_of(ask(c, proto::JobControl{a, "requeue"})).find("no failed job"),
            std::string::npos);
  EXPECT_NE(error_of(ask(c, proto::JobControl{a, "explode"})).find("unknown job action"),
            std::string::npos);
}

TEST(Scheduler, DrainedNodeTakesNoJobUntilResumedAndOnlyRootDrains) {
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(one_node()));
  EXPECT_NE(error_of(ask(c, proto::NodeAdmin{"n0", "drain", ""}, 1000)).find("only root"),
            std::string::npos);
  EXPECT_NE(error_of(ask(c, proto::NodeAdmin{"zz", "drain", ""})).find("zz"), std::string::npos);
  ASSERT_TRUE(std::holds_alternative<proto::Ok>(ask(c, proto::NodeAdmin{"n0", "drain", "fan"})));
  auto nodes = c.call([&] { return c.coordinator->list_nodes(0); }).nodes;
  EXPECT_EQ(nodes[0].state, "drained");
  EXPECT_EQ(nodes[0].reason.rfind("fan", 0), 0u) << nodes[0].reason;
  auto j = c.call([&] { return c.coordinator->submit(1000, job("x")); }).value();
  EXPECT_EQ(info(c, j).state, "pending");
  EXPECT_NE(info(c, j).reason.find("drained"), std::string::npos) << info(c, j).reason;
  ASSERT_TRUE(std::holds_alternative<proto::Ok>(ask(c, proto::NodeAdmin{"n0", "resume", ""})));
  EXPECT_NE(info(c, j).state, "pending") << "not placed when its node was resumed";
  // A job that can never fit is refused at once, with the reason.
  auto r = c.call([&] {
    return c.coordinator->submit(1000, proto::JobSubmit{"y", 3, 0, "demand", {"/bin/y"}, "/", ""});
  });
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("2 slots"), std::string::npos) << r.error().message();
}

TEST(Scheduler, ReconfigureAddsAndRemovesNodesFromTheHostfile) {
  test::TempDir dir;
  auto hostfile = dir / "hosts";
  std::ofstream(hostfile) << "n0 slots=2\n";
  auto cfg = one_node();
  cfg.hostfile_path = hostfile;
  Cluster c;
  ASSERT_TRUE(c.start_coordinator(cfg));
  std::ofstream(hostfile, std::ios::trunc) << "n1 slots=4\n";
  auto r = ask(c, proto::Reconfigure{});
  ASSERT_TRUE(std::holds_alternative<proto::Ok>(r)) << error_of(r);
  EXPECT_NE(std::get<proto::Ok>(r).message.find("added n1"), std::string::npos);
  auto nodes = c.call([&] { return c.coordinator->list_nodes(0); }).nodes;
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].state, "removed");
  EXPECT_EQ(nodes[1].slots, 4u);
  // New jobs go to the new node only.
  auto j = c.call([&] { return c.coordinator->submit(1000, job("x")); }).value();
  EXPECT_EQ(info(c, j).nodes, std::vector<std::string>{"n1"});
  EXPECT_NE(error_of(ask(c, proto::Reconfigure{}, 1000)).find("only root"), std::string::npos);
  std::ofstream(hostfile, std::ios::trunc) << "n1 slots=oops\n";
  EXPECT_NE(error_of(ask(c, proto::Reconfigure{})), "") << "a broken hostfile was accepted";
}
