// Safety modes, drain detection, stacking and all-or-nothing updates.
#include <gtest/gtest.h>

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "core/engine.hpp"
#include "tests/core/functions.hpp"

using namespace dynamos;
using namespace dynamos::core;
using namespace std::chrono_literals;

extern "C" int reloc_short(int);
extern "C" int reloc_negate(int);

namespace {

Address addr(auto* fn) {
  return reinterpret_cast<Address>(fn);
}

// A thread that sits inside dyn_sleep_inside for `ms` milliseconds.
std::thread sleeper(int ms, std::atomic<bool>& inside) {
  return std::thread([ms, &inside] {
    inside = true;
    void (*volatile fn)(int) = dyn_sleep_inside;
    fn(ms);
    inside = false;
  });
}

// A thread whose stack is far deeper than a stack scan reaches (64 frames in
// process): `depth` frames of dyn_recurse, sleeping at the bottom for `ms`. With
// `inside_set` they hang below dyn_deep_inside, out of the scan's sight.
class DeepSleeper {
 public:
  DeepSleeper(bool inside_set, int depth, int ms) {
    thread_ = std::thread([=, this] {
      pthread_setname_np(pthread_self(), "deep-sleeper");
      tid_ = gettid();
      if (inside_set) {
        void (*volatile fn)(int, int) = dyn_deep_inside;
        fn(depth, ms);
      } else {
        int (*volatile fn)(int, int) = dyn_recurse;
        fn(depth, ms);
      }
    });
    while (!tid_)
      std::this_thread::yield();
    std::this_thread::sleep_for(50ms);  // down at the bottom by now
  }
  ~DeepSleeper() { thread_.join(); }
  pid_t tid() const { return tid_; }

 private:
  std::atomic<pid_t> tid_{0};
  std::thread thread_;
};

constexpr int kDeep = 400;  // frames: far past the scan's 64

}  // namespace

TEST(Quiescent, DeepRecursionPastTheScanLimitIsNotQuiescent) {
  UpdateRequest req;
  req.redirects.push_back({"dyn_deep_inside", 0, addr(dyn_deep_inside_v2), "v2"});
  req.mode = SafetyMode::quiescent;
  req.timeout = 150ms;
  for (bool inside_set : {true, false}) {
    SCOPED_TRACE(inside_set ? "dyn_deep_inside at the bottom of the stack"
                            : "no function of the update on the stack");
    DeepSleeper deep(inside_set, kDeep, 500);
    auto r = Engine::self().apply(req);
    ASSERT_FALSE(r) << "a quiescent update succeeded although a thread's stack was not "
                       "scanned to its bottom";
    EXPECT_EQ(r.error().code, Errc::timed_out) << r.error().message();
    EXPECT_NE(r.error().what.find("thread " + std::to_string(deep.tid()) + " (deep-sleeper)"),
              std::string::npos)
        << "the error must name the deep thread: " << r.error().what;
  }
  req.timeout = 2000ms;
  auto ok = Engine::self().apply(req);
  ASSERT_TRUE(ok) << "once the deep thread left: " << ok.error().message();
  ASSERT_TRUE(Engine::self().revert(*ok, SafetyMode::quiescent));
}

TEST(Drain, DeepRecursionPastTheScanLimitDoesNotCountAsDrained) {
  auto& engine = Engine::self();
  auto point = engine.hijack("dyn_deep_inside");
  ASSERT_TRUE(point) << point.error().message();
  auto v2 = engine.add_version(*point, addr(dyn_deep_inside_v2), "v2");
  ASSERT_TRUE(v2);
  const VersionId old = engine.info(*point)->active;
  for (bool inside_set : {true, false}) {
    SCOPED_TRACE(inside_set ? "the old version at the bottom of the stack"
                            : "no activation of the point on the stack");
    DeepSleeper deep(inside_set, kDeep, 300);
    ASSERT_TRUE(engine.switch_version(*point, *v2));
    auto d = engine.drained(*point, old);
    ASSERT_TRUE(d) << d.error().message();
    EXPECT_FALSE(*d) << "a stack not scanned to its bottom counted as drained";
    ASSERT_TRUE(engine.switch_version(*point, old));
  }
  ASSERT_TRUE(engine.switch_version(*point, *v2));
  auto w = engine.wait_drained(*point, old, 2000ms);
  EXPECT_TRUE(w) << "once the deep thread left: " << w.error().message();
  ASSERT_TRUE(engine.switch_version(*point, old));
}

TEST(Quiescent, FailsNamingTheBlockerThenSucceedsOnceItLeft) {
  std::atomic<bool> inside{false};
  auto t = sleeper(600, inside);
  while (!inside)
    std::this_thread::yield();
  std::this_thread::sleep_for(50ms);

  UpdateRequest req;
  req.redirects.push_back({"dyn_sleep_inside", 0, addr(dyn_sleep_inside_v2), "v2"});
  req.mode = SafetyMode::quiescent;
  req.timeout = 150ms;
  auto blocked = Engine::self().apply(req);
  ASSERT_FALSE(blocked) << "quiescent update succeeded while a thread was inside";
  EXPECT_EQ(blocked.error().code, Errc::timed_out);
  EXPECT_NE(blocked.error().what.find("dyn_sleep_inside"), std::string::npos)
      << "the error must name the function: " << blocked.error().what;
  EXPECT_NE(blocked.error().what.find("thread "), std::string::npos)
      << "the error must name the thread: " << blocked.error().what;

  t.join();
  req.timeout = 2000ms;
  auto ok = Engine::self().apply(req);
  ASSERT_TRUE(ok) << ok.error().message();
  ASSERT_TRUE(Engine::self().revert(*ok, SafetyMode::quiescent));
}

TEST(Drain, CountedVersionDrainsOnlyAfterTheLastActivationLeft) {
  auto& engine = Engine::self();
  HijackOptions opts;
  opts.counted = true;
  auto point = engine.hijack("dyn_sleep_inside", opts);
  ASSERT_TRUE(point) << point.error().message();
  auto v2 = engine.add_version(*point, addr(dyn_sleep_inside_v2), "v2");
  ASSERT_TRUE(v2);
  const VersionId old = engine.info(*point)->active;

  std::atomic<bool> inside{false};
  auto t = sleeper(400, inside);
  while (!inside)
    std::this_thread::yield();
  std::this_thread::sleep_for(30ms);
  // Drain mode switches at once although a thread is inside the old version.
  ASSERT_TRUE(engine.switch_version(*point, *v2));
  auto d = engine.drained(*point, old);
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_FALSE(*d) << "old version reported drained while a thread sleeps in it";
  t.join();
  auto w = engine.wait_drained(*point, old, 2000ms);
  EXPECT_TRUE(w) << w.error().message();
  EXPECT_GE(engine.info(*point)->versions[old].calls, 1u);
  ASSERT_TRUE(engine.switch_version(*point, old));
}

TEST(Updates, StackedUpdatesRevertNewestFirst) {
  auto& engine = Engine::self();
  auto a = engine.apply(redirect_update("dyn_add", addr(dyn_add_v2), "v2"));
  ASSERT_TRUE(a) << a.error().message();
  auto b = engine.apply(redirect_update("dyn_add", addr(dyn_add_v3), "v3"));
  ASSERT_TRUE(b) << b.error().message();
  int (*volatile add)(int, int) = dyn_add;
  EXPECT_EQ(add(1, 1), 2002);

  auto refused = engine.revert(*a);
  ASSERT_FALSE(refused) << "reverting an update under a newer one must be refused";
  EXPECT_EQ(refused.error().code, Errc::state);
  EXPECT_NE(refused.error().what.find("revert it first"), std::string::npos);
  EXPECT_EQ(add(1, 1), 2002) << "a refused revert changed something";

  ASSERT_TRUE(engine.revert(*b));
  EXPECT_EQ(add(1, 1), 1002);
  ASSERT_TRUE(engine.revert(*a));
  EXPECT_EQ(add(1, 1), 2);
  auto again = engine.revert(*a);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::state);

  bool found = false;
  for (const auto& u : engine.updates())
    if (u.id == *a) found = u.state == UpdateState::reverted;
  EXPECT_TRUE(found) << "the update list must show update " << *a << " reverted";
}

TEST(Updates, AllOrNothingWhenOneFunctionIsRefused) {
  std::uint8_t before[8];
  std::memcpy(before, reinterpret_cast<const void*>(dyn_add_v3), sizeof before);
  UpdateRequest req;
  req.redirects.push_back({"dyn_add_v3", 0, addr(dyn_add_v2), "x"});
  req.redirects.push_back({"reloc_short", 0, addr(reloc_negate), "y"});
  auto r = Engine::self().apply(req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::refused);
  EXPECT_EQ(std::memcmp(before, reinterpret_cast<const void*>(dyn_add_v3), sizeof before), 0)
      << "the first function was written although the update was refused";
  int (*volatile f)(int, int) = dyn_add_v3;
  EXPECT_EQ(f(1, 1), 2002);
}

TEST(Updates, UnknownModeAndEmptyUpdateAreRefused) {
  EXPECT_FALSE(parse_safety_mode("eventually"));
  auto r = Engine::self().apply(UpdateRequest{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
}
