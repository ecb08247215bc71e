// cgroups: one API over cgroup v2 (unified) and v1 (one hierarchy per controller,
// as on hybrid hosts and at many HPC sites).
//
// A Layout says which hierarchy serves each controller on this host. A Group is one
// relative path (e.g. "dynamos/node0/job3") that exists in every hierarchy serving
// the controllers it was created with: under v1 the same relative path in each
// controller's hierarchy, under v2 one directory with the controllers enabled in its
// ancestors' cgroup.subtree_control.
//
// Units are the same on both versions: CPU weight in v2 units (1..10000, default 100;
// v1 cpu.shares = weight * 1024 / 100), quota and period in microseconds, memory in
// bytes, CPU usage in nanoseconds. Every call returns an error value naming the file
// it touched; a setting with no counterpart on the serving version fails with
// Errc::unsupported and says so.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "kernelside/pressure.hpp"

namespace dynamos::kernelside {

enum class Controller : unsigned {
  cpu,      // weight/shares, idle, quota
  cpuacct,  // CPU usage: v1 cpuacct.usage, v2 cpu.stat (core, always there)
  cpuset,   // cpus, mems
  memory,   // max, high, low, swap, usage, stat, reclaim
  freezer,  // v1 freezer.state, v2 cgroup.freeze (core, always there)
  pids,
};
inline constexpr unsigned kControllerCount = 6;
const char* controller_name(Controller c);

// A small set of controllers.
class Controllers {
 public:
  constexpr Controllers() = default;
  constexpr Controllers(std::initializer_list<Controller> list) {
    for (auto c : list)
      bits_ |= 1u << static_cast<unsigned>(c);
  }
  static constexpr Controllers all() {
    return {Controller::cpu,    Controller::cpuacct, Controller::cpuset,
            Controller::memory, Controller::freezer, Controller::pids};
  }
  constexpr bool has(Controller c) const { return bits_ & (1u << static_cast<unsigned>(c)); }
  constexpr void add(Controller c) { bits_ |= 1u << static_cast<unsigned>(c); }
  constexpr bool empty() const { return bits_ == 0; }
  std::string names() const;  // "cpu,memory"

 private:
  unsigned bits_ = 0;
};

enum class CgroupVersion { v1, v2 };

// Where the cgroup hierarchies are mounted and which controllers each serves.
class Layout {
 public:
  enum class Kind { v1, v2, hybrid };

  // From /proc/self/mountinfo and the v2 root's cgroup.controllers.
  static Result<Layout> detect();
  // The parser behind detect(): mountinfo text and the v2 root's cgroup.controllers.
  static Result<Layout> parse(std::string_view mountinfo, std::string_view v2_controllers);

  Kind kind() const;
  const std::string& v2_root() const { return v2_root_; }  // empty when not mounted
  // The v1 mount serving c, if any.
  std::optional<std::string> v1_root(Controller c) const;
  // Whether c is available in the v2 root (listed in its cgroup.controllers).
  bool v2_has(Controller c) const;

  // The hierarchy that serves c: v1 when a v1 hierarchy has it mounted, else v2 when
  // the v2 root offers it (freezer and cpuacct are core v2 features, always offered
  // when v2 is mounted). nullopt when nothing serves it.
  std::optional<CgroupVersion> serving(Controller c) const;
  // The mount point of the hierarchy serving c ("" when none).
  std::string root_of(Controller c) const;
  Controllers available() const;

  // A copy that ignores the v1 mounts of the given controllers, so that they are served
  // by v2 when it offers them: for hosts whose v1 hierarchies are left for others, and
  // for testing the v2 paths on hybrid hosts.
  Layout prefer_v2(Controllers which) const;

  // One line: "hybrid: v1 cpu@/sys/fs/cgroup/cpu ...; v2 @/sys/fs/cgroup/unified (none)".
  std::string describe() const;

 private:
  std::string v2_root_;
  Controllers v2_controllers_;
  std::map<Controller, std::string> v1_roots_;
};

// The cgroup of a process in the hierarchy serving c, relative to that hierarchy's
// root, from /proc/PID/cgroup ("/" for the root).
Result<std::string> process_cgroup(const Layout& layout, pid_t pid, Controller c);

struct MemoryEvents {
  // v2 memory.events max; v1 memory.failcnt + memory.memsw.failcnt (which some kernels,
  // this machine's 6.18 among them, no longer count: prefer oom_kills and peak).
  uint64_t limit_hits = 0;
  uint64_t oom_kills = 0;  // v2 memory.events oom_kill, v1 memory.oom_control oom_kill
  uint64_t high = 0;       // v2 only
  uint64_t peak = 0;       // highest usage: v2 memory.peak (5.19+, else 0), v1 max_usage_in_bytes
};

enum class ReclaimMethod {
  memory_reclaim,  // v2 memory.reclaim
  limit_squeeze,   // v1: lower memory.limit_in_bytes under the usage, then restore it
};
const char* reclaim_method_name(ReclaimMethod m);

struct ReclaimReport {
  ReclaimMethod method;
  uint64_t before = 0;  // usage before, bytes
  uint64_t after = 0;   // usage after, bytes
  // v1 only: bytes paged out with process_madvise(MADV_PAGEOUT) over the group's
  // processes' anonymous memory, when the limit squeeze fell short.
  uint64_t pageout_bytes = 0;
  uint64_t reclaimed() const { return before > after ? before - after : 0; }
};

// How remove() treats processes still in the group.
enum class Evict {
  none,       // fail with Errc::busy when any are left
  to_parent,  // move them to the parent group (v2: refused by the kernel if the parent
              // has controllers enabled for its children, unless it is the root)
  kill,       // thaw, SIGKILL them, wait until they are gone
};

class Group {
 public:
  // Creates path (and missing ancestors) in every hierarchy serving one of controllers;
  // an existing directory is taken over as is. Under v1 cpuset, new levels get their
  // parent's cpus and mems so that processes can be attached at once. An empty set (the
  // default) means every controller the layout serves; an explicitly named controller
  // that no hierarchy serves is an Errc::unsupported error naming it.
  static Result<Group> create(const Layout& layout, std::string path, Controllers controllers = {});
  // Opens a group that exists already (a node agent adopting its jobs after a restart):
  // Errc::not_found when it is missing from a hierarchy it needs.
  static Result<Group> open(const Layout& layout, std::string path, Controllers controllers = {});
  // Whether the group directory exists in every hierarchy serving controllers.
  static bool exists(const Layout& layout, const std::string& path, Controllers controllers = {});

  const std::string& path() const { return path_; }
  Controllers controllers() const { return controllers_; }
  const Layout& layout() const { return layout_; }
  // The directory of this group in the hierarchy serving c ("" when not served).
  std::string dir(Controller c) const;
  // The names of the child groups (from the first hierarchy, sorted).
  Result<std::vector<std::string>> children() const;
  // A child group with the same controllers.
  Result<Group> create_child(const std::string& name) const;

  // Removes the group from every hierarchy (children must be removed first).
  Result<void> remove(Evict evict = Evict::none,
                      std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Removes the group and all its descendants, deepest first, evicting processes.
  Result<void> remove_tree(Evict evict,
                           std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Moves a process (all its threads) into the group in every hierarchy.
  Result<void> attach(pid_t pid);
  // The distinct directories of this group, one per hierarchy, v2 first (what a child
  // joins before exec: SpawnOptions::cgroups).
  std::vector<std::string> dirs() const;
  // The processes in the group (cgroup.procs of the first hierarchy), sorted.
  Result<std::vector<pid_t>> pids() const;
  // All processes in the group and its descendants.
  Result<std::vector<pid_t>> pids_recursive() const;

  // Freezes the group and waits until every task is frozen; Errc::timed_out otherwise
  // (the group stays freezing: call thaw to undo).
  Result<void> freeze(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // The two halves of freeze(): ask the kernel to freeze the group, and wait until it
  // is frozen (so that other work can overlap the wait).
  Result<void> start_freeze();
  Result<void> wait_frozen(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  Result<void> thaw();
  Result<bool> frozen() const;

  Result<void> set_cpu_weight(unsigned weight);  // 1..10000; v1: cpu.shares
  // The weight in the same units (v1: cpu.shares x 100 / 1024, rounded, within 1..10000).
  Result<unsigned> cpu_weight() const;
  Result<void> set_cpu_idle(bool idle);  // cpu.idle on both
  // A quota of CPU time per period; nullopt removes the quota.
  Result<void> set_cpu_quota(std::optional<std::chrono::microseconds> quota,
                             std::chrono::microseconds period = std::chrono::milliseconds(100));
  Result<void> set_cpus(const std::string& cpu_list);  // "0-3,6"
  Result<void> set_mems(const std::string& node_list);
  Result<std::string> cpus() const;  // effective CPUs

  // Memory in bytes; nullopt = unlimited.
  Result<void> set_memory_max(std::optional<uint64_t> bytes);
  // v2 memory.high (throttle and reclaim above it). v1 has no counterpart:
  // Errc::unsupported (use set_memory_max, or set_memory_soft_limit).
  Result<void> set_memory_high(std::optional<uint64_t> bytes);
  // v2 memory.low (best-effort protection). v1: Errc::unsupported.
  Result<void> set_memory_low(std::optional<uint64_t> bytes);
  // v1 memory.soft_limit_in_bytes (reclaimed first under global pressure). v2: unsupported.
  Result<void> set_memory_soft_limit(std::optional<uint64_t> bytes);
  // Shields the group's memory from reclaim that a limit of an ancestor triggers, so
  // that the kernel takes what it needs from the group's unprotected siblings first
  // (a node agent protects the running job against the frozen one: with one memory
  // group a job, the kernel's reclaim under the node's limit scans every job's LRU
  // alike, where with one group for both the frozen job's older pages would go first).
  // v2: memory.low "max" (protected) or "0". v1, which has no memory.low: the group's
  // memory.swappiness 1 (its anonymous pages are scanned 1/200 as much as its file
  // pages, and alike only when reclaim is desperate: never an OOM kill the shield
  // alone causes) or, off, its parent's value. Never on a hierarchy's root.
  Result<void> set_reclaim_protected(bool on);
  // Swap the group may use: v2 memory.swap.max; v1 memory.memsw.limit_in_bytes set to
  // the memory limit plus this (set the memory limit first).
  Result<void> set_swap_max(std::optional<uint64_t> bytes);
  Result<std::optional<uint64_t>> memory_max() const;
  Result<uint64_t> memory_current() const;  // v2 memory.current, v1 memory.usage_in_bytes
  // memory.stat as is. Common keys on both: "anon" (v1 "rss" is copied to "anon"),
  // "file" (v1 "cache"), "pgmajfault".
  Result<std::map<std::string, uint64_t>> memory_stat() const;
  Result<MemoryEvents> memory_events() const;
  // Proactive reclaim of about `bytes` from the group. v2: memory.reclaim. v1: the limit
  // is lowered step by step to usage - bytes (the kernel reclaims to meet it, and refuses
  // with EBUSY rather than OOM-killing when it cannot), then restored; if that frees less
  // than 3/4 of bytes, the rest is paged out of the group's processes' anonymous memory
  // with MADV_PAGEOUT (lowest addresses first, not coldest first). While the limit is
  // lowered, a process allocating in the group is held to it: freeze the group first
  // when that matters.
  Result<ReclaimReport> reclaim(uint64_t bytes);

  // CPU time used by the group's tasks since creation, in nanoseconds.
  Result<std::chrono::nanoseconds> cpu_usage() const;
  // The group's PSI (v2 only: Errc::unsupported when the group has no v2 directory).
  Result<Pressure> pressure(Resource r) const;

 private:
  Group(Layout layout, std::string path, Controllers controllers)
      : layout_(std::move(layout)), path_(std::move(path)), controllers_(controllers) {}
  Result<std::string> file(Controller c, const char* v1_name, const char* v2_name) const;
  Result<void> evict_processes(Evict evict, std::chrono::milliseconds timeout);

  Layout layout_;
  std::string path_;
  Controllers controllers_;
};

}  // namespace dynamos::kernelside
