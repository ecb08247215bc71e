// Upgrading a loaded extension to a new build in place.
//
// The protocol (docs/extensions.md), one phase a member of Upgrade:
//   prepare          1. load the new build beside the old one, resolve its tunables, init it
//                    2. add its hooks as versions of the dispatch points
//   hold_calls       3. close the gate and route every hook to it: new calls wait there
//   drain_old        4. wait until no call runs in the old build (gate holders, then the
//                       engine's drain)
//   hand_over_state  5. old export_state -> new import_state
//   commit           6. open the gate to the new build and route every hook to it
//                    7. fini and unmap the old build
// A failure in 1-5 needs no unwinding at its return: ~Upgrade opens the gate to the old
// build again and routes the hooks back, and the new build is abandoned (fini, unmap).
// The old build has seen no call it did not answer and its state is untouched.
#include <utility>

#include "core/extension_build.hpp"
#include "core/extension_host.hpp"

namespace dynamos::core {

using namespace exthost;

class ExtensionHost::Upgrade {
 public:
  Upgrade(ExtensionHost& host, Loaded& loaded, std::unique_ptr<Build> fresh,
          const std::string& path)
      : host_(host),
        loaded_(loaded),
        old_(*loaded.build),
        fresh_(host, std::move(fresh), DYNAMOS_FINI_ABANDONED),
        slot_(registry().slots[loaded.slot]),
        gate_(gate(loaded.slot)),
        what_("upgrade " + old_.label() + " to " + path) {
    report_.name = old_.name;
    report_.old_version = old_.version;
    report_.new_version = fresh_->version;
  }
  ~Upgrade() { roll_back(); }
  Upgrade(const Upgrade&) = delete;
  Upgrade& operator=(const Upgrade&) = delete;

  // The phases in order; the first failure stops them (and ~Upgrade rolls back).
  Result<UpgradeReport> run() {
    if (auto ok = prepare(); !ok) return std::unexpected(ok.error());
    if (auto ok = hold_calls(); !ok) return std::unexpected(ok.error());
    if (auto ok = drain_old(); !ok) return std::unexpected(ok.error());
    if (auto ok = hand_over_state(); !ok) return std::unexpected(ok.error());
    commit();
    return report_;
  }

 private:
  Result<void> prepare();
  Result<void> hold_calls();
  Result<void> drain_old();
  Result<void> hand_over_state();
  void commit();
  void roll_back();

  Error failed(Error e) const { return with_context(std::move(e), what_); }

  ExtensionHost& host_;
  Loaded& loaded_;
  Build& old_;  // dangles after commit (unmapped)
  NewBuild fresh_;
  Slot& slot_;
  Gate& gate_;
  const std::string what_;
  UpgradeReport report_;
  Clock::time_point deadline_{}, held_from_{};
  bool gate_closed_ = false;     // the gate no longer leads to the old build
  bool routed_to_gate_ = false;  // the hooks lead to the gate
  bool committed_ = false;
};

// 1-2: the new build, ready beside the old one.
Result<void> ExtensionHost::Upgrade::prepare() {
  if (fresh_->name != old_.name)
    return fail(Errc::invalid_argument, what_ + ": that object is extension '" + fresh_->name +
                                            "', not '" + old_.name + "'");
  if (old_.desc->export_state && !fresh_->desc->import_state)
    return fail(Errc::refused, what_ +
                                   ": the running build exports state but the new one has no "
                                   "import_state, so the state would be lost");
  if (auto ok = host_.resolve_tunables(*fresh_, &old_); !ok)
    return std::unexpected(failed(ok.error()));
  if (auto ok = fresh_.init(); !ok) return std::unexpected(failed(ok.error()));
  if (auto ok = fresh_.add_versions(slot_); !ok) return std::unexpected(failed(ok.error()));
  return {};
}

// 3: new calls wait at the closed gate.
Result<void> ExtensionHost::Upgrade::hold_calls() {
  deadline_ = Clock::now() + host_.options_.drain_timeout;
  held_from_ = Clock::now();
  gate_closed_ = true;  // retarget closes it at once, even when it then times out
  if (auto ok = gate_.retarget(nullptr, deadline_); !ok)
    return std::unexpected(with_context(ok.error(), what_ + ": calls of an earlier handover"));
  if (auto ok = switch_slot(slot_, slot_.gate, host_.options_.switch_timeout); !ok)
    return std::unexpected(with_context(ok.error(), what_ + ": route hooks to the handover gate"));
  routed_to_gate_ = true;
  return {};
}

// 4: the old build's calls finish.
Result<void> ExtensionHost::Upgrade::drain_old() {
  if (auto ok = wait_build_drained(slot_, old_.versions, deadline_); !ok)
    return std::unexpected(with_context(ok.error(), what_ + ": the running build did not drain"));
  return {};
}

// 5: the old build's state into the new one.
Result<void> ExtensionHost::Upgrade::hand_over_state() {
  if (!old_.desc->export_state) return {};
  dynamos_ext_buffer state;
  clear_error();
  if (int rc = old_.desc->export_state(&state); rc != 0)
    return fail(Errc::refused,
                what_ + ": the running build could not export its state: " + take_error(rc));
  clear_error();
  if (int rc = fresh_->desc->import_state(state.bytes.data(), state.bytes.size()); rc != 0)
    return fail(Errc::refused, what_ + ": the new build refused the state (" +
                                   std::to_string(state.bytes.size()) +
                                   " bytes): " + take_error(rc));
  report_.state_bytes = state.bytes.size();
  report_.state_carried = true;
  return {};
}

// 6-7: callers at the gate go on into the new build, then the hooks lead to it.
// Nothing can reach the old build any more: its versions drained while the gate was
// closed, and the gate never led to it again.
void ExtensionHost::Upgrade::commit() {
  committed_ = true;
  gate_.open(fresh_->desc);
  report_.held = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - held_from_);
  if (auto ok = switch_slot(slot_, fresh_->versions, host_.options_.switch_timeout); !ok)
    host_.log(DYNAMOS_LOG_ERROR, old_.name,
              "route hooks to " + fresh_->label() + ": " + ok.error().message() +
                  " (calls reach it through the gate meanwhile)");

  std::unique_ptr<Build> retired;
  {
    std::unique_lock lock(host_.table_);
    retired = std::move(loaded_.build);
    loaded_.build = fresh_.keep();
    ++loaded_.builds;
  }
  if (retired->desc->fini) retired->desc->fini(DYNAMOS_FINI_UPGRADED);
  host_.log(DYNAMOS_LOG_INFO, loaded_.build->name,
            "upgraded " + retired->label() + " to " + loaded_.build->label());
  host_.close_build(std::move(retired));
}

// Undoes 3-4 when the upgrade did not commit; fresh_ (declared before) then abandons
// the new build.
void ExtensionHost::Upgrade::roll_back() {
  if (committed_ || !gate_closed_) return;
  gate_.open(old_.desc);  // callers waiting at the gate go on into the old build
  if (!routed_to_gate_) return;
  if (auto back = switch_slot(slot_, old_.versions, host_.options_.switch_timeout); !back)
    host_.log(DYNAMOS_LOG_ERROR, old_.name,
              "route hooks back to " + old_.label() + ": " + back.error().message() +
                  " (calls still reach it through the gate)");
}

Result<UpgradeReport> ExtensionHost::upgrade(std::string_view name, const std::string& path) {
  std::lock_guard ops(ops_);
  const auto started = Clock::now();
  Loaded* loaded = find_loaded(name);
  if (!loaded)
    return fail(Errc::not_found,
                "upgrade extension " + std::string(name) + " to " + path + ": not loaded");
  auto opened = open_build(path);
  if (!opened) return std::unexpected(with_context(opened.error(), "upgrade " + std::string(name)));
  Result<UpgradeReport> report;
  {
    Upgrade upgrade(*this, *loaded, std::move(*opened), path);
    report = upgrade.run();
  }
  if (!report) {
    const Build& old = *loaded->build;
    log(DYNAMOS_LOG_WARNING, old.name,
        "upgrade abandoned, " + old.label() + " keeps serving: " + report.error().message());
    return report;
  }
  report->total = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
  return report;
}

}  // namespace dynamos::core
