// The cycle-stealing extension's state handover (upgrade in place): text, one record a
// line, tagged CYCLESTEAL1. The new build takes over the cgroups, frozen guests and bound
// the old one left; the old build's fini(UPGRADED) leaves them.
#include <signal.h>

#include <algorithm>
#include <sstream>
#include <tuple>

#include "extensions/cyclesteal/ext_state.hpp"

namespace dynamos::cyclesteal::ext {

namespace {

constexpr const char* kStateTag = "CYCLESTEAL1";

std::string join_pids(const std::vector<pid_t>& pids) {
  std::string out;
  for (pid_t p : pids)
    out += (out.empty() ? "" : ",") + std::to_string(p);
  return out.empty() ? "-" : out;
}

std::vector<pid_t> split_pids(const std::string& text) {
  std::vector<pid_t> out;
  if (text == "-") return out;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    out.push_back(static_cast<pid_t>(std::stol(item)));
  return out;
}

std::string export_text() {
  std::ostringstream out;
  out << kStateTag << "\n";
  if (state->cls) {
    auto b = state->cls->bound();
    out << "class " << state->cls->created() << " "
        << (state->cls->priority() == CpuPriority::sched_idle) << " "
        << (b ? std::to_string(*b) : "-") << " " << state->cls->path() << "\n";
    for (const GuestRecord& r : state->cls->records()) {
      std::string origin;
      for (auto& [root, rel] : r.origin)
        origin += (origin.empty() ? "" : ";") + root + "=" + rel;
      out << "record " << r.id << " " << r.created << " " << r.frozen << " "
          << (origin.empty() ? "-" : origin) << " " << r.path << "\n";
    }
  }
  out << "path " << state->force_sched_idle << " " << state->class_path << "\n";
  for (auto& [id, g] : state->guests) {
    std::string name = g.name;
    std::replace(name.begin(), name.end(), '\n', ' ');
    out << "guest " << id << " " << (g.policy ? static_cast<int>(*g.policy) : -1) << " "
        << join_pids(g.pids) << " " << name << "\n";
  }
  for (auto& j : state->monitor->records())
    out << "job " << j.id << " " << join_pids(j.pids) << " " << (j.cgroup.empty() ? "-" : j.cgroup)
        << "\n";
  for (auto& [path, weight] : state->boosted)
    out << "boost " << weight << " " << path << "\n";
  out << "totals " << state->samples << " " << state->wall_s << " " << state->host_cpu_s << " "
      << state->guest_cpu_s << " " << state->idle_cpu_s << " " << state->pages_out << " "
      << state->killed << " " << state->short_of_bound << " " << state->host_cpu_guest_s << " "
      << state->host_wait_guest_s << "\n";
  return out.str();
}

Result<void> import_text(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kStateTag)
    return fail(Errc::version_mismatch, "state is not " + std::string(kStateTag) + " (starts '" +
                                            line.substr(0, 16) + "')");
  std::vector<GuestRecord> records;
  std::optional<std::tuple<bool, bool, std::optional<uint64_t>, std::string>> cls;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    std::string kind;
    l >> kind;
    if (kind == "class") {
      int created, sched;
      std::string bound, path;
      l >> created >> sched >> bound >> path;
      cls.emplace(created, sched, bound == "-" ? std::nullopt : std::optional(std::stoull(bound)),
                  path);
    } else if (kind == "record") {
      GuestRecord r;
      int created, frozen;
      std::string origin;
      l >> r.id >> created >> frozen >> origin >> r.path;
      r.created = created;
      r.frozen = frozen;
      if (origin != "-") {
        std::istringstream o(origin);
        std::string kv;
        while (std::getline(o, kv, ';'))
          if (auto eq = kv.find('='); eq != std::string::npos)
            r.origin[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      records.push_back(std::move(r));
    } else if (kind == "path") {
      int force;
      l >> force >> state->class_path;
      state->force_sched_idle = force;
    } else if (kind == "guest") {
      uint64_t id;
      int policy;
      std::string pids, name;
      l >> id >> policy >> pids;
      std::getline(l >> std::ws, name);
      GuestInfo g{name, std::nullopt, split_pids(pids)};
      if (policy >= 0) g.policy = static_cast<Policy>(policy);
      state->guests[id] = std::move(g);
    } else if (kind == "job") {
      uint64_t id;
      std::string pids, cgroup;
      l >> id >> pids >> cgroup;
      auto p = split_pids(pids);
      if (auto r = state->monitor->add(id, cgroup == "-" ? "" : cgroup, p); !r) return r;
    } else if (kind == "boost") {
      unsigned weight;
      std::string path;
      l >> weight >> path;
      state->boosted[path] = weight;
    } else if (kind == "totals") {
      l >> state->samples >> state->wall_s >> state->host_cpu_s >> state->guest_cpu_s >>
          state->idle_cpu_s >> state->pages_out >> state->killed >> state->short_of_bound;
      // Later fields (an older build's state has none: they stay 0).
      if (!(l >> state->host_cpu_guest_s >> state->host_wait_guest_s))
        state->host_cpu_guest_s = state->host_wait_guest_s = 0;
    } else if (!kind.empty()) {
      return fail(Errc::protocol, "unknown state record '" + kind + "'");
    }
  }
  if (cls) {
    auto& [created, sched, bound, path] = *cls;
    auto c = GuestClass::adopt(*state->layout, path, created,
                               sched ? CpuPriority::sched_idle : CpuPriority::cgroup_idle, bound);
    if (!c) return std::unexpected(c.error());
    for (const GuestRecord& r : records)
      if (auto ok = c->restore(r); !ok) return ok;
    state->cls.emplace(std::move(*c));
    if (auto u = state->cls->cpu_usage_ns()) state->last_guest_cpu_ns = *u;
  }
  return {};
}

}  // namespace

int export_state(dynamos_ext_buffer* out) {
  try {
    std::lock_guard lock(state->mu);
    return append(out, export_text());
  } catch (const std::exception& e) {
    return refuse(std::string("export the state: ") + e.what());
  }
}

int import_state(const void* data, size_t size) {
  try {
    std::lock_guard lock(state->mu);
    auto r = import_text(std::string(static_cast<const char*>(data), size));
    // The same process: the record file is this build's now (an older build kept none).
    if (r)
      if (auto p = persist(state->boosted); !p)
        note_error("record the state: " + p.error().message());
    if (!r) {
      // Refused: the old build keeps serving; forget what was half taken over.
      state->cls.reset();
      state->guests.clear();
      state->boosted.clear();
      for (auto& j : state->monitor->records())
        state->monitor->remove(j.id);
      return refuse("import the state: " + r.error().message());
    }
    return 0;
  } catch (const std::exception& e) {
    state->cls.reset();
    state->guests.clear();
    state->boosted.clear();
    return refuse(std::string("import the state: ") + e.what());
  }
}

}  // namespace dynamos::cyclesteal::ext
