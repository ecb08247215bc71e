// Eight threads call a function in a tight loop while the main thread hijacks it
// and switches its versions 100,000 times, with transactional updates and reverts
// in between. Every call must return the result of a valid version, and the
// engine's per-version call counts must equal what the callers observed.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "core/engine.hpp"

using namespace dynamos;
using namespace dynamos::core;

extern "C" {
int conc_short(int);
int conc_short_v1(int);
int conc_short_v2(int);
int conc_short_v3(int);
}

// Ordinary compiled functions: version k returns 3x + k after a little work.
// (No loop at the top: a loop head inside the first bytes is rightly refused.)
#define DEFINE_LONG(name, k)                             \
  extern "C" __attribute__((noinline)) int name(int x) { \
    int acc = x * 7 + 1;                                 \
    acc ^= acc >> 3;                                     \
    acc *= 13;                                           \
    asm volatile("" : "+r"(acc));                        \
    return 3 * x + k + (acc & 0);                        \
  }
DEFINE_LONG(conc_long, 0)
DEFINE_LONG(conc_long_v1, 1)
DEFINE_LONG(conc_long_v2, 2)
DEFINE_LONG(conc_long_v3, 3)

namespace {

struct Case {
  const char* name;
  int (*fn)(int);
  int (*versions[3])(int);
};

class Concurrency : public ::testing::TestWithParam<Case> {};

TEST_P(Concurrency, EightCallersHundredThousandSwitches) {
  const Case c = GetParam();
  constexpr int kThreads = 8;
  constexpr int kSwitches = 100'000;
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0};
  std::atomic<long> progress{0};  // calls so far, published now and then by the callers
  std::vector<std::array<long, 4>> tallies(kThreads, std::array<long, 4>{});

  std::vector<std::thread> callers;
  struct Joiner {  // callers stop and join even when an assertion returns early
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~Joiner() {
      stop = true;
      for (auto& t : threads)
        if (t.joinable()) t.join();
    }
  } joiner{stop, callers};
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      int (*volatile fn)(int) = c.fn;
      int x = t;
      while (!stop.load(std::memory_order_relaxed)) {
        x = (x + 1) & 0xffff;
        const int k = fn(x) - 3 * x;
        if (k < 0 || k > 3) {
          bad.fetch_add(1);
        } else {
          ++tallies[t][k];
        }
        if ((x & 63) == 0) progress.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  auto& engine = Engine::self();
  HijackOptions opts;
  opts.counted = true;
  auto point = engine.hijack(reinterpret_cast<Address>(c.fn), opts);  // under fire
  ASSERT_TRUE(point) << point.error().message();
  std::vector<VersionId> ids = {0};
  for (auto* v : c.versions) {
    auto id = engine.add_version(*point, reinterpret_cast<Address>(v), "");
    ASSERT_TRUE(id) << id.error().message();
    ids.push_back(*id);
  }

  std::mt19937 rng(42);
  int transactions = 0;
  for (int i = 0; i < kSwitches; ++i) {
    const VersionId to = ids[rng() % ids.size()];
    if (i % 2000 == 0) {
      // A transactional update and its revert, between the plain switches.
      UpdateInfo::Switch s{*point, 0, to};
      auto u = engine.apply_switches(std::span(&s, 1), SafetyMode::drain, std::chrono::seconds(2));
      ASSERT_TRUE(u) << u.error().message();
      ASSERT_TRUE(engine.revert(*u)) << "revert of update " << *u;
      ++transactions;
    } else {
      ASSERT_TRUE(engine.switch_version(*point, to));
    }
    // On 2 cores the switcher could run its whole loop in one time slice; pace it so
    // the callers really run across switches.
    if (i % 16 == 0) {
      const long seen = progress.load(std::memory_order_relaxed);
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (progress.load(std::memory_order_relaxed) == seen &&
             std::chrono::steady_clock::now() < until) {
      }
    }
  }
  ASSERT_TRUE(engine.switch_version(*point, 0));
  stop = true;
  for (auto& th : callers)
    th.join();

  EXPECT_EQ(bad.load(), 0) << "calls returned a result no version computes";
  std::array<long, 4> seen{};
  for (const auto& t : tallies)
    for (int k = 0; k < 4; ++k)
      seen[k] += t[k];
  auto info = engine.info(*point);
  ASSERT_TRUE(info);
  for (int k = 1; k < 4; ++k) {
    EXPECT_EQ(info->versions[k].calls, static_cast<std::uint64_t>(seen[k]))
        << "engine count of version " << k << " differs from the callers' tally";
    EXPECT_GT(seen[k], 0) << "version " << k << " was never called";
  }
  EXPECT_LE(info->versions[0].calls, static_cast<std::uint64_t>(seen[0]));
  EXPECT_GT(transactions, 0);
  std::printf("%s: %ld calls (original %ld, v1 %ld, v2 %ld, v3 %ld)\n", c.name,
              seen[0] + seen[1] + seen[2] + seen[3], seen[0], seen[1], seen[2], seen[3]);
}

INSTANTIATE_TEST_SUITE_P(
    Functions, Concurrency,
    ::testing::Values(Case{"compiled", conc_long, {conc_long_v1, conc_long_v2, conc_long_v3}},
                      Case{"short", conc_short, {conc_short_v1, conc_short_v2, conc_short_v3}}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
