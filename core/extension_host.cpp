// The extension host's life cycle of an extension: load, unload (upgrade is in
// extension_host_upgrade.cpp). The pieces it composes: the handover gate and the
// host's own versions (extension_gate), the pool of dispatch points (extension_slots),
// building an extension from its object (extension_build).
#include "core/extension_host.hpp"
#include "base/names.hpp"

#include <cstdio>
#include <utility>

#include "core/extension_build.hpp"

namespace dynamos::core {

using namespace exthost;

namespace {

void default_log(int level, std::string_view extension, std::string_view message) {
  if (level > DYNAMOS_LOG_WARNING) return;
  std::fprintf(stderr, "dynamos extension host%s%.*s%s: %s%.*s\n", extension.empty() ? "" : " [",
               static_cast<int>(extension.size()), extension.data(), extension.empty() ? "" : "]",
               level == DYNAMOS_LOG_ERROR ? "error: " : "warning: ",
               static_cast<int>(message.size()), message.data());
}

// A slot taken for a load, given back unless the load keeps it.
struct SlotLease {
  std::size_t index;
  bool kept = false;
  ~SlotLease() {
    if (!kept) release_slot(index);
  }
};

}  // namespace

const char* hook_name(Hook hook) {
  static constexpr const char* kNames[] = {"attach",    "detach", "switch_out",
                                           "switch_in", "tick",   "call"};  // in enum order
  return enum_name(kNames, hook, "unknown");
}

Result<Hook> parse_hook(std::string_view name) {
  for (std::size_t h = 0; h < kHookCount; ++h)
    if (name == hook_name(static_cast<Hook>(h))) return static_cast<Hook>(h);
  return fail(Errc::invalid_argument, "unknown hook '" + std::string(name) +
                                          "' (attach, detach, switch_out, switch_in, tick, call)");
}

// ---- A build being brought in ----

ExtensionHost::NewBuild::NewBuild(ExtensionHost& host, std::unique_ptr<Build> build,
                                  int fini_reason)
    : host_(host), build_(std::move(build)), fini_reason_(fini_reason) {}

ExtensionHost::NewBuild::~NewBuild() {
  if (!build_) return;
  if (initialised_ && build_->desc->fini) build_->desc->fini(fini_reason_);
  host_.close_build(std::move(build_));
}

Result<void> ExtensionHost::NewBuild::init() {
  if (auto ok = host_.init_build(*build_); !ok) return ok;
  initialised_ = true;
  return {};
}

Result<void> ExtensionHost::NewBuild::add_versions(const Slot& slot) {
  Build& b = *build_;
  for (std::size_t h = 0; h < kHookCount; ++h) {
    Address code = hook_code(b.desc, h);
    if (!code) {
      b.versions[h] = slot.missing[h];
      continue;
    }
    auto v = Engine::self().add_version(slot.point[h], code, b.name + " " + b.version, b.text);
    if (!v) return std::unexpected(v.error());
    b.versions[h] = *v;
  }
  return {};
}

// ---- The host ----

ExtensionHost::ExtensionHost(HostOptions options) : options_(std::move(options)) {
  if (!options_.log) options_.log = default_log;
}

Result<std::unique_ptr<ExtensionHost>> ExtensionHost::create(HostOptions options) {
  std::unique_ptr<ExtensionHost> host(new ExtensionHost(std::move(options)));
  if (!host->options_.config_path.empty()) {
    auto config = ConfigFile::load(host->options_.config_path);
    if (!config) return std::unexpected(config.error());
    host->config_ = std::make_unique<ConfigFile>(std::move(*config));
  }
  return host;
}

ExtensionHost::~ExtensionHost() {
  std::vector<std::string> names;
  {
    std::shared_lock lock(table_);
    for (const auto& [name, loaded] : extensions_)
      names.push_back(name);
  }
  for (const auto& name : names)
    if (auto r = unload(name); !r)
      log(DYNAMOS_LOG_ERROR, name, "left loaded at host shutdown: " + r.error().message());
  // What did not drain stays mapped, with its Build, on purpose: threads still run in it.
  for (auto& [name, loaded] : extensions_)
    (void)loaded.release();
}

void ExtensionHost::log(int level, std::string_view extension, std::string_view message) const {
  options_.log(level, extension, message);
}

ExtensionHost::Loaded* ExtensionHost::find_loaded(std::string_view name) const {
  std::shared_lock lock(table_);
  auto it = extensions_.find(name);
  return it == extensions_.end() ? nullptr : it->second.get();
}

Result<ExtensionInfo> ExtensionHost::load(const std::string& path) {
  std::lock_guard ops(ops_);
  const std::string what = "load extension " + path;
  auto opened = open_build(path);
  if (!opened) return std::unexpected(opened.error());
  NewBuild build(*this, std::move(*opened), DYNAMOS_FINI_UNLOAD);
  if (const Loaded* other = find_loaded(build->name))
    return fail(Errc::state, what + ": '" + build->name + "' is loaded already from " +
                                 other->build->path + " (use upgrade to replace it)");
  if (auto ok = resolve_tunables(*build, nullptr); !ok)
    return std::unexpected(with_context(ok.error(), what));
  auto slot_index = acquire_slot(build->name);
  if (!slot_index) return std::unexpected(with_context(slot_index.error(), what));
  SlotLease lease{*slot_index};
  if (auto ok = build.init(); !ok) return std::unexpected(ok.error());
  Slot& slot = registry().slots[*slot_index];
  if (auto ok = build.add_versions(slot); !ok)
    return std::unexpected(with_context(ok.error(), what));
  if (auto ok = switch_slot(slot, build->versions, options_.switch_timeout); !ok)
    return std::unexpected(with_context(ok.error(), what + ": route its hooks"));

  log(DYNAMOS_LOG_INFO, build->name, "loaded " + build->label());
  lease.kept = true;
  auto loaded = std::make_unique<Loaded>();
  loaded->slot = *slot_index;
  loaded->build = build.keep();
  std::unique_lock lock(table_);
  auto [it, inserted] = extensions_.emplace(loaded->build->name, std::move(loaded));
  return describe(*it->second);
}

Result<void> ExtensionHost::unload(std::string_view name) {
  std::lock_guard ops(ops_);
  Loaded* loaded = find_loaded(name);
  if (!loaded)
    return fail(Errc::not_found, "unload extension " + std::string(name) + ": not loaded");
  Build& build = *loaded->build;
  Slot& slot = registry().slots[loaded->slot];
  Gate& gate = exthost::gate(loaded->slot);
  const std::string what = "unload " + build.label();
  const auto deadline = Clock::now() + options_.drain_timeout;
  if (auto ok = switch_slot(slot, {}, options_.switch_timeout); !ok)
    return std::unexpected(with_context(ok.error(), what));
  // Calls still on their way through the gate (from the last upgrade) must not reach
  // the build either.
  auto drained = gate.retarget(&kNotLoaded, deadline);
  if (drained) drained = wait_build_drained(slot, build.versions, deadline);
  if (!drained) {
    // Still in use: serve again rather than leave callers with "not loaded".
    gate.open(build.desc);
    if (auto back = switch_slot(slot, build.versions, options_.switch_timeout); !back)
      log(DYNAMOS_LOG_ERROR, build.name,
          what + ": cannot route hooks back: " + back.error().message());
    Error e = with_context(drained.error(), what + " (left loaded)");
    e.code = Errc::busy;
    return std::unexpected(e);
  }
  if (build.desc->fini) build.desc->fini(DYNAMOS_FINI_UNLOAD);
  std::unique_ptr<Loaded> taken;
  {
    std::unique_lock lock(table_);
    auto it = extensions_.find(name);
    taken = std::move(it->second);
    extensions_.erase(it);
  }
  log(DYNAMOS_LOG_INFO, taken->build->name, "unloaded " + taken->build->label());
  close_build(std::move(taken->build));
  release_slot(taken->slot);
  return {};
}

}  // namespace dynamos::core
