// Targets the remote patcher must refuse clearly or handle, never hang nor harm: one that
// forked after it was patched, one under a seccomp filter that kills on mmap, one whose
// main thread exited, one whose own allocator holds its lock most of the time.
#include <gtest/gtest.h>

#include <fstream>

#include "core/remote.hpp"
#include "core/remote_update.hpp"
#include "testkit/process.hpp"

using namespace remote_test;
using namespace dynamos;
using namespace dynamos::core;
using namespace std::chrono_literals;

namespace {

RemotePatchRequest patch_compute() {
  RemotePatchRequest req;
  req.replacements.push_back(*parse_replacement(std::string("compute=") + PATCH_SO));
  return req;
}

std::string status_field(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return line.substr(key.size());
  return "?";
}

// Refused quickly with Errc `code` and `text` in the message.
#define EXPECT_REFUSED_WITH(result, errc, text)                                            \
  do {                                                                                     \
    const auto t0_ = std::chrono::steady_clock::now();                                     \
    auto r_ = (result);                                                                    \
    ASSERT_FALSE(r_) << "accepted";                                                        \
    EXPECT_EQ(r_.error().code, errc) << r_.error().message();                              \
    EXPECT_NE(r_.error().message().find(text), std::string::npos) << r_.error().message(); \
    EXPECT_LT(std::chrono::steady_clock::now() - t0_, 3s) << "refused only after a wait";  \
  } while (0)

#define EXPECT_RUNS_UNTRACED(t)                                                \
  do {                                                                         \
    std::string why;                                                           \
    EXPECT_TRUE((t).runs_on(&why)) << why;                                     \
    EXPECT_EQ(status_field((t).pid(), "TracerPid:"), "\t0") << "still traced"; \
  } while (0)

}  // namespace

// The state region is a shared mapping: a child forked after a patch carries the parent's.
TEST(RemoteEdgeCases, ChildForkedAfterAPatchIsRefusedAndTheParentStaysPatchable) {
  Program t({EXEC_TARGET, "fork-on-usr1"});
  ASSERT_TRUE(t.wait_for("ready"));
  auto first = patch_process(t.pid(), patch_compute());
  ASSERT_TRUE(first) << first.error().message();
  kill(t.pid(), SIGUSR1);
  // The child prints "child" lines from now on ("forked" may come before the wait).
  ASSERT_TRUE(t.wait_for("child")) << t.last_line();
  pid_t child = 0;
  std::ifstream("/proc/" + std::to_string(t.pid()) + "/task/" + std::to_string(t.pid()) +
                "/children") >>
      child;
  ASSERT_GT(child, 0) << "no child pid";
  EXPECT_REFUSED_WITH(patch_process(child, patch_compute()), Errc::unsupported,
                      "was forked from process " + std::to_string(t.pid()));
  EXPECT_EQ(status_field(child, "TracerPid:"), "\t0");
  auto again = patch_process(t.pid(), patch_compute());
  EXPECT_TRUE(again) << "the parent is no longer patchable: " << again.error().message();
  EXPECT_RUNS_UNTRACED(t);
}

TEST(RemoteEdgeCases, TargetUnderASeccompFilterThatKillsOnMmapIsRefusedAndSurvives) {
  Program t({EXEC_TARGET, "seccomp-kill-mmap"});
  ASSERT_TRUE(t.wait_for("ready"));
  EXPECT_REFUSED_WITH(patch_process(t.pid(), patch_compute()), Errc::unsupported, "seccomp filter");
  EXPECT_RUNS_UNTRACED(t);
}

TEST(RemoteEdgeCases, TargetWhoseMainThreadExitedIsRefusedAndRunsOn) {
  Program t({EXEC_TARGET, "main-exits"});
  ASSERT_TRUE(t.wait_for("ready"));
  EXPECT_REFUSED_WITH(patch_process(t.pid(), patch_compute()), Errc::unsupported,
                      "main thread that exited");
  EXPECT_RUNS_UNTRACED(t);
}

// dlopen calls malloc: the thread sent through it must not hold the allocator's lock,
// even when the allocator is the program's own. Either the call waits for a moment when
// the thread is outside it, or it is refused as busy; the target never deadlocks.
TEST(RemoteEdgeCases, ThreadHoldingItsOwnAllocatorsLockIsNotSentThroughDlopen) {
  Program t({ALLOC_TARGET});
  ASSERT_TRUE(t.wait_for("ready"));
  auto r = patch_process(t.pid(), patch_compute());
  if (!r) {
    EXPECT_NE(r.error().message().find("inside malloc"), std::string::npos) << r.error().message();
  }
  std::printf("patch of a process inside its own malloc half the time: %s\n",
              r ? "applied" : r.error().message().c_str());
  EXPECT_RUNS_UNTRACED(t);
  EXPECT_TRUE(t.wait_for("ready", 2s)) << "the main thread stopped printing (deadlocked?)";
}
