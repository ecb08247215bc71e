#include "core/transition.hpp"

#include <fstream>

namespace dynamos::core {
namespace {

std::string thread_name(pid_t pid, pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

}  // namespace

Activation activation_in(const ThreadState& thread, std::span<const AddressRange> ranges) {
  for (const auto& range : ranges) {
    if (range.contains(thread.ip)) return Activation::inside;
    for (Address f : thread.frames)
      if (range.contains(f)) return Activation::inside;
  }
  return thread.frames_complete ? Activation::none : Activation::unknown;
}

Transition::Transition(Target& target, std::vector<PlannedSwitch> switches, SafetyMode mode,
                       std::string state_after)
    : target_(target),
      switches_(std::move(switches)),
      mode_(mode),
      state_after_(std::move(state_after)) {}

Transition::~Transition() {
  if (!completed_) cancel();
}

bool Transition::needs_stop() const {
  if (mode_ == SafetyMode::quiescent || switches_.size() > 1 || target_.always_stop()) return true;
  for (const auto& s : switches_)
    if (!s.point->installed) return true;
  return false;
}

Result<void> Transition::start(std::chrono::milliseconds timeout) {
  if (world_ || !needs_stop()) return {};
  StopOptions opts;
  opts.with_frames = mode_ == SafetyMode::quiescent;
  opts.timeout = std::max(timeout, std::chrono::milliseconds(50));
  target_.stage_state(state_after_);
  stopped_at_ = std::chrono::steady_clock::now();
  auto world = target_.stop_world(opts);
  if (!world) {
    target_.drop_staged_state();
    return std::unexpected(world.error());
  }
  world_ = std::move(*world);
  return {};
}

Result<void> Transition::check_quiescent(std::span<const ThreadState> threads) const {
  for (const auto& t : threads) {
    bool seen_all = true;
    for (const auto& s : switches_) {
      for (const auto& range : s.point->ranges_of(s.from)) {
        const Activation a = activation_in(t, {&range, 1});
        seen_all = seen_all && a == Activation::none;
        if (a != Activation::inside) continue;
        return fail(Errc::busy, "thread " + std::to_string(t.tid) + " (" +
                                    thread_name(target_.pid(), t.tid) + ") is inside " +
                                    s.point->name + " version '" + s.point->version(s.from).name +
                                    "' [" + hex(range.begin) + "," + hex(range.end) + ")");
      }
    }
    // The frames below the scan's reach may hold any of them.
    if (!seen_all)
      return fail(Errc::busy, "thread " + std::to_string(t.tid) + " (" +
                                  thread_name(target_.pid(), t.tid) +
                                  ") has a stack deeper than the scan reaches: it may be inside " +
                                  leaving_versions());
  }
  return {};
}

std::string Transition::leaving_versions() const {
  std::string out;
  for (const auto& s : switches_)
    out += (out.empty() ? "" : ", ") + s.point->name + " version '" +
           s.point->version(s.from).name + "'";
  return out;
}

// From here on every write must succeed; the safety checks are the only refusals.
Result<void> Transition::write_switches() {
  for (auto& s : switches_) {
    if (!s.point->installed) {
      if (auto r = install_entry(target_, *world_, *s.point); !r) return r;
    }
  }
  for (auto& s : switches_) {
    if (auto r = store_slot(target_, *s.point, s.to); !r) return r;
  }
  return {};
}

Result<void> Transition::try_complete() {
  if (!world_) {
    if (needs_stop()) return fail(Errc::state, "transition completed before it was started");
    // One installed point in drain mode: a single atomic store is the whole update.
    auto r = store_slot(target_, *switches_.front().point, switches_.front().to);
    completed_ = r.has_value();
    return r;
  }
  if (mode_ == SafetyMode::quiescent) {
    auto r = check_quiescent(world_->threads());
    const ThreadState self = target_.own_state(true);
    if (r && self.tid) r = check_quiescent(std::span<const ThreadState>(&self, 1));
    if (!r) {
      cancel();
      return r;
    }
  }
  if (auto r = write_switches(); !r) {
    cancel();
    return r;
  }
  world_.reset();  // commits the staged state with the slot stores, then resumes
  stopped_for_ = std::chrono::steady_clock::now() - stopped_at_;
  completed_ = true;
  return {};
}

void Transition::cancel() {
  // Drop first: a remote target commits whatever is staged when its world resumes.
  target_.drop_staged_state();
  world_.reset();
}

}  // namespace dynamos::core
