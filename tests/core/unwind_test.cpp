// Unwinding through redirected calls: stubs jump, they never call, and no return
// address is swapped, so exceptions and backtrace() see the real callers.
#include <execinfo.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "core/engine.hpp"
#include "tests/core/functions.hpp"

using namespace dynamos;
using namespace dynamos::core;

namespace {

Address addr(auto* fn) {
  return reinterpret_cast<Address>(fn);
}

__attribute__((noinline)) int call_throwing(int x) {
  int (*volatile fn)(int) = dyn_throws;
  return fn(x) + 1;
}

__attribute__((noinline)) int call_backtrace(void** frames, int max) {
  int (*volatile fn)(void**, int) = dyn_backtrace_depth;
  int n = fn(frames, max);
  asm volatile("");  // keep this frame (no tail call)
  return n;
}

// One call site for both runs, so the callers' return addresses can be compared.
__attribute__((noinline)) int backtrace_from_here(void** frames) {
  int n = call_backtrace(frames, 32);
  asm volatile("" : "+r"(n));
  return n;
}

}  // namespace

TEST(Unwind, ExceptionThrownInNewVersionReachesTheCaller) {
  auto id = Engine::self().apply(redirect_update("dyn_throws", addr(dyn_throws_v2), "v2"));
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(call_throwing(4), 9);
  try {
    call_throwing(-1);
    FAIL() << "no exception arrived";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "v2");
  }
  ASSERT_TRUE(Engine::self().revert(*id));
  // Through the clone of the original (version 0 after the revert).
  try {
    call_throwing(-1);
    FAIL() << "no exception arrived through the original's clone";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "original");
  }
}

TEST(Unwind, BacktraceThroughRedirectShowsTheCaller) {
  void* frames[2][32];
  int n[2] = {0, 0};
  UpdateId id = 0;
  for (int run = 0; run < 2; ++run) {  // one call site: run 0 direct, run 1 redirected
    if (run == 1) {
      auto u = Engine::self().apply(
          redirect_update("dyn_backtrace_depth", addr(dyn_backtrace_depth_v2), "v2"));
      ASSERT_TRUE(u) << u.error().message();
      id = *u;
    }
    n[run] = backtrace_from_here(frames[run]);
  }
  ASSERT_TRUE(Engine::self().revert(id));

  ASSERT_GE(n[0], 3);
  EXPECT_EQ(n[1], n[0]) << "the redirect added or lost frames";
  // Frame 0 is inside the version that ran; frames 1 and 2 are its callers
  // (call_backtrace, backtrace_from_here) and must be the same with and without the
  // redirect. (Frame 3, the test body, may differ: the compiler may unroll the loop.)
  EXPECT_NE(frames[1][0], frames[0][0]) << "frame 0 should be inside the new version";
  for (int i = 1; i <= 2; ++i)
    EXPECT_EQ(frames[1][i], frames[0][i])
        << "caller frame " << i << " differs through the redirect";
}
