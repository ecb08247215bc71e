// Group's freezer: freeze, thaw, and the wait until every task of the group is frozen.
//
// A task freezes only once it runs: the kernel marks it and wakes it, and it enters the
// refrigerator on its way back to user space. A task that was running on another CPU
// stops within microseconds (an IPI); one waiting for a CPU stops when it gets one. The
// wait is on the gang switch path (gang/dynamosd/node_agent.cpp), so it must notice the
// last task stopping at once:
//   v2: cgroup.events changes ("frozen 1") are notified, and poll() on the open file
//       wakes up on them (POLLPRI), so the wait sleeps until the kernel says so;
//   v1: freezer.state has no notification, so it is polled: every 100 us for the first
//       5 ms (a freeze on a node whose tasks get a CPU promptly), then backing off to
//       1 ms (a straggler in an uninterruptible sleep must not cost a busy loop). Each
//       poll writes FROZEN again, which retries the tasks that were missed.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "kernelside/cgroup.hpp"
#include "kernelside/fs.hpp"

namespace dynamos::kernelside {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

namespace {

// cgroup.events says "frozen 1".
Result<bool> events_say_frozen(std::string_view text, const std::string& path) {
  auto kv = parse_flat_keyed(text);
  if (!kv) return std::unexpected(with_context(kv.error(), "parse " + path));
  auto it = kv->find("frozen");
  return it != kv->end() && it->second == 1;
}

// Reads an open kernfs file from its start; the read also re-arms poll().
Result<std::string> reread(int fd, const std::string& path) {
  if (::lseek(fd, 0, SEEK_SET) < 0) return fail_errno("seek " + path);
  std::string text;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read " + path);
    if (n == 0) return text;
    text.append(buf, static_cast<std::size_t>(n));
  }
}

std::string not_frozen_after(const std::string& group, std::chrono::milliseconds timeout) {
  return "freeze cgroup " + group + ": not frozen after " + std::to_string(timeout.count()) +
         " ms (still freezing)";
}

}  // namespace

Result<bool> Group::frozen() const {
  auto f = file(Controller::freezer, "freezer.state", "cgroup.events");
  if (!f) return std::unexpected(f.error());
  auto text = read_text(*f);
  if (!text) return std::unexpected(text.error());
  if (layout_.serving(Controller::freezer) == CgroupVersion::v1) {
    auto w = split_words(*text);
    return !w.empty() && w[0] == "FROZEN";
  }
  return events_say_frozen(*text, *f);
}

Result<void> Group::freeze(std::chrono::milliseconds timeout) {
  if (auto r = start_freeze(); !r) return r;
  return wait_frozen(timeout);
}

Result<void> Group::start_freeze() {
  bool v1 = layout_.serving(Controller::freezer) == CgroupVersion::v1;
  auto f = file(Controller::freezer, "freezer.state", "cgroup.freeze");
  if (!f) return std::unexpected(f.error());
  return write_text(*f, v1 ? "FROZEN" : "1");
}

Result<void> Group::wait_frozen(std::chrono::milliseconds timeout) {
  auto deadline = SteadyClock::now() + timeout;
  if (layout_.serving(Controller::freezer) == CgroupVersion::v1) {
    auto f = file(Controller::freezer, "freezer.state", nullptr);
    if (!f) return std::unexpected(f.error());
    const auto began = SteadyClock::now();
    auto pause = 100us;
    for (;;) {
      auto done = frozen();
      if (!done) return std::unexpected(done.error());
      if (*done) return {};
      auto now = SteadyClock::now();
      if (now > deadline) return fail(Errc::timed_out, not_frozen_after(path_, timeout));
      (void)write_text(*f, "FROZEN");  // v1 retries freezing stragglers on each write
      std::this_thread::sleep_for(pause);
      if (now - began > 5ms) pause = std::min<std::chrono::microseconds>(pause * 2, 1ms);
    }
  }
  auto f = file(Controller::freezer, nullptr, "cgroup.events");
  if (!f) return std::unexpected(f.error());
  UniqueFd fd(::open(f->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) return fail_errno("open " + *f);
  for (;;) {
    auto text = reread(fd.get(), *f);
    if (!text) return std::unexpected(text.error());
    auto done = events_say_frozen(*text, *f);
    if (!done) return std::unexpected(done.error());
    if (*done) return {};
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left <= 0ms) return fail(Errc::timed_out, not_frozen_after(path_, timeout));
    pollfd p{fd.get(), POLLPRI, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) return fail_errno("poll " + *f);
  }
}

Result<void> Group::thaw() {
  bool v1 = layout_.serving(Controller::freezer) == CgroupVersion::v1;
  auto f = file(Controller::freezer, "freezer.state", "cgroup.freeze");
  if (!f) return std::unexpected(f.error());
  return write_text(*f, v1 ? "THAWED" : "0");
}

}  // namespace dynamos::kernelside
