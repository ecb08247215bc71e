// The cycle-stealing extension, loaded through core's extension host and driven the
// way the node agent drives it: attach guests and host jobs, tick, call("report").
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "kernelside/fs.hpp"
#include "kernelside/procfs.hpp"
#include "kernelside/sched.hpp"
#include "support.hpp"

using namespace dynamos;
using namespace dynamos::cyclesteal::test;
using namespace std::chrono_literals;
using core::Subject;

namespace {

Subject guest(uint64_t id, std::vector<int32_t> pids, std::string policy = "") {
  return Subject{.kind = DYNAMOS_SUBJECT_GUEST,
                 .id = id,
                 .name = "guest" + std::to_string(id),
                 .cgroup = "",
                 .pids = std::move(pids),
                 .policy = std::move(policy),
                 .attrs = {}};
}
Subject host_job(uint64_t id, std::vector<int32_t> pids) {
  return Subject{.kind = DYNAMOS_SUBJECT_JOB,
                 .id = id,
                 .name = "host",
                 .cgroup = "",
                 .pids = std::move(pids),
                 .policy = "",
                 .attrs = {}};
}

std::string class_path() {
  return "dynamos-guests-" + std::to_string(::getpid());
}

bool class_exists(const kernelside::Layout& layout) {
  for (const char* c : {"cpu", "cpuacct", "memory", "freezer"}) {
    std::string root =
        layout.root_of(c == std::string("cpu")       ? kernelside::Controller::cpu
                       : c == std::string("memory")  ? kernelside::Controller::memory
                       : c == std::string("freezer") ? kernelside::Controller::freezer
                                                     : kernelside::Controller::cpuacct);
    if (!root.empty() && kernelside::path_exists(root + "/" + class_path())) return true;
  }
  return false;
}

// A guest's body: once shared->start_threads is set, spins in `threads` new threads
// and in itself.
std::function<void()> spin_in_threads_once_started(Shared* shared, int threads) {
  return [shared, threads] {
    while (!shared->start_threads.load())
      ::usleep(1000);
    std::vector<std::thread> spinners;
    for (int i = 0; i < threads; ++i)
      spinners.emplace_back([] { spin(); });
    spin();
  };
}

// Polls (up to about a second) until `pid` has `n` threads; *tids: its thread ids at
// the end.
void wait_for_threads(pid_t pid, size_t n, std::vector<pid_t>* tids) {
  tids->clear();
  for (int i = 0; i < 200 && tids->size() < n; ++i) {
    std::this_thread::sleep_for(5ms);
    *tids = ASSERT_OK(kernelside::list_threads(pid));
  }
}

// The test's process must sample host activity: tick until the extension sampled
// `n` times, `gap` apart.
void sample(Loaded& ext, int n, std::chrono::milliseconds gap) {
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_for(gap);
    auto r = ext->call("cyclesteal", "sample", "");
    ASSERT_TRUE(r.has_value()) << "call sample: " << r.error().message();
  }
}

class CycleSteal : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto l = kernelside::Layout::detect()) {
      layout_ = *l;
      sweep_classes(*layout_, false);
    }
  }
  std::optional<kernelside::Layout> layout_;
};

TEST_F(CycleSteal, ThreadsCreatedLaterLandInTheGuestClassAtIdlePriority) {
  KERNELSIDE_REQUIRE_ROOT();
  Shared* shared = make_shared_page();
  ASSERT_NE(shared, nullptr);
  Child g(spin_in_threads_once_started(shared, 3));
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  auto attached = ext->attach("cyclesteal", guest(1, {g.pid()}));
  ASSERT_TRUE(attached.has_value()) << attached.error().message();
  shared->start_threads = 1;
  std::vector<pid_t> tids;
  ASSERT_NO_FATAL_FAILURE(wait_for_threads(g.pid(), 4, &tids));
  ASSERT_EQ(tids.size(), 4u) << "the guest should have started 3 threads";
  std::string want = "/" + class_path() + "/g1";
  for (pid_t tid : tids) {
    EXPECT_EQ(thread_cgroup(g.pid(), tid, "memory"), want) << "thread " << tid;
    EXPECT_EQ(thread_cgroup(g.pid(), tid, "freezer"), want) << "thread " << tid;
  }
  std::string rep = ext.report();
  if (rep.find("\"cpu_priority\":\"cpu.idle\"") != std::string::npos) {
    std::string idle = ASSERT_OK(kernelside::read_text(
        layout_->root_of(kernelside::Controller::cpu) + "/" + class_path() + "/cpu.idle"));
    EXPECT_EQ(idle.substr(0, 1), "1") << "the guest class should be a cpu.idle group";
    for (pid_t tid : tids)
      EXPECT_EQ(thread_cgroup(g.pid(), tid, "cpu"), want) << "thread " << tid;
  } else {
    for (pid_t tid : tids) {
      auto s = ASSERT_OK(kernelside::thread_sched(tid));
      EXPECT_EQ(s.policy, kernelside::Policy::idle) << "thread " << tid << " should be SCHED_IDLE";
    }
  }
}

TEST_F(CycleSteal, SchedIdleFallbackCoversThreadsCreatedLaterAndIsUndoneOnRelease) {
  KERNELSIDE_REQUIRE_ROOT();
  Shared* shared = make_shared_page();
  ASSERT_NE(shared, nullptr);
  Child g(spin_in_threads_once_started(shared, 2));
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  Subject s = guest(11, {g.pid()});
  s.attrs = {{"cpu_priority", "SCHED_IDLE"}};
  ASSERT_OK(ext->attach("cyclesteal", s));
  EXPECT_NE(ext.report().find("\"cpu_priority\":\"SCHED_IDLE\""), std::string::npos);
  shared->start_threads = 1;
  std::vector<pid_t> tids;
  ASSERT_NO_FATAL_FAILURE(wait_for_threads(g.pid(), 3, &tids));
  ASSERT_EQ(tids.size(), 3u) << "the guest should have started 2 threads";
  for (pid_t tid : tids) {
    auto sched = ASSERT_OK(kernelside::thread_sched(tid));
    EXPECT_EQ(sched.policy, kernelside::Policy::idle)
        << "thread " << tid << " should be SCHED_IDLE";
  }
  ASSERT_OK(ext->detach("cyclesteal", guest(11, {})));
  for (pid_t tid : tids) {
    auto sched = ASSERT_OK(kernelside::thread_sched(tid));
    EXPECT_EQ(sched.policy, kernelside::Policy::other) << "released thread " << tid;
  }
}

TEST_F(CycleSteal, ForkedChildrenArePausedAndReleasedWithTheGuest) {
  KERNELSIDE_REQUIRE_ROOT();
  Child g([] {
    pid_t kid = ::fork();
    if (kid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      spin();
    }
    spin();
  });
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  ASSERT_OK(ext->set("cyclesteal.policy=pause"));
  ASSERT_OK(ext->set("cyclesteal.busy_threshold=0.01"));
  std::string origin = thread_cgroup(g.pid(), g.pid(), "memory");
  ASSERT_OK(ext->attach("cyclesteal", guest(7, {g.pid()})));
  // The child may be forked before or after attach: either way it is in the class.
  std::vector<pid_t> kids;
  for (int i = 0; i < 200; ++i) {
    auto text = kernelside::read_text("/proc/" + std::to_string(g.pid()) + "/task/" +
                                      std::to_string(g.pid()) + "/children");
    if (text && !text->empty()) {
      kids.push_back(std::atoi(text->c_str()));
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(kids.size(), 1u) << "the guest should have forked";
  pid_t kid = kids[0];
  EXPECT_EQ(thread_cgroup(kid, kid, "freezer"), "/" + class_path() + "/g7");
  // A busy host (this process's spinning job) makes pause freeze the guest, child too.
  Child host([] { spin(); });
  ASSERT_OK(ext->attach("cyclesteal", host_job(100, {host.pid()})));
  sample(ext, 3, 30ms);
  std::string rep = ext.report();
  EXPECT_TRUE(json_true(rep, "frozen")) << rep;
  auto stat = ASSERT_OK(kernelside::read_stat(kid));
  double before = cpu_seconds(kid);
  std::this_thread::sleep_for(100ms);
  EXPECT_NEAR(cpu_seconds(kid), before, 0.005)
      << "the forked child should be frozen (state " << stat.state << ")";
  // Detach lets both go, running, back where they came from.
  ASSERT_OK(ext->detach("cyclesteal", guest(7, {})));
  EXPECT_EQ(thread_cgroup(kid, kid, "memory"), origin) << "the child should be back where it was";
  EXPECT_EQ(thread_cgroup(g.pid(), g.pid(), "memory"), origin);
  before = cpu_seconds(kid);
  std::this_thread::sleep_for(150ms);
  EXPECT_GT(cpu_seconds(kid), before) << "the released child should run again";
  EXPECT_FALSE(class_exists(*layout_)) << "the last detach should remove the guest class";
}

TEST_F(CycleSteal, HostBurstStartingWhileTheGuestIsFrozenKeepsItFrozenThenItThaws) {
  KERNELSIDE_REQUIRE_ROOT();
  Shared* shared = make_shared_page();
  ASSERT_NE(shared, nullptr);
  Child host([shared] {
    volatile unsigned long x = 0;
    while (true) {
      if (shared->host_busy.load(std::memory_order_relaxed))
        x = x + 1;
      else
        ::usleep(500);
    }
  });
  Child g([] { spin(); });
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  ASSERT_OK(ext->set("cyclesteal.policy=pause"));
  ASSERT_OK(ext->set("cyclesteal.busy_threshold=0.25"));
  ASSERT_OK(ext->set("cyclesteal.idle_period=400ms"));
  ASSERT_OK(ext->attach("cyclesteal", host_job(1, {host.pid()})));
  ASSERT_OK(ext->attach("cyclesteal", guest(2, {g.pid()})));
  sample(ext, 2, 50ms);
  EXPECT_FALSE(json_true(ext.report(), "frozen")) << "an idle host should leave the guest running";

  shared->host_busy = 1;  // first burst
  sample(ext, 3, 50ms);
  std::string rep = ext.report();
  ASSERT_TRUE(json_true(rep, "frozen")) << "a busy host should freeze the guest: " << rep;
  shared->host_busy = 0;  // a short pause, shorter than idle_period
  sample(ext, 2, 50ms);
  shared->host_busy = 1;  // the next burst starts while the guest is frozen
  sample(ext, 3, 50ms);
  rep = ext.report();
  EXPECT_TRUE(json_true(rep, "frozen")) << rep;
  double before = cpu_seconds(g.pid());
  std::this_thread::sleep_for(100ms);
  EXPECT_NEAR(cpu_seconds(g.pid()), before, 0.005) << "the frozen guest ran";
  auto pos = rep.find("\"pause\":{\"count\":");
  ASSERT_NE(pos, std::string::npos) << rep;
  EXPECT_EQ(std::atoi(rep.c_str() + pos + 17), 1) << "one pause for the two bursts: " << rep;

  shared->host_busy = 0;  // idle for longer than idle_period: the guest thaws
  sample(ext, 12, 50ms);
  rep = ext.report();
  EXPECT_FALSE(json_true(rep, "frozen")) << "the guest should thaw after the idle period: " << rep;
  pos = rep.find("\"thaw\":{\"count\":");
  ASSERT_NE(pos, std::string::npos) << rep;
  EXPECT_EQ(std::atoi(rep.c_str() + pos + 16), 1) << rep;
  // At idle priority on a loaded machine it may barely run: check its freezer state.
  std::string state =
      ASSERT_OK(kernelside::read_text(layout_->root_of(kernelside::Controller::freezer) + "/" +
                                      class_path() + "/g2/freezer.state"));
  EXPECT_EQ(state.substr(0, 6), "THAWED") << "the guest's freezer state: " << state;
}

TEST_F(CycleSteal, EvictKillsTheGuestWhenTheHostTurnsBusy) {
  KERNELSIDE_REQUIRE_ROOT();
  Child host([] { spin(); });
  Child g([] { spin(); });
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  ASSERT_OK(ext->set("cyclesteal.policy=evict"));
  ASSERT_OK(ext->attach("cyclesteal", guest(3, {g.pid()})));
  ASSERT_OK(ext->attach("cyclesteal", host_job(1, {host.pid()})));
  sample(ext, 3, 40ms);
  std::string rep = ext.report();
  auto st = kernelside::read_stat(g.pid());
  EXPECT_TRUE(!st || st->state == 'Z') << "the guest should be killed";
  EXPECT_FALSE(json_true(rep, "admit")) << "no new guests while the host is busy: " << rep;
  EXPECT_NE(rep.find("\"evict\":{\"count\":1"), std::string::npos) << rep;
}

TEST_F(CycleSteal, OffLeavesTheGuestRunningUnboundedWithNoCgroupBehind) {
  KERNELSIDE_REQUIRE_ROOT();
  Child g([] { spin(); });
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  ASSERT_OK(ext->set("cyclesteal.node_memory=2G"));
  std::map<std::string, std::string> origin;
  for (const char* c : {"memory", "freezer", "cpu"})
    origin[c] = thread_cgroup(g.pid(), g.pid(), c);
  ASSERT_OK(ext->attach("cyclesteal", guest(5, {g.pid()})));
  sample(ext, 2, 30ms);
  std::string rep = ext.report();
  EXPECT_FALSE(std::isnan(json_number(rep, "guest_memory_bound")))
      << "linger should bound the guests: " << rep;
  EXPECT_TRUE(class_exists(*layout_));

  ASSERT_OK(ext->set("cyclesteal.policy=off"));
  EXPECT_FALSE(class_exists(*layout_)) << "off should remove the guest class";
  for (const char* c : {"memory", "freezer", "cpu"})
    EXPECT_EQ(thread_cgroup(g.pid(), g.pid(), c), origin[c]) << c << ": back where it was";
  auto limit = kernelside::read_u64(layout_->root_of(kernelside::Controller::memory) +
                                    origin["memory"] + "/memory.limit_in_bytes");
  if (limit) {
    EXPECT_GT(*limit, 1ull << 50) << "the guest's cgroup should be unbounded";
  }
  auto s = ASSERT_OK(kernelside::thread_sched(g.pid()));
  EXPECT_NE(s.policy, kernelside::Policy::idle);
  double before = cpu_seconds(g.pid());
  std::this_thread::sleep_for(150ms);
  EXPECT_GT(cpu_seconds(g.pid()), before + 0.01) << "the released guest should run";
  sample(ext, 1, 20ms);
  EXPECT_FALSE(class_exists(*layout_)) << "ticks under off should not bring the class back";

  // And back on: the guest is adopted again.
  ASSERT_OK(ext->set("cyclesteal.policy=linger"));
  EXPECT_EQ(thread_cgroup(g.pid(), g.pid(), "freezer"), "/" + class_path() + "/g5");
}

TEST_F(CycleSteal, AnUpgradeInPlaceTakesOverTheFrozenGuestAndItsClass) {
  KERNELSIDE_REQUIRE_ROOT();
  Child host([] { spin(); });
  Child g([] { spin(); });
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  ASSERT_OK(ext->set("cyclesteal.policy=pause"));
  ASSERT_OK(ext->set("cyclesteal.busy_threshold=0.01"));
  ASSERT_OK(ext->attach("cyclesteal", host_job(1, {host.pid()})));
  ASSERT_OK(ext->attach("cyclesteal", guest(6, {g.pid()})));
  sample(ext, 3, 30ms);
  ASSERT_TRUE(json_true(ext.report(), "frozen")) << ext.report();

  auto up = ext->upgrade("cyclesteal", CYCLESTEAL_EXTENSION);
  ASSERT_TRUE(up.has_value()) << "upgrade: " << up.error().message();
  std::string rep = ext.report();
  EXPECT_NE(rep.find("\"policy\":\"pause\""), std::string::npos) << rep;
  EXPECT_NE(rep.find("\"guest_class\":\"" + class_path() + "\""), std::string::npos) << rep;
  EXPECT_TRUE(json_true(rep, "managed")) << "the new build should manage the guest: " << rep;
  EXPECT_TRUE(json_true(rep, "frozen")) << "the guest should still be frozen: " << rep;
  EXPECT_NE(rep.find("\"host_source\":\"jobs\""), std::string::npos) << "host job carried: " << rep;

  // The new build owns it all: off thaws the guest and removes the class.
  ASSERT_OK(ext->set("cyclesteal.policy=off"));
  EXPECT_FALSE(class_exists(*layout_)) << "off after the upgrade should remove the class";
  double before = cpu_seconds(g.pid());
  std::this_thread::sleep_for(150ms);
  EXPECT_GT(cpu_seconds(g.pid()), before + 0.01) << "the released guest should run";
}

TEST_F(CycleSteal, BadTunableValuesAreRefusedWithAClearMessage) {
  KERNELSIDE_REQUIRE_ROOT();
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  struct Bad {
    const char* assignment;
    const char* says;
  } bad[] = {
      {"cyclesteal.policy=fast", "policy"},
      {"cyclesteal.interval=1ms", "interval"},
      {"cyclesteal.interval=100", "interval"},
      {"cyclesteal.busy_threshold=1.5", "busy_threshold"},
      {"cyclesteal.headroom=-1M", "headroom"},
      {"cyclesteal.idle_period=2h", "idle_period"},
      {"cyclesteal.node_memory=100M", "node_memory"},
  };
  for (auto& b : bad) {
    auto r = ext->set(b.assignment);
    ASSERT_FALSE(r.has_value()) << b.assignment << " was accepted";
    EXPECT_NE(r.error().message().find(b.says), std::string::npos)
        << b.assignment << ": " << r.error().message();
  }
  auto msg = ext->set("cyclesteal.node_memory=100M").error().message();
  EXPECT_NE(msg.find("headroom + guest_floor"), std::string::npos) << msg;
  EXPECT_EQ(ASSERT_OK(ext->get("cyclesteal", "policy")).text, "linger");
  EXPECT_EQ(ASSERT_OK(ext->get("cyclesteal", "interval")).text, "100ms");
  Child g([] { spin(); });
  auto r = ext->attach("cyclesteal", guest(9, {g.pid()}, "sometimes"));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("unknown guest policy 'sometimes'"), std::string::npos)
      << r.error().message();
}

TEST_F(CycleSteal, GuestMemoryBoundFollowsTheHostWorkingSet) {
  KERNELSIDE_REQUIRE_ROOT();
  Shared* shared = make_shared_page();
  ASSERT_NE(shared, nullptr);
  Child host([shared] {
    std::vector<char*> blocks;
    while (true) {
      while (static_cast<int>(blocks.size()) < shared->grow_mib.load()) {
        char* p = static_cast<char*>(::malloc(1 << 20));
        std::memset(p, 1, 1 << 20);
        blocks.push_back(p);
      }
      ::usleep(1000);
    }
  });
  Child g([] { spin(); });
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  ASSERT_OK(ext->set("cyclesteal.node_memory=1G"));
  ASSERT_OK(ext->set("cyclesteal.headroom=128M"));
  ASSERT_OK(ext->attach("cyclesteal", host_job(1, {host.pid()})));
  ASSERT_OK(ext->attach("cyclesteal", guest(4, {g.pid()})));
  // The bound against the host's RSS as read here (not the nominal size: allocator and
  // sanitizer overheads count too, as they do for the extension).
  auto check = [&](int mib, const char* what) {
    shared->grow_mib = mib;
    for (int i = 0; i < 200; ++i) {
      auto st = kernelside::read_stat(host.pid());
      if (st && st->rss_pages * 4096 >= static_cast<uint64_t>(mib) << 20) break;
      std::this_thread::sleep_for(5ms);
    }
    sample(ext, 2, 20ms);
    double bound = json_number(ext.report(), "guest_memory_bound") / (1 << 20);
    auto st = kernelside::read_stat(host.pid());
    ASSERT_TRUE(st.has_value());
    double host_mib = static_cast<double>(st->rss_pages * 4096) / (1 << 20);
    EXPECT_GE(host_mib, mib);
    EXPECT_NEAR(bound, 1024 - 128 - host_mib, 16) << what << " (host RSS " << host_mib << " MiB)";
  };
  check(100, "bound = node - headroom - host");
  check(400, "the bound should shrink as the host grows");
}

TEST_F(CycleSteal, HostJobsBesideTheGuestClassGetHostWeightWhileItHasGuests) {
  KERNELSIDE_REQUIRE_ROOT();
  // A host job group beside the class (both at the root, as jobs and guests are siblings
  // under a node agent's node group).
  std::string host_path = "dynamos-test-host-" + std::to_string(::getpid());
  auto group = ASSERT_OK(kernelside::Group::create(*layout_, host_path));
  struct Remove {
    kernelside::Group& g;
    ~Remove() { (void)g.remove(kernelside::Evict::kill); }  // kills the host in it too
  } remove{group};
  ASSERT_OK_VOID(group.set_cpu_weight(250));
  Child host([] { spin(); });
  ASSERT_OK_VOID(group.attach(host.pid()));
  Child g([] { spin(); });
  {
    Loaded ext;
    ASSERT_TRUE(ext.error.empty()) << ext.error;
    Subject job = host_job(1, {host.pid()});
    job.cgroup = host_path;
    ASSERT_OK_VOID(ext->attach("cyclesteal", job));
    EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 250u) << "no guests yet: the host keeps its weight";

    ASSERT_OK_VOID(ext->attach("cyclesteal", guest(3, {g.pid()})));
    EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 10000u) << ext.report();
    EXPECT_EQ(json_number(ext.report(), "host_jobs_weighted"), 1);

    ASSERT_OK_VOID(ext->set("cyclesteal.host_weight=0"));
    EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 250u) << "host_weight=0 gives the weight back";
    ASSERT_OK_VOID(ext->set("cyclesteal.host_weight=5000"));
    EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 5000u);

    ASSERT_OK_VOID(ext->set("cyclesteal.policy=off"));
    EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 250u) << "off gives the weight back";
    ASSERT_OK_VOID(ext->set("cyclesteal.policy=linger"));
    EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 5000u) << "linger adopts the guest again";

    // A new build takes over the raised weight and knows the original.
    auto up = ext->upgrade("cyclesteal", CYCLESTEAL_EXTENSION);
    ASSERT_TRUE(up.has_value()) << "upgrade: " << up.error().message();
    EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 5000u);
    ASSERT_OK_VOID(ext->detach("cyclesteal", host_job(1, {})));
    EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 250u) << "a detached job gets its weight back";
    ASSERT_OK_VOID(ext->attach("cyclesteal", job));
    EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 5000u);
    auto r = ext->set("cyclesteal.host_weight=10001");
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message().find("host_weight"), std::string::npos) << r.error().message();
  }  // unloaded: everything released
  EXPECT_EQ(ASSERT_OK(group.cpu_weight()), 250u) << "unloading gives the weight back";
}

}  // namespace

namespace {

// A body that pins itself to CPU 0 and spins there.
void spin_on_cpu0() {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  (void)::sched_setaffinity(0, sizeof one, &one);
  spin();
}

}  // namespace

// Issue 20: the host's run-queue wait while guests run (dynamosd exports it as
// dynamos_cyclesteal_host_seconds_total and _host_wait_share). Two host processes share
// CPU 0 while a guest is in the class (at idle priority it may get no CPU on a loaded
// machine; it still counts as running): each host process is runnable all the time but
// runs at most half of it, so at least about half of the host's demand is waiting.
TEST_F(CycleSteal, HostWaitWhileGuestsRunIsReportedAsAShareOfTheHostsDemand) {
  KERNELSIDE_REQUIRE_ROOT();
  Child h1([] { spin_on_cpu0(); });
  Child h2([] { spin_on_cpu0(); });
  Child g([] { spin(); });  // anywhere: it runs in every interval
  Loaded ext;
  ASSERT_TRUE(ext.error.empty()) << ext.error;
  ASSERT_OK(ext->set("cyclesteal.policy=linger"));
  ASSERT_OK(ext->attach("cyclesteal", host_job(1, {h1.pid(), h2.pid()})));
  ASSERT_OK(ext->attach("cyclesteal", guest(2, {g.pid()})));
  sample(ext, 8, 50ms);
  std::string rep = ext.report();
  const double run = json_number(rep, "host_cpu_s_while_guest");
  const double wait = json_number(rep, "host_wait_s_while_guest");
  const double share = json_number(rep, "host_wait_share_while_guest");
  ASSERT_GT(run, 0.0) << "the host ran beside the guest: " << rep;
  EXPECT_NEAR(share, wait / (run + wait), 1e-6) << rep;
  EXPECT_GT(share, 0.25) << "two host processes on one CPU wait about half the time: " << rep;
  EXPECT_LE(share, 1.0) << rep;
}
