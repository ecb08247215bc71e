// One loaded shared object of an extension (a build) and the host's record of a
// loaded extension. Private to the extension host (core/extension_host*.cpp).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/extension_host.hpp"
#include "core/extension_slots.hpp"

namespace dynamos::core {

namespace exthost {
struct TunableSlot {
  std::atomic<std::int64_t> integer{0};
  std::atomic<double> real{0};
  // Written with the host's table_ lock held exclusively.
  ValueSource source = ValueSource::default_value;
  std::string origin;
};
}  // namespace exthost

struct ExtensionHost::Build {
  const HostOptions* options = nullptr;
  std::string path;    // as the caller gave it, made absolute
  std::string mapped;  // the private copy mapped instead, if any (already unlinked)
  void* handle = nullptr;
  const dynamos_extension* desc = nullptr;
  std::string name, version, description;
  AddressRange text;
  std::vector<TunableSpec> specs;
  std::unique_ptr<exthost::TunableSlot[]> values;
  dynamos_ext_host api{};
  exthost::HookVersions versions{};  // this build's version of each hook

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
  // "NAME VERSION (PATH)", for messages.
  std::string label() const { return name + " " + version + " (" + path + ")"; }
};

// A build being brought in by load or upgrade: fini (when init ran) and unmapped on
// destruction unless kept.
class ExtensionHost::NewBuild {
 public:
  NewBuild(ExtensionHost& host, std::unique_ptr<Build> build, int fini_reason);
  ~NewBuild();
  NewBuild(const NewBuild&) = delete;
  NewBuild& operator=(const NewBuild&) = delete;

  Result<void> init();
  // Adds each implemented hook as a version of the slot's dispatch point.
  Result<void> add_versions(const exthost::Slot& slot);
  std::unique_ptr<Build> keep() { return std::move(build_); }

  Build& operator*() const { return *build_; }
  Build* operator->() const { return build_.get(); }

 private:
  ExtensionHost& host_;
  std::unique_ptr<Build> build_;
  int fini_reason_;
  bool initialised_ = false;
};

struct ExtensionHost::Loaded {
  std::size_t slot = 0;
  std::unique_ptr<Build> build;
  unsigned builds = 1;
};

}  // namespace dynamos::core
