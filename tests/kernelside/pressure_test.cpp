// PSI and CPU usage readings change under load, on the real kernel: CPU pressure and a
// group's CPU usage with two busy processes sharing one CPU, memory pressure with a
// process thrashing against its group's limit (swap on zram).
#include <sys/mman.h>
#include <unistd.h>

#include <optional>
#include <thread>

#include "kernelside/pressure.hpp"
#include "kernelside/procfs.hpp"
#include "support.hpp"

namespace ks = dynamos::kernelside;
using namespace ks::test;
using namespace std::chrono_literals;

TEST(KernelsidePressure, CpuPsiAndCpuUsageRiseUnderLoad) {
  KERNELSIDE_REQUIRE_ROOT();
  ASSERT_TRUE(ks::psi_available()) << "PSI is not enabled on this kernel (boot with psi=1)";
  for (auto r : {ks::Resource::cpu, ks::Resource::memory, ks::Resource::io})
    ASSERT_OK(ks::read_pressure(r));
  auto layout = ASSERT_OK(ks::Layout::detect());
  ScopedGroup group(ASSERT_OK(ks::Group::create(
      layout, unique_group_name(), {ks::Controller::cpuacct, ks::Controller::cpuset})));
  const std::string cpu = std::to_string(sysconf(_SC_NPROCESSORS_ONLN) - 1);
  ASSERT_OK_VOID(group->set_cpus(cpu));

  // The same processes seen through v2 (cpu.stat, cpu.pressure), where v2 is mounted:
  // on hybrid hosts a process belongs to a v1 and a v2 group at once.
  std::optional<ScopedGroup> v2;
  if (layout.v2_has(ks::Controller::cpuacct))
    v2.emplace(ASSERT_OK(ks::Group::create(layout.prefer_v2({ks::Controller::cpuacct}),
                                           unique_group_name(), {ks::Controller::cpuacct})));

  // Idle group: no usage.
  auto u0 = ASSERT_OK(group->cpu_usage());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(ASSERT_OK(group->cpu_usage()), u0) << "an empty group used CPU";

  auto sampler = ASSERT_OK(ks::PressureSampler::open(ks::Resource::cpu));
  // Fires once tasks wait for a CPU 100 ms in any 2 s (root here lacks CAP_SYS_RESOURCE,
  // which shorter windows need).
  auto trigger = ASSERT_OK(
      ks::PressureTrigger::open(ks::Resource::cpu, ks::PressureTrigger::Kind::some, 100ms, 2s));
  EXPECT_EQ(
      ks::PressureTrigger::open(ks::Resource::cpu, ks::PressureTrigger::Kind::some, 50ms, 100ms)
          .error()
          .code,
      dynamos::Errc::invalid_argument);
  auto sys0 = ASSERT_OK(ks::read_system_cpu());
  auto p0 = ASSERT_OK(ks::read_pressure(ks::Resource::cpu));
  SharedMemory shm;
  Child a([&] {
    for (;;)
      shm->counter.fetch_add(1);
  });
  Child b([&] {
    for (;;)
      shm->counter.fetch_add(1);
  });
  ASSERT_OK_VOID(group->attach(a.pid()));
  ASSERT_OK_VOID(group->attach(b.pid()));
  ks::Pressure v2_p0;
  std::chrono::nanoseconds v2_u0{0};
  if (v2) {
    ASSERT_OK_VOID((*v2)->attach(a.pid()));
    ASSERT_OK_VOID((*v2)->attach(b.pid()));
    v2_p0 = ASSERT_OK((*v2)->pressure(ks::Resource::cpu));
    v2_u0 = ASSERT_OK((*v2)->cpu_usage());
  }
  // Sample every 100 ms, as the cycle-stealing extension does.
  double max_some = 0;
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(100ms);
    auto s = ASSERT_OK(sampler.sample());
    max_some = std::max(max_some, s.some);
  }
  auto used = ASSERT_OK(group->cpu_usage()) - u0;
  // The kernel evaluates a trigger at most once per window (2 s here) and its worker
  // can lag on a busy machine: give it two more windows while the load goes on.
  EXPECT_TRUE(ASSERT_OK(trigger.wait(5s))) << "the cpu PSI trigger did not fire";
  if (v2) {
    auto v2_used = ASSERT_OK((*v2)->cpu_usage()) - v2_u0;
    auto v2_p1 = ASSERT_OK((*v2)->pressure(ks::Resource::cpu));
    double v2_stalled_ms = static_cast<double>(v2_p1.some.total_us - v2_p0.some.total_us) / 1000;
    std::printf(
        "v2 view of the same processes: cpu.stat usage %.0f ms, group cpu.pressure some +%.0f ms\n",
        v2_used.count() / 1e6, v2_stalled_ms);
    EXPECT_GE(v2_used, used / 2) << "v2 cpu.stat disagrees with v1 cpuacct.usage";
    EXPECT_GE(v2_stalled_ms, 100)
        << "the group's cpu.pressure did not register its processes waiting";
  } else {
    auto no_v2 = group->pressure(ks::Resource::cpu);
    EXPECT_FALSE(no_v2) << "per-group pressure without cgroup v2";
  }
  auto sys = ASSERT_OK(ks::read_system_cpu());
  auto p1 = ASSERT_OK(ks::read_pressure(ks::Resource::cpu));
  double stalled_ms = static_cast<double>(p1.some.total_us - p0.some.total_us) / 1000;
  std::printf(
      "two busy processes on CPU %s for 1 s: group used %.0f ms, cpu PSI some +%.0f ms, "
      "max 100 ms stall share %.2f, system busy +%.0f ms\n",
      cpu.c_str(), used.count() / 1e6, stalled_ms, max_some,
      (sys.busy() - sys0.busy()).count() / 1e6);
  // Others' builds share the CPUs here, so only a floor: the group went from 0 to busy.
  EXPECT_GE(used, 100ms) << "the group's CPU usage did not count its busy processes";
  EXPECT_LE(used, 1300ms) << "two processes confined to one CPU cannot use more than it";
  EXPECT_GE(stalled_ms, 200) << "cpu PSI did not register two processes waiting for one CPU";
  EXPECT_GE(max_some, 0.2);
  EXPECT_GE(sys.busy() - sys0.busy(), used * 9 / 10)
      << "system CPU time grew less than the group's";
}

TEST(KernelsidePressure, MemoryPsiRisesWhenAGroupThrashes) {
  KERNELSIDE_REQUIRE_ROOT();
  SwapGuard swap;
  ASSERT_TRUE(swap.ok()) << "could not set up swap: " << swap.output();
  auto layout = ASSERT_OK(ks::Layout::detect());
  ScopedGroup group(
      ASSERT_OK(ks::Group::create(layout, unique_group_name(), {ks::Controller::memory})));
  constexpr size_t kMiB = 1 << 20;
  ASSERT_OK_VOID(group->set_memory_max(32 * kMiB));
  auto p0 = ASSERT_OK(ks::read_pressure(ks::Resource::memory));
  SharedMemory shm;
  Child thrash([&] {
    while (shm->command.load() == 0)
      ::usleep(100);
    size_t bytes = 96 * kMiB;
    auto* p = static_cast<uint64_t*>(
        ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (uint64_t round = 1;; ++round)
      for (size_t i = 0; i < bytes / 8; i += 512)
        p[i] = round * i;
  });
  ASSERT_OK_VOID(group->attach(thrash.pid()));
  shm->command.store(1);
  std::this_thread::sleep_for(1s);
  auto p1 = ASSERT_OK(ks::read_pressure(ks::Resource::memory));
  auto stat = ASSERT_OK(group->memory_stat());
  double stalled_ms = static_cast<double>(p1.some.total_us - p0.some.total_us) / 1000;
  std::printf(
      "96 MiB swept under a 32 MiB limit for 1 s: memory PSI some +%.0f ms, group pgmajfault "
      "%llu\n",
      stalled_ms, static_cast<unsigned long long>(stat["pgmajfault"]));
  EXPECT_GT(stalled_ms, 10) << "memory PSI did not register the thrashing group";
  EXPECT_LE(ASSERT_OK(group->memory_current()), 32 * kMiB);
}
