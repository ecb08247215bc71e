// A target is the process the engine changes: the calling process (LocalTarget) or
// another one reached through ptrace (the remote target). The engine's mechanism is
// written once against this interface; only memory access and stopping threads
// differ between the two.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace dynamos::core {

using Address = std::uintptr_t;

struct Mapping {
  Address begin = 0;
  Address end = 0;
  std::string perms;  // "r-xp"
  std::uint64_t offset = 0;
  std::string path;  // empty for anonymous memory
  bool executable() const { return perms.size() > 2 && perms[2] == 'x'; }
  bool readable() const { return !perms.empty() && perms[0] == 'r'; }
};

// Parses the text of /proc/PID/maps.
Result<std::vector<Mapping>> parse_maps(std::string_view text);

// One thread of a stopped target.
struct ThreadState {
  pid_t tid = 0;
  Address ip = 0;  // where it stopped
  // Return addresses of the thread's callers, each minus one (so it lies inside the
  // call instruction); the interrupted frame's exact ip is `ip`. Storage belongs to
  // the StoppedWorld (nothing is allocated while other threads are stopped).
  std::span<const Address> frames;
  bool frames_complete = true;  // false when the unwinder could not reach the bottom
};

// Every thread of the target but the caller, stopped until this object is destroyed.
// Code may be written while it lives; set_ip moves a thread before it resumes.
class StoppedWorld {
 public:
  virtual ~StoppedWorld() = default;
  virtual std::span<const ThreadState> threads() const = 0;
  virtual void set_ip(std::size_t index, Address ip) = 0;
};

struct StopOptions {
  bool with_frames = false;  // unwind every thread's stack (quiescence checks)
  std::chrono::milliseconds timeout{1000};
};

class Target {
 public:
  virtual ~Target() = default;
  virtual pid_t pid() const = 0;
  virtual Result<std::vector<Mapping>> mappings() = 0;
  virtual Result<void> read(Address address, std::span<std::uint8_t> out) = 0;
  // Writes code or data whatever the page protection (copy-on-write for file text).
  virtual Result<void> write(Address address, std::span<const std::uint8_t> bytes) = 0;
  // An 8-byte aligned store that other threads observe atomically (version slots).
  virtual Result<void> store_word(Address address, std::uint64_t value) = 0;
  virtual Result<std::uint64_t> load_word(Address address) = 0;
  // Maps fresh anonymous memory exactly at `address` (never replacing a mapping).
  virtual Result<Address> map_fixed(Address address, std::size_t length, int prot) = 0;
  virtual Result<std::unique_ptr<StoppedWorld>> stop_world(const StopOptions& options) = 0;
  // The thread calling the engine, when it belongs to the target (local); else 0.
  virtual pid_t calling_thread() const = 0;
  // The calling thread's own state (local targets check their own stack too).
  virtual ThreadState own_state(bool with_frames) const = 0;

  // Engines whose bookkeeping must live in the target (remote targets, so any later
  // invocation sees it) load it at start and stage the state that an update will
  // produce; the target commits it together with the update's slot stores, or
  // drops it when the update fails. Local targets keep state in the engine.
  virtual Result<std::string> load_state() { return std::string(); }
  virtual void stage_state(std::string /*blob*/) {}
  virtual void drop_staged_state() {}
  // True when every update must stop the world (remote: slot stores and the state
  // commit are written together while the threads are stopped).
  virtual bool always_stop() const { return false; }

  // Registers .eh_frame data with the target's unwinder (__register_frame), so
  // generated code with frames can be unwound. Errc::unsupported without one.
  virtual Result<void> register_unwind_info(Address eh_frame) = 0;

  // What the dynamic linker resolves `name` to in the target (an IFUNC's choice).
  virtual Result<Address> runtime_address(std::string_view name) = 0;
};

// The calling process.
std::unique_ptr<Target> make_local_target();

}  // namespace dynamos::core
