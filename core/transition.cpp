#include "core/transition.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

namespace dynamos::core {
namespace {

std::string thread_name(pid_t pid, pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

}  // namespace

bool Transition::needs_stop() const {
  if (mode_ == SafetyMode::quiescent || switches_.size() > 1 || target_.always_stop()) return true;
  for (const auto& s : switches_)
    if (!s.point->installed) return true;
  return false;
}

Result<void> Transition::check_quiescent(std::span<const ThreadState> threads) const {
  for (const auto& t : threads) {
    for (const auto& s : switches_) {
      for (const auto& range : s.point->ranges_of(s.from)) {
        bool hit = range.contains(t.ip);
        for (Address f : t.frames)
          hit = hit || range.contains(f);
        if (hit)
          return fail(Errc::busy, "thread " + std::to_string(t.tid) + " (" +
                                      thread_name(target_.pid(), t.tid) + ") is inside " +
                                      s.point->name + " version '" + s.point->version(s.from).name +
                                      "' [" + hex(range.begin) + "," + hex(range.end) + ")");
      }
    }
  }
  return {};
}

Result<void> Transition::try_complete(StoppedWorld* world) {
  if (mode_ == SafetyMode::quiescent) {
    if (auto r = check_quiescent(world->threads()); !r) return r;
    const ThreadState self = target_.own_state(true);
    if (self.tid) {
      if (auto r = check_quiescent(std::span<const ThreadState>(&self, 1)); !r) return r;
    }
  }
  // From here on every write must succeed; the checks above are the only refusals.
  for (auto& s : switches_) {
    if (!s.point->installed) {
      if (auto r = install_entry(target_, *world, *s.point); !r) return r;
    }
  }
  for (auto& s : switches_) {
    if (auto r = store_slot(target_, *s.point, s.to); !r) return r;
  }
  return {};
}

Result<void> Transition::run(std::chrono::milliseconds timeout) {
  if (!needs_stop()) {
    // One installed point in drain mode: a single atomic store is the whole update.
    return store_slot(target_, *switches_.front().point, switches_.front().to);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto backoff = std::chrono::microseconds(500);
  Error last;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    StopOptions opts;
    opts.with_frames = mode_ == SafetyMode::quiescent;
    opts.timeout = std::max(left, std::chrono::milliseconds(50));
    const auto t0 = std::chrono::steady_clock::now();
    auto world = target_.stop_world(opts);
    if (!world) return std::unexpected(world.error());
    auto r = try_complete(world->get());
    world->reset();  // resume
    if (r) {
      stopped_for_ = std::chrono::steady_clock::now() - t0;
      return {};
    }
    if (r.error().code != Errc::busy) return r;
    last = r.error();
    if (std::chrono::steady_clock::now() + backoff > deadline)
      return fail(Errc::timed_out,
                  "not quiescent within " + std::to_string(timeout.count()) + " ms: " + last.what);
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(50'000));
  }
}

}  // namespace dynamos::core
