// The life cycle of one update, in four verbs (cf. livepatch's transition.h). The
// engine (engine.cpp) calls them; an apply, a revert and a hijack's installation are
// all transitions and take the same path:
//
//   init      (the constructor) the switches: for each patch point the version it
//             leaves and the version it enters; hijacks not yet installed come
//             along. Also the engine state as it will be once the switches hold.
//   start     stage that state in the target and stop every other thread (signal
//             rendezvous, or ptrace remotely); in quiescent mode unwind their stacks
//             too. Nothing stops when one atomic store is the whole update.
//   try_complete
//             check safety: in quiescent mode no thread may have an activation of
//             any leaving version (instruction pointer or a return address in its
//             code), and every stack must have been scanned to its bottom (frames
//             a scan did not reach may hold one). If clear, install pending entry
//             jumps (moving threads out of replaced bytes), store every slot, commit
//             the staged state and resume. If not, drop the staged state, resume,
//             and report the blocker (Errc::busy): the engine may start again.
//   cancel    give up: resume the threads if stopped and drop the staged state.
//             Nothing has been written. Idempotent.
//
// The engine retries start + try_complete with backoff until its deadline, and
// cancels on any failure. In drain mode try_complete never blocks: running
// activations finish on the version they started in, new calls take the new one.
// See docs/consistency-model.md.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "core/patch_point.hpp"
#include "core/target.hpp"

namespace dynamos::core {

struct PlannedSwitch {
  PatchPoint* point = nullptr;
  VersionId from = 0;
  VersionId to = 0;
};

// Whether a stopped thread may hold an activation of code in `ranges`.
enum class Activation {
  none,     // its stack was scanned to the bottom and touches none of the ranges
  inside,   // its instruction pointer or a return address lies in one of them
  unknown,  // nothing visible, but the scan stopped before the bottom of its stack
};
Activation activation_in(const ThreadState& thread, std::span<const AddressRange> ranges);

class Transition {
 public:
  // init: `state_after` is what the target's engine state becomes with the switches
  // (empty for targets that keep no state).
  Transition(Target& target, std::vector<PlannedSwitch> switches, SafetyMode mode,
             std::string state_after);
  Transition(const Transition&) = delete;
  Transition& operator=(const Transition&) = delete;
  ~Transition();

  Result<void> start(std::chrono::milliseconds timeout);
  // Errc::busy names the blocking thread and function when quiescence does not hold.
  Result<void> try_complete();
  void cancel();

  bool completed() const { return completed_; }
  // How long the other threads were stopped in the successful attempt.
  std::chrono::nanoseconds stopped_for() const { return stopped_for_; }

 private:
  Result<void> check_quiescent(std::span<const ThreadState> threads) const;
  std::string leaving_versions() const;
  Result<void> write_switches();
  bool needs_stop() const;
  void resume();

  Target& target_;
  std::vector<PlannedSwitch> switches_;
  SafetyMode mode_;
  std::string state_after_;
  std::unique_ptr<StoppedWorld> world_;  // held between start and try_complete/cancel
  std::chrono::steady_clock::time_point stopped_at_{};
  std::chrono::nanoseconds stopped_for_{0};
  bool completed_ = false;
};

}  // namespace dynamos::core
