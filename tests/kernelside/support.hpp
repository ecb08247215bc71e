// Helpers for the kernelside tests: the root requirement (fail under CI=true, never
// skip there), test-unique cgroups that are always removed, child processes that are
// always killed and reaped, and swap that is set up and undone by the test.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "kernelside/cgroup.hpp"

namespace dynamos::kernelside::test {

bool under_ci();

// Fails under CI=true, skips otherwise, when not root.
#define KERNELSIDE_REQUIRE_ROOT()                                                    \
  do {                                                                               \
    if (::geteuid() != 0) {                                                          \
      if (::dynamos::kernelside::test::under_ci()) FAIL() << "needs root (CI=true)"; \
      GTEST_SKIP() << "needs root";                                                  \
    }                                                                                \
  } while (0)

// Unwraps a Result in a test: fails the test with the error's message otherwise.
#define ASSERT_OK(expr)                                                          \
  ({                                                                             \
    auto&& r_ = (expr);                                                          \
    ASSERT_TRUE(r_.has_value()) << #expr << " failed: " << r_.error().message(); \
    std::move(*r_);                                                              \
  })
#define ASSERT_OK_VOID(expr)                                                     \
  do {                                                                           \
    auto&& r_ = (expr);                                                          \
    ASSERT_TRUE(r_.has_value()) << #expr << " failed: " << r_.error().message(); \
  } while (0)

// "dynamos-test-kernelside-PID-N": unique per test process and call.
std::string unique_group_name();

// Removes groups left by test processes that died (killed before their cleanup ran).
void sweep_stale_groups(const Layout& layout);

// Removes swap that scripts/zram-swap.sh set up for test processes that died before
// undoing it (swap set up by hand, or held by live processes, stays).
void sweep_stale_swap();

// A test's cgroup: removed with its subtree (its processes killed) on destruction.
class ScopedGroup {
 public:
  explicit ScopedGroup(Group g) : group_(std::move(g)) {}
  ScopedGroup(const ScopedGroup&) = delete;
  ScopedGroup& operator=(const ScopedGroup&) = delete;
  ~ScopedGroup();
  Group* operator->() { return &group_; }
  Group& operator*() { return group_; }

 private:
  Group group_;
};

// Memory shared between the test and its children.
struct Shared {
  std::atomic<uint64_t> counter{0};
  std::atomic<int> command{0};
  std::atomic<int> done{0};
  std::atomic<uintptr_t> address{0};
  std::atomic<uint64_t> value{0};
};
class SharedMemory {
 public:
  SharedMemory();
  ~SharedMemory();
  Shared* operator->() { return shared_; }
  Shared* get() { return shared_; }

 private:
  Shared* shared_;
};

// A forked child running body(); killed (SIGKILL) and reaped on destruction.
class Child {
 public:
  explicit Child(std::function<void()> body);
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();
  pid_t pid() const { return pid_; }
  // Waits for the child to end; its wait status.
  int wait();

 private:
  pid_t pid_ = -1;
};

// Spins until pred() or the timeout; whether pred() held.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// Swap for a test: scripts/zram-swap.sh up --holder <this pid>, and down on destruction
// (which removes the swap only if the script created it and no other holder remains).
class SwapGuard {
 public:
  SwapGuard();
  ~SwapGuard();
  bool ok() const { return ok_; }
  const std::string& output() const { return output_; }

 private:
  bool ok_ = false;
  std::string output_;
};

}  // namespace dynamos::kernelside::test
