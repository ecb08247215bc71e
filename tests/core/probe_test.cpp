// Probes: every call counted exactly, one in 64 timed, exceptions thrown through a
// timed call still reach the caller (the timed path's unwind information is
// registered), and functions taking stack arguments get them intact.
#include <gtest/gtest.h>

#include <stdexcept>

#include "core/engine.hpp"
#include "core/probe.hpp"
#include "tests/core/functions.hpp"

using namespace dynamos;
using namespace dynamos::core;

extern "C" __attribute__((noinline)) long probe_many_args(long a, long b, long c, long d, long e,
                                                          long f, long g, long h, long i, long j) {
  return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h + 9 * i + 10 * j;
}

namespace {

Result<std::pair<PatchPointId, VersionId>> probe(const char* name) {
  auto& engine = Engine::self();
  auto point = engine.hijack(name);
  if (!point) return std::unexpected(point.error());
  auto v = engine.add_probe(*point);
  if (!v) return std::unexpected(v.error());
  if (auto r = engine.switch_version(*point, *v); !r) return std::unexpected(r.error());
  return std::make_pair(*point, *v);
}

}  // namespace

TEST(Probe, CountsEveryCallAndTimesASample) {
  auto p = probe("dyn_work");
  ASSERT_TRUE(p) << p.error().message();
  long (*volatile fn)(long) = dyn_work;
  long x = 1;
  for (int i = 0; i < 64000; ++i)
    x = fn(x);
  auto info = Engine::self().info(p->first);
  ASSERT_TRUE(info);
  const auto& v = info->versions[p->second];
  EXPECT_TRUE(v.is_probe);
  EXPECT_EQ(v.calls, 64000u) << "the probe must count every call";
  EXPECT_EQ(v.timed_calls, 1000u) << "one call in 64 is timed";
  const double mean_ns = static_cast<double>(v.timed_ticks) / v.timed_calls / tsc_hz() * 1e9;
  EXPECT_GT(mean_ns, 1.0);
  EXPECT_LT(mean_ns, 100000.0);
  std::printf("dyn_work: %lu calls, mean %.1f ns per call (from %lu timed)\n", v.calls, mean_ns,
              v.timed_calls);
  ASSERT_TRUE(Engine::self().switch_version(p->first, 0));
}

TEST(Probe, ExceptionsPassThroughTimedCalls) {
  auto p = probe("dyn_throws");
  ASSERT_TRUE(p) << p.error().message();
  int (*volatile fn)(int) = dyn_throws;
  int caught = 0;
  for (int i = 0; i < 640; ++i) {
    try {
      fn(-1);
    } catch (const std::runtime_error&) {
      ++caught;
    }
  }
  EXPECT_EQ(caught, 640);
  auto info = Engine::self().info(p->first);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->versions[p->second].calls, 640u);
  ASSERT_TRUE(Engine::self().switch_version(p->first, 0));
}

TEST(Probe, StackArgumentsArriveIntact) {
  const long want = probe_many_args(1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
  auto p = probe("probe_many_args");
  ASSERT_TRUE(p) << p.error().message();
  long (*volatile fn)(long, long, long, long, long, long, long, long, long, long) = probe_many_args;
  for (int i = 0; i < 256; ++i)  // includes 4 timed calls, which copy the stack arguments
    ASSERT_EQ(fn(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), want) << "call " << i;
  ASSERT_TRUE(Engine::self().switch_version(p->first, 0));
}
