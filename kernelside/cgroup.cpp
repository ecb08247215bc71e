// Group: one relative path across the hierarchies serving its controllers.
#include "kernelside/cgroup.hpp"
#include "base/names.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>

#include "kernelside/fs.hpp"
#include "kernelside/memory.hpp"

namespace dynamos::kernelside {

using namespace std::chrono_literals;

const char* reclaim_method_name(ReclaimMethod m) {
  static constexpr const char* kNames[] = {
      "memory.reclaim", "limit squeeze (memory.limit_in_bytes)"};  // in enum order
  return enum_name(kNames, m, "?");
}

namespace {

// v1 reports "unlimited" as the largest page-aligned signed 64-bit value.
constexpr uint64_t kUnlimitedFloor = uint64_t{1} << 62;

Result<void> check_path(const std::string& path) {
  if (path.empty() || path.front() == '/' || path.back() == '/')
    return fail(Errc::invalid_argument,
                "cgroup path '" + path + "' must be relative, e.g. 'dynamos/job1'");
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string part =
        path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..")
      return fail(Errc::invalid_argument,
                  "cgroup path '" + path + "' has an empty, '.' or '..' component");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return {};
}

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

std::string join(const std::string& root, const std::string& rel) {
  return rel.empty() ? root : root + "/" + rel;
}

Result<std::vector<pid_t>> read_pids(const std::string& file) {
  auto text = read_text(file);
  if (!text) return std::unexpected(text.error());
  std::vector<pid_t> pids;
  for (auto w : split_words(*text)) {
    auto v = parse_u64(w);
    if (!v) return std::unexpected(with_context(v.error(), "parse " + file));
    pids.push_back(static_cast<pid_t>(*v));
  }
  return pids;
}

std::string limit_text(std::optional<uint64_t> bytes, CgroupVersion v) {
  if (!bytes) return v == CgroupVersion::v2 ? "max" : "-1";
  return std::to_string(*bytes);
}

std::optional<uint64_t> limit_value(uint64_t raw) {
  if (raw >= kUnlimitedFloor) return std::nullopt;
  return raw;
}

// Under v1 cpuset a new group starts with empty cpus and mems, and attaching to it
// fails with ENOSPC; new levels inherit their parent's so they are usable at once.
Result<void> init_v1_cpuset(const std::string& dir, const std::string& parent_dir) {
  for (const char* name : {"cpuset.cpus", "cpuset.mems"}) {
    auto mine = read_text(dir + "/" + name);
    if (!mine) return std::unexpected(mine.error());
    if (!split_words(*mine).empty()) continue;
    auto theirs = read_text(parent_dir + "/" + name);
    if (!theirs) return std::unexpected(theirs.error());
    auto words = split_words(*theirs);
    if (words.empty()) continue;
    if (auto w = write_text(dir + "/" + name, std::string(words[0])); !w) return w;
  }
  return {};
}

}  // namespace

std::vector<std::string> Group::dirs() const {
  std::vector<std::string> out;
  std::set<std::string> roots;
  for (unsigned i = 0; i < kControllerCount; ++i) {
    auto c = static_cast<Controller>(i);
    if (!controllers_.has(c)) continue;
    std::string root = layout_.root_of(c);
    if (root.empty() || !roots.insert(root).second) continue;
    // v2 first, so that pids() and children() read the unified view when there is one.
    if (root == layout_.v2_root())
      out.insert(out.begin(), join(root, path_));
    else
      out.push_back(join(root, path_));
  }
  return out;
}

std::string Group::dir(Controller c) const {
  std::string root = layout_.root_of(c);
  return root.empty() ? "" : join(root, path_);
}

Result<Group> Group::create(const Layout& layout, std::string path, Controllers controllers) {
  if (auto ok = check_path(path); !ok) return std::unexpected(ok.error());
  if (controllers.empty()) controllers = layout.available();
  Controllers missing;
  for (unsigned i = 0; i < kControllerCount; ++i) {
    auto c = static_cast<Controller>(i);
    if (controllers.has(c) && !layout.serving(c)) missing.add(c);
  }
  if (!missing.empty())
    return fail(Errc::unsupported, "create cgroup " + path + ": no hierarchy serves " +
                                       missing.names() + " (" + layout.describe() + ")");
  Group g(layout, path, controllers);

  // v2 controllers must be enabled in every ancestor's cgroup.subtree_control.
  std::vector<std::string> v2_enable;
  for (auto c : {Controller::cpu, Controller::cpuset, Controller::memory, Controller::pids})
    if (controllers.has(c) && layout.serving(c) == CgroupVersion::v2)
      v2_enable.push_back(controller_name(c));

  std::set<std::string> roots;
  for (unsigned i = 0; i < kControllerCount; ++i) {
    auto c = static_cast<Controller>(i);
    if (!controllers.has(c)) continue;
    std::string root = layout.root_of(c);
    if (!roots.insert(root).second) continue;
    bool is_v2 = root == layout.v2_root();
    bool is_v1_cpuset = !is_v2 && layout.v1_root(Controller::cpuset) == root;
    std::string rel;
    size_t start = 0;
    for (;;) {
      size_t slash = path.find('/', start);
      std::string parent_dir = join(root, rel);
      if (is_v2)
        for (auto& name : v2_enable)
          if (auto w = write_text(parent_dir + "/cgroup.subtree_control", "+" + name); !w)
            return std::unexpected(with_context(w.error(), "create cgroup " + path));
      rel = path.substr(0, slash);
      std::string dir = join(root, rel);
      if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
        return fail_errno("create cgroup directory " + dir);
      if (is_v1_cpuset)
        if (auto ok = init_v1_cpuset(dir, parent_dir); !ok)
          return std::unexpected(with_context(ok.error(), "create cgroup " + path));
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
  }
  return g;
}

Result<Group> Group::open(const Layout& layout, std::string path, Controllers controllers) {
  if (auto ok = check_path(path); !ok) return std::unexpected(ok.error());
  if (controllers.empty()) controllers = layout.available();
  Group g(layout, path, controllers);
  for (unsigned i = 0; i < kControllerCount; ++i) {
    auto c = static_cast<Controller>(i);
    if (!controllers.has(c)) continue;
    if (!layout.serving(c))
      return fail(Errc::unsupported,
                  "open cgroup " + path + ": no hierarchy serves " + controller_name(c));
    if (!path_exists(g.dir(c)))
      return fail(Errc::not_found, "open cgroup " + path + ": " + g.dir(c) + " does not exist");
  }
  return g;
}

bool Group::exists(const Layout& layout, const std::string& path, Controllers controllers) {
  return open(layout, path, controllers).has_value();
}

Result<std::vector<std::string>> Group::children() const {
  std::set<std::string> names;
  for (auto& d : dirs()) {
    auto entries = list_subdirs(d);
    if (!entries) return std::unexpected(entries.error());
    names.insert(entries->begin(), entries->end());
  }
  return std::vector<std::string>(names.begin(), names.end());
}

Result<Group> Group::create_child(const std::string& name) const {
  return create(layout_, path_ + "/" + name, controllers_);
}

Result<void> Group::attach(pid_t pid) {
  for (auto& d : dirs())
    if (auto w = write_text(d + "/cgroup.procs", std::to_string(pid)); !w)
      return std::unexpected(
          with_context(w.error(), "attach pid " + std::to_string(pid) + " to cgroup " + path_));
  return {};
}

Result<std::vector<pid_t>> Group::pids() const {
  std::set<pid_t> all;
  for (auto& d : dirs()) {
    auto p = read_pids(d + "/cgroup.procs");
    if (!p) return std::unexpected(p.error());
    all.insert(p->begin(), p->end());
  }
  return std::vector<pid_t>(all.begin(), all.end());
}

Result<std::vector<pid_t>> Group::pids_recursive() const {
  auto mine = pids();
  if (!mine) return mine;
  std::set<pid_t> all(mine->begin(), mine->end());
  auto kids = children();
  if (!kids) return std::unexpected(kids.error());
  for (auto& k : *kids) {
    Group child(layout_, path_ + "/" + k, controllers_);
    auto p = child.pids_recursive();
    if (!p) return p;
    all.insert(p->begin(), p->end());
  }
  return std::vector<pid_t>(all.begin(), all.end());
}

Result<void> Group::evict_processes(Evict evict, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (evict == Evict::kill && controllers_.has(Controller::freezer))
    if (auto t = thaw(); !t) return t;  // frozen tasks act on SIGKILL only once thawed
  for (;;) {
    auto left = pids();
    if (!left) return std::unexpected(left.error());
    if (left->empty()) return {};
    if (evict == Evict::none)
      return fail(Errc::busy, "remove cgroup " + path_ + ": " + std::to_string(left->size()) +
                                  " processes still in it (first pid " +
                                  std::to_string(left->front()) + ")");
    if (std::chrono::steady_clock::now() > deadline)
      return fail(Errc::timed_out, "remove cgroup " + path_ + ": " + std::to_string(left->size()) +
                                       " processes still in it after " +
                                       std::to_string(timeout.count()) + " ms (first pid " +
                                       std::to_string(left->front()) + ")");
    for (pid_t pid : *left) {
      if (evict == Evict::kill) {
        if (::kill(pid, SIGKILL) != 0 && errno != ESRCH)
          return fail_errno("kill pid " + std::to_string(pid));
        continue;
      }
      std::string parent = parent_of(path_);
      for (auto& d : dirs()) {
        std::string root = d.substr(0, d.size() - path_.size() - 1);
        auto w = write_text(join(root, parent) + "/cgroup.procs", std::to_string(pid));
        if (!w && w.error().sys_errno != ESRCH)
          return std::unexpected(with_context(
              w.error(), "move pid " + std::to_string(pid) + " out of cgroup " + path_));
      }
    }
    std::this_thread::sleep_for(2ms);
  }
}

Result<void> Group::remove(Evict evict, std::chrono::milliseconds timeout) {
  if (auto e = evict_processes(evict, timeout); !e) return e;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (auto& d : dirs()) {
    // A killed task leaves its cgroup a moment after it stops being listed.
    while (::rmdir(d.c_str()) != 0) {
      if (errno == ENOENT) break;
      if (errno != EBUSY || std::chrono::steady_clock::now() > deadline)
        return fail_errno("remove cgroup directory " + d);
      std::this_thread::sleep_for(2ms);
    }
  }
  return {};
}

Result<void> Group::remove_tree(Evict evict, std::chrono::milliseconds timeout) {
  auto kids = children();
  if (!kids) return std::unexpected(kids.error());
  for (auto& k : *kids) {
    Group child(layout_, path_ + "/" + k, controllers_);
    if (auto r = child.remove_tree(evict, timeout); !r) return r;
  }
  return remove(evict, timeout);
}

Result<std::string> Group::file(Controller c, const char* v1_name, const char* v2_name) const {
  if (!controllers_.has(c))
    return fail(Errc::state, std::string("cgroup ") + path_ + " was not set up with the " +
                                 controller_name(c) + " controller");
  auto v = layout_.serving(c);
  if (!v)
    return fail(Errc::unsupported, std::string("no cgroup hierarchy serves ") + controller_name(c));
  const char* name = *v == CgroupVersion::v1 ? v1_name : v2_name;
  if (!name)
    return fail(Errc::unsupported, std::string("cgroup ") +
                                       (*v == CgroupVersion::v1 ? "v1" : "v2") + " " +
                                       controller_name(c) + " has no counterpart for " +
                                       (v1_name ? v1_name : v2_name) + " (group " + path_ + ")");
  return dir(c) + "/" + name;
}

// ---- freezer: kernelside/freezer.cpp ----

// ---- cpu ----

Result<void> Group::set_cpu_weight(unsigned weight) {
  if (weight < 1 || weight > 10000)
    return fail(Errc::invalid_argument,
                "cpu weight " + std::to_string(weight) + " out of range 1..10000");
  auto f = file(Controller::cpu, "cpu.shares", "cpu.weight");
  if (!f) return std::unexpected(f.error());
  bool v1 = layout_.serving(Controller::cpu) == CgroupVersion::v1;
  uint64_t value = v1 ? std::max<uint64_t>(2, uint64_t{weight} * 1024 / 100) : weight;
  return write_text(*f, std::to_string(value));
}

Result<unsigned> Group::cpu_weight() const {
  auto f = file(Controller::cpu, "cpu.shares", "cpu.weight");
  if (!f) return std::unexpected(f.error());
  auto v = read_u64(*f);
  if (!v) return std::unexpected(v.error());
  if (layout_.serving(Controller::cpu) == CgroupVersion::v2) return static_cast<unsigned>(*v);
  return static_cast<unsigned>(std::clamp<uint64_t>((*v * 100 + 512) / 1024, 1, 10000));
}

Result<void> Group::set_cpu_idle(bool idle) {
  auto f = file(Controller::cpu, "cpu.idle", "cpu.idle");
  if (!f) return std::unexpected(f.error());
  if (!path_exists(*f))
    return fail(Errc::unsupported, *f + " does not exist: cpu.idle needs Linux 5.15 or later");
  return write_text(*f, idle ? "1" : "0");
}

Result<void> Group::set_cpu_quota(std::optional<std::chrono::microseconds> quota,
                                  std::chrono::microseconds period) {
  if (period.count() < 1000 || period.count() > 1000000)
    return fail(Errc::invalid_argument,
                "cpu period " + std::to_string(period.count()) + " us out of range 1000..1000000");
  if (quota && quota->count() < 1000)
    return fail(Errc::invalid_argument,
                "cpu quota " + std::to_string(quota->count()) + " us below 1000 us");
  if (layout_.serving(Controller::cpu) == CgroupVersion::v2) {
    auto f = file(Controller::cpu, nullptr, "cpu.max");
    if (!f) return std::unexpected(f.error());
    return write_text(*f, (quota ? std::to_string(quota->count()) : "max") + " " +
                              std::to_string(period.count()));
  }
  auto p = file(Controller::cpu, "cpu.cfs_period_us", nullptr);
  if (!p) return std::unexpected(p.error());
  auto q = file(Controller::cpu, "cpu.cfs_quota_us", nullptr);
  if (!q) return std::unexpected(q.error());
  // Lift the quota first: a period change is checked against the current quota.
  if (auto w = write_text(*q, "-1"); !w) return w;
  if (auto w = write_text(*p, std::to_string(period.count())); !w) return w;
  if (!quota) return {};
  return write_text(*q, std::to_string(quota->count()));
}

Result<void> Group::set_cpus(const std::string& cpu_list) {
  auto f = file(Controller::cpuset, "cpuset.cpus", "cpuset.cpus");
  if (!f) return std::unexpected(f.error());
  return write_text(*f, cpu_list);
}

Result<void> Group::set_mems(const std::string& node_list) {
  auto f = file(Controller::cpuset, "cpuset.mems", "cpuset.mems");
  if (!f) return std::unexpected(f.error());
  return write_text(*f, node_list);
}

Result<std::string> Group::cpus() const {
  auto f = file(Controller::cpuset, "cpuset.effective_cpus", "cpuset.cpus.effective");
  if (!f) return std::unexpected(f.error());
  auto text = read_text(*f);
  if (!text) return text;
  auto w = split_words(*text);
  return w.empty() ? std::string() : std::string(w[0]);
}

Result<std::chrono::nanoseconds> Group::cpu_usage() const {
  if (layout_.serving(Controller::cpuacct) == CgroupVersion::v1) {
    auto f = file(Controller::cpuacct, "cpuacct.usage", nullptr);
    if (!f) return std::unexpected(f.error());
    auto v = read_u64(*f);
    if (!v) return std::unexpected(v.error());
    return std::chrono::nanoseconds(*v);
  }
  auto f = file(Controller::cpuacct, nullptr, "cpu.stat");
  if (!f) return std::unexpected(f.error());
  auto kv = read_flat_keyed(*f);
  if (!kv) return std::unexpected(kv.error());
  if (!kv->contains("usage_usec")) return fail(Errc::protocol, *f + " has no usage_usec");
  return std::chrono::nanoseconds(kv->at("usage_usec") * 1000);
}

Result<Pressure> Group::pressure(Resource r) const {
  std::string v2 = layout_.v2_root();
  if (v2.empty())
    return fail(Errc::unsupported, "cgroup pressure needs cgroup v2, which is not mounted");
  for (auto& d : dirs())
    if (d.starts_with(v2 + "/"))
      return read_pressure_file(d + "/" + resource_name(r) + ".pressure");
  return fail(Errc::unsupported, "cgroup " + path_ +
                                     " has no v2 directory (its controllers are served by v1): "
                                     "no per-group pressure; use the system-wide /proc/pressure");
}

// ---- memory ----

Result<std::optional<uint64_t>> Group::memory_max() const {
  auto f = file(Controller::memory, "memory.limit_in_bytes", "memory.max");
  if (!f) return std::unexpected(f.error());
  auto v = read_u64(*f);
  if (!v) return std::unexpected(v.error());
  return limit_value(*v);
}

Result<void> Group::set_memory_max(std::optional<uint64_t> bytes) {
  auto version = layout_.serving(Controller::memory);
  auto f = file(Controller::memory, "memory.limit_in_bytes", "memory.max");
  if (!f) return std::unexpected(f.error());
  if (version == CgroupVersion::v2) return write_text(*f, limit_text(bytes, *version));
  // v1 requires limit <= memsw limit. Keep the swap allowance (memsw - limit) when memsw
  // is limited: raise memsw first when growing, lower it after when shrinking.
  std::string memsw = dir(Controller::memory) + "/memory.memsw.limit_in_bytes";
  if (!path_exists(memsw)) return write_text(*f, limit_text(bytes, *version));
  auto old_limit = read_u64(*f);
  auto old_memsw = read_u64(memsw);
  if (!old_limit) return std::unexpected(old_limit.error());
  if (!old_memsw) return std::unexpected(old_memsw.error());
  if (!limit_value(*old_memsw)) return write_text(*f, limit_text(bytes, *version));
  uint64_t swap = *old_memsw - std::min(*old_memsw, *old_limit);
  // Written as text straight away: g++ 12 misreads an optional here (maybe-uninitialized).
  std::string new_memsw = bytes ? std::to_string(*bytes + swap) : "-1";
  if (!bytes || *bytes > *old_limit) {
    if (auto w = write_text(memsw, new_memsw); !w) return w;
    return write_text(*f, limit_text(bytes, *version));
  }
  if (auto w = write_text(*f, limit_text(bytes, *version)); !w) return w;
  return write_text(memsw, new_memsw);
}

Result<void> Group::set_memory_high(std::optional<uint64_t> bytes) {
  auto f = file(Controller::memory, nullptr, "memory.high");
  if (!f) return std::unexpected(f.error());
  return write_text(*f, limit_text(bytes, CgroupVersion::v2));
}

Result<void> Group::set_memory_low(std::optional<uint64_t> bytes) {
  auto f = file(Controller::memory, nullptr, "memory.low");
  if (!f) return std::unexpected(f.error());
  return write_text(*f, bytes ? std::to_string(*bytes) : "0");
}

Result<void> Group::set_reclaim_protected(bool on) {
  if (path_.empty() || path_ == "/")
    return fail(Errc::invalid_argument, "reclaim protection of a hierarchy's root group");
  auto f = file(Controller::memory, "memory.swappiness", "memory.low");
  if (!f) return std::unexpected(f.error());
  if (layout_.serving(Controller::memory) == CgroupVersion::v2)
    return write_text(*f, on ? "max" : "0");
  if (on) return write_text(*f, "1");
  auto parent = read_text(parent_of(dir(Controller::memory)) + "/memory.swappiness");
  if (!parent) return std::unexpected(parent.error());
  auto words = split_words(*parent);
  if (words.empty()) return fail(Errc::unsupported, "empty memory.swappiness above " + path_);
  return write_text(*f, words[0]);
}

Result<void> Group::set_memory_soft_limit(std::optional<uint64_t> bytes) {
  auto f = file(Controller::memory, "memory.soft_limit_in_bytes", nullptr);
  if (!f) return std::unexpected(f.error());
  return write_text(*f, limit_text(bytes, CgroupVersion::v1));
}

Result<void> Group::set_swap_max(std::optional<uint64_t> bytes) {
  auto version = layout_.serving(Controller::memory);
  auto f = file(Controller::memory, "memory.memsw.limit_in_bytes", "memory.swap.max");
  if (!f) return std::unexpected(f.error());
  if (!path_exists(*f))
    return fail(Errc::unsupported,
                *f + " does not exist: swap accounting is off (boot with swapaccount=1)");
  if (version == CgroupVersion::v2) return write_text(*f, limit_text(bytes, *version));
  auto limit = memory_max();
  if (!limit) return std::unexpected(limit.error());
  if (bytes && !*limit)
    return fail(Errc::state, "set swap limit of cgroup " + path_ +
                                 ": v1 counts memory+swap together, "
                                 "so set a memory limit first");
  return write_text(
      *f, limit_text(bytes ? std::optional<uint64_t>(**limit + *bytes) : std::nullopt, *version));
}

Result<uint64_t> Group::memory_current() const {
  auto f = file(Controller::memory, "memory.usage_in_bytes", "memory.current");
  if (!f) return std::unexpected(f.error());
  return read_u64(*f);
}

Result<std::map<std::string, uint64_t>> Group::memory_stat() const {
  auto f = file(Controller::memory, "memory.stat", "memory.stat");
  if (!f) return std::unexpected(f.error());
  auto kv = read_flat_keyed(*f);
  if (!kv) return std::unexpected(kv.error());
  if (layout_.serving(Controller::memory) == CgroupVersion::v1) {
    if (kv->contains("rss")) (*kv)["anon"] = kv->at("rss");
    if (kv->contains("cache")) (*kv)["file"] = kv->at("cache");
  }
  return kv;
}

Result<MemoryEvents> Group::memory_events() const {
  MemoryEvents ev;
  if (layout_.serving(Controller::memory) == CgroupVersion::v2) {
    auto f = file(Controller::memory, nullptr, "memory.events");
    if (!f) return std::unexpected(f.error());
    auto kv = read_flat_keyed(*f);
    if (!kv) return std::unexpected(kv.error());
    ev.limit_hits = kv->contains("max") ? kv->at("max") : 0;
    ev.oom_kills = kv->contains("oom_kill") ? kv->at("oom_kill") : 0;
    ev.high = kv->contains("high") ? kv->at("high") : 0;
    std::string peak = dir(Controller::memory) + "/memory.peak";
    if (path_exists(peak)) {
      auto v = read_u64(peak);
      if (!v) return std::unexpected(v.error());
      ev.peak = *v;
    }
    return ev;
  }
  auto failcnt = file(Controller::memory, "memory.failcnt", nullptr);
  if (!failcnt) return std::unexpected(failcnt.error());
  auto hits = read_u64(*failcnt);
  if (!hits) return std::unexpected(hits.error());
  ev.limit_hits = *hits;
  // With a memory+swap limit, hitting it counts in memsw.failcnt instead.
  std::string memsw = dir(Controller::memory) + "/memory.memsw.failcnt";
  if (path_exists(memsw)) {
    auto sw = read_u64(memsw);
    if (!sw) return std::unexpected(sw.error());
    ev.limit_hits += *sw;
  }
  auto peak = read_u64(dir(Controller::memory) + "/memory.max_usage_in_bytes");
  if (!peak) return std::unexpected(peak.error());
  ev.peak = *peak;
  std::string oom = dir(Controller::memory) + "/memory.oom_control";
  auto kv = read_flat_keyed(oom);
  if (!kv) return std::unexpected(kv.error());
  ev.oom_kills = kv->contains("oom_kill") ? kv->at("oom_kill") : 0;
  return ev;
}

Result<ReclaimReport> Group::reclaim(uint64_t bytes) {
  auto before = memory_current();
  if (!before) return std::unexpected(before.error());
  ReclaimReport report{ReclaimMethod::memory_reclaim, *before, *before};
  if (layout_.serving(Controller::memory) == CgroupVersion::v2) {
    auto f = file(Controller::memory, nullptr, "memory.reclaim");
    if (!f) return std::unexpected(f.error());
    if (!path_exists(*f))
      return fail(Errc::unsupported, *f + " does not exist: memory.reclaim needs Linux 5.19");
    auto w = write_text(*f, std::to_string(bytes));
    // EAGAIN: the kernel reclaimed less than asked; the report says how much it got.
    if (!w && w.error().sys_errno != EAGAIN) return std::unexpected(w.error());
  } else {
    report.method = ReclaimMethod::limit_squeeze;
    auto f = file(Controller::memory, "memory.limit_in_bytes", nullptr);
    if (!f) return std::unexpected(f.error());
    auto old_limit = read_u64(*f);
    if (!old_limit) return std::unexpected(old_limit.error());
    // Lower the limit in steps towards usage - bytes; the kernel reclaims to meet each
    // step and answers EBUSY (leaving the limit as it was) when a reclaim pass frees
    // nothing, which happens now and then with freshly referenced pages: retry with
    // smaller steps a few times before giving up.
    const uint64_t page = 4096;
    uint64_t target = *before > bytes ? (*before - bytes) / page * page : 0;
    target = std::max<uint64_t>(target, 1 << 20);
    uint64_t step = std::max<uint64_t>(bytes / 8 / page * page, 1 << 20);
    unsigned refusals = 0;
    Result<void> restored;
    for (;;) {
      auto current = memory_current();
      if (!current) {
        restored = write_text(*f, std::to_string(*old_limit));
        return std::unexpected(current.error());
      }
      if (*current <= target) break;
      uint64_t next = std::max(target, (*current > step ? *current - step : 0) / page * page);
      auto w = write_text(*f, std::to_string(next));
      if (w) continue;
      if (w.error().sys_errno != EBUSY) {
        restored = write_text(*f, std::to_string(*old_limit));
        return std::unexpected(w.error());
      }
      if (++refusals > 8 || step <= 256 * 1024) break;
      step /= 2;
    }
    restored = write_text(*f, std::to_string(*old_limit));
    if (!restored)
      return std::unexpected(with_context(
          restored.error(), "restore the limit of cgroup " + path_ + " after reclaim"));
  }
  auto after = memory_current();
  if (!after) return std::unexpected(after.error());
  report.after = *after;
  // v1, and the kernel would not reclaim enough: page out the group's processes'
  // anonymous memory directly for the rest.
  if (report.method == ReclaimMethod::limit_squeeze && report.reclaimed() < bytes * 3 / 4) {
    auto pids = this->pids();
    if (!pids) return std::unexpected(pids.error());
    auto r = advise_processes(*pids, Advice::pageout, bytes - report.reclaimed());
    if (!r) return std::unexpected(with_context(r.error(), "reclaim from cgroup " + path_));
    report.pageout_bytes = r->total.bytes;
    after = memory_current();
    if (!after) return std::unexpected(after.error());
    report.after = *after;
  }
  return report;
}

}  // namespace dynamos::kernelside
