#include "core/extension_host.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>
#include <thread>
#include <utility>

namespace dynamos::core {

namespace {

using Clock = std::chrono::steady_clock;

// ---- Errors reported by hooks -----------------------------------------------------
// A hook returns non-zero and leaves its message here, on the thread that called it.

thread_local std::string t_error;
thread_local bool t_error_set = false;

void set_error(const char* message) {
  t_error = message ? message : "";
  t_error_set = true;
}

void clear_error() {
  t_error.clear();
  t_error_set = false;
}

std::string take_error(int rc) {
  std::string m = t_error_set && !t_error.empty()
                      ? t_error
                      : "failed (returned " + std::to_string(rc) + ", no message)";
  clear_error();
  return m;
}

// ---- Versions the host itself provides ---------------------------------------------

int unloaded_subject(const dynamos_ext_subject*, dynamos_ext_buffer*) {
  set_error("extension not loaded (its dispatch point has no build)");
  return -1;
}
int unloaded_call(const char*, const char*, dynamos_ext_buffer*) {
  set_error("extension not loaded (its dispatch point has no build)");
  return -1;
}
int missing_subject(const dynamos_ext_subject*, dynamos_ext_buffer*) {
  set_error("hook not implemented by the running build");
  return -1;
}
int missing_call(const char*, const char*, dynamos_ext_buffer*) {
  set_error("hook not implemented by the running build");
  return -1;
}

constexpr dynamos_subject_hook dynamos_extension::*kSubjectHooks[] = {
    &dynamos_extension::attach,    &dynamos_extension::detach, &dynamos_extension::switch_out,
    &dynamos_extension::switch_in, &dynamos_extension::tick,
};
constexpr std::size_t kCallHook = static_cast<std::size_t>(Hook::call);
static_assert(std::size(kSubjectHooks) == kCallHook && kCallHook + 1 == kHookCount);

Address hook_code(const dynamos_extension* d, std::size_t h) {
  if (h < kCallHook) return reinterpret_cast<Address>(d->*kSubjectHooks[h]);
  return reinterpret_cast<Address>(d->call);
}

Address unloaded_code(std::size_t h) {
  return h < kCallHook ? reinterpret_cast<Address>(&unloaded_subject)
                       : reinterpret_cast<Address>(&unloaded_call);
}

Address missing_code(std::size_t h) {
  return h < kCallHook ? reinterpret_cast<Address>(&missing_subject)
                       : reinterpret_cast<Address>(&missing_call);
}

// ---- The handover gate ----------------------------------------------------------------
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

constexpr std::size_t kSlots = 32;

// What a gate leads to when no build is behind it: every hook says so.
const dynamos_extension kNotLoaded = {DYNAMOS_EXTENSION_ABI,
                                      sizeof(dynamos_extension),
                                      "",
                                      "",
                                      "",
                                      nullptr,
                                      0,
                                      0,
                                      nullptr,
                                      nullptr,
                                      nullptr,
                                      nullptr,
                                      nullptr,
                                      &unloaded_subject,
                                      &unloaded_subject,
                                      &unloaded_subject,
                                      &unloaded_subject,
                                      &unloaded_subject,
                                      &unloaded_call};

struct Gate {
  std::atomic<const dynamos_extension*> target{&kNotLoaded};
  std::atomic<std::uint64_t> holders{0};

  const dynamos_extension* enter() {
    for (;;) {
      const dynamos_extension* d = target.load();
      if (!d) {
        target.wait(nullptr);  // closed: an upgrade is handing the state over
        continue;
      }
      holders.fetch_add(1);
      if (target.load() == d) return d;  // the partner is the store in retarget()
      holders.fetch_sub(1);
    }
  }
  void leave() { holders.fetch_sub(1, std::memory_order_release); }

  // Sends new calls to `d` (nullptr: makes them wait), then waits until no thread
  // holds the previous target.
  Result<void> retarget(const dynamos_extension* d, Clock::time_point deadline) {
    target.store(d);
    if (d) target.notify_all();
    auto pause = std::chrono::microseconds(10);
    while (holders.load(std::memory_order_acquire) != 0) {
      if (Clock::now() > deadline)
        return fail(Errc::timed_out, std::to_string(holders.load()) +
                                         " call(s) through the handover gate still running");
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(5000));
    }
    return {};
  }
  // Opens a closed gate: nothing to wait for, nobody held the closed target.
  void open(const dynamos_extension* d) {
    target.store(d);
    target.notify_all();
  }
};

Gate g_gates[kSlots];

template <std::size_t S, std::size_t H>
int gate_subject(const dynamos_ext_subject* subject, dynamos_ext_buffer* report) {
  Gate& gate = g_gates[S];
  dynamos_subject_hook fn = gate.enter()->*kSubjectHooks[H];
  int rc = fn ? fn(subject, report) : missing_subject(subject, report);
  gate.leave();
  return rc;
}

template <std::size_t S>
int gate_call(const char* op, const char* args, dynamos_ext_buffer* reply) {
  Gate& gate = g_gates[S];
  dynamos_call_hook fn = gate.enter()->call;
  int rc = fn ? fn(op, args, reply) : missing_call(op, args, reply);
  gate.leave();
  return rc;
}

template <std::size_t S>
std::array<Address, kHookCount> gate_row() {
  return {reinterpret_cast<Address>(&gate_subject<S, 0>),
          reinterpret_cast<Address>(&gate_subject<S, 1>),
          reinterpret_cast<Address>(&gate_subject<S, 2>),
          reinterpret_cast<Address>(&gate_subject<S, 3>),
          reinterpret_cast<Address>(&gate_subject<S, 4>),
          reinterpret_cast<Address>(&gate_call<S>)};
}

template <std::size_t... S>
std::array<std::array<Address, kHookCount>, kSlots> gate_table(std::index_sequence<S...>) {
  return {gate_row<S>()...};
}

const std::array<std::array<Address, kHookCount>, kSlots> kGates =
    gate_table(std::make_index_sequence<kSlots>{});

// ---- Slots: the dispatch points of one extension name ------------------------------
// The engine never destroys a dispatch point, so the host keeps a fixed pool of slots
// and reuses them: a slot is the set of dispatch points (one per hook) of an
// extension while it is loaded, preferably the same slot for the same name again.

struct Slot {
  bool created = false;
  bool in_use = false;
  std::string name;  // the extension holding it, or the last one that did
  std::array<PatchPointId, kHookCount> point{};
  std::array<Address, kHookCount> stub{};
  std::array<VersionId, kHookCount> missing{};  // "not implemented"
  std::array<VersionId, kHookCount> gate{};
  // The active version of each point as the host last set it; 0 = "not loaded".
  // Written only by the host owning the slot, under its ops_ mutex.
  std::array<VersionId, kHookCount> active{};
};

// Never destroyed, like the engine: builds may outlive static destructors at exit.
struct Registry {
  std::mutex mutex;
  Slot slots[kSlots];
  std::set<void*> handles;  // dlopen handles of loaded builds
};
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

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
    auto gate = engine.add_version(*point, kGates[index][h], "upgrade handover gate",
                                   {kGates[index][h], kGates[index][h] + 1});
    if (!gate) return std::unexpected(with_context(gate.error(), "add version to " + name));
    slot.point[h] = *point;
    slot.stub[h] = info->stub;
    slot.missing[h] = *missing;
    slot.gate[h] = *gate;
    slot.active[h] = info->active;
  }
  slot.created = true;
  return {};
}

Result<std::size_t> acquire_slot(const std::string& name) {
  std::lock_guard lock(registry().mutex);
  for (const Slot& s : registry().slots)
    if (s.in_use && s.name == name)
      return fail(Errc::state,
                  "an extension named '" + name +
                      "' is already loaded in this process (use upgrade to replace it)");
  std::optional<std::size_t> pick;
  for (std::size_t i = 0; i < kSlots && !pick; ++i)
    if (!registry().slots[i].in_use && registry().slots[i].created &&
        registry().slots[i].name == name)
      pick = i;
  for (std::size_t i = 0; i < kSlots && !pick; ++i)
    if (!registry().slots[i].in_use && registry().slots[i].created) pick = i;
  for (std::size_t i = 0; i < kSlots && !pick; ++i)
    if (!registry().slots[i].created) pick = i;
  if (!pick)
    return fail(Errc::busy, "at most " + std::to_string(kSlots) +
                                " extensions can be loaded in one process; unload one first");
  if (!registry().slots[*pick].created)
    if (auto ok = create_slot(*pick); !ok) return std::unexpected(ok.error());
  registry().slots[*pick].in_use = true;
  registry().slots[*pick].name = name;
  return *pick;
}

void release_slot(std::size_t index) {
  std::lock_guard lock(registry().mutex);
  registry().slots[index].in_use = false;
}

// Switches the slot's dispatch points to `to` (one version per hook) as one update.
Result<void> switch_slot(Slot& slot, const std::array<VersionId, kHookCount>& to,
                         std::chrono::milliseconds timeout) {
  std::vector<UpdateInfo::Switch> switches;
  for (std::size_t h = 0; h < kHookCount; ++h)
    if (slot.active[h] != to[h]) switches.push_back({slot.point[h], slot.active[h], to[h]});
  if (switches.empty()) return {};
  auto r = Engine::self().apply_switches(switches, SafetyMode::drain, timeout);
  if (!r) return std::unexpected(r.error());
  slot.active = to;
  return {};
}

// Whether a version holds code of a build (as opposed to the host's own versions).
bool is_build_version(const Slot& slot, std::size_t h, VersionId v) {
  return v != 0 && v != slot.missing[h] && v != slot.gate[h];
}

// Waits until no thread runs in, or will return into, the code of a build's versions
// (the engine's drain check; host versions are skipped, they are never unmapped).
Result<void> wait_build_drained(const Slot& slot, const std::array<VersionId, kHookCount>& versions,
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

// The executable part of a loaded object: what the engine checks for threads.
AddressRange text_range(void* handle) {
  struct link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || !map) return {};
  struct Search {
    const link_map* map;
    AddressRange range;
  } search{map, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto* s = static_cast<Search*>(data);
        if (info->dlpi_addr != s->map->l_addr || !info->dlpi_name ||
            std::strcmp(info->dlpi_name, s->map->l_name) != 0)
          return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
          Address begin = info->dlpi_addr + ph.p_vaddr;
          Address end = begin + ph.p_memsz;
          if (s->range.begin == 0 || begin < s->range.begin) s->range.begin = begin;
          if (end > s->range.end) s->range.end = end;
        }
        return 1;
      },
      &search);
  return search.range;
}

// A private copy of a shared object, so that dlopen maps it afresh even when the same
// path (or the same file under another name) is loaded already.
Result<std::string> private_copy(const std::string& path) {
  std::string dir = std::filesystem::temp_directory_path().string();
  std::string name = dir + "/dynamos-ext-XXXXXX.so";
  int fd = mkstemps(name.data(), 3);
  if (fd < 0) return fail_errno("create a private copy of " + path + " in " + dir);
  std::error_code ec;
  ::close(fd);
  std::filesystem::copy_file(path, name, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) {
    ::unlink(name.c_str());
    return fail_errno(ec.value(), "copy " + path + " to " + name);
  }
  return name;
}

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

void default_log(int level, std::string_view extension, std::string_view message) {
  if (level > DYNAMOS_LOG_WARNING) return;
  std::fprintf(stderr, "dynamos extension host%s%.*s%s: %s%.*s\n", extension.empty() ? "" : " [",
               static_cast<int>(extension.size()), extension.data(), extension.empty() ? "" : "]",
               level == DYNAMOS_LOG_ERROR ? "error: " : "warning: ",
               static_cast<int>(message.size()), message.data());
}

}  // namespace

// ---- Builds -----------------------------------------------------------------------------

namespace {
struct TunableSlot {
  std::atomic<std::int64_t> integer{0};
  std::atomic<double> real{0};
  // Written with the host's table_ lock held exclusively.
  ValueSource source = ValueSource::default_value;
  std::string origin;
};
}  // namespace

// One loaded shared object of an extension.
struct ExtensionHost::Build {
  const HostOptions* options = nullptr;
  std::string path;    // as the caller gave it
  std::string mapped;  // the private copy mapped instead, if any (already unlinked)
  void* handle = nullptr;
  const dynamos_extension* desc = nullptr;
  std::string name, version, description;
  AddressRange text;
  std::vector<TunableSpec> specs;
  std::unique_ptr<TunableSlot[]> values;
  dynamos_ext_host api{};
  std::array<VersionId, kHookCount> versions{};  // this build's version of each hook

  void store(std::size_t i, const TunableValue& v) {
    values[i].integer.store(v.integer, std::memory_order_relaxed);
    values[i].real.store(v.real, std::memory_order_relaxed);
  }
  TunableValue load(std::size_t i) const {
    return {values[i].integer.load(std::memory_order_relaxed),
            values[i].real.load(std::memory_order_relaxed)};
  }
  std::optional<std::size_t> index_of(std::string_view key) const {
    for (std::size_t i = 0; i < specs.size(); ++i)
      if (specs[i].name == key) return i;
    return std::nullopt;
  }
};

struct ExtensionHost::Loaded {
  std::size_t slot = 0;
  std::unique_ptr<Build> build;
  unsigned builds = 1;
};

namespace {

using Build = ExtensionHost::Build;

std::int64_t api_get_integer(const dynamos_ext_host* host, std::uint32_t index) {
  const auto* b = static_cast<const Build*>(host->context);
  if (index >= b->specs.size()) return 0;
  return b->values[index].integer.load(std::memory_order_relaxed);
}

double api_get_float(const dynamos_ext_host* host, std::uint32_t index) {
  const auto* b = static_cast<const Build*>(host->context);
  if (index >= b->specs.size()) return 0;
  return b->values[index].real.load(std::memory_order_relaxed);
}

void api_set_error(const dynamos_ext_host*, const char* message) {
  set_error(message);
}

int api_append(dynamos_ext_buffer* buffer, const void* data, std::size_t size) {
  if (!buffer || (!data && size)) return -1;
  try {
    buffer->bytes.append(static_cast<const char*>(data), size);
  } catch (const std::bad_alloc&) {
    return -1;
  }
  return 0;
}

void api_log(const dynamos_ext_host* host, int level, const char* message) {
  const auto* b = static_cast<const Build*>(host->context);
  b->options->log(level, b->name, message ? message : "");
}

std::string build_label(const Build& b) {
  return b.name + " " + b.version + " (" + b.path + ")";
}

}  // namespace

const char* hook_name(Hook hook) {
  switch (hook) {
    case Hook::attach:
      return "attach";
    case Hook::detach:
      return "detach";
    case Hook::switch_out:
      return "switch_out";
    case Hook::switch_in:
      return "switch_in";
    case Hook::tick:
      return "tick";
    case Hook::call:
      return "call";
  }
  return "unknown";
}

Result<Hook> parse_hook(std::string_view name) {
  for (std::size_t h = 0; h < kHookCount; ++h)
    if (name == hook_name(static_cast<Hook>(h))) return static_cast<Hook>(h);
  return fail(Errc::invalid_argument, "unknown hook '" + std::string(name) +
                                          "' (attach, detach, switch_out, switch_in, tick, call)");
}

// ---- The host ----------------------------------------------------------------------------

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

Result<std::unique_ptr<Build>> ExtensionHost::open_build(const std::string& path) {
  const std::string what = "load extension " + path;
  if (path.empty()) return fail(Errc::invalid_argument, "load extension: no path given");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail_errno(what);
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_argument, what + ": not a regular file");

  auto build = std::make_unique<Build>();
  build->options = &options_;
  // Absolute, so that dlopen never searches the library path for a bare file name.
  std::error_code ec;
  build->path = std::filesystem::absolute(path, ec).lexically_normal().string();
  if (ec) build->path = path;
  dlerror();
  build->handle = dlopen(build->path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!build->handle) {
    const char* e = dlerror();
    return fail(Errc::invalid_argument, what + ": " + (e ? e : "dlopen failed"));
  }
  bool shared_handle = false;
  {
    std::lock_guard lock(registry().mutex);
    shared_handle = registry().handles.count(build->handle) != 0;
  }
  if (shared_handle) {
    // The loader returned an object already loaded (same path): map a private copy so
    // that old and new builds have their own code and globals.
    dlclose(build->handle);
    build->handle = nullptr;
    auto copy = private_copy(build->path);
    if (!copy) return std::unexpected(with_context(copy.error(), what));
    build->mapped = *copy;
    build->handle = dlopen(copy->c_str(), RTLD_NOW | RTLD_LOCAL);
    ::unlink(copy->c_str());
    if (!build->handle) {
      const char* e = dlerror();
      return fail(Errc::invalid_argument, what + " (private copy): " + (e ? e : "dlopen failed"));
    }
  }
  auto refuse = [&](Errc code, std::string why) {
    dlclose(build->handle);
    return fail(code, what + ": " + why);
  };

  // The ABI number first, before any code of the object is called.
  const auto* abi =
      static_cast<const std::uint32_t*>(dlsym(build->handle, DYNAMOS_EXTENSION_ABI_SYMBOL));
  if (!abi)
    return refuse(Errc::invalid_argument,
                  "not a DynAMOS extension (no symbol " DYNAMOS_EXTENSION_ABI_SYMBOL ")");
  if (*abi != DYNAMOS_EXTENSION_ABI)
    return refuse(Errc::version_mismatch, "built for extension ABI " + std::to_string(*abi) +
                                              ", this host speaks ABI " +
                                              std::to_string(DYNAMOS_EXTENSION_ABI) +
                                              "; rebuild it against this core/extension_abi.h");
  auto entry = reinterpret_cast<dynamos_extension_entry_fn>(
      dlsym(build->handle, DYNAMOS_EXTENSION_ENTRY_SYMBOL));
  if (!entry)
    return refuse(Errc::invalid_argument, "no entry point " DYNAMOS_EXTENSION_ENTRY_SYMBOL
                                          " (define it with DYNAMOS_EXTENSION_DEFINE)");
  const dynamos_extension* d = entry();
  if (!d) return refuse(Errc::invalid_argument, "the entry point returned no descriptor");
  if (d->abi != DYNAMOS_EXTENSION_ABI)
    return refuse(Errc::version_mismatch, "the descriptor says ABI " + std::to_string(d->abi) +
                                              ", the object's symbol says " + std::to_string(*abi));
  if (d->size < sizeof(dynamos_extension))
    return refuse(Errc::version_mismatch, "the descriptor is " + std::to_string(d->size) +
                                              " bytes, ABI " +
                                              std::to_string(DYNAMOS_EXTENSION_ABI) + " needs " +
                                              std::to_string(sizeof(dynamos_extension)));
  if (!d->name || !is_extension_name(d->name))
    return refuse(Errc::invalid_argument,
                  std::string("extension name '") + (d->name ? d->name : "(null)") +
                      "' is not lower case letters and digits starting with a letter");
  if (!d->version || !*d->version) return refuse(Errc::invalid_argument, "no version string");
  if (d->reserved != 0) return refuse(Errc::invalid_argument, "reserved field is not 0");
  if (d->tunable_count && !d->tunables)
    return refuse(Errc::invalid_argument, "tunable_count is set but the table is missing");
  build->desc = d;
  build->name = d->name;
  build->version = d->version;
  build->description = d->description ? d->description : "";
  for (std::uint32_t i = 0; i < d->tunable_count; ++i) {
    auto spec = TunableSpec::from_abi(d->tunables[i]);
    if (!spec) return refuse(Errc::invalid_argument, spec.error().what);
    if (build->index_of(spec->name))
      return refuse(Errc::invalid_argument, "tunable '" + spec->name + "' is registered twice");
    build->specs.push_back(std::move(*spec));
  }
  build->values = std::make_unique<TunableSlot[]>(build->specs.size());
  build->text = text_range(build->handle);
  if (build->text.begin == 0)
    return refuse(Errc::invalid_argument, "cannot find the object's executable segment");
  return build;
}

Result<void> ExtensionHost::resolve_tunables(Build& build, const Build* previous) {
  for (std::size_t i = 0; i < build.specs.size(); ++i) {
    const TunableSpec& spec = build.specs[i];
    if (previous) {
      // A value set at runtime on the old build carries over, if the new build accepts it.
      auto p = previous->index_of(spec.name);
      if (p && previous->values[*p].source == ValueSource::runtime) {
        const TunableSpec& old = previous->specs[*p];
        std::string text = old.format(previous->load(*p));
        Result<TunableValue> v = old.type == spec.type && old.choices == spec.choices
                                     ? Result<TunableValue>(previous->load(*p))
                                     : spec.parse(text);
        if (v) {
          if (auto ok = spec.check(*v); !ok) v = std::unexpected(ok.error());
        }
        if (!v)
          return fail(Errc::invalid_argument,
                      build.name + "." + spec.name + " = " + text +
                          " (set at runtime) is not valid for the new build: " + v.error().what +
                          "; reset or change it first");
        build.store(i, *v);
        build.values[i].source = ValueSource::runtime;
        continue;
      }
    }
    auto r = resolve_tunable(spec, build.name, config_.get(), options_.environment);
    if (!r) return std::unexpected(r.error());
    build.store(i, r->value);
    build.values[i].source = r->source;
    build.values[i].origin = r->origin;
  }
  if (config_) {
    for (const auto& key : config_->keys_of(build.name))
      if (!build.index_of(key))
        log(DYNAMOS_LOG_WARNING, build.name,
            config_->where(*config_->find(build.name, key)) + ": " + build.name +
                " has no tunable '" + key + "'; line ignored");
  }
  return {};
}

Result<void> ExtensionHost::init_build(Build& build) {
  build.api = dynamos_ext_host{
      DYNAMOS_EXTENSION_ABI, sizeof(dynamos_ext_host), &build,      &api_get_integer,
      &api_get_float,        &api_set_error,           &api_append, &api_log};
  if (!build.desc->init) return {};
  clear_error();
  int rc = build.desc->init(&build.api);
  if (rc != 0)
    return fail(Errc::refused, "initialise " + build_label(build) + ": " + take_error(rc));
  return {};
}

void ExtensionHost::close_build(std::unique_ptr<Build> build) {
  {
    std::lock_guard lock(registry().mutex);
    registry().handles.erase(build->handle);
  }
  dlerror();
  if (dlclose(build->handle) != 0) {
    const char* e = dlerror();
    log(DYNAMOS_LOG_ERROR, build->name,
        "unmap " + build_label(*build) + ": " + (e ? e : "dlclose failed"));
  }
}

Result<ExtensionInfo> ExtensionHost::load(const std::string& path) {
  std::lock_guard ops(ops_);
  auto opened = open_build(path);
  if (!opened) return std::unexpected(opened.error());
  std::unique_ptr<Build> build = std::move(*opened);
  auto give_up = [&](Error e, bool initialised) -> std::unexpected<Error> {
    if (initialised && build->desc->fini) build->desc->fini(DYNAMOS_FINI_UNLOAD);
    close_build(std::move(build));
    return std::unexpected(std::move(e));
  };
  {
    std::shared_lock lock(table_);
    if (auto it = extensions_.find(build->name); it != extensions_.end())
      return give_up(
          Error{Errc::state, 0,
                "load extension " + path + ": '" + build->name + "' is loaded already from " +
                    it->second->build->path + " (use upgrade to replace it)"},
          false);
  }
  if (auto ok = resolve_tunables(*build, nullptr); !ok)
    return give_up(with_context(ok.error(), "load extension " + path), false);
  auto slot_index = acquire_slot(build->name);
  if (!slot_index)
    return give_up(with_context(slot_index.error(), "load extension " + path), false);
  {
    std::lock_guard lock(registry().mutex);
    registry().handles.insert(build->handle);
  }
  if (auto ok = init_build(*build); !ok) {
    release_slot(*slot_index);
    return give_up(ok.error(), false);
  }
  Slot& slot = registry().slots[*slot_index];
  Engine& engine = Engine::self();
  for (std::size_t h = 0; h < kHookCount; ++h) {
    Address code = hook_code(build->desc, h);
    if (!code) {
      build->versions[h] = slot.missing[h];
      continue;
    }
    auto v =
        engine.add_version(slot.point[h], code, build->name + " " + build->version, build->text);
    if (!v) {
      release_slot(*slot_index);
      return give_up(with_context(v.error(), "load extension " + path), true);
    }
    build->versions[h] = *v;
  }
  if (auto ok = switch_slot(slot, build->versions, options_.switch_timeout); !ok) {
    release_slot(*slot_index);
    return give_up(with_context(ok.error(), "load extension " + path + ": route its hooks"), true);
  }
  log(DYNAMOS_LOG_INFO, build->name, "loaded " + build_label(*build));
  auto loaded = std::make_unique<Loaded>();
  loaded->slot = *slot_index;
  loaded->build = std::move(build);
  std::unique_lock lock(table_);
  auto [it, inserted] = extensions_.emplace(loaded->build->name, std::move(loaded));
  return describe(*it->second);
}

Result<void> ExtensionHost::unload(std::string_view name) {
  std::lock_guard ops(ops_);
  Loaded* loaded = nullptr;
  {
    std::shared_lock lock(table_);
    auto it = extensions_.find(name);
    if (it == extensions_.end())
      return fail(Errc::not_found, "unload extension " + std::string(name) + ": not loaded");
    loaded = it->second.get();
  }
  Build& build = *loaded->build;
  Slot& slot = registry().slots[loaded->slot];
  Gate& gate = g_gates[loaded->slot];
  const std::string what = "unload " + build_label(build);
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
  log(DYNAMOS_LOG_INFO, taken->build->name, "unloaded " + build_label(*taken->build));
  close_build(std::move(taken->build));
  release_slot(taken->slot);
  return {};
}

// The upgrade protocol (docs/extensions.md):
//   1. load the new build beside the old one, resolve its tunables, init it
//   2. add its hooks as versions of the dispatch points
//   3. close the gate and route every hook to it: new calls wait there
//   4. wait until no call runs in the old build (gate holders, then the engine's drain)
//   5. old export_state -> new import_state
//   6. open the gate to the new build and route every hook to it
//   7. fini and unmap the old build
// A failure in 1-5 opens the gate to the old build again and routes the hooks back:
// the old build has seen no call it did not answer and its state is untouched.
Result<UpgradeReport> ExtensionHost::upgrade(std::string_view name, const std::string& path) {
  std::lock_guard ops(ops_);
  const auto started = Clock::now();
  Loaded* loaded = nullptr;
  {
    std::shared_lock lock(table_);
    auto it = extensions_.find(name);
    if (it == extensions_.end())
      return fail(Errc::not_found,
                  "upgrade extension " + std::string(name) + " to " + path + ": not loaded");
    loaded = it->second.get();
  }
  Build& old = *loaded->build;
  const std::string what = "upgrade " + build_label(old) + " to " + path;
  auto opened = open_build(path);
  if (!opened) return std::unexpected(with_context(opened.error(), "upgrade " + std::string(name)));
  std::unique_ptr<Build> fresh = std::move(*opened);
  bool initialised = false;
  auto give_up = [&](Error e) -> std::unexpected<Error> {
    if (initialised && fresh->desc->fini) fresh->desc->fini(DYNAMOS_FINI_ABANDONED);
    close_build(std::move(fresh));
    log(DYNAMOS_LOG_WARNING, old.name,
        "upgrade abandoned, " + build_label(old) + " keeps serving: " + e.message());
    return std::unexpected(std::move(e));
  };
  if (fresh->name != old.name)
    return give_up(
        Error{Errc::invalid_argument, 0,
              what + ": that object is extension '" + fresh->name + "', not '" + old.name + "'"});
  if (old.desc->export_state && !fresh->desc->import_state)
    return give_up(Error{Errc::refused, 0,
                         what + ": the running build exports state but the new one has no "
                                "import_state, so the state would be lost"});
  if (auto ok = resolve_tunables(*fresh, &old); !ok) return give_up(with_context(ok.error(), what));
  {
    std::lock_guard lock(registry().mutex);
    registry().handles.insert(fresh->handle);
  }
  if (auto ok = init_build(*fresh); !ok) return give_up(with_context(ok.error(), what));
  initialised = true;

  Slot& slot = registry().slots[loaded->slot];
  Gate& gate = g_gates[loaded->slot];
  Engine& engine = Engine::self();
  for (std::size_t h = 0; h < kHookCount; ++h) {
    Address code = hook_code(fresh->desc, h);
    if (!code) {
      fresh->versions[h] = slot.missing[h];
      continue;
    }
    auto v =
        engine.add_version(slot.point[h], code, fresh->name + " " + fresh->version, fresh->text);
    if (!v) return give_up(with_context(v.error(), what));
    fresh->versions[h] = *v;
  }

  // Hold new calls at the gate, let the old build's calls finish, hand the state over.
  const auto deadline = Clock::now() + options_.drain_timeout;
  const auto held_from = Clock::now();
  if (auto ok = gate.retarget(nullptr, deadline); !ok) {
    gate.open(old.desc);
    return give_up(with_context(ok.error(), what + ": calls of an earlier handover"));
  }
  if (auto ok = switch_slot(slot, slot.gate, options_.switch_timeout); !ok) {
    gate.open(old.desc);
    return give_up(with_context(ok.error(), what + ": route hooks to the handover gate"));
  }
  auto roll_back = [&](Error e) -> std::unexpected<Error> {
    gate.open(old.desc);  // callers waiting at the gate go on into the old build
    if (auto back = switch_slot(slot, old.versions, options_.switch_timeout); !back)
      log(DYNAMOS_LOG_ERROR, old.name,
          "route hooks back to " + build_label(old) + ": " + back.error().message() +
              " (calls still reach it through the gate)");
    return give_up(std::move(e));
  };
  if (auto ok = wait_build_drained(slot, old.versions, deadline); !ok)
    return roll_back(with_context(ok.error(), what + ": the running build did not drain"));

  UpgradeReport report;
  report.name = old.name;
  report.old_version = old.version;
  report.new_version = fresh->version;
  if (old.desc->export_state) {
    dynamos_ext_buffer state;
    clear_error();
    if (int rc = old.desc->export_state(&state); rc != 0)
      return roll_back(
          Error{Errc::refused, 0,
                what + ": the running build could not export its state: " + take_error(rc)});
    clear_error();
    if (int rc = fresh->desc->import_state(state.bytes.data(), state.bytes.size()); rc != 0)
      return roll_back(Error{Errc::refused, 0,
                             what + ": the new build refused the state (" +
                                 std::to_string(state.bytes.size()) +
                                 " bytes): " + take_error(rc)});
    report.state_bytes = state.bytes.size();
    report.state_carried = true;
  }

  // Committed: callers at the gate go on into the new build, then the hooks lead to it.
  // Nothing can reach the old build any more: its versions drained while the gate was
  // closed, and the gate never led to it again.
  gate.open(fresh->desc);
  report.held = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - held_from);
  if (auto ok = switch_slot(slot, fresh->versions, options_.switch_timeout); !ok)
    log(DYNAMOS_LOG_ERROR, old.name,
        "route hooks to " + build_label(*fresh) + ": " + ok.error().message() +
            " (calls reach it through the gate meanwhile)");

  std::unique_ptr<Build> retired;
  {
    std::unique_lock lock(table_);
    retired = std::move(loaded->build);
    loaded->build = std::move(fresh);
    ++loaded->builds;
  }
  if (retired->desc->fini) retired->desc->fini(DYNAMOS_FINI_UPGRADED);
  log(DYNAMOS_LOG_INFO, loaded->build->name,
      "upgraded " + build_label(*retired) + " to " + build_label(*loaded->build));
  close_build(std::move(retired));
  report.total = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
  return report;
}

TunableInfo ExtensionHost::describe_tunable(const Build& build, std::size_t i) const {
  TunableInfo t;
  t.spec = build.specs[i];
  t.value = build.load(i);
  t.text = t.spec.format(t.value);
  t.source = build.values[i].source;
  t.origin = build.values[i].origin;
  t.environment = environment_variable(build.name, t.spec.name);
  return t;
}

ExtensionInfo ExtensionHost::describe(const Loaded& loaded) const {
  const Build& b = *loaded.build;
  ExtensionInfo info;
  info.name = b.name;
  info.version = b.version;
  info.description = b.description;
  info.path = b.path;
  for (std::size_t h = 0; h < kHookCount; ++h)
    if (hook_code(b.desc, h)) info.hooks.push_back(static_cast<Hook>(h));
  info.exports_state = b.desc->export_state != nullptr;
  info.imports_state = b.desc->import_state != nullptr;
  for (std::size_t i = 0; i < b.specs.size(); ++i)
    info.tunables.push_back(describe_tunable(b, i));
  info.builds = loaded.builds;
  return info;
}

std::vector<ExtensionInfo> ExtensionHost::list() const {
  std::shared_lock lock(table_);
  std::vector<ExtensionInfo> out;
  for (const auto& [name, loaded] : extensions_)
    out.push_back(describe(*loaded));
  return out;
}

Result<ExtensionInfo> ExtensionHost::info(std::string_view name) const {
  std::shared_lock lock(table_);
  auto it = extensions_.find(name);
  if (it == extensions_.end())
    return fail(Errc::not_found, "extension " + std::string(name) + ": not loaded");
  return describe(*it->second);
}

Result<std::pair<ExtensionHost::Loaded*, std::size_t>> ExtensionHost::find_tunable(
    std::string_view extension, std::string_view key) const {
  auto it = extensions_.find(extension);
  if (it == extensions_.end())
    return fail(Errc::not_found, "extension " + std::string(extension) + ": not loaded");
  const Build& b = *it->second->build;
  auto i = b.index_of(key);
  if (!i) {
    std::string known;
    for (const auto& s : b.specs)
      known += (known.empty() ? "" : ", ") + s.name;
    return fail(Errc::not_found, std::string(extension) + " has no tunable '" + std::string(key) +
                                     "' (it has: " + (known.empty() ? "none" : known) + ")");
  }
  return std::pair{it->second.get(), *i};
}

Result<TunableInfo> ExtensionHost::get(std::string_view extension, std::string_view key) const {
  std::shared_lock lock(table_);
  auto found = find_tunable(extension, key);
  if (!found) return std::unexpected(found.error());
  return describe_tunable(*found->first->build, found->second);
}

Result<TunableInfo> ExtensionHost::set(std::string_view extension, std::string_view key,
                                       std::string_view value) {
  std::lock_guard ops(ops_);
  const std::string full = std::string(extension) + "." + std::string(key);
  std::pair<Loaded*, std::size_t> found;
  {
    std::shared_lock lock(table_);
    auto f = find_tunable(extension, key);
    if (!f) return std::unexpected(with_context(f.error(), "set " + full));
    found = *f;
  }
  Build& b = *found.first->build;
  const std::size_t i = found.second;
  const TunableSpec& spec = b.specs[i];
  if (!spec.runtime)
    return fail(Errc::refused, "set " + full + ": fixed at load, not changeable at runtime (set " +
                                   environment_variable(b.name, spec.name) +
                                   " or the config file before loading)");
  auto v = spec.parse(value);
  if (!v)
    return fail(Errc::invalid_argument,
                "set " + full + " = " + std::string(value) + ": " + v.error().what);
  std::string text = spec.format(*v);
  if (b.desc->on_tunable) {
    dynamos_tunable_value proposed{v->integer, v->real, text.c_str()};
    clear_error();
    if (int rc = b.desc->on_tunable(static_cast<std::uint32_t>(i), &proposed); rc != 0)
      return fail(Errc::refused,
                  "set " + full + " = " + text + ": refused by " + b.name + ": " + take_error(rc));
  }
  std::unique_lock lock(table_);
  b.store(i, *v);
  b.values[i].source = ValueSource::runtime;
  b.values[i].origin.clear();
  return describe_tunable(b, i);
}

Result<TunableInfo> ExtensionHost::set(std::string_view assignment) {
  auto eq = assignment.find('=');
  auto dot = assignment.find('.');
  if (eq == assignment.npos || dot == assignment.npos || dot > eq)
    return fail(Errc::invalid_argument,
                "set '" + std::string(assignment) + "': expected EXTENSION.KEY=VALUE");
  auto strip = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ')
      s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ')
      s.remove_suffix(1);
    return s;
  };
  return set(strip(assignment.substr(0, dot)), strip(assignment.substr(dot + 1, eq - dot - 1)),
             strip(assignment.substr(eq + 1)));
}

Result<TunableInfo> ExtensionHost::reset(std::string_view extension, std::string_view key) {
  std::lock_guard ops(ops_);
  const std::string full = std::string(extension) + "." + std::string(key);
  std::pair<Loaded*, std::size_t> found;
  {
    std::shared_lock lock(table_);
    auto f = find_tunable(extension, key);
    if (!f) return std::unexpected(with_context(f.error(), "reset " + full));
    found = *f;
  }
  Build& b = *found.first->build;
  const std::size_t i = found.second;
  if (b.values[i].source != ValueSource::runtime) return describe_tunable(b, i);
  auto r = resolve_tunable(b.specs[i], b.name, config_.get(), options_.environment);
  if (!r) return std::unexpected(with_context(r.error(), "reset " + full));
  if (b.desc->on_tunable) {
    std::string text = b.specs[i].format(r->value);
    dynamos_tunable_value proposed{r->value.integer, r->value.real, text.c_str()};
    clear_error();
    if (int rc = b.desc->on_tunable(static_cast<std::uint32_t>(i), &proposed); rc != 0)
      return fail(Errc::refused, "reset " + full + " to " + text + ": refused by " + b.name + ": " +
                                     take_error(rc));
  }
  std::unique_lock lock(table_);
  b.store(i, r->value);
  b.values[i].source = r->source;
  b.values[i].origin = r->origin;
  return describe_tunable(b, i);
}

Result<std::string> ExtensionHost::call_hook(std::string_view extension, Hook hook,
                                             const Subject& subject) {
  const auto h = static_cast<std::size_t>(hook);
  if (h >= kCallHook)
    return fail(Errc::invalid_argument, "call_hook: use call() for the call hook");
  Address stub = 0;
  {
    std::shared_lock lock(table_);
    auto it = extensions_.find(extension);
    if (it == extensions_.end())
      return fail(Errc::not_found, std::string(extension) + "." + hook_name(hook) + ": not loaded");
    const Build& b = *it->second->build;
    if (!hook_code(b.desc, h))
      return fail(Errc::unsupported, std::string(extension) + "." + hook_name(hook) +
                                         ": not implemented by " + b.name + " " + b.version);
    stub = registry().slots[it->second->slot].stub[h];
  }
  std::vector<dynamos_ext_attr> attrs;
  attrs.reserve(subject.attrs.size());
  for (const auto& [k, v] : subject.attrs)
    attrs.push_back({k.c_str(), v.c_str()});
  dynamos_ext_subject s{};
  s.size = sizeof s;
  s.kind = static_cast<std::uint32_t>(subject.kind);
  s.id = subject.id;
  s.name = subject.name.c_str();
  s.cgroup = subject.cgroup.c_str();
  s.pids = subject.pids.data();
  s.pid_count = subject.pids.size();
  s.policy = subject.policy.c_str();
  s.attrs = attrs.data();
  s.attr_count = attrs.size();
  s.now_ns = monotonic_ns();
  dynamos_ext_buffer report;
  clear_error();
  int rc = reinterpret_cast<dynamos_subject_hook>(stub)(&s, &report);
  if (rc != 0)
    return fail(Errc::refused,
                std::string(extension) + "." + hook_name(hook) + ": " + take_error(rc));
  return std::move(report.bytes);
}

Result<std::string> ExtensionHost::call(std::string_view extension, std::string_view op,
                                        std::string_view args) {
  Address stub = 0;
  {
    std::shared_lock lock(table_);
    auto it = extensions_.find(extension);
    if (it == extensions_.end())
      return fail(Errc::not_found, std::string(extension) + ".call: not loaded");
    const Build& b = *it->second->build;
    if (!b.desc->call)
      return fail(Errc::unsupported,
                  std::string(extension) + ".call: not implemented by " + b.name + " " + b.version);
    stub = registry().slots[it->second->slot].stub[kCallHook];
  }
  const std::string op_text(op), args_text(args);
  dynamos_ext_buffer reply;
  clear_error();
  int rc = reinterpret_cast<dynamos_call_hook>(stub)(op_text.c_str(), args_text.c_str(), &reply);
  if (rc != 0)
    return fail(Errc::refused, std::string(extension) + ".call " + op_text + ": " + take_error(rc));
  return std::move(reply.bytes);
}

Result<ExtensionHooks> ExtensionHost::hooks(std::string_view extension) const {
  std::shared_lock lock(table_);
  auto it = extensions_.find(extension);
  if (it == extensions_.end())
    return fail(Errc::not_found, "extension " + std::string(extension) + ": not loaded");
  const Slot& slot = registry().slots[it->second->slot];
  ExtensionHooks hooks;
  hooks.attach = reinterpret_cast<dynamos_subject_hook>(slot.stub[0]);
  hooks.detach = reinterpret_cast<dynamos_subject_hook>(slot.stub[1]);
  hooks.switch_out = reinterpret_cast<dynamos_subject_hook>(slot.stub[2]);
  hooks.switch_in = reinterpret_cast<dynamos_subject_hook>(slot.stub[3]);
  hooks.tick = reinterpret_cast<dynamos_subject_hook>(slot.stub[4]);
  hooks.call = reinterpret_cast<dynamos_call_hook>(slot.stub[kCallHook]);
  return hooks;
}

Result<PatchPointId> ExtensionHost::dispatch_point(std::string_view extension, Hook hook) const {
  std::shared_lock lock(table_);
  auto it = extensions_.find(extension);
  if (it == extensions_.end())
    return fail(Errc::not_found, "extension " + std::string(extension) + ": not loaded");
  return registry().slots[it->second->slot].point[static_cast<std::size_t>(hook)];
}

std::string ExtensionHost::last_error() {
  return t_error;
}

namespace {

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace

std::string to_json(const TunableInfo& t) {
  std::string out = "{\"name\":" + json_string(t.spec.name);
  out += ",\"type\":" + json_string(tunable_type_name(t.spec.type));
  out += ",\"value\":" + json_string(t.text);
  out += ",\"default\":" + json_string(t.spec.format(t.spec.default_value));
  out += ",\"range\":" + json_string(t.spec.describe_range());
  if (!t.spec.choices.empty()) {
    out += ",\"choices\":[";
    for (std::size_t i = 0; i < t.spec.choices.size(); ++i)
      out += (i ? "," : "") + json_string(t.spec.choices[i]);
    out += "]";
  }
  out += ",\"runtime\":" + std::string(t.spec.runtime ? "true" : "false");
  out += ",\"source\":" + json_string(value_source_name(t.source));
  out += ",\"origin\":" + json_string(t.origin);
  out += ",\"environment\":" + json_string(t.environment);
  out += ",\"help\":" + json_string(t.spec.help) + "}";
  return out;
}

std::string to_json(const ExtensionInfo& e) {
  std::string out = "{\"name\":" + json_string(e.name);
  out += ",\"version\":" + json_string(e.version);
  out += ",\"description\":" + json_string(e.description);
  out += ",\"path\":" + json_string(e.path);
  out += ",\"builds\":" + std::to_string(e.builds);
  out += ",\"hooks\":[";
  for (std::size_t i = 0; i < e.hooks.size(); ++i)
    out += (i ? "," : "") + json_string(hook_name(e.hooks[i]));
  out += "],\"exports_state\":" + std::string(e.exports_state ? "true" : "false");
  out += ",\"imports_state\":" + std::string(e.imports_state ? "true" : "false");
  out += ",\"tunables\":[";
  for (std::size_t i = 0; i < e.tunables.size(); ++i)
    out += (i ? "," : "") + to_json(e.tunables[i]);
  return out + "]}";
}

}  // namespace dynamos::core
