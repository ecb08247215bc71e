// The engine's public API and bookkeeping: patch points, versions, updates. The
// mechanism is in patch_point.cpp, the update life cycle in transition.cpp.
#include "core/engine.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

#include "core/near_memory.hpp"
#include "core/patch_point.hpp"
#include "core/probe.hpp"
#include "core/scope_guard.hpp"
#include "core/symbols.hpp"
#include "core/transition.hpp"

namespace dynamos::core {

const char* safety_mode_name(SafetyMode mode) {
  return mode == SafetyMode::quiescent ? "quiescent" : "drain";
}

Result<SafetyMode> parse_safety_mode(std::string_view name) {
  if (name == "drain") return SafetyMode::drain;
  if (name == "quiescent") return SafetyMode::quiescent;
  return fail(Errc::invalid_argument,
              "unknown safety mode '" + std::string(name) + "' (expected drain or quiescent)");
}

struct Engine::State {
  std::unique_ptr<Target> target;
  NearMemory near;
  std::optional<Symbols> symbols;
  std::deque<PatchPoint> points;  // deque: PatchPoint* stay valid as points are added
  std::vector<UpdateInfo> updates;
  UpdateId next_update = 1;
  std::chrono::nanoseconds last_stop{0};
  mutable std::mutex mutex;

  explicit State(std::unique_ptr<Target> t) : target(std::move(t)), near(*target) {}

  Result<const Symbols*> syms(bool refresh) {
    if (!symbols || refresh) {
      auto s = Symbols::load(*target);
      if (!s) return std::unexpected(s.error());
      symbols = std::move(*s);
    }
    return &*symbols;
  }

  // Resolves a name to the function the process actually runs (an IFUNC's choice).
  Result<FunctionTarget> resolve(std::string_view name) {
    for (bool refresh : {false, true}) {
      auto s = syms(refresh);
      if (!s) return std::unexpected(s.error());
      auto sym = (*s)->find(name);
      if (!sym) continue;
      FunctionTarget fn{sym->address, sym->size, sym->name};
      if (sym->ifunc) {
        // The symbol is a resolver; the dynamic linker knows what it chose.
        auto chosen = target->runtime_address(name);
        if (!chosen) return std::unexpected(chosen.error());
        fn.entry = *chosen;
        auto impl = (*s)->containing(fn.entry);
        fn.size = impl && impl->address == fn.entry ? impl->size : 0;
      }
      return fn;
    }
    return fail(Errc::not_found, "no function named '" + std::string(name) +
                                     "' in the executable or its loaded libraries");
  }

  FunctionTarget describe(Address a) {
    FunctionTarget fn{a, 0, hex(a)};
    if (auto s = syms(false); s) {
      auto sym = (*s)->containing(a);
      if (!sym) {
        if (auto s2 = syms(true); s2) sym = (*s2)->containing(a);
      }
      if (sym && sym->address == a) {
        fn.size = sym->size;
        fn.name = sym->name;
      }
    }
    return fn;
  }

  PatchPoint* find_entry(Address entry) {
    for (auto& p : points)
      if (p.entry == entry) return &p;
    return nullptr;
  }

  Result<PatchPoint*> point(PatchPointId id) {
    if (id >= points.size()) return fail(Errc::not_found, "no patch point " + std::to_string(id));
    return &points[id];
  }

  // Prepares (without installing) a hijack of `fn`, or returns the existing point.
  Result<PatchPoint*> prepare(const FunctionTarget& fn, const HijackOptions& opts) {
    if (auto* p = find_entry(fn.entry)) {
      if (opts.counted && !p->counted) {
        if (auto r = make_counted(*target, near, *p); !r) return std::unexpected(r.error());
      }
      return p;
    }
    for (const auto& p : points) {
      if (p.stub_range().contains(fn.entry))
        return fail(Errc::refused, hex(fn.entry) + " is a dispatch stub, not a function");
    }
    auto p = prepare_hijack(*target, near, fn, opts.counted);
    if (!p) return std::unexpected(p.error());
    p->id = static_cast<PatchPointId>(points.size());
    if (!opts.name.empty()) p->name = opts.name;
    points.push_back(std::move(*p));
    return &points.back();
  }

  // Prepares and installs a hijack now (not an update of its own).
  Result<PatchPointId> hijack(const FunctionTarget& fn, const HijackOptions& opts) {
    auto p = prepare(fn, opts);
    if (!p) return std::unexpected(p.error());
    if (!(*p)->installed) {
      auto r = run({{*p, (*p)->active, (*p)->active}}, SafetyMode::drain,
                   std::chrono::milliseconds(2000), false);
      if (!r) return std::unexpected(r.error());
    }
    return (*p)->id;
  }

  // Runs an update's transition; records it unless `record` is false (hijack only).
  Result<UpdateId> run(const std::vector<PlannedSwitch>& plan, SafetyMode mode,
                       std::chrono::milliseconds timeout, bool record = true) {
    UpdateInfo u;
    u.id = next_update;
    u.mode = mode;
    for (const auto& s : plan)
      u.switches.push_back({s.point->id, s.from, s.to});
    if (auto r = transition(plan, mode, timeout, serialize(plan, record ? &u : nullptr)); !r)
      return std::unexpected(r.error());
    if (!record) return UpdateId{0};
    ++next_update;
    updates.push_back(u);
    return u.id;
  }

  // The one path of every apply, revert and hijack installation: init, then start
  // and try_complete, retried with backoff while a thread blocks quiescence, until
  // the deadline; any failure cancels (nothing written, staged state dropped).
  Result<void> transition(std::vector<PlannedSwitch> plan, SafetyMode mode,
                          std::chrono::milliseconds timeout, std::string state_after) {
    using Clock = std::chrono::steady_clock;
    Transition t(*target, std::move(plan), mode, std::move(state_after));
    ScopeGuard cancel([&] { t.cancel(); });
    const auto deadline = Clock::now() + timeout;
    auto backoff = std::chrono::microseconds(500);
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (auto r = t.start(left); !r) return r;
      auto r = t.try_complete();
      if (r) break;
      if (r.error().code != Errc::busy) return r;
      if (Clock::now() + backoff > deadline)
        return fail(Errc::timed_out, "not quiescent within " + std::to_string(timeout.count()) +
                                         " ms: " + r.error().what);
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::microseconds(50'000));
    }
    cancel.dismiss();
    last_stop = t.stopped_for();
    return {};
  }

  // One redirect of an update as a planned switch: resolves the function, prepares
  // its hijack and adds the new version (recorded in `added`, for rollback).
  Result<PlannedSwitch> plan_redirect(const Redirect& r, const HijackOptions& hijack,
                                      const std::vector<PlannedSwitch>& plan,
                                      std::vector<std::pair<PatchPoint*, std::size_t>>& added) {
    FunctionTarget fn;
    if (r.function) {
      fn = describe(r.function);
    } else {
      auto resolved = resolve(r.symbol);
      if (!resolved) return std::unexpected(resolved.error());
      fn = *resolved;
    }
    if (!r.code) return fail(Errc::invalid_argument, "redirect of " + fn.name + " has no new code");
    auto p = prepare(fn, hijack);
    if (!p) return std::unexpected(p.error());
    for (const auto& s : plan)
      if (s.point == *p)
        return fail(Errc::invalid_argument, fn.name + " appears twice in one update");
    added.emplace_back(*p, (*p)->versions.size());
    auto code_fn = describe(r.code);
    AddressRange range =
        code_fn.size ? AddressRange{r.code, r.code + code_fn.size} : AddressRange{};
    std::string vname = r.version_name.empty() ? code_fn.name : r.version_name;
    auto v = core::add_version(*target, near, **p, r.code, vname, range);
    if (!v) return std::unexpected(v.error());
    return PlannedSwitch{*p, (*p)->active, *v};
  }

  // ---- State kept in the target (remote engines) ----
  // A line-based text format, versioned; names never contain white space.
  static std::string word(const std::string& s) {
    std::string w = s.empty() ? "-" : s;
    for (char& c : w)
      if (c == ' ' || c == '\n' || c == '\t') c = '_';
    return w;
  }
  static std::string bytes_hex(const std::vector<std::uint8_t>& b) {
    static const char* digits = "0123456789abcdef";
    std::string out = b.empty() ? "-" : "";
    for (auto v : b) {
      out += digits[v >> 4];
      out += digits[v & 15];
    }
    return out;
  }
  // Hex digits to bytes; nullopt for anything else, or for more than `max` bytes.
  static std::optional<std::vector<std::uint8_t>> hex_bytes(const std::string& h, std::size_t max) {
    std::vector<std::uint8_t> out;
    if (h == "-") return out;
    if (h.size() % 2 || h.size() / 2 > max) return std::nullopt;
    auto digit = [](char c) {
      return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    for (std::size_t i = 0; i < h.size(); i += 2) {
      const int hi = digit(h[i]), lo = digit(h[i + 1]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
    }
    return out;
  }

  // The state after `plan` and the update record `pending` (when given) take effect.
  std::string serialize(const std::vector<PlannedSwitch>& plan, const UpdateInfo* pending,
                        std::optional<std::pair<UpdateId, UpdateState>> state_change = {}) const {
    std::ostringstream o;
    o << "dynamos-state 1\n";
    o << "next_update " << (pending ? pending->id + 1 : next_update) << "\n";
    for (const auto& a : near.arenas())
      o << "arena " << a.base << " " << a.code_used << " " << a.data_used << "\n";
    for (const auto& p : points) {
      VersionId active = p.active;
      bool installed = p.installed;
      for (const auto& sw : plan)
        if (sw.point == &p) {
          active = sw.to;
          installed = true;
        }
      o << "point " << p.id << " " << p.entry << " " << p.function.begin << " " << p.function.end
        << " " << p.overwritten << " " << p.clone << " " << p.clone_size << " " << p.stub << " "
        << p.slot << " " << p.counted << " " << installed << " " << active << " " << word(p.name)
        << " " << bytes_hex(p.entry_bytes) << " " << bytes_hex(p.saved_bytes) << " "
        << p.map.size();
      for (const auto& m : p.map)
        o << " " << int(m.source_offset) << ":" << int(m.clone_offset);
      o << "\n";
      for (const auto& v : p.versions)
        o << "version " << p.id << " " << v.id << " " << v.code << " " << v.range.begin << " "
          << v.range.end << " " << v.trampoline << " " << v.counter << " " << v.probe << " "
          << word(v.name) << "\n";
    }
    auto emit = [&](const UpdateInfo& u) {
      UpdateState st = u.state;
      if (state_change && state_change->first == u.id) st = state_change->second;
      o << "update " << u.id << " " << safety_mode_name(u.mode) << " "
        << (st == UpdateState::applied ? "applied" : "reverted") << " " << u.switches.size();
      for (const auto& sw : u.switches)
        o << " " << sw.point << ":" << sw.from << ":" << sw.to;
      o << "\n";
    };
    for (const auto& u : updates)
      emit(u);
    if (pending) emit(*pending);
    return o.str();
  }

  // ---- Reading the state back: text from the target's memory, so hostile ----
  // Every count, offset and id is bounded before it is used; a malformed line is refused
  // naming the line and what is wrong. Limits: far above what the engine writes.
  static constexpr std::size_t kMaxCodeBytes = 64;  // overwritten, jump and saved bytes
  static constexpr std::size_t kMaxSwitches = 4096;

  using LineError = std::function<std::unexpected<Error>(const std::string&)>;

  Result<void> parse_point(std::istringstream& l, const LineError& bad) {
    PatchPoint p;
    std::string name, eb, sb;
    std::size_t nmap = 0;
    if (!(l >> p.id >> p.entry >> p.function.begin >> p.function.end >> p.overwritten >> p.clone >>
          p.clone_size >> p.stub >> p.slot >> p.counted >> p.installed >> p.active >> name >> eb >>
          sb >> nmap))
      return bad("is malformed");
    if (p.id != points.size())
      return bad("has point id " + std::to_string(p.id) + ", expected " +
                 std::to_string(points.size()));
    if (p.function.begin > p.function.end)
      return bad("has a function range that ends before it begins");
    if (p.overwritten > kMaxCodeBytes || nmap > kMaxCodeBytes)
      return bad("has overwritten bytes or an instruction map out of range");
    if (p.clone_size > NearMemory::kRegion) return bad("has a clone size out of range");
    auto entry = hex_bytes(eb, kMaxCodeBytes), saved = hex_bytes(sb, kMaxCodeBytes);
    if (!entry || !saved) return bad("has code bytes that are not hex or too many");
    p.name = name;
    p.entry_bytes = std::move(*entry);
    p.saved_bytes = std::move(*saved);
    for (std::size_t i = 0; i < nmap; ++i) {
      unsigned a = 0, b = 0;
      char colon = 0;
      if (!(l >> a >> colon >> b) || colon != ':' || a > 255 || b > 255)
        return bad("has an instruction map entry out of range");
      p.map.push_back({static_cast<std::uint8_t>(a), static_cast<std::uint8_t>(b)});
    }
    points.push_back(std::move(p));
    return {};
  }

  Result<void> parse_version(std::istringstream& l, const LineError& bad) {
    PatchPointId pid = 0;
    Version v;
    std::string name;
    if (!(l >> pid >> v.id >> v.code >> v.range.begin >> v.range.end >> v.trampoline >> v.counter >>
          v.probe >> name))
      return bad("is malformed");
    if (pid >= points.size())
      return bad("names point " + std::to_string(pid) + ", out of range (" +
                 std::to_string(points.size()) + " points)");
    if (v.id != points[pid].versions.size())
      return bad("has version id " + std::to_string(v.id) + ", expected " +
                 std::to_string(points[pid].versions.size()));
    v.name = name;
    points[pid].versions.push_back(std::move(v));
    return {};
  }

  Result<void> parse_update(std::istringstream& l, const LineError& bad) {
    UpdateInfo u;
    std::string mode, st;
    std::size_t n = 0;
    if (!(l >> u.id >> mode >> st >> n)) return bad("is malformed");
    if (mode != "drain" && mode != "quiescent") return bad("has unknown safety mode " + mode);
    if (st != "applied" && st != "reverted") return bad("has unknown update state " + st);
    if (n > kMaxSwitches) return bad("has a switch count out of range");
    u.mode = mode == "quiescent" ? SafetyMode::quiescent : SafetyMode::drain;
    u.state = st == "applied" ? UpdateState::applied : UpdateState::reverted;
    for (std::size_t i = 0; i < n; ++i) {
      UpdateInfo::Switch sw;
      char c1 = 0, c2 = 0;
      if (!(l >> sw.point >> c1 >> sw.from >> c2 >> sw.to) || c1 != ':' || c2 != ':')
        return bad("has a malformed switch");
      u.switches.push_back(sw);
    }
    updates.push_back(std::move(u));
    return {};
  }

  // What lines refer to across each other: active versions, the updates' switches.
  Result<void> check_references() const {
    auto bad = [](const std::string& what) {
      return fail(Errc::protocol, "engine state: " + what + " out of range");
    };
    for (const auto& p : points)
      if (p.active >= std::max<std::size_t>(p.versions.size(), p.installed ? 0 : 1))
        return bad("active version " + std::to_string(p.active) + " of point " +
                   std::to_string(p.id));
    for (const auto& u : updates) {
      if (u.id >= next_update) return bad("update id " + std::to_string(u.id));
      for (const auto& sw : u.switches) {
        if (sw.point >= points.size())
          return bad("point id " + std::to_string(sw.point) + " in update " + std::to_string(u.id));
        const auto nv = points[sw.point].versions.size();
        if (sw.from >= nv || sw.to >= nv)
          return bad("version of point " + std::to_string(sw.point) + " in update " +
                     std::to_string(u.id));
      }
    }
    return {};
  }

  Result<void> deserialize(const std::string& blob) {
    std::istringstream in(blob);
    std::string kind;
    int format = 0;
    if (!(in >> kind >> format) || kind != "dynamos-state" || format != 1)
      return fail(Errc::version_mismatch,
                  "unknown engine state format (from another DynAMOS version?)");
    std::vector<NearMemory::Arena> arenas;
    std::string line;
    std::getline(in, line);
    int line_no = 1;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.empty()) continue;
      std::istringstream l(line);
      l >> kind;
      const LineError bad = [&](const std::string& what) {
        return fail(Errc::protocol, "engine state line " + std::to_string(line_no) + " " + what);
      };
      Result<void> r;
      if (kind == "next_update") {
        if (!(l >> next_update)) r = bad("is malformed");
      } else if (kind == "arena") {
        NearMemory::Arena a;
        if (!(l >> a.base >> a.code_used >> a.data_used))
          r = bad("is malformed");
        else if (a.code_used > NearMemory::kRegion || a.data_used > NearMemory::kRegion)
          r = bad("has an arena fill out of range");
        arenas.push_back(a);
      } else if (kind == "point") {
        r = parse_point(l, bad);
      } else if (kind == "version") {
        r = parse_version(l, bad);
      } else if (kind == "update") {
        r = parse_update(l, bad);
      } else {
        r = bad("is malformed");
      }
      if (!r) return r;
    }
    if (auto ok = check_references(); !ok) return ok;
    near.restore(std::move(arenas));
    return {};
  }

  VersionInfo version_info(const Version& v) {
    VersionInfo i{v.id, v.name, v.code, v.range, version_calls(*target, v)};
    if (v.probe) {
      i.is_probe = true;
      if (auto c = read_probe(*target, v.counter)) {
        i.timed_calls = c->timed;
        i.timed_ticks = c->ticks;
      }
    }
    return i;
  }
};

Engine& Engine::self() {
  // Never destroyed: patched code may run after static destructors.
  static Engine* engine = new Engine(make_local_target());
  return *engine;
}

Engine::Engine(std::unique_ptr<Target> target)
    : state_(std::make_unique<State>(std::move(target))) {}
Engine::~Engine() = default;

Target& Engine::target() {
  return *state_->target;
}

Result<std::unique_ptr<Engine>> Engine::over(std::unique_ptr<Target> target) {
  std::unique_ptr<Engine> engine(new Engine(std::move(target)));
  auto blob = engine->state_->target->load_state();
  if (!blob) return std::unexpected(blob.error());
  if (!blob->empty()) {
    if (auto r = engine->state_->deserialize(*blob); !r)
      return std::unexpected(
          with_context(r.error(), "reading the engine state kept in the target"));
  }
  return engine;
}

Result<PatchPointId> Engine::hijack(std::string_view symbol, const HijackOptions& options) {
  std::lock_guard lock(state_->mutex);
  auto fn = state_->resolve(symbol);
  if (!fn) return std::unexpected(fn.error());
  return state_->hijack(*fn, options);
}

Result<PatchPointId> Engine::hijack(Address function, const HijackOptions& options) {
  std::lock_guard lock(state_->mutex);
  return state_->hijack(state_->describe(function), options);
}

Result<PatchPointId> Engine::create_dispatch(std::string name, Address initial, AddressRange range,
                                             bool counted) {
  std::lock_guard lock(state_->mutex);
  auto p = prepare_dispatch(*state_->target, state_->near, initial, counted);
  if (!p) return std::unexpected(p.error());
  p->name = std::move(name);
  auto v = core::add_version(*state_->target, state_->near, *p, initial, "initial", range);
  if (!v) return std::unexpected(v.error());
  if (auto r = store_slot(*state_->target, *p, 0); !r) return std::unexpected(r.error());
  p->id = static_cast<PatchPointId>(state_->points.size());
  state_->points.push_back(std::move(*p));
  return state_->points.back().id;
}

Result<VersionId> Engine::add_version(PatchPointId point, Address code, std::string name,
                                      AddressRange range) {
  std::lock_guard lock(state_->mutex);
  auto p = state_->point(point);
  if (!p) return std::unexpected(p.error());
  if (range.end <= range.begin) {
    auto fn = state_->describe(code);
    if (fn.size) range = {code, code + fn.size};
    if (name.empty()) name = fn.name;
  }
  return core::add_version(*state_->target, state_->near, **p, code, std::move(name), range);
}

Result<VersionId> Engine::add_probe(PatchPointId point) {
  std::lock_guard lock(state_->mutex);
  auto p = state_->point(point);
  if (!p) return std::unexpected(p.error());
  const Version& wrapped = (*p)->versions.at((*p)->active);
  // A probe made earlier around the same version is reused with its counters reset.
  for (const auto& v : (*p)->versions) {
    if (!v.probe) continue;
    auto w = state_->target->load_word(v.counter + 24);
    if (w && *w == wrapped.slot_value()) {
      for (Address c : {v.counter, v.counter + 8, v.counter + 16})
        if (auto r = state_->target->store_word(c, 0); !r) return std::unexpected(r.error());
      return v.id;
    }
  }
  auto probe = make_probe(*state_->target, state_->near, (*p)->stub, wrapped.slot_value());
  if (!probe) return std::unexpected(with_context(probe.error(), "probe of " + (*p)->name));
  Version v;
  v.id = static_cast<VersionId>((*p)->versions.size());
  v.name = "probe(" + wrapped.name + ")";
  v.code = probe->code;
  v.range = {probe->code, probe->code + probe->code_size};
  v.counter = probe->counters;
  v.probe = true;
  (*p)->versions.push_back(v);
  return v.id;
}

Result<UpdateId> Engine::apply(const UpdateRequest& request) {
  std::lock_guard lock(state_->mutex);
  if (request.redirects.empty())
    return fail(Errc::invalid_argument, "an update needs at least one redirect");
  std::vector<PlannedSwitch> plan;
  std::vector<std::pair<PatchPoint*, std::size_t>> added;
  // A refused update leaves no version behind (its hijacks stay, prepared or installed).
  ScopeGuard drop_added([&] {
    for (auto& [p, n] : added)
      p->versions.resize(n);
  });
  for (const auto& r : request.redirects) {
    auto s = state_->plan_redirect(r, request.hijack, plan, added);
    if (!s) return std::unexpected(s.error());
    plan.push_back(*s);
  }
  auto id = state_->run(plan, request.mode, request.timeout);
  if (id) drop_added.dismiss();
  return id;
}

Result<UpdateId> Engine::apply_switches(std::span<const UpdateInfo::Switch> switches,
                                        SafetyMode mode, std::chrono::milliseconds timeout) {
  std::lock_guard lock(state_->mutex);
  std::vector<PlannedSwitch> plan;
  for (const auto& s : switches) {
    auto p = state_->point(s.point);
    if (!p) return std::unexpected(p.error());
    if (s.to >= (*p)->versions.size())
      return fail(Errc::not_found,
                  "patch point " + (*p)->name + " has no version " + std::to_string(s.to));
    plan.push_back({*p, (*p)->active, s.to});
  }
  if (plan.empty()) return fail(Errc::invalid_argument, "an update needs at least one switch");
  return state_->run(plan, mode, timeout);
}

Result<void> Engine::switch_version(PatchPointId point, VersionId version) {
  std::lock_guard lock(state_->mutex);
  auto p = state_->point(point);
  if (!p) return std::unexpected(p.error());
  if (!(*p)->installed) return fail(Errc::state, "patch point " + (*p)->name + " is not installed");
  return store_slot(*state_->target, **p, version);
}

Result<void> Engine::revert(UpdateId id, SafetyMode mode, std::chrono::milliseconds timeout) {
  std::lock_guard lock(state_->mutex);
  auto it = std::find_if(state_->updates.begin(), state_->updates.end(),
                         [&](const UpdateInfo& u) { return u.id == id; });
  if (it == state_->updates.end()) return fail(Errc::not_found, "no update " + std::to_string(id));
  if (it->state == UpdateState::reverted)
    return fail(Errc::state, "update " + std::to_string(id) + " is already reverted");
  // A newer applied update on the same patch point stacks on this one.
  for (auto later = it + 1; later != state_->updates.end(); ++later) {
    if (later->state != UpdateState::applied) continue;
    for (const auto& s : it->switches)
      for (const auto& t : later->switches)
        if (s.point == t.point)
          return fail(Errc::state, "update " + std::to_string(later->id) +
                                       " is stacked on update " + std::to_string(id) +
                                       " (both change " + state_->points[s.point].name +
                                       "): revert it first");
  }
  std::vector<PlannedSwitch> plan;
  for (const auto& s : it->switches)
    plan.push_back({&state_->points[s.point], s.to, s.from});
  // A revert is a transition like any other, with the inverse switches.
  auto state_after = state_->serialize(plan, nullptr, std::make_pair(id, UpdateState::reverted));
  if (auto r = state_->transition(plan, mode, timeout, std::move(state_after)); !r) return r;
  it->state = UpdateState::reverted;
  return {};
}

Result<bool> Engine::drained(PatchPointId point, VersionId version) {
  std::lock_guard lock(state_->mutex);
  auto p = state_->point(point);
  if (!p) return std::unexpected(p.error());
  if (version >= (*p)->versions.size())
    return fail(Errc::not_found,
                "patch point " + (*p)->name + " has no version " + std::to_string(version));
  if ((*p)->active == version) return false;
  const auto ranges = (*p)->ranges_of(version);
  // A stack not scanned to its bottom may hold the version below the scan's reach.
  auto may_be_inside = [&](const ThreadState& t) {
    return activation_in(t, ranges) != Activation::none;
  };
  if (may_be_inside(state_->target->own_state(true))) return false;
  auto world = state_->target->stop_world({true, std::chrono::milliseconds(1000)});
  if (!world) return std::unexpected(world.error());
  for (const auto& t : (*world)->threads())
    if (may_be_inside(t)) return false;
  return true;
}

Result<void> Engine::wait_drained(PatchPointId point, VersionId version,
                                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto backoff = std::chrono::microseconds(200);
  for (;;) {
    auto d = drained(point, version);
    if (!d) return std::unexpected(d.error());
    if (*d) return {};
    if (std::chrono::steady_clock::now() > deadline)
      return fail(Errc::timed_out, "version " + std::to_string(version) + " of patch point " +
                                       std::to_string(point) + " did not drain within " +
                                       std::to_string(timeout.count()) + " ms");
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(20'000));
  }
}

std::chrono::nanoseconds Engine::last_stop() const {
  std::lock_guard lock(state_->mutex);
  return state_->last_stop;
}

Result<PatchPointInfo> Engine::info(PatchPointId point) const {
  std::lock_guard lock(state_->mutex);
  if (point >= state_->points.size())
    return fail(Errc::not_found, "no patch point " + std::to_string(point));
  const PatchPoint& p = state_->points[point];
  PatchPointInfo i{p.id,    p.name, p.entry,   p.function, p.overwritten,
                   p.clone, p.stub, p.counted, p.active,   {}};
  for (const auto& v : p.versions)
    i.versions.push_back(state_->version_info(v));
  return i;
}

std::vector<PatchPointInfo> Engine::patch_points() const {
  std::vector<PatchPointInfo> out;
  for (PatchPointId id = 0;; ++id) {
    auto i = info(id);
    if (!i) break;
    out.push_back(std::move(*i));
  }
  return out;
}

std::vector<UpdateInfo> Engine::updates() const {
  std::lock_guard lock(state_->mutex);
  return state_->updates;
}

Result<PatchPointId> Engine::find(Address function) const {
  std::lock_guard lock(state_->mutex);
  for (const auto& p : state_->points)
    if (p.entry == function) return p.id;
  return fail(Errc::not_found, "no patch point at " + hex(function));
}

}  // namespace dynamos::core
