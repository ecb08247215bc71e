// The redirect mechanism, and nothing of policy (as livepatch's patch.c): building a
// clone and a dispatch stub for a function, the entry jump that reaches the stub,
// counting trampolines for versions, and the checks that a stopped world allows a
// write. The engine (engine.cpp) and the update transition (transition.cpp) decide
// when these run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "core/near_memory.hpp"
#include "core/relocator.hpp"
#include "core/target.hpp"

namespace dynamos::core {

// The sizes of the code a patch point adds, named once.
inline constexpr std::size_t kStubSize = 8;         // jmp [rip+slot], padded with int3
inline constexpr std::size_t kTrampolineSize = 16;  // lock inc [rip+counter]; jmp [rip+target]
inline constexpr std::size_t kCloneCapacity = 96;   // relocated prologue and its jump back

struct Version {
  VersionId id = 0;
  std::string name;
  Address code = 0;
  AddressRange range;
  Address trampoline = 0;  // counted points: the slot holds this, not `code`
  Address counter = 0;     // counted points: the version's call counter
  bool probe = false;      // a probe: `counter` is followed by timed calls and ticks
  AddressRange trampoline_range() const {
    return {trampoline, trampoline ? trampoline + kTrampolineSize : 0};
  }
  Address slot_value() const { return trampoline ? trampoline : code; }
};

struct PatchPoint {
  PatchPointId id = 0;
  std::string name;
  Address entry = 0;      // 0 for a detached dispatch point
  AddressRange function;  // the original function (entry..entry+size)
  std::size_t overwritten = 0;
  Address clone = 0;
  std::size_t clone_size = 0;
  Address stub = 0;
  Address slot = 0;
  bool counted = false;
  bool installed = false;                 // the entry jump is written
  std::vector<std::uint8_t> entry_bytes;  // the jump to write at `entry`
  std::vector<std::uint8_t> saved_bytes;  // what the jump replaced
  std::vector<InstructionMap> map;
  std::vector<Version> versions;
  VersionId active = 0;

  const Version& version(VersionId v) const { return versions.at(v); }
  AddressRange clone_range() const { return {clone, clone + clone_size}; }
  AddressRange stub_range() const { return {stub, stub + kStubSize}; }
  // Code whose activations belong to version v (for quiescence and drain checks).
  std::vector<AddressRange> ranges_of(VersionId v) const;
};

struct FunctionTarget {
  Address entry = 0;
  std::size_t size = 0;  // 0 when the symbol has no size
  std::string name;
};

// Reads and relocates the function's prologue, allocates its clone, stub and slot
// near it, and writes them (unreachable until install). Nothing at the entry is
// touched. Refused with the reason when the function cannot be patched safely.
Result<PatchPoint> prepare_hijack(Target& target, NearMemory& near, const FunctionTarget& fn,
                                  bool counted);

// A stub and slot with no function behind them (see Engine::create_dispatch).
Result<PatchPoint> prepare_dispatch(Target& target, NearMemory& near, Address initial,
                                    bool counted);

// Adds a version (with its counting trampoline when the point is counted).
Result<VersionId> add_version(Target& target, NearMemory& near, PatchPoint& point, Address code,
                              std::string name, AddressRange range);

// Gives an uncounted point counting trampolines for all its versions, then points
// the slot at the active version's trampoline. Calls already past the slot finish
// uncounted.
Result<void> make_counted(Target& target, NearMemory& near, PatchPoint& point);

// With the world stopped: moves threads out of the bytes the entry jump replaces
// (into the matching instruction of the clone), then writes the jump.
Result<void> install_entry(Target& target, StoppedWorld& world, PatchPoint& point);

// Makes version v the one new calls reach: one atomic store.
Result<void> store_slot(Target& target, PatchPoint& point, VersionId v);

std::uint64_t version_calls(Target& target, const Version& v);

}  // namespace dynamos::core
