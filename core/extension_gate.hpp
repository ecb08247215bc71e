// The extension host's own pieces of a dispatch point: the versions it provides itself
// ("not loaded", "not implemented") and the handover gate an upgrade routes calls to.
// Private to the extension host (core/extension_host*.cpp).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/error.hpp"
#include "core/extension_abi.h"
#include "core/extension_host.hpp"

namespace dynamos::core::exthost {

using Clock = std::chrono::steady_clock;

// ---- Errors reported by hooks ----
// A hook returns non-zero and leaves its message here, on the thread that called it.
void set_error(const char* message);
void clear_error();
std::string take_error(int rc);  // the message, or "failed (returned RC, no message)"
const std::string& last_error();

// ---- Hooks by index ----
inline constexpr std::size_t kCallHook = static_cast<std::size_t>(Hook::call);
Address hook_code(const dynamos_extension* d, std::size_t hook);  // 0: not implemented
Address unloaded_code(std::size_t hook);                          // the host's "not loaded" version
Address missing_code(std::size_t hook);  // the host's "not implemented" version

// ---- The handover gate ----
// During an upgrade every hook of the extension is switched to its gate version: a
// call waits there until the host has moved the state from the old build to the new
// one, then goes on into whichever build the host opened the gate for. The gate takes
// no context argument, so there is one gate function per slot and hook (templates).
//
// A thread that passes the gate calls a build without going through that build's
// versions, so the engine's drain check of the build cannot see it between reading
// the target and entering the build's code. The gate therefore counts its holders,
// hazard-pointer style: a thread announces itself (holders + 1), then re-reads the
// target, and uses it only if it is unchanged. The host retires a target by replacing
// it and waiting until holders reaches 0: every thread that could still use the old
// target has then left. The host retires only while the dispatch points no longer
// lead to the gate, or while the gate is closed (callers of a closed gate wait
// without holding), so the count only falls.

inline constexpr std::size_t kSlots = 32;

// What a gate leads to when no build is behind it: every hook says so.
extern const dynamos_extension kNotLoaded;

struct Gate {
  std::atomic<const dynamos_extension*> target{&kNotLoaded};
  std::atomic<std::uint64_t> holders{0};

  const dynamos_extension* enter();
  void leave() { holders.fetch_sub(1, std::memory_order_release); }
  // Sends new calls to `d` (nullptr: makes them wait), then waits until no thread
  // holds the previous target.
  Result<void> retarget(const dynamos_extension* d, Clock::time_point deadline);
  // Opens a closed gate: nothing to wait for, nobody held the closed target.
  void open(const dynamos_extension* d);
};

Gate& gate(std::size_t slot);
// The gate version's code of one slot and hook.
Address gate_code(std::size_t slot, std::size_t hook);

}  // namespace dynamos::core::exthost
