#include "core/extension_slots.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include "core/engine.hpp"

namespace dynamos::core::exthost {

Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

namespace {

Result<void> create_slot(std::size_t index) {
  Engine& engine = Engine::self();
  Slot& slot = registry().slots[index];
  for (std::size_t h = 0; h < kHookCount; ++h) {
    std::string name =
        "extension slot " + std::to_string(index) + ": " + hook_name(static_cast<Hook>(h));
    auto point = engine.create_dispatch(name, unloaded_code(h),
                                        {unloaded_code(h), unloaded_code(h) + 1}, /*counted=*/true);
    if (!point)
      return std::unexpected(with_context(point.error(), "create dispatch point " + name));
    auto info = engine.info(*point);
    if (!info) return std::unexpected(with_context(info.error(), "inspect dispatch point " + name));
    // Host versions get a nominal range: they are never unloaded, so never drained.
    auto missing = engine.add_version(*point, missing_code(h), "not implemented",
                                      {missing_code(h), missing_code(h) + 1});
    if (!missing) return std::unexpected(with_context(missing.error(), "add version to " + name));
    const Address gate = gate_code(index, h);
    auto gate_version = engine.add_version(*point, gate, "upgrade handover gate", {gate, gate + 1});
    if (!gate_version)
      return std::unexpected(with_context(gate_version.error(), "add version to " + name));
    slot.point[h] = *point;
    slot.stub[h] = info->stub;
    slot.missing[h] = *missing;
    slot.gate[h] = *gate_version;
    slot.active[h] = info->active;
  }
  slot.created = true;
  return {};
}

// Whether a version holds code of a build (as opposed to the host's own versions).
bool is_build_version(const Slot& slot, std::size_t h, VersionId v) {
  return v != 0 && v != slot.missing[h] && v != slot.gate[h];
}

}  // namespace

Result<std::size_t> acquire_slot(const std::string& name) {
  std::lock_guard lock(registry().mutex);
  Slot* slots = registry().slots;
  for (std::size_t i = 0; i < kSlots; ++i)
    if (slots[i].in_use && slots[i].name == name)
      return fail(Errc::state,
                  "an extension named '" + name +
                      "' is already loaded in this process (use upgrade to replace it)");
  // Preferably the slot this name had before, then any created one, then a new one.
  std::optional<std::size_t> pick;
  for (std::size_t i = 0; i < kSlots && !pick; ++i)
    if (!slots[i].in_use && slots[i].created && slots[i].name == name) pick = i;
  for (std::size_t i = 0; i < kSlots && !pick; ++i)
    if (!slots[i].in_use && slots[i].created) pick = i;
  for (std::size_t i = 0; i < kSlots && !pick; ++i)
    if (!slots[i].created) pick = i;
  if (!pick)
    return fail(Errc::busy, "at most " + std::to_string(kSlots) +
                                " extensions can be loaded in one process; unload one first");
  if (!slots[*pick].created)
    if (auto ok = create_slot(*pick); !ok) return std::unexpected(ok.error());
  slots[*pick].in_use = true;
  slots[*pick].name = name;
  return *pick;
}

void release_slot(std::size_t index) {
  std::lock_guard lock(registry().mutex);
  registry().slots[index].in_use = false;
}

Result<void> switch_slot(Slot& slot, const HookVersions& to, std::chrono::milliseconds timeout) {
  std::vector<UpdateInfo::Switch> switches;
  for (std::size_t h = 0; h < kHookCount; ++h)
    if (slot.active[h] != to[h]) switches.push_back({slot.point[h], slot.active[h], to[h]});
  if (switches.empty()) return {};
  auto r = Engine::self().apply_switches(switches, SafetyMode::drain, timeout);
  if (!r) return std::unexpected(r.error());
  slot.active = to;
  return {};
}

Result<void> wait_build_drained(const Slot& slot, const HookVersions& versions,
                                Clock::time_point deadline) {
  Engine& engine = Engine::self();
  for (std::size_t h = 0; h < kHookCount; ++h) {
    VersionId v = versions[h];
    if (!is_build_version(slot, h, v)) continue;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto r = engine.wait_drained(slot.point[h], v, std::max(left, std::chrono::milliseconds{0}));
    if (!r)
      return std::unexpected(with_context(
          r.error(),
          std::string("wait for hook ") + hook_name(static_cast<Hook>(h)) + " to drain"));
  }
  return {};
}

}  // namespace dynamos::core::exthost
