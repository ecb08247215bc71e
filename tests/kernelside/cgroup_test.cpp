// cgroups on the real kernel: a test-unique tree, freeze and thaw, the idle class and
// the memory limit. Needs root; under CI=true it fails rather than skips without it.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <iostream>
#include <thread>

#include "kernelside/fs.hpp"
#include "kernelside/procfs.hpp"
#include "kernelside/sched.hpp"
#include "support.hpp"

namespace ks = dynamos::kernelside;
using namespace ks::test;
using namespace std::chrono_literals;

namespace {

ks::Layout layout_or_die() {
  auto l = ks::Layout::detect();
  if (!l) ADD_FAILURE() << "detect cgroup layout: " << l.error().message();
  return l ? *l : ks::Layout{};
}

void busy_forever(Shared* s) {
  for (;;)
    s->counter.fetch_add(1, std::memory_order_relaxed);
}

// The last CPU: both competitors of the idle tests share it.
std::string last_cpu() {
  return std::to_string(sysconf(_SC_NPROCESSORS_ONLN) - 1);
}

// CPU time in nanoseconds (schedstat; /proc/PID/stat counts 10 ms ticks).
std::chrono::nanoseconds cpu_time(pid_t pid) {
  auto s = ks::read_schedstat(pid);
  if (!s) ADD_FAILURE() << s.error().message();
  return s ? s->on_cpu : 0ns;
}

// Measures two competitors' CPU time until together they have run `enough` (others'
// builds share the CPUs here, so a fixed window may give them little), at most `limit`.
// The normal one's share of the total.
double normal_share(const std::function<std::chrono::nanoseconds()>& normal,
                    const std::function<std::chrono::nanoseconds()>& idle, const char* label) {
  const std::chrono::milliseconds enough = 400ms, limit = 4s;
  auto n0 = normal(), i0 = idle();
  auto start = std::chrono::steady_clock::now();
  std::chrono::nanoseconds n{0}, i{0};
  do {
    std::this_thread::sleep_for(100ms);
    n = normal() - n0;
    i = idle() - i0;
  } while (n + i < enough && std::chrono::steady_clock::now() - start < limit);
  double share =
      static_cast<double>(n.count()) / static_cast<double>(std::max<int64_t>(1, (n + i).count()));
  std::printf("%s: normal %.0f ms, idle %.1f ms over %.1f s, normal's share %.4f\n", label,
              n.count() / 1e6, i.count() / 1e6,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
              share);
  EXPECT_GE(n + i, 50ms) << "the two competitors hardly ran: the CPU is saturated by others";
  return share;
}

class StaleSweep : public ::testing::Environment {
 public:
  void SetUp() override {
    if (::geteuid() != 0) return;
    if (auto l = ks::Layout::detect()) sweep_stale_groups(*l);
    sweep_stale_swap();
  }
};
const auto* const kSweep = ::testing::AddGlobalTestEnvironment(new StaleSweep);

}  // namespace

TEST(KernelsideCgroup, TreeWithUniqueNameIsCreatedAndAlwaysRemoved) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = layout_or_die();
  std::printf("layout: %s\n", layout.describe().c_str());
  std::string name = unique_group_name();
  ks::Controllers wanted = layout.available();
  {
    // Declared before the group, so the group's cleanup meets a live process (and kills it).
    Child child([&] { ::pause(); });
    ScopedGroup root(ASSERT_OK(ks::Group::create(layout, name, wanted)));
    auto job = ASSERT_OK(root->create_child("job1"));
    ASSERT_OK(job.create_child("rank0"));
    EXPECT_TRUE(ks::Group::exists(layout, name + "/job1/rank0", wanted));
    for (unsigned i = 0; i < ks::kControllerCount; ++i) {
      auto c = static_cast<ks::Controller>(i);
      if (wanted.has(c)) {
        EXPECT_TRUE(ks::path_exists(job.dir(c)))
            << "missing in the " << ks::controller_name(c) << " hierarchy";
      }
    }
    EXPECT_EQ(ASSERT_OK(root->children()), std::vector<std::string>{"job1"});

    // A process in the tree: attach, list, find its cgroup from /proc.
    ASSERT_OK_VOID(job.attach(child.pid()));
    EXPECT_EQ(ASSERT_OK(job.pids()), std::vector<pid_t>{child.pid()});
    EXPECT_EQ(ASSERT_OK(root->pids_recursive()), std::vector<pid_t>{child.pid()});
    EXPECT_EQ(ASSERT_OK(ks::process_cgroup(layout, child.pid(), ks::Controller::memory)),
              "/" + name + "/job1");

    // A node agent restarted: it adopts the existing group by its path.
    auto adopted = ASSERT_OK(ks::Group::open(layout, name + "/job1", wanted));
    EXPECT_EQ(ASSERT_OK(adopted.pids()), std::vector<pid_t>{child.pid()});

    // Removal refuses while processes remain, and names them.
    auto refused = job.remove(ks::Evict::none);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, dynamos::Errc::busy) << refused.error().message();
    EXPECT_NE(refused.error().what.find(std::to_string(child.pid())), std::string::npos)
        << refused.error().what;

    // Eviction to the parent keeps the process running.
    ASSERT_OK_VOID(ASSERT_OK(root->create_child("job1/rank0")).remove());
    ASSERT_OK_VOID(job.remove(ks::Evict::to_parent));
    EXPECT_EQ(ASSERT_OK(root->pids()), std::vector<pid_t>{child.pid()});
    EXPECT_EQ(::kill(child.pid(), 0), 0) << "evicted process must still run";
    ASSERT_OK(root->create_child("job2"));

    // Settings land in the files of the version that serves them.
    if (wanted.has(ks::Controller::cpu)) {
      ASSERT_OK_VOID(root->set_cpu_weight(200));
      ASSERT_OK_VOID(root->set_cpu_quota(50ms, 100ms));
      bool v1 = layout.serving(ks::Controller::cpu) == ks::CgroupVersion::v1;
      std::string d = root->dir(ks::Controller::cpu);
      if (v1) {
        EXPECT_EQ(ASSERT_OK(ks::read_u64(d + "/cpu.shares")), 2048u);
        EXPECT_EQ(ASSERT_OK(ks::read_u64(d + "/cpu.cfs_quota_us")), 50000u);
        EXPECT_EQ(ASSERT_OK(ks::read_u64(d + "/cpu.cfs_period_us")), 100000u);
      } else {
        EXPECT_EQ(ASSERT_OK(ks::read_u64(d + "/cpu.weight")), 200u);
        EXPECT_EQ(ASSERT_OK(ks::read_text(d + "/cpu.max")), "50000 100000\n");
      }
      ASSERT_OK_VOID(root->set_cpu_quota(std::nullopt));
      EXPECT_EQ(root->set_cpu_weight(0).error().code, dynamos::Errc::invalid_argument);
    }
    if (wanted.has(ks::Controller::memory)) {
      ASSERT_OK_VOID(root->set_memory_max(256 << 20));
      EXPECT_EQ(ASSERT_OK(root->memory_max()), std::optional<uint64_t>(256 << 20));
      ASSERT_OK_VOID(root->set_memory_max(std::nullopt));
      EXPECT_EQ(ASSERT_OK(root->memory_max()), std::nullopt);
    }
    // The scoped group goes out of scope here with a child group and a process in it.
  }
  EXPECT_FALSE(ks::Group::exists(layout, name, ks::Controllers{ks::Controller::memory}))
      << "test cgroup " << name << " left behind";
  for (unsigned i = 0; i < ks::kControllerCount; ++i) {
    std::string root = layout.root_of(static_cast<ks::Controller>(i));
    if (!root.empty()) {
      EXPECT_FALSE(ks::path_exists(root + "/" + name)) << root << "/" << name << " left behind";
    }
  }
  // Bad paths are refused before anything is created.
  EXPECT_EQ(ks::Group::create(layout, "../etc", wanted).error().code,
            dynamos::Errc::invalid_argument);
  EXPECT_EQ(ks::Group::create(layout, "/abs", wanted).error().code,
            dynamos::Errc::invalid_argument);
}

// Freeze and thaw through every freezer the host has (v1 freezer.state and v2
// cgroup.freeze on this hybrid machine): a child's progress counter stops and resumes.
TEST(KernelsideCgroup, FreezeStopsAndThawResumesAChild) {
  KERNELSIDE_REQUIRE_ROOT();
  auto detected = layout_or_die();
  std::vector<std::pair<std::string, ks::Layout>> layouts;
  if (detected.v1_root(ks::Controller::freezer)) layouts.push_back({"v1 freezer.state", detected});
  if (detected.v2_has(ks::Controller::freezer))
    layouts.push_back({"v2 cgroup.freeze", detected.prefer_v2({ks::Controller::freezer})});
  ASSERT_FALSE(layouts.empty()) << "no freezer on this host: " << detected.describe();
  for (auto& [label, layout] : layouts) {
    SCOPED_TRACE(label);
    ScopedGroup group(
        ASSERT_OK(ks::Group::create(layout, unique_group_name(), {ks::Controller::freezer})));
    SharedMemory shm;
    Child child([&] { busy_forever(shm.get()); });
    ASSERT_OK_VOID(group->attach(child.pid()));
    ASSERT_TRUE(wait_until([&] { return shm->counter.load() > 1000; }, 2s)) << "child never ran";

    auto t0 = std::chrono::steady_clock::now();
    ASSERT_OK_VOID(group->freeze());
    auto freeze_time = std::chrono::steady_clock::now() - t0;
    EXPECT_TRUE(ASSERT_OK(group->frozen()));
    uint64_t at_freeze = shm->counter.load();
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(shm->counter.load(), at_freeze) << "counter moved while frozen";

    ASSERT_OK_VOID(group->thaw());
    EXPECT_FALSE(ASSERT_OK(group->frozen()));
    EXPECT_TRUE(wait_until([&] { return shm->counter.load() > at_freeze + 1000; }, 2s))
        << "counter did not resume after thaw";
    std::printf("%s: freeze took %.3f ms\n", label.c_str(),
                std::chrono::duration<double, std::milli>(freeze_time).count());
  }
}

// Two busy processes on one CPU, one in a cpu.idle group: the other gets >= 95% of
// what the two use. The same with SCHED_IDLE set on every thread instead of a group.
TEST(KernelsideCgroup, IdleClassLeavesTheCpuToTheOther) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = layout_or_die();
  const std::string cpu = last_cpu();

  {
    SCOPED_TRACE("cpu.idle cgroup");
    ScopedGroup parent(ASSERT_OK(
        ks::Group::create(layout, unique_group_name(),
                          {ks::Controller::cpu, ks::Controller::cpuacct, ks::Controller::cpuset})));
    auto normal = ASSERT_OK(parent->create_child("normal"));
    auto idle = ASSERT_OK(parent->create_child("idle"));
    ASSERT_OK_VOID(idle.set_cpu_idle(true));
    ASSERT_OK_VOID(normal.set_cpus(cpu));
    ASSERT_OK_VOID(idle.set_cpus(cpu));
    EXPECT_EQ(ASSERT_OK(idle.cpus()), cpu);
    SharedMemory a, b;
    // The idle one is declared first so that it is killed last: while the normal one
    // still runs, a starved idle task takes seconds to even get to exit.
    Child busy_idle([&] { busy_forever(b.get()); });
    Child busy_normal([&] { busy_forever(a.get()); });
    ASSERT_OK_VOID(normal.attach(busy_normal.pid()));
    ASSERT_OK_VOID(idle.attach(busy_idle.pid()));
    std::this_thread::sleep_for(100ms);
    auto usage = [](ks::Group& g) {
      auto u = g.cpu_usage();
      if (!u) ADD_FAILURE() << u.error().message();
      return u ? *u : 0ns;
    };
    EXPECT_GE(
        normal_share([&] { return usage(normal); }, [&] { return usage(idle); }, "cpu.idle group"),
        0.95);
  }
  {
    SCOPED_TRACE("SCHED_IDLE threads");
    SharedMemory a, b;
    // The idle one is declared first so that it is killed last: while the normal one
    // still runs, a starved idle task takes seconds to even get to exit.
    Child busy_idle([&] { busy_forever(b.get()); });
    Child busy_normal([&] { busy_forever(a.get()); });
    ASSERT_OK_VOID(ks::set_thread_affinity(busy_normal.pid(), cpu));
    ASSERT_OK_VOID(ks::set_thread_affinity(busy_idle.pid(), cpu));
    auto report = ASSERT_OK(ks::set_process_policy(busy_idle.pid(), ks::Policy::idle));
    EXPECT_EQ(report.threads_set, 1u);
    EXPECT_EQ(ASSERT_OK(ks::thread_sched(busy_idle.pid())).policy, ks::Policy::idle);
    std::this_thread::sleep_for(100ms);
    EXPECT_GE(normal_share([&] { return cpu_time(busy_normal.pid()); },
                           [&] { return cpu_time(busy_idle.pid()); }, "SCHED_IDLE threads"),
              0.95);
  }
}

// A child that allocates past its group's memory limit (no swap allowed) is OOM-killed;
// one that stays below it is not.
TEST(KernelsideCgroup, MemoryLimitIsEnforced) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = layout_or_die();
  constexpr uint64_t kMiB = 1 << 20;
  ScopedGroup group(
      ASSERT_OK(ks::Group::create(layout, unique_group_name(), {ks::Controller::memory})));
  ASSERT_OK_VOID(group->set_memory_max(64 * kMiB));
  ASSERT_OK_VOID(group->set_swap_max(0));
  EXPECT_EQ(ASSERT_OK(group->memory_max()), std::optional<uint64_t>(64 * kMiB));
  if (layout.serving(ks::Controller::memory) == ks::CgroupVersion::v1) {
    auto high = group->set_memory_high(32 * kMiB);
    ASSERT_FALSE(high) << "v1 has no memory.high";
    EXPECT_EQ(high.error().code, dynamos::Errc::unsupported);
    EXPECT_NE(high.error().what.find("memory.high"), std::string::npos) << high.error().what;
  }

  auto allocate = [](SharedMemory& shm, size_t bytes) {
    while (shm->command.load() == 0) {
    }
    char* p = static_cast<char*>(
        ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) ::_exit(3);
    for (size_t i = 0; i < bytes; i += 4096)
      p[i] = static_cast<char>(i >> 12);
    shm->done.store(1);
    ::_exit(0);
  };

  {
    SharedMemory shm;
    Child small([&] { allocate(shm, 16 * kMiB); });
    ASSERT_OK_VOID(group->attach(small.pid()));
    shm->command.store(1);
    int status = small.wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "a child within the limit failed: status " << status;
  }
  auto before = ASSERT_OK(group->memory_events());
  {
    SharedMemory shm;
    Child big([&] { allocate(shm, 256 * kMiB); });
    ASSERT_OK_VOID(group->attach(big.pid()));
    shm->command.store(1);
    int status = big.wait();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "a child allocating 256 MiB under a 64 MiB limit was not OOM-killed: status " << status;
    EXPECT_EQ(shm->done.load(), 0) << "the child touched all 256 MiB";
  }
  auto after = ASSERT_OK(group->memory_events());
  EXPECT_GT(after.oom_kills, before.oom_kills) << "no OOM kill counted in the group";
  EXPECT_GE(after.peak, 60 * kMiB) << "the group never came near its limit";
  EXPECT_LE(after.peak, 64 * kMiB) << "the group's usage went past its limit";
  EXPECT_LE(ASSERT_OK(group->memory_current()), 64 * kMiB);
}

// Two sibling groups under one limit, as a node's jobs are: the first one's process holds
// 56 MiB and is stopped, the second one's touches 56 MiB six times; the parent holds
// 64 MiB. Shielded (set_reclaim_protected), the second keeps its memory and the kernel
// takes what it needs from the stopped sibling; unshielded, reclaim scans both alike and
// the running process loses pages it keeps touching (which is what a node with a memory
// group a job suffers without the shield).
TEST(KernelsideCgroup, AShieldedGroupKeepsItsMemoryWhileItsStoppedSiblingGivesItUp) {
  KERNELSIDE_REQUIRE_ROOT();
  SwapGuard swap;
  ASSERT_TRUE(swap.ok()) << "could not set up swap: " << swap.output();
  auto layout = layout_or_die();
  constexpr uint64_t kMiB = 1 << 20, kHeld = 56 * kMiB;
  auto hold = [](SharedMemory& shm) {
    char* p = static_cast<char*>(
        ::mmap(nullptr, kHeld, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) ::_exit(3);
    for (int sweep = 1;; ++sweep) {
      while (shm->command.load() < sweep)
        ::usleep(1000);
      for (size_t i = 0; i < kHeld; i += 4096)
        p[i] = static_cast<char>(i >> 12);
      shm->done.store(sweep);
    }
  };
  auto major_faults = [](pid_t pid) -> uint64_t {
    auto st = ks::read_stat(pid);
    return st ? st->majflt : 0;
  };
  // The running process's major faults over its last five sweeps, and what stays of it.
  auto run = [&](bool shield, uint64_t& faults, uint64_t& resident) {
    ScopedGroup parent(
        ASSERT_OK(ks::Group::create(layout, unique_group_name(), {ks::Controller::memory})));
    ASSERT_OK_VOID(parent->set_memory_max(64 * kMiB));
    auto frozen = ASSERT_OK(parent->create_child("frozen"));
    auto running = ASSERT_OK(parent->create_child("running"));
    SharedMemory a, b;
    Child ca([&] { hold(a); }), cb([&] { hold(b); });
    ASSERT_OK_VOID(frozen.attach(ca.pid()));
    ASSERT_OK_VOID(running.attach(cb.pid()));
    a->command.store(1);
    ASSERT_TRUE(wait_until([&] { return a->done.load() == 1; }, 10s));
    ::kill(ca.pid(), SIGSTOP);
    if (shield) ASSERT_OK_VOID(running.set_reclaim_protected(true));
    b->command.store(1);
    ASSERT_TRUE(wait_until([&] { return b->done.load() == 1; }, 20s));
    uint64_t before = major_faults(cb.pid());
    b->command.store(6);
    ASSERT_TRUE(wait_until([&] { return b->done.load() == 6; }, 30s));
    faults = major_faults(cb.pid()) - before;
    resident = ASSERT_OK(running.memory_current());
    ::kill(ca.pid(), SIGCONT);
  };
  uint64_t shielded_faults = 0, shielded_resident = 0, plain_faults = 0, plain_resident = 0;
  run(true, shielded_faults, shielded_resident);
  run(false, plain_faults, plain_resident);
  const std::string figures = "shielded: " + std::to_string(shielded_faults) + " major faults, " +
                              std::to_string(shielded_resident >> 20) +
                              " MiB resident; unshielded: " + std::to_string(plain_faults) + ", " +
                              std::to_string(plain_resident >> 20) + " MiB";
  std::cout << figures << "\n";
  SCOPED_TRACE(figures);
  EXPECT_GE(shielded_resident, kHeld - 4 * kMiB) << "the shielded process lost its memory";
  EXPECT_LT(shielded_faults, 256u) << "it faulted its own memory back in";
  EXPECT_GT(plain_faults, 4 * shielded_faults + 256) << "the shield made no difference";
}
