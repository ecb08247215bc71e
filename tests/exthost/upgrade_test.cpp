// Upgrade in place while other threads call the extension: every call is answered by
// the old or the new build, no count is lost or doubled, the old build is unmapped
// once drained, and an upgrade that fails leaves the old build serving.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <thread>

#include "host_fixture.hpp"

namespace dynamos::core::testing {
namespace {

using namespace std::chrono_literals;
using ExtHostUpgrade = HostFixture;

struct Answer {
  int build = 0;
  std::uint64_t count = 0;
};

Answer parse(const std::string& reply) {
  Answer a;
  unsigned long long n = 0;
  if (std::sscanf(reply.c_str(), "%d %llu", &a.build, &n) != 2) a.build = -1;
  a.count = n;
  return a;
}

// Threads calling "next" through the dispatch stub in a loop until stopped. Every
// answer is kept, so the test can check that the counts form exactly 1..N.
class Callers {
 public:
  Callers(dynamos_call_hook call, int threads)
      : answers_(threads), errors_(threads), progress_(threads) {
    for (int t = 0; t < threads; ++t)
      threads_.emplace_back([this, call, t] {
        answers_[t].reserve(1 << 20);
        while (!stop_.load(std::memory_order_relaxed)) {
          dynamos_ext_buffer reply;
          if (call("next", "", &reply) != 0)
            errors_[t].push_back(ExtensionHost::last_error());
          else
            answers_[t].push_back(parse(reply.bytes));
          progress_[t].fetch_add(1, std::memory_order_relaxed);
        }
      });
  }
  ~Callers() { stop(); }

  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  // Paces the test: returns once every thread made `more` further calls.
  void wait_for_calls(std::size_t more) {
    for (auto& p : progress_) {
      std::size_t target = p.load() + more;
      while (p.load() < target)
        std::this_thread::sleep_for(1ms);
    }
  }

  std::vector<std::vector<Answer>> answers_;
  std::vector<std::vector<std::string>> errors_;

 private:
  std::vector<std::atomic<std::size_t>> progress_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// Calls entered so far into the active version of the extension's call hook, from the
// engine's counted dispatch point.
std::uint64_t calls_entered(ExtensionHost& host) {
  auto point = host.dispatch_point("counter", Hook::call);
  auto info = Engine::self().info(*point);
  return info->versions.at(info->active).calls;
}

// Starts a call of "sleep" and returns once it has entered the running build.
std::future<Result<std::string>> start_sleeper(ExtensionHost& host, const char* ms) {
  const std::uint64_t before = calls_entered(host);
  auto f =
      std::async(std::launch::async, [&host, ms] { return host.call("counter", "sleep", ms); });
  while (calls_entered(host) == before)
    std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(5ms);  // from the counting trampoline into the build's code
  return f;
}

TEST_F(ExtHostUpgrade, KeepsCountingWhileFourThreadsCall) {
  make_host();
  auto loaded = host->load(EXT_COUNTER_V1);
  ASSERT_TRUE(loaded) << loaded.error().message();
  ASSERT_TRUE(host->set("counter", "step", "1"));  // a runtime value, to be carried over
  auto hooks = host->hooks("counter");
  ASSERT_TRUE(hooks);

  std::string v2_private_copy;
  {
    Callers callers(hooks->call, 4);
    callers.wait_for_calls(5'000);

    auto up = host->upgrade("counter", EXT_COUNTER_V2);
    ASSERT_TRUE(up) << up.error().message();
    EXPECT_EQ(up->old_version, "1.0");
    EXPECT_EQ(up->new_version, "2.0");
    EXPECT_TRUE(up->state_carried);
    EXPECT_EQ(up->state_bytes, 12u);
    std::printf("upgrade 1 -> 2 under load: calls held %lld us, upgrade %lld us\n",
                static_cast<long long>(up->held.count()),
                static_cast<long long>(up->total.count()));
    EXPECT_FALSE(mapped(EXT_COUNTER_V1)) << "build 1 still mapped after it drained";
    callers.wait_for_calls(5'000);

    // An upgrade whose import refuses the state: build 2 keeps serving.
    auto refused = host->upgrade("counter", EXT_COUNTER_V3);
    ASSERT_FALSE(refused);
    expect_error(refused.error(), Errc::refused, {"refused the state", "not supported by build 3"});
    EXPECT_FALSE(mapped(EXT_COUNTER_V3));
    callers.wait_for_calls(5'000);

    // The same file again: the host maps a private copy so both builds coexist.
    auto again = host->upgrade("counter", EXT_COUNTER_V2);
    ASSERT_TRUE(again) << again.error().message();
    callers.wait_for_calls(5'000);
    callers.stop();

    std::vector<std::uint64_t> counts;
    for (std::size_t t = 0; t < callers.answers_.size(); ++t) {
      EXPECT_TRUE(callers.errors_[t].empty())
          << "thread " << t << ": " << callers.errors_[t].size()
          << " calls failed, first: " << callers.errors_[t].front();
      int newest = 1;
      for (const Answer& a : callers.answers_[t]) {
        ASSERT_TRUE(a.build == 1 || a.build == 2) << "answered by build " << a.build;
        // Once a thread saw the new build it never goes back to the old one.
        ASSERT_GE(a.build, newest) << "thread " << t << " went back to build " << a.build;
        newest = a.build;
        counts.push_back(a.count);
      }
      EXPECT_EQ(newest, 2) << "thread " << t << " never reached build 2";
    }
    // The counter went on across the upgrades: each value 1..N answered exactly once.
    std::sort(counts.begin(), counts.end());
    for (std::size_t i = 0; i < counts.size(); ++i)
      ASSERT_EQ(counts[i], i + 1) << "count " << i + 1 << " lost or answered twice";
    auto total = host->call("counter", "count");
    ASSERT_TRUE(total);
    EXPECT_EQ(parse(*total).count, counts.size());
    std::printf("%zu calls answered across three upgrade attempts\n", counts.size());
  }

  auto info = host->info("counter");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->version, "2.0");
  EXPECT_EQ(info->builds, 3u);
  ASSERT_EQ(info->tunables.size(), 2u);
  EXPECT_EQ(info->tunables[0].spec.name, "step");
  EXPECT_EQ(info->tunables[0].source, ValueSource::runtime);  // carried over
  EXPECT_EQ(info->tunables[1].spec.name, "pace");
  EXPECT_EQ(info->tunables[1].source, ValueSource::default_value);
  EXPECT_TRUE(logged("build 1 fini upgraded")) << log_text();
  EXPECT_TRUE(logged("build 3 fini abandoned")) << log_text();
  EXPECT_TRUE(logged("upgrade abandoned")) << log_text();
}

TEST_F(ExtHostUpgrade, WaitsForCallsRunningInTheOldBuild) {
  make_host();
  ASSERT_TRUE(host->load(EXT_COUNTER_V1));
  // A call that stays in build 1 for 300 ms; build 1 must stay mapped until it returns.
  auto sleeper = start_sleeper(*host, "300");
  auto started = std::chrono::steady_clock::now();
  auto up = host->upgrade("counter", EXT_COUNTER_V2);
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(up) << up.error().message();
  auto slept = sleeper.get();
  ASSERT_TRUE(slept) << slept.error().message();
  EXPECT_EQ(parse(*slept).build, 1);
  EXPECT_GE(took, 100ms) << "the upgrade did not wait for the running call";
  EXPECT_FALSE(mapped(EXT_COUNTER_V1));
  EXPECT_EQ(parse(*host->call("counter", "next")).build, 2);
}

TEST_F(ExtHostUpgrade, AbandonedWhenTheOldBuildDoesNotDrain) {
  auto o = options();
  o.drain_timeout = 100ms;
  make_host(std::move(o));
  ASSERT_TRUE(host->load(EXT_COUNTER_V1));
  ASSERT_EQ(parse(*host->call("counter", "next")).count, 1u);
  auto sleeper = start_sleeper(*host, "700");
  // A caller arriving during the attempt waits at the gate and is answered by build 1.
  auto late = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(30ms);
    return host->call("counter", "next");
  });
  auto up = host->upgrade("counter", EXT_COUNTER_V2);
  ASSERT_FALSE(up);
  EXPECT_EQ(up.error().code, Errc::timed_out) << up.error().message();
  EXPECT_NE(up.error().message().find("did not drain"), std::string::npos) << up.error().message();
  auto answered = late.get();
  ASSERT_TRUE(answered) << answered.error().message();
  EXPECT_EQ(parse(*answered).build, 1);
  EXPECT_EQ(parse(*answered).count, 2u);
  EXPECT_EQ(host->info("counter")->version, "1.0");
  EXPECT_TRUE(logged("build 2 fini abandoned")) << log_text();
  EXPECT_FALSE(mapped(EXT_COUNTER_V2));
  ASSERT_TRUE(sleeper.get());

  // Once the long call is over, the same upgrade goes through.
  auto up2 = host->upgrade("counter", EXT_COUNTER_V2);
  ASSERT_TRUE(up2) << up2.error().message();
  EXPECT_EQ(parse(*host->call("counter", "next")).count, 3u);
}

TEST_F(ExtHostUpgrade, RefusedForAnotherExtensionOrWhenNotLoaded) {
  make_host();
  ASSERT_TRUE(host->load(EXT_COUNTER_V1));
  auto r = host->upgrade("counter", EXT_EVERY);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("is extension 'every', not 'counter'"), std::string::npos)
      << r.error().message();
  EXPECT_EQ(parse(*host->call("counter", "next")).build, 1);
  auto missing = host->upgrade("nothing", EXT_COUNTER_V2);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  auto broken = host->upgrade("counter", EXT_INITFAIL);
  ASSERT_FALSE(broken);
  EXPECT_EQ(parse(*host->call("counter", "next")).count, 2u);
}

TEST_F(ExtHostUpgrade, UnloadWhileFourThreadsCall) {
  make_host();
  ASSERT_TRUE(host->load(EXT_COUNTER_V1));
  auto hooks = host->hooks("counter");
  ASSERT_TRUE(hooks);
  Callers callers(hooks->call, 4);
  callers.wait_for_calls(2'000);
  auto r = host->unload("counter");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(mapped(EXT_COUNTER_V1));
  callers.wait_for_calls(1'000);
  callers.stop();
  for (std::size_t t = 0; t < callers.answers_.size(); ++t) {
    ASSERT_FALSE(callers.errors_[t].empty()) << "thread " << t << " never saw the unload";
    EXPECT_NE(callers.errors_[t].back().find("not loaded"), std::string::npos)
        << callers.errors_[t].back();
    for (const Answer& a : callers.answers_[t])
      ASSERT_EQ(a.build, 1);
  }
  // Loaded again, it starts from zero and the old stubs lead to it.
  ASSERT_TRUE(host->load(EXT_COUNTER_V1));
  dynamos_ext_buffer reply;
  ASSERT_EQ(hooks->call("next", "", &reply), 0) << ExtensionHost::last_error();
  EXPECT_EQ(reply.bytes, "1 1");
}

TEST_F(ExtHostUpgrade, DispatchPointsAreCountedEnginePoints) {
  make_host();
  ASSERT_TRUE(host->load(EXT_COUNTER_V1));
  auto point = host->dispatch_point("counter", Hook::call);
  ASSERT_TRUE(point);
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(host->call("counter", "next"));
  auto info = Engine::self().info(*point);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_TRUE(info->counted);
  const VersionInfo& active = info->versions.at(info->active);
  EXPECT_EQ(active.name.rfind("counter ", 0), 0u) << active.name;
  EXPECT_GE(active.calls, 10u);
}

}  // namespace
}  // namespace dynamos::core::testing
