// The node agent on the real kernel (root): two child processes stand for the ranks of
// two jobs; their progress counters show who runs. Under CI=true nothing skips.
#include "gang/dynamosd/node_agent.hpp"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "core/extension_host.hpp"
#include "kernelside/fs.hpp"
#include "tests/kernelside/support.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace dynamos::kernelside;
using namespace dynamos::kernelside::test;
using namespace std::chrono_literals;

namespace {

// A rank: counts as fast as it can until killed.
void spin(Shared* s) {
  for (;;)
    s->counter.fetch_add(1, std::memory_order_relaxed);
}

// Whether the counter moves within a short window.
bool progresses(SharedMemory& m) {
  auto before = m->counter.load();
  return wait_until([&] { return m->counter.load() > before + 1000; }, 1000ms);
}
// Whether it stays still over a window (checked after a frozen state was reached).
bool stands_still(SharedMemory& m) {
  auto before = m->counter.load();
  std::this_thread::sleep_for(100ms);
  return m->counter.load() == before;
}

// The test's whole tree (parent of the node group): removed, processes killed, on
// destruction, even when the test fails. Declared after the children, so that it runs
// first and thaws them before they are killed and reaped.
class TreeGuard {
 public:
  TreeGuard(Layout layout, std::string parent)
      : layout_(std::move(layout)), parent_(std::move(parent)) {}
  ~TreeGuard() {
    if (!Group::exists(layout_, parent_)) return;
    auto g = Group::open(layout_, parent_);
    if (g) (void)g->remove_tree(Evict::kill);
  }

 private:
  Layout layout_;
  std::string parent_;
};

// Two jobs of one spinning rank each: job 1 running, job 2 frozen (Fixture::start). The
// tree guard is declared after the children, so that it thaws and removes the groups
// before the children are killed and reaped.
struct TwoJobs {
  TwoJobs(const Layout& layout, const std::string& parent) : guard(layout, parent) {}
  SharedMemory a, b;
  Child ca{[this] { spin(a.get()); }}, cb{[this] { spin(b.get()); }};
  TreeGuard guard;
  std::unique_ptr<NodeAgent> agent;
};

struct Fixture : ::testing::Test {
  void SetUp() override {
    KERNELSIDE_REQUIRE_ROOT();
    auto l = Layout::detect();
    ASSERT_TRUE(l.has_value()) << l.error().message();
    layout = *l;
    sweep_stale_groups(layout);
    parent = unique_group_name();
  }
  NodeAgentConfig config() {
    NodeAgentConfig c;
    c.node = "n0";
    c.cgroup_parent = parent;
    c.layout = layout;
    c.memory_max = 512ull << 20;
    c.log = [](const std::string&) {};
    return c;
  }
  proto::JobAssign job(JobId id, bool running, std::string paging = "demand") {
    proto::JobAssign a;
    a.job = id;
    a.name = "job" + std::to_string(id);
    a.ranks_here = 1;
    a.paging = std::move(paging);
    a.running = running;
    return a;
  }
  static proto::SwitchOrder round(std::uint64_t n, JobId out, JobId in) {
    return proto::SwitchOrder{n, 0, {out}, {in}};
  }
  void start(TwoJobs& t) {
    t.agent = ASSERT_OK(NodeAgent::create(config()));
    ASSERT_OK_VOID(t.agent->assign(job(1, true)));
    ASSERT_OK_VOID(t.agent->assign(job(2, false)));
    ASSERT_OK_VOID(t.agent->attach(1, t.ca.pid()));
    ASSERT_OK_VOID(t.agent->attach(2, t.cb.pid()));
  }
  Layout layout;
  std::string parent;
};

using NodeAgentTest = Fixture;

TEST_F(NodeAgentTest, SwitchesFreezeTheOutgoingJobAndThawTheIncoming) {
  TwoJobs t(layout, parent);
  ASSERT_NO_FATAL_FAILURE(start(t));
  auto& agent = t.agent;
  // The node group has the node's limits; jobs live below it.
  EXPECT_EQ(ASSERT_OK(agent->node_group().memory_max()), std::optional<uint64_t>(512ull << 20));
  EXPECT_EQ(agent->jobs(), (std::vector<JobId>{1, 2}));

  EXPECT_TRUE(progresses(t.a)) << "job 1 (running) does not progress";
  EXPECT_TRUE(ASSERT_OK(agent->frozen(2))) << "job 2 (not running) is not frozen";
  EXPECT_TRUE(stands_still(t.b)) << "job 2 progresses while frozen";

  for (std::uint64_t n = 1; n <= 4; ++n) {
    JobId out = n % 2 ? 1 : 2, in = n % 2 ? 2 : 1;
    ASSERT_OK_VOID(agent->switch_now(round(n, out, in)));
    auto& run = in == 1 ? t.a : t.b;
    auto& stop = in == 1 ? t.b : t.a;
    EXPECT_TRUE(ASSERT_OK(agent->frozen(out))) << "round " << n;
    EXPECT_FALSE(ASSERT_OK(agent->frozen(in))) << "round " << n;
    EXPECT_TRUE(stands_still(stop)) << "round " << n << ": job " << out << " still runs";
    EXPECT_TRUE(progresses(run)) << "round " << n << ": job " << in << " does not resume";
    auto rec = agent->last_switch();
    ASSERT_TRUE(rec.has_value());
    EXPECT_EQ(rec->round, n);
    EXPECT_TRUE(rec->error.empty()) << rec->error;
    EXPECT_GT(rec->total.count(), 0);
  }
  // A job unknown on this node is ignored (its ranks are elsewhere).
  ASSERT_OK_VOID(agent->switch_now(round(5, 77, 1)));
  EXPECT_FALSE(ASSERT_OK(agent->frozen(1)));

  ASSERT_OK_VOID(agent->remove_all());
  EXPECT_FALSE(Group::exists(layout, parent + "/n0")) << "node group left behind";
  EXPECT_FALSE(Group::exists(layout, parent)) << "parent group left behind";
}

// The running job's memory is shielded from the reclaim the node's limit triggers, the
// frozen job's is not, so that the kernel takes from the frozen job first (with a memory
// group a job it would scan both alike): v1 memory.swappiness 1 against the node's value,
// v2 memory.low max against 0.
TEST_F(NodeAgentTest, TheRunningJobsMemoryIsShieldedFromReclaimAndTheFrozenJobsIsNot) {
  TwoJobs t(layout, parent);
  ASSERT_NO_FATAL_FAILURE(start(t));
  auto& agent = t.agent;
  bool v2 = layout.serving(Controller::memory) == CgroupVersion::v2;
  auto setting = [&](const Result<Group>& g) -> std::string {
    if (!g) return "(no group: " + g.error().message() + ")";
    auto text = read_text(g->dir(Controller::memory) + (v2 ? "/memory.low" : "/memory.swappiness"));
    return text ? text->substr(0, text->find('\n')) : "(" + text.error().message() + ")";
  };
  const std::string node_value = v2 ? "0" : setting(Result<Group>(agent->node_group()));
  const std::string shielded = v2 ? "max" : "1";
  ASSERT_NE(node_value, shielded) << "the node's own setting would hide the shield";
  auto expect_running = [&](JobId running, JobId frozen, const std::string& when) {
    EXPECT_EQ(setting(agent->job_group(running)), shielded) << when;
    EXPECT_EQ(setting(agent->job_group(frozen)), node_value) << when;
  };
  expect_running(1, 2, "after job_assign");
  for (std::uint64_t n = 1; n <= 3; ++n) {
    JobId out = n % 2 ? 1 : 2, in = n % 2 ? 2 : 1;
    ASSERT_OK_VOID(agent->switch_now(round(n, out, in)));
    expect_running(in, out, "round " + std::to_string(n));
  }
  // Every job thawed (the coordinator is gone): none is preferred.
  ASSERT_OK_VOID(agent->thaw_all());
  EXPECT_EQ(setting(agent->job_group(1)), node_value);
  EXPECT_EQ(setting(agent->job_group(2)), node_value);
  ASSERT_OK_VOID(agent->remove_all());
}

// dynamosd's io thread runs switches at SCHED_FIFO. After thawing a demand-paged
// incoming job the agent finishes the switch at the normal policy (so the incoming ranks
// get the CPU first), and must hand the thread back at its real-time priority for the
// next deadline.
TEST_F(NodeAgentTest, ASwitchGivesTheAgentThreadBackItsRealTimePriority) {
  TwoJobs t(layout, parent);
  ASSERT_NO_FATAL_FAILURE(start(t));
  auto& agent = t.agent;

  int set_error = 0, policy = -1, priority = -1;
  Result<void> switched;
  std::thread io([&] {
    sched_param fifo{};
    fifo.sched_priority = 10;
    set_error = ::pthread_setschedparam(::pthread_self(), SCHED_FIFO, &fifo);
    if (set_error != 0) return;
    switched = agent->switch_now(round(1, 1, 2));
    sched_param after{};
    if (::pthread_getschedparam(::pthread_self(), &policy, &after) == 0)
      priority = after.sched_priority;
  });
  io.join();
  ASSERT_EQ(set_error, 0) << "SCHED_FIFO for the test's io thread: " << std::strerror(set_error);
  ASSERT_TRUE(switched) << switched.error().message();
  EXPECT_EQ(policy, SCHED_FIFO) << "the switch left the agent's thread at policy " << policy;
  EXPECT_EQ(priority, 10);
  EXPECT_TRUE(progresses(t.b)) << "the incoming job does not run";
  EXPECT_TRUE(stands_still(t.a)) << "the outgoing job still runs";
  ASSERT_OK_VOID(agent->remove_all());
}

// A node operation on a job's ranks (a patch: ptrace cannot stop a frozen task) holds
// the job: switches meanwhile leave its freezer alone, and the hold's end applies what
// the last switch wanted. Other jobs switch as usual. Node operations run on the
// agent's worker, so switches go on while one runs.
TEST_F(NodeAgentTest, AHeldJobIsNotFrozenUntilTheOperationOnItEnds) {
  TwoJobs t(layout, parent);
  ASSERT_NO_FATAL_FAILURE(start(t));
  auto& agent = t.agent;
  {
    auto hold = ASSERT_OK(agent->hold_job(1));
    ASSERT_OK_VOID(agent->switch_now(round(1, 1, 2)));
    EXPECT_FALSE(ASSERT_OK(agent->frozen(1))) << "t.a held job was frozen by t.a switch";
    EXPECT_FALSE(ASSERT_OK(agent->frozen(2))) << "the other job did not switch in";
    EXPECT_TRUE(progresses(t.a));
  }
  EXPECT_TRUE(wait_until([&] { return agent->frozen(1).value_or(false); }, 2000ms))
      << "the hold's end did not freeze the job the switch wanted frozen";
  EXPECT_FALSE(agent->hold_job(99)) << "t.a hold on t.a job the node does not have";
  ASSERT_OK_VOID(agent->remove_all());
}

// The same switches with the freezer served by cgroup v2 (cgroup.freeze), as on hosts
// without v1 hierarchies; memory and cpuset stay where this host serves them.
TEST_F(NodeAgentTest, SwitchesWithTheV2Freezer) {
  if (layout.v2_root().empty()) {
    if (under_ci()) FAIL() << "no cgroup v2 mount on this host (CI=true)";
    GTEST_SKIP() << "no cgroup v2 mount";
  }
  layout = layout.prefer_v2({Controller::freezer});
  TwoJobs t(layout, parent);
  ASSERT_NO_FATAL_FAILURE(start(t));
  auto& agent = t.agent;
  EXPECT_TRUE(ASSERT_OK(agent->frozen(2)));
  EXPECT_TRUE(stands_still(t.b));
  ASSERT_OK_VOID(agent->switch_now(round(1, 1, 2)));
  EXPECT_TRUE(stands_still(t.a));
  EXPECT_TRUE(progresses(t.b));
  agent->coordinator_lost();
  EXPECT_TRUE(progresses(t.a));
  ASSERT_OK_VOID(agent->remove_all());
  EXPECT_FALSE(Group::exists(layout, parent));
}

TEST_F(NodeAgentTest, RunsThePagingExtensionAtEverySwitch) {
  auto host = ASSERT_OK(core::ExtensionHost::create());
  auto info = ASSERT_OK(host->load(DYNAMOS_LIB_DIR "/libdynamos_ext_paging.so"));
  SharedMemory a, b;
  Child ca([&] { spin(a.get()); }), cb([&] { spin(b.get()); });
  TreeGuard guard(layout, parent);
  auto cfg = config();
  cfg.extensions = host.get();
  cfg.paging_extension = info.name;
  auto agent = ASSERT_OK(NodeAgent::create(cfg));
  ASSERT_OK_VOID(agent->assign(job(1, true, "demand")));
  ASSERT_OK_VOID(agent->assign(job(2, false, "selective")));
  ASSERT_OK_VOID(agent->attach(1, ca.pid()));
  ASSERT_OK_VOID(agent->attach(2, cb.pid()));

  ASSERT_OK_VOID(agent->switch_now(round(1, 1, 2)));
  auto rec = agent->last_switch();
  ASSERT_TRUE(rec.has_value());
  EXPECT_TRUE(rec->error.empty()) << rec->error;
  // switch_in's report names both jobs and the incoming job's policy.
  EXPECT_NE(rec->paging_report.find("\"in_job\":2"), std::string::npos) << rec->paging_report;
  EXPECT_NE(rec->paging_report.find("\"out_job\":1"), std::string::npos) << rec->paging_report;
  EXPECT_NE(rec->paging_report.find("selective"), std::string::npos) << rec->paging_report;
  EXPECT_TRUE(progresses(b));
  EXPECT_TRUE(stands_still(a));

  // Ticks go to the running job only.
  auto ticks = ASSERT_OK(agent->tick());
  EXPECT_NE(ticks.find("\"job\":2"), std::string::npos) << ticks;
  EXPECT_EQ(ticks.find("\"job\":1"), std::string::npos) << ticks;

  ASSERT_OK_VOID(agent->switch_now(round(2, 2, 1)));
  rec = agent->last_switch();
  EXPECT_NE(rec->paging_report.find("\"in_job\":1"), std::string::npos) << rec->paging_report;
  EXPECT_TRUE(progresses(a));
  ASSERT_OK_VOID(agent->remove_all());
}

TEST_F(NodeAgentTest, ARestartedAgentAdoptsItsJobsFromTheirCgroups) {
  SharedMemory a, b;
  Child ca([&] { spin(a.get()); }), cb([&] { spin(b.get()); });
  TreeGuard guard(layout, parent);
  {
    auto agent = ASSERT_OK(NodeAgent::create(config()));
    ASSERT_OK_VOID(agent->assign(job(3, true)));
    ASSERT_OK_VOID(agent->assign(job(4, false)));
    ASSERT_OK_VOID(agent->attach(3, ca.pid()));
    ASSERT_OK_VOID(agent->attach(4, cb.pid()));
  }  // the agent goes away (as with kill -9): its groups and their states stay
  EXPECT_TRUE(stands_still(b)) << "job 4 was thawed when the agent went away";
  EXPECT_TRUE(progresses(a));

  auto agent = ASSERT_OK(NodeAgent::create(config()));
  EXPECT_EQ(agent->jobs(), (std::vector<JobId>{3, 4})) << "jobs not adopted";
  EXPECT_TRUE(ASSERT_OK(agent->frozen(4)));
  EXPECT_EQ(ASSERT_OK(ASSERT_OK(agent->job_group(3)).pids()), std::vector<pid_t>{ca.pid()});
  // The adopted jobs switch like any other.
  ASSERT_OK_VOID(agent->switch_now(round(9, 3, 4)));
  EXPECT_TRUE(stands_still(a));
  EXPECT_TRUE(progresses(b));
  // gangd's job_assign after the reconnect sets the running state.
  ASSERT_OK_VOID(agent->assign(job(3, true)));
  EXPECT_TRUE(progresses(a));
  ASSERT_OK_VOID(agent->remove_all());
  EXPECT_FALSE(Group::exists(layout, parent));
}

TEST_F(NodeAgentTest, CoordinatorLostThawsEveryJob) {
  SharedMemory a, b;
  Child ca([&] { spin(a.get()); }), cb([&] { spin(b.get()); });
  TreeGuard guard(layout, parent);
  auto agent = ASSERT_OK(NodeAgent::create(config()));
  ASSERT_OK_VOID(agent->assign(job(1, false)));
  ASSERT_OK_VOID(agent->assign(job(2, false)));
  ASSERT_OK_VOID(agent->attach(1, ca.pid()));
  ASSERT_OK_VOID(agent->attach(2, cb.pid()));
  EXPECT_TRUE(stands_still(a));
  EXPECT_TRUE(stands_still(b));
  agent->coordinator_lost();
  EXPECT_FALSE(ASSERT_OK(agent->frozen(1)));
  EXPECT_FALSE(ASSERT_OK(agent->frozen(2)));
  EXPECT_TRUE(progresses(a)) << "job 1 stays frozen after the coordinator was lost";
  EXPECT_TRUE(progresses(b)) << "job 2 stays frozen after the coordinator was lost";
  ASSERT_OK_VOID(agent->remove_all());
}

TEST_F(NodeAgentTest, AReleasedJobIsRemovedWithItsProcesses) {
  SharedMemory a;
  Child ca([&] { spin(a.get()); });
  TreeGuard guard(layout, parent);
  auto agent = ASSERT_OK(NodeAgent::create(config()));
  ASSERT_OK_VOID(agent->assign(job(5, false)));
  ASSERT_OK_VOID(agent->attach(5, ca.pid()));
  agent->job_released({5, "finished"});
  EXPECT_TRUE(agent->jobs().empty());
  EXPECT_FALSE(Group::exists(layout, parent + "/n0/job5"));
  EXPECT_TRUE(WIFSIGNALED(ca.wait())) << "the released job's process still runs";
  ASSERT_OK_VOID(agent->remove_all());
}

TEST_F(NodeAgentTest, ANodeThatFailsToSetUpLeavesNothingBehind) {
  TreeGuard guard(layout, parent);
  auto cfg = config();
  cfg.cpus = "9999";
  auto agent = NodeAgent::create(cfg);
  ASSERT_FALSE(agent.has_value()) << "CPU 9999 accepted";
  EXPECT_NE(agent.error().message().find("cpus"), std::string::npos) << agent.error().message();
  EXPECT_FALSE(Group::exists(layout, parent)) << "a failed setup left its cgroups";
  cfg.node = "../escape";
  agent = NodeAgent::create(cfg);
  ASSERT_FALSE(agent.has_value());
  EXPECT_EQ(agent.error().code, Errc::invalid_argument);
}

TEST(NodeAgentNames, JobGroupNamesRoundTrip) {
  EXPECT_EQ(NodeAgent::job_group_name(42), "job42");
  EXPECT_EQ(NodeAgent::parse_job_group_name("job42"), std::optional<JobId>(42));
  EXPECT_FALSE(NodeAgent::parse_job_group_name("guests"));
  EXPECT_FALSE(NodeAgent::parse_job_group_name("job"));
  EXPECT_FALSE(NodeAgent::parse_job_group_name("job4x"));
}

}  // namespace
