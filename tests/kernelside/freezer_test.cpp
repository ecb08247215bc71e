// The freezer's wait (kernelside/freezer.cpp) on the real kernel. On cgroup v2 the wait
// sleeps in poll() on cgroup.events until the kernel reports the group frozen: it must
// wake up when that happens, whoever froze the group, and must not freeze anything
// itself. Needs root and a v2 hierarchy (the unified one of this hybrid machine); under
// CI=true it fails rather than skips without them.
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "support.hpp"

namespace ks = dynamos::kernelside;
using namespace ks::test;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

namespace {

// The host's layout with the freezer served by cgroup v2, or nullopt (test failed).
std::optional<ks::Layout> v2_freezer_layout() {
  auto detected = ks::Layout::detect();
  if (!detected) {
    ADD_FAILURE() << "detect cgroup layout: " << detected.error().message();
    return std::nullopt;
  }
  if (!detected->v2_has(ks::Controller::freezer)) {
    ADD_FAILURE() << "no cgroup v2 freezer on this host: " << detected->describe();
    return std::nullopt;
  }
  return detected->prefer_v2({ks::Controller::freezer});
}

void spin_forever(Shared* s) {
  for (;;)
    s->counter.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

// A waiter that starts before anyone freezes the group keeps waiting, then returns as
// soon as another caller's freeze has stopped the busy child (the kernel's cgroup.events
// notification wakes it), with the child stopped.
TEST(KernelsideFreezer, V2WaitWakesWhenTheGroupBecomesFrozen) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = v2_freezer_layout();
  ASSERT_TRUE(layout);
  ScopedGroup group(
      ASSERT_OK(ks::Group::create(*layout, unique_group_name(), {ks::Controller::freezer})));
  SharedMemory shm;
  Child child([&] { spin_forever(shm.get()); });
  ASSERT_OK_VOID(group->attach(child.pid()));
  ASSERT_TRUE(wait_until([&] { return shm->counter.load() > 1000; }, 2s)) << "child never ran";

  ks::Group waiter_view = *group;
  auto waited = std::async(std::launch::async, [&] {
    auto r = waiter_view.wait_frozen(10s);
    return std::pair{r, SteadyClock::now()};
  });
  EXPECT_EQ(waited.wait_for(200ms), std::future_status::timeout)
      << "the wait returned before anyone froze the group";
  EXPECT_FALSE(ASSERT_OK(group->frozen())) << "waiting alone froze the group";

  auto asked = SteadyClock::now();
  ASSERT_OK_VOID(group->start_freeze());
  ASSERT_EQ(waited.wait_for(5s), std::future_status::ready)
      << "the wait did not wake up when the group froze";
  auto [result, woke] = waited.get();
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_TRUE(ASSERT_OK(group->frozen()));
  uint64_t at_freeze = shm->counter.load();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(shm->counter.load(), at_freeze) << "the child ran after the wait said frozen";
  std::printf("v2: freeze requested to wait woken %.3f ms\n",
              std::chrono::duration<double, std::milli>(woke - asked).count());
  ASSERT_OK_VOID(group->thaw());
}

// Nobody freezes the group: the wait gives up at its timeout with Errc::timed_out naming
// the group, and leaves the child running.
TEST(KernelsideFreezer, V2WaitTimesOutOnAGroupNobodyFreezes) {
  KERNELSIDE_REQUIRE_ROOT();
  auto layout = v2_freezer_layout();
  ASSERT_TRUE(layout);
  ScopedGroup group(
      ASSERT_OK(ks::Group::create(*layout, unique_group_name(), {ks::Controller::freezer})));
  SharedMemory shm;
  Child child([&] { spin_forever(shm.get()); });
  ASSERT_OK_VOID(group->attach(child.pid()));

  auto t0 = SteadyClock::now();
  auto r = group->wait_frozen(150ms);
  auto took = SteadyClock::now() - t0;
  ASSERT_FALSE(r) << "the wait reported a group nobody froze as frozen";
  EXPECT_EQ(r.error().code, dynamos::Errc::timed_out) << r.error().message();
  EXPECT_NE(r.error().message().find(group->path()), std::string::npos) << r.error().message();
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 2s) << "the wait overran its timeout";
  uint64_t before = shm->counter.load();
  EXPECT_TRUE(wait_until([&] { return shm->counter.load() > before + 1000; }, 2s))
      << "the child stopped running";
}
