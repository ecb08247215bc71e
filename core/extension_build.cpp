// Building an extension: mapping its object, checking the ABI and the descriptor
// before any of its code runs, registering and resolving its tunables, init and unmap.
#include "core/extension_build.hpp"

#include "base/file.hpp"

#include <dlfcn.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

namespace dynamos::core {

namespace {

using Build = ExtensionHost::Build;

// ---- What the host offers a build (dynamos_ext_host) ----

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
  exthost::set_error(message);
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

// ---- Mapping the object ----

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
// path (or the same file under another name) is loaded already. It is written new into
// a fresh private directory (base/file.hpp), mapped, then removed with it.
Result<std::string> private_copy(const std::string& path) {
  auto bytes = read_regular_file(path, std::size_t{1} << 30);
  if (!bytes) return std::unexpected(bytes.error());
  auto dir = make_temp_dir("dynamos-ext");
  if (!dir) return std::unexpected(dir.error());
  const std::string name = *dir + "/" + std::filesystem::path(path).filename().string();
  if (auto ok = write_new_file(name, *bytes, 0500); !ok) {
    ::rmdir(dir->c_str());
    return std::unexpected(ok.error());
  }
  return name;
}

// Maps the object at build.path (a private copy of it when the loader would hand out an
// object already loaded: old and new builds must have their own code and globals).
Result<void> map_object(Build& build, const std::string& what) {
  dlerror();
  build.handle = dlopen(build.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!build.handle) {
    const char* e = dlerror();
    return fail(Errc::invalid_argument, what + ": " + (e ? e : "dlopen failed"));
  }
  bool shared_handle = false;
  {
    std::lock_guard lock(exthost::registry().mutex);
    shared_handle = exthost::registry().handles.count(build.handle) != 0;
  }
  if (!shared_handle) return {};
  dlclose(build.handle);
  build.handle = nullptr;
  auto copy = private_copy(build.path);
  if (!copy) return std::unexpected(with_context(copy.error(), what));
  build.mapped = *copy;
  build.handle = dlopen(copy->c_str(), RTLD_NOW | RTLD_LOCAL);
  ::unlink(copy->c_str());
  ::rmdir(std::filesystem::path(*copy).parent_path().c_str());
  if (!build.handle) {
    const char* e = dlerror();
    return fail(Errc::invalid_argument, what + " (private copy): " + (e ? e : "dlopen failed"));
  }
  return {};
}

// ---- Checking what the object declares ----

// The ABI number first, before any code of the object is called; then the descriptor
// the entry point returns.
Result<const dynamos_extension*> read_descriptor(void* handle) {
  const auto* abi = static_cast<const std::uint32_t*>(dlsym(handle, DYNAMOS_EXTENSION_ABI_SYMBOL));
  if (!abi)
    return fail(Errc::invalid_argument,
                "not a DynAMOS extension (no symbol " DYNAMOS_EXTENSION_ABI_SYMBOL ")");
  if (*abi != DYNAMOS_EXTENSION_ABI)
    return fail(Errc::version_mismatch, "built for extension ABI " + std::to_string(*abi) +
                                            ", this host speaks ABI " +
                                            std::to_string(DYNAMOS_EXTENSION_ABI) +
                                            "; rebuild it against this core/extension_abi.h");
  auto entry =
      reinterpret_cast<dynamos_extension_entry_fn>(dlsym(handle, DYNAMOS_EXTENSION_ENTRY_SYMBOL));
  if (!entry)
    return fail(Errc::invalid_argument, "no entry point " DYNAMOS_EXTENSION_ENTRY_SYMBOL
                                        " (define it with DYNAMOS_EXTENSION_DEFINE)");
  const dynamos_extension* d = entry();
  if (!d) return fail(Errc::invalid_argument, "the entry point returned no descriptor");
  if (d->abi != DYNAMOS_EXTENSION_ABI)
    return fail(Errc::version_mismatch, "the descriptor says ABI " + std::to_string(d->abi) +
                                            ", the object's symbol says " + std::to_string(*abi));
  if (d->size < sizeof(dynamos_extension))
    return fail(Errc::version_mismatch, "the descriptor is " + std::to_string(d->size) +
                                            " bytes, ABI " + std::to_string(DYNAMOS_EXTENSION_ABI) +
                                            " needs " + std::to_string(sizeof(dynamos_extension)));
  if (!d->name || !is_extension_name(d->name))
    return fail(Errc::invalid_argument,
                std::string("extension name '") + (d->name ? d->name : "(null)") +
                    "' is not lower case letters and digits starting with a letter");
  if (!d->version || !*d->version) return fail(Errc::invalid_argument, "no version string");
  if (d->reserved != 0) return fail(Errc::invalid_argument, "reserved field is not 0");
  if (d->tunable_count && !d->tunables)
    return fail(Errc::invalid_argument, "tunable_count is set but the table is missing");
  return d;
}

// Registers the tunables the descriptor declares (their values are resolved later).
Result<void> register_tunables(Build& build) {
  const dynamos_extension* d = build.desc;
  for (std::uint32_t i = 0; i < d->tunable_count; ++i) {
    auto spec = TunableSpec::from_abi(d->tunables[i]);
    if (!spec) return fail(Errc::invalid_argument, spec.error().what);
    if (build.index_of(spec->name))
      return fail(Errc::invalid_argument, "tunable '" + spec->name + "' is registered twice");
    build.specs.push_back(std::move(*spec));
  }
  build.values = std::make_unique<exthost::TunableSlot[]>(build.specs.size());
  return {};
}

// Closes a mapped object unless told it is kept.
struct CloseUnlessKept {
  void* handle;
  bool kept = false;
  ~CloseUnlessKept() {
    if (!kept && handle) dlclose(handle);
  }
};

}  // namespace

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
  // Code mapped into root runs as root: only from a path no one else can change, and
  // mapped by its canonical name, so that a link cannot be swapped after the check.
  if (::geteuid() == 0) {
    auto trusted = check_root_trusted_file(build->path);
    if (!trusted) return fail(trusted.error().code, what + ": " + trusted.error().message());
    build->path = *trusted;
  }
  if (auto ok = map_object(*build, what); !ok) return std::unexpected(ok.error());
  CloseUnlessKept mapping{build->handle};
  auto refuse = [&](const Error& e) { return fail(e.code, what + ": " + e.what); };

  auto desc = read_descriptor(build->handle);
  if (!desc) return refuse(desc.error());
  build->desc = *desc;
  build->name = build->desc->name;
  build->version = build->desc->version;
  build->description = build->desc->description ? build->desc->description : "";
  if (auto ok = register_tunables(*build); !ok) return refuse(ok.error());
  build->text = text_range(build->handle);
  if (build->text.begin == 0)
    return refuse(Error{Errc::invalid_argument, 0, "cannot find the object's executable segment"});
  mapping.kept = true;
  return build;
}

Result<void> ExtensionHost::resolve_tunables(Build& build, const Build* previous) {
  for (std::size_t i = 0; i < build.specs.size(); ++i) {
    const TunableSpec& spec = build.specs[i];
    // A value set at runtime on the old build carries over, if the new build accepts it.
    auto p = previous ? previous->index_of(spec.name) : std::nullopt;
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
  {
    std::lock_guard lock(exthost::registry().mutex);
    exthost::registry().handles.insert(build.handle);
  }
  build.api = dynamos_ext_host{
      DYNAMOS_EXTENSION_ABI, sizeof(dynamos_ext_host), &build,      &api_get_integer,
      &api_get_float,        &api_set_error,           &api_append, &api_log};
  if (!build.desc->init) return {};
  exthost::clear_error();
  int rc = build.desc->init(&build.api);
  if (rc != 0)
    return fail(Errc::refused, "initialise " + build.label() + ": " + exthost::take_error(rc));
  return {};
}

void ExtensionHost::close_build(std::unique_ptr<Build> build) {
  {
    std::lock_guard lock(exthost::registry().mutex);
    exthost::registry().handles.erase(build->handle);
  }
  dlerror();
  if (dlclose(build->handle) != 0) {
    const char* e = dlerror();
    log(DYNAMOS_LOG_ERROR, build->name,
        "unmap " + build->label() + ": " + (e ? e : "dlclose failed"));
  }
}

}  // namespace dynamos::core
