// The extension host: loads extensions (shared objects speaking core/extension_abi.h)
// into the calling process, lists and sets their tunables, calls their hooks, and
// upgrades a loaded extension to a new build in place.
//
// Every dispatched hook of an extension (attach, detach, switch_out, switch_in, tick,
// call) is a dispatch point of the live-update engine (Engine::create_dispatch, a
// counted stub). Callers call the stub, through the typed calls below or through the
// raw stub addresses from hooks(), which stay valid across upgrades. Loading installs
// the build's functions as versions; an upgrade adds the new build's functions as
// versions and switches all hooks in one update; unloading switches them to the
// host's "not loaded" version. A build's code is unmapped (dlclose) only after the
// engine reports all of its versions drained. See docs/extensions.md.
//
// Thread safety: every member may be called from any thread. Management calls (load,
// unload, upgrade, set, reset) run one at a time; hook calls never wait for them,
// except that during the short state handover of an upgrade a hook call waits at the
// dispatch point until it can be answered by the new build (or, if the upgrade is
// abandoned, by the old one).
//
// Extension names are unique per process: two hosts in one process cannot load
// extensions of the same name at once.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "core/engine.hpp"
#include "core/extension_abi.h"
#include "core/tunables.hpp"

// The buffer type that extension_abi.h leaves opaque: what hooks append to.
struct dynamos_ext_buffer {
  std::string bytes;
};

namespace dynamos::core {

// The dispatched hooks, in the order of their function pointers in dynamos_extension.
enum class Hook { attach, detach, switch_out, switch_in, tick, call };
inline constexpr std::size_t kHookCount = 6;
const char* hook_name(Hook hook);  // "attach", ..., "call"
Result<Hook> parse_hook(std::string_view name);

// What a subject hook acts on; converted to dynamos_ext_subject for the call.
struct Subject {
  dynamos_subject_kind kind = DYNAMOS_SUBJECT_JOB;
  std::uint64_t id = 0;
  std::string name;
  std::string cgroup;  // relative to the cgroup root(s), "" when none
  std::vector<std::int32_t> pids;
  std::string policy;  // "" = the extension's default
  std::vector<std::pair<std::string, std::string>> attrs;
};

struct TunableInfo {
  TunableSpec spec;  // name, type, runtime flag, range, choices, help, default
  TunableValue value;
  std::string text;  // canonical text of value
  ValueSource source = ValueSource::default_value;
  std::string origin;       // "DYNAMOS_COUNTER_STEP", "/etc/dynamos.conf:4", "" (default/runtime)
  std::string environment;  // the variable that would set it: DYNAMOS_<EXT>_<KEY>
};

struct ExtensionInfo {
  std::string name;
  std::string version;
  std::string description;
  std::string path;         // the shared object the running build was loaded from
  std::vector<Hook> hooks;  // dispatched hooks the running build implements
  bool exports_state = false;
  bool imports_state = false;
  std::vector<TunableInfo> tunables;
  unsigned builds = 1;  // builds loaded so far under this name: 1 + successful upgrades
};

// The stub addresses of an extension's dispatch points, callable like the hooks.
// Valid for the life of the process; after unload they answer "not loaded" (non-zero,
// ExtensionHost::last_error() says so) until another extension takes the slot.
struct ExtensionHooks {
  dynamos_subject_hook attach = nullptr;
  dynamos_subject_hook detach = nullptr;
  dynamos_subject_hook switch_out = nullptr;
  dynamos_subject_hook switch_in = nullptr;
  dynamos_subject_hook tick = nullptr;
  dynamos_call_hook call = nullptr;
};

struct UpgradeReport {
  std::string name;
  std::string old_version, new_version;
  std::size_t state_bytes = 0;  // exported by the old build, imported by the new
  bool state_carried = false;   // false when the old build exports no state
  // Time hook calls were held at the dispatch points (drain of the old build plus the
  // state handover), and the whole upgrade.
  std::chrono::microseconds held{0};
  std::chrono::microseconds total{0};
};

struct HostOptions {
  // `ext.key = value` lines (see ConfigFile); empty: no config file.
  std::string config_path;
  // Where DYNAMOS_<EXT>_<KEY> values are read; tests substitute their own.
  EnvironmentLookup environment = process_environment();
  // Log lines from the host and from extensions (host->log). Default: warnings and
  // errors to stderr. `extension` is "" for the host's own lines.
  std::function<void(int level, std::string_view extension, std::string_view message)> log;
  // How long unload and upgrade wait for an old build's calls to finish.
  std::chrono::milliseconds drain_timeout{5000};
  // How long one switch of an extension's dispatch points may take. Switching several
  // points as one update stops the other threads briefly; on a loaded machine that
  // can take tens of milliseconds.
  std::chrono::milliseconds switch_timeout{2000};
};

// One JSON object (one line) each, for `dynamos ext list --json` and the agent's
// replies: every field of the structs, values as canonical text.
std::string to_json(const TunableInfo& tunable);
std::string to_json(const ExtensionInfo& extension);

class ExtensionHost {
 public:
  // Reads the config file now (a malformed file is reported by create, not later).
  static Result<std::unique_ptr<ExtensionHost>> create(HostOptions options = {});
  ~ExtensionHost();  // unloads every extension; one that does not drain stays mapped

  ExtensionHost(const ExtensionHost&) = delete;
  ExtensionHost& operator=(const ExtensionHost&) = delete;

  // Loads an extension: checks the ABI symbol before calling anything, reads the
  // descriptor, resolves its tunables (environment > config > default), calls init,
  // and routes its dispatch points to it. On any failure nothing stays loaded.
  Result<ExtensionInfo> load(const std::string& path);
  // Routes the extension's hooks to "not loaded", waits until its build drained,
  // calls fini and unmaps it. If it does not drain in time it stays loaded (busy).
  Result<void> unload(std::string_view name);
  // Replaces the running build of `name` with the build at `path` (same extension
  // name), carrying its state (export_state -> import_state) and its runtime-set
  // tunables. Calls go on throughout. If the new build fails to load or initialise,
  // refuses the state, or a runtime-set tunable is not valid for it, or the old build
  // does not drain in time, the old build keeps serving with its state untouched.
  Result<UpgradeReport> upgrade(std::string_view name, const std::string& path);

  std::vector<ExtensionInfo> list() const;
  Result<ExtensionInfo> info(std::string_view name) const;

  Result<TunableInfo> get(std::string_view extension, std::string_view key) const;
  // Sets a runtime-changeable tunable. A value of the wrong type or out of range, a
  // tunable fixed at load, or a change the extension refuses (on_tunable) is an error
  // naming the tunable (and its range); nothing changes then.
  Result<TunableInfo> set(std::string_view extension, std::string_view key, std::string_view value);
  Result<TunableInfo> set(std::string_view assignment);  // "ext.key=value"
  // Drops a runtime value: environment, config file or default apply again.
  Result<TunableInfo> reset(std::string_view extension, std::string_view key);

  // Calls a dispatched hook through its stub. Returns the report or reply the hook
  // appended (JSON by convention, may be empty).
  Result<std::string> call_hook(std::string_view extension, Hook hook, const Subject& subject);
  Result<std::string> attach(std::string_view ext, const Subject& s) {
    return call_hook(ext, Hook::attach, s);
  }
  Result<std::string> detach(std::string_view ext, const Subject& s) {
    return call_hook(ext, Hook::detach, s);
  }
  Result<std::string> switch_out(std::string_view ext, const Subject& s) {
    return call_hook(ext, Hook::switch_out, s);
  }
  Result<std::string> switch_in(std::string_view ext, const Subject& s) {
    return call_hook(ext, Hook::switch_in, s);
  }
  Result<std::string> tick(std::string_view ext, const Subject& s) {
    return call_hook(ext, Hook::tick, s);
  }
  Result<std::string> call(std::string_view extension, std::string_view op,
                           std::string_view args = {});

  // The stub addresses, for callers that call hooks in a hot loop.
  Result<ExtensionHooks> hooks(std::string_view extension) const;
  // The engine's dispatch point of one hook (for listings and tests).
  Result<PatchPointId> dispatch_point(std::string_view extension, Hook hook) const;

  // The message of the last hook call on this thread that returned non-zero (set by
  // the extension with host->set_error, or by the host's "not loaded" version).
  static std::string last_error();

  struct Build;
  struct Loaded;

 private:
  class NewBuild;  // a build being brought in, undone unless kept (extension_build.hpp)
  class Upgrade;   // the phases of one upgrade (extension_host_upgrade.cpp)

  explicit ExtensionHost(HostOptions options);
  void log(int level, std::string_view extension, std::string_view message) const;
  Loaded* find_loaded(std::string_view name) const;  // nullptr: not loaded
  Result<std::unique_ptr<Build>> open_build(const std::string& path);
  Result<void> resolve_tunables(Build& build, const Build* previous);
  Result<void> init_build(Build& build);
  void close_build(std::unique_ptr<Build> build);
  ExtensionInfo describe(const Loaded& loaded) const;
  TunableInfo describe_tunable(const Build& build, std::size_t index) const;
  // Offers `value` to the build (its on_tunable may refuse: the error says `what` and the
  // value), then stores it with where it came from.
  Result<TunableInfo> change_tunable(Build& build, std::size_t index, const TunableValue& value,
                                     ValueSource source, std::string origin,
                                     const std::string& what);
  // Asks the build's on_tunable whether it accepts a new value (refused: why).
  Result<void> offer_tunable(const Build& build, std::size_t index, const TunableValue& value,
                             const std::string& text);
  Result<std::pair<Loaded*, std::size_t>> find_tunable(std::string_view extension,
                                                       std::string_view key) const;  // table_ held
  // A tunable that set or reset (`verb`) changes, looked up under table_: its build, its
  // index and its full name (EXT.KEY); errors start with "VERB EXT.KEY".
  struct TunableToChange {
    Build& build;
    std::size_t index;
    std::string full;
  };
  Result<TunableToChange> tunable_to_change(std::string_view extension, std::string_view key,
                                            std::string_view verb) const;

  HostOptions options_;
  std::unique_ptr<ConfigFile> config_;
  std::mutex ops_;                   // one management call at a time
  mutable std::shared_mutex table_;  // guards extensions_ and tunable sources
  std::map<std::string, std::unique_ptr<Loaded>, std::less<>> extensions_;
};

}  // namespace dynamos::core
