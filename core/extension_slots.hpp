// Slots: the dispatch points of one extension name. The engine never destroys a
// dispatch point, so the host keeps a fixed pool of slots and reuses them: a slot is
// the set of dispatch points (one per hook) of an extension while it is loaded,
// preferably the same slot for the same name again.
// Private to the extension host (core/extension_host*.cpp).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <set>
#include <string>

#include "core/extension_gate.hpp"

namespace dynamos::core::exthost {

using HookVersions = std::array<VersionId, kHookCount>;

struct Slot {
  bool created = false;
  bool in_use = false;
  std::string name;  // the extension holding it, or the last one that did
  std::array<PatchPointId, kHookCount> point{};
  std::array<Address, kHookCount> stub{};
  HookVersions missing{};  // "not implemented"
  HookVersions gate{};
  // The active version of each point as the host last set it; 0 = "not loaded".
  // Written only by the host owning the slot, under its ops_ mutex.
  HookVersions active{};
};

// Never destroyed, like the engine: builds may outlive static destructors at exit.
struct Registry {
  std::mutex mutex;
  Slot slots[kSlots];
  std::set<void*> handles;  // dlopen handles of loaded builds
};
Registry& registry();

// A free slot for `name` (creating its dispatch points on first use); busy when all
// kSlots are taken, a state error when `name` holds one already.
Result<std::size_t> acquire_slot(const std::string& name);
void release_slot(std::size_t index);

// Switches the slot's dispatch points to `to` (one version per hook) as one update.
Result<void> switch_slot(Slot& slot, const HookVersions& to, std::chrono::milliseconds timeout);

// Waits until no thread runs in, or will return into, the code of a build's versions
// (the engine's drain check; host versions are skipped, they are never unmapped).
Result<void> wait_build_drained(const Slot& slot, const HookVersions& versions,
                                Clock::time_point deadline);

}  // namespace dynamos::core::exthost
