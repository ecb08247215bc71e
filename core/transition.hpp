// The life cycle of one update, in four verbs (cf. livepatch's transition.h):
//
//   init      collect the switches: for each patch point the version it leaves and
//             the version it enters; hijacks not yet installed come along.
//   start     stop every other thread (signal rendezvous, or ptrace remotely); in
//             quiescent mode unwind their stacks too.
//   try_complete
//             check safety: in quiescent mode no thread may have an activation of
//             any leaving version (instruction pointer or a return address in its
//             code). If clear, install pending entry jumps (moving threads out of
//             replaced bytes) and store every slot, then resume. If not, resume
//             and report the blocker.
//   run       start + try_complete, retried with backoff until the deadline; on
//             failure nothing has been written and the error names the blocking
//             thread and function.
//
// In drain mode try_complete never blocks: running activations finish on the
// version they started in, new calls take the new one. See docs/consistency-model.md.
#pragma once

#include <chrono>
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

class Transition {
 public:
  Transition(Target& target, std::vector<PlannedSwitch> switches, SafetyMode mode)
      : target_(target), switches_(std::move(switches)), mode_(mode) {}

  // Runs the update to completion or fails with nothing written.
  Result<void> run(std::chrono::milliseconds timeout);

  // How long the other threads were stopped in the successful attempt.
  std::chrono::nanoseconds stopped_for() const { return stopped_for_; }

 private:
  // One attempt: Errc::busy names the blocker when quiescence does not hold yet.
  Result<void> try_complete(StoppedWorld* world);
  Result<void> check_quiescent(std::span<const ThreadState> threads) const;
  bool needs_stop() const;

  Target& target_;
  std::vector<PlannedSwitch> switches_;
  SafetyMode mode_;
  std::chrono::nanoseconds stopped_for_{0};
};

}  // namespace dynamos::core
