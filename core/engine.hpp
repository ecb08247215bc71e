// The live-update engine: the public API of core/.
//
// A patch point is a function entry hijacked once: its first instructions are
// relocated into a clone (so the original stays callable) and the entry is
// overwritten with a jump to a per-function dispatch stub that jumps through a
// version slot. A version is one implementation of a patch point; switching is an
// atomic store to the slot. An update switches several patch points at once, all
// or none, and can be reverted. See docs/consistency-model.md for what each safety
// mode promises.
//
// This file is the life cycle and bookkeeping (like livepatch's core.c); the
// mechanism lives in patch_point.cpp, relocation in relocator.cpp, stopping the
// world in target_local.cpp and target_remote.cpp, and the update life cycle (the
// verbs every apply and revert goes through) in transition.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace dynamos::core {

class Target;

using Address = std::uintptr_t;
using PatchPointId = std::uint32_t;
using VersionId = std::uint32_t;  // 0 is always the original behaviour
using UpdateId = std::uint64_t;

struct AddressRange {
  Address begin = 0;
  Address end = 0;  // one past the last byte
  bool contains(Address a) const { return a >= begin && a < end; }
};

enum class SafetyMode {
  drain,      // switch now; activations already running finish on their version
  quiescent,  // switch only when no thread has an activation of any function in the update
};
const char* safety_mode_name(SafetyMode mode);
Result<SafetyMode> parse_safety_mode(std::string_view name);

struct HijackOptions {
  // Route every version through a counting trampoline, so each version's calls
  // are counted and the engine can tell when an old version has drained.
  bool counted = false;
  // Name shown in listings; defaults to the symbol name or the address in hex.
  std::string name;
};

struct VersionInfo {
  VersionId id = 0;
  std::string name;
  Address code = 0;               // where the version's code starts
  AddressRange range;             // the version's code, for drain and quiescence checks
  std::uint64_t calls = 0;        // calls entered so far (counted patch points only)
  bool is_probe = false;          // a built-in probe (counts and samples call times)
  std::uint64_t timed_calls = 0;  // probes: calls whose duration was measured
  std::uint64_t timed_ticks = 0;  // probes: their total duration in TSC ticks
};

struct PatchPointInfo {
  PatchPointId id = 0;
  std::string name;
  Address entry = 0;            // the hijacked function (0 for a detached dispatch point)
  AddressRange function;        // the original function's extent, when known
  std::size_t overwritten = 0;  // bytes of the entry replaced by the jump
  Address clone = 0;            // calling this runs the original behaviour
  Address stub = 0;             // the dispatch stub: calling it runs the active version
  bool counted = false;
  VersionId active = 0;
  std::vector<VersionInfo> versions;
};

enum class UpdateState { applied, reverted };

struct UpdateInfo {
  UpdateId id = 0;
  SafetyMode mode = SafetyMode::drain;
  UpdateState state = UpdateState::applied;
  struct Switch {
    PatchPointId point = 0;
    VersionId from = 0;
    VersionId to = 0;
  };
  std::vector<Switch> switches;
};

// One redirect of an update: the function (by symbol or address) and its new code.
struct Redirect {
  std::string symbol;  // resolved when function == 0
  Address function = 0;
  Address code = 0;          // the new version's entry
  std::string version_name;  // defaults to the symbol of `code` or its address
};

struct UpdateRequest {
  std::vector<Redirect> redirects;
  SafetyMode mode = SafetyMode::drain;
  std::chrono::milliseconds timeout{2000};  // quiescent mode: give up after this
  HijackOptions hijack;                     // used for functions not hijacked yet
};

// The common case: one function, by name, to new code.
inline UpdateRequest redirect_update(std::string symbol, Address code, std::string version = {}) {
  UpdateRequest r;
  r.redirects.push_back({std::move(symbol), 0, code, std::move(version)});
  return r;
}

class Engine {
 public:
  // The engine of the calling process. Thread-safe; every call may run concurrently
  // with calls of the patched functions on other threads.
  static Engine& self();
  // An engine over another target (see core/remote.hpp), with the state the target
  // carries from earlier invocations.
  static Result<std::unique_ptr<Engine>> over(std::unique_ptr<class Target> target);
  class Target& target();

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine();

  // Hijacks a function once; later calls for the same entry return the same point.
  // Refused, with nothing written, when the prologue cannot be relocated safely.
  Result<PatchPointId> hijack(std::string_view symbol, const HijackOptions& options = {});
  Result<PatchPointId> hijack(Address function, const HijackOptions& options = {});

  // A dispatch point with no hijacked function: callers call stub(), which jumps to
  // the active version. Version 0 is `initial`. Used by the extension host.
  Result<PatchPointId> create_dispatch(std::string name, Address initial, AddressRange range,
                                       bool counted);

  // Adds a version to a patch point without activating it.
  Result<VersionId> add_version(PatchPointId point, Address code, std::string name,
                                AddressRange range = {});

  // Adds a probe version wrapping the point's active version: it counts every call
  // and times one in 64 (see core/probe.hpp). Switch to it to start measuring.
  Result<VersionId> add_probe(PatchPointId point);

  // Applies an update: all its redirects switch, or none do.
  Result<UpdateId> apply(const UpdateRequest& request);
  // Switches explicit versions of existing patch points as one update.
  Result<UpdateId> apply_switches(std::span<const UpdateInfo::Switch> switches, SafetyMode mode,
                                  std::chrono::milliseconds timeout);
  // Adaptive switching: makes `version` the active one with a single atomic store,
  // recording no update (drain semantics). For policies that flip versions often.
  Result<void> switch_version(PatchPointId point, VersionId version);
  // Restores the versions an update replaced. Reverting an update that a newer
  // applied update stacked on (same patch point) is refused: revert that first.
  Result<void> revert(UpdateId id, SafetyMode mode = SafetyMode::drain,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds{2000});

  // True when no thread runs in, or will return into, the given version's code and
  // the version is not active. Stops the other threads briefly to look.
  Result<bool> drained(PatchPointId point, VersionId version);
  // Waits until drained() or the timeout passes (Errc::timed_out).
  Result<void> wait_drained(PatchPointId point, VersionId version,
                            std::chrono::milliseconds timeout);

  // How long the other threads were stopped by the last update or revert.
  std::chrono::nanoseconds last_stop() const;

  Result<PatchPointInfo> info(PatchPointId point) const;
  std::vector<PatchPointInfo> patch_points() const;
  std::vector<UpdateInfo> updates() const;
  Result<PatchPointId> find(Address function) const;

  // The clone of a hijacked function as a callable pointer: the original behaviour.
  template <class Fn>
  Fn* original(PatchPointId point) const {
    auto i = info(point);
    return i ? reinterpret_cast<Fn*>(i->clone) : nullptr;
  }

  struct State;

 private:
  explicit Engine(std::unique_ptr<class Target> target);
  std::unique_ptr<State> state_;
};

}  // namespace dynamos::core
