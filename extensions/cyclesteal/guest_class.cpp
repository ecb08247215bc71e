#include "extensions/cyclesteal/guest_class.hpp"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <set>
#include <thread>

#include "kernelside/fs.hpp"
#include "kernelside/memory.hpp"
#include "kernelside/sched.hpp"

namespace dynamos::cyclesteal {

using namespace kernelside;

const char* cpu_priority_name(CpuPriority p) {
  return p == CpuPriority::cgroup_idle ? "cpu.idle" : "SCHED_IDLE";
}

namespace {

constexpr Controller kAll[] = {Controller::cpu,    Controller::cpuacct, Controller::cpuset,
                               Controller::memory, Controller::freezer, Controller::pids};

// The children of every thread of pid (/proc/PID/task/TID/children).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  auto tids = list_threads(pid);
  if (!tids) return out;
  for (pid_t tid : *tids) {
    auto text =
        read_text("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/children");
    if (!text) continue;
    for (auto w : split_words(*text))
      if (auto v = parse_u64(w)) out.push_back(static_cast<pid_t>(*v));
  }
  return out;
}

}  // namespace

Controllers class_controllers(const Layout& layout) {
  Controllers c{Controller::cpuacct, Controller::memory, Controller::freezer};
  if (layout.available().has(Controller::cpu)) c.add(Controller::cpu);
  return c;
}

GuestClass::GuestClass(Layout layout, Group group, bool created, CpuPriority priority)
    : layout_(std::move(layout)),
      group_(std::move(group)),
      created_(created),
      priority_(priority) {}

Result<GuestClass> GuestClass::create(const Layout& layout, std::string class_path,
                                      bool force_sched_idle) {
  Controllers controllers = class_controllers(layout);
  bool existed = Group::exists(layout, class_path, controllers);
  auto group = Group::create(layout, class_path, controllers);
  if (!group) return std::unexpected(with_context(group.error(), "create the guest class"));
  CpuPriority priority = CpuPriority::sched_idle;
  // The group idle wherever the cpu controller allows it: SCHED_IDLE threads alone, in a
  // group of normal weight, would compete with the host group as equals.
  bool group_idle = controllers.has(Controller::cpu) && group->set_cpu_idle(true).has_value();
  if (!force_sched_idle && group_idle) priority = CpuPriority::cgroup_idle;
  return GuestClass(layout, std::move(*group), !existed, priority);
}

Result<GuestClass> GuestClass::adopt(const Layout& layout, std::string class_path, bool created,
                                     CpuPriority priority, std::optional<uint64_t> bound) {
  auto group = Group::open(layout, class_path, class_controllers(layout));
  if (!group) return std::unexpected(with_context(group.error(), "take over the guest class"));
  GuestClass c(layout, std::move(*group), created, priority);
  c.bound_ = bound;
  return c;
}

std::vector<GuestRecord> GuestClass::records() const {
  std::vector<GuestRecord> out;
  for (auto& [id, g] : guests_)
    out.push_back({id, g.group.path(), g.created, g.frozen, g.origin});
  return out;
}

Result<void> GuestClass::restore(const GuestRecord& r) {
  auto group = Group::open(layout_, r.path, group_->controllers());
  if (!group)
    return std::unexpected(with_context(group.error(), "take over guest " + std::to_string(r.id)));
  guests_.insert_or_assign(r.id, Guest{std::move(*group), r.created, r.frozen, r.origin});
  return {};
}

std::vector<uint64_t> GuestClass::ids() const {
  std::vector<uint64_t> out;
  for (auto& [id, g] : guests_)
    out.push_back(id);
  return out;
}

Result<void> GuestClass::add(uint64_t id, const std::string& own_path,
                             std::span<const pid_t> pids) {
  if (guests_.contains(id))
    return fail(Errc::state, "guest " + std::to_string(id) + " is in the guest class already");
  std::string path = own_path.empty() ? group_->path() + "/g" + std::to_string(id) : own_path;
  if (!path.starts_with(group_->path() + "/"))
    return fail(Errc::invalid_argument, "guest " + std::to_string(id) + " cgroup " + path +
                                            " is not inside the guest class " + group_->path());
  bool existed = Group::exists(layout_, path, group_->controllers());
  auto group = Group::create(layout_, path, group_->controllers());
  if (!group) return std::unexpected(group.error());
  Guest g{std::move(*group), !existed, false, {}};
  // Remember where the processes were, to put them back there on release.
  if (!pids.empty()) {
    for (Controller c : kAll) {
      if (!g.group.controllers().has(c)) continue;
      auto from = process_cgroup(layout_, pids[0], c);
      if (from) g.origin[layout_.root_of(c)] = *from;
    }
  }
  // The given processes and everything they forked already (their children are not
  // moved by the kernel); twice, for children forked while the first pass ran.
  std::set<pid_t> done;
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<pid_t> todo(pids.begin(), pids.end());
    while (!todo.empty()) {
      pid_t pid = todo.back();
      todo.pop_back();
      for (pid_t kid : children_of(pid))
        todo.push_back(kid);
      if (done.contains(pid)) continue;
      if (auto r = g.group.attach(pid); !r) {
        if (pass > 0 || (pid != pids.front() && r.error().code == Errc::not_found)) continue;
        if (g.created) (void)g.group.remove(Evict::none);
        return std::unexpected(with_context(r.error(), "add guest " + std::to_string(id)));
      }
      done.insert(pid);
      if (priority_ == CpuPriority::sched_idle) {
        if (auto r = set_process_policy(pid, kernelside::Policy::idle);
            !r && r.error().code != Errc::not_found)
          return std::unexpected(r.error());
      }
    }
  }
  guests_.emplace(id, std::move(g));
  return {};
}

Result<void> GuestClass::move_out(Guest& g) {
  if (g.frozen) {
    if (auto r = g.group.thaw(); !r) return r;
    g.frozen = false;
  }
  // Several passes: a guest may fork while it is being moved.
  for (int pass = 0; pass < 20; ++pass) {
    auto pids = g.group.pids_recursive();
    if (!pids) return std::unexpected(pids.error());
    if (pids->empty()) return {};
    std::set<std::string> roots;
    for (Controller c : kAll)
      if (g.group.controllers().has(c)) roots.insert(layout_.root_of(c));
    for (const std::string& root : roots) {
      std::string dest = root;
      if (auto it = g.origin.find(root); it != g.origin.end() && it->second != "/") {
        std::string dir = root + it->second;
        if (path_exists(dir + "/cgroup.procs")) dest = dir;
      }
      for (pid_t pid : *pids) {
        auto r = write_text(dest + "/cgroup.procs", std::to_string(pid));
        if (!r && r.error().sys_errno != ESRCH) return r;
      }
    }
    if (priority_ == CpuPriority::sched_idle)
      for (pid_t pid : *pids)
        (void)set_process_policy(pid, kernelside::Policy::other);
  }
  return fail(Errc::busy, "move the processes out of " + g.group.path() + ": they keep forking");
}

Result<void> GuestClass::release(uint64_t id) {
  auto it = guests_.find(id);
  if (it == guests_.end()) return fail(Errc::not_found, "no guest " + std::to_string(id));
  if (auto r = move_out(it->second); !r) return r;
  if (it->second.created)
    if (auto r = it->second.group.remove(Evict::none); !r) return r;
  guests_.erase(it);
  return {};
}

Result<void> GuestClass::release_all() {
  std::optional<Error> first;
  for (uint64_t id : ids())
    if (auto r = release(id); !r && !first) first = r.error();
  if (first) return std::unexpected(*first);
  if (bound_) {
    (void)group_->set_memory_max(std::nullopt);
    bound_.reset();
  }
  if (created_) return group_->remove(Evict::none);
  return {};
}

Result<void> GuestClass::freeze(uint64_t id) {
  auto it = guests_.find(id);
  if (it == guests_.end()) return fail(Errc::not_found, "no guest " + std::to_string(id));
  // Waiting until every task has entered the freezer can take long when the guests sit
  // at idle priority on a busy node (they are scheduled late), and they are not running
  // meanwhile anyway: wait briefly, and let finish_freezing() re-kick stragglers.
  auto r = it->second.group.freeze(std::chrono::milliseconds(20));
  if (!r && r.error().code != Errc::timed_out) {
    (void)it->second.group.thaw();
    return r;
  }
  it->second.frozen = true;
  return {};
}

void GuestClass::finish_freezing() {
  for (auto& [id, g] : guests_) {
    if (!g.frozen) continue;
    if (auto done = g.group.frozen(); done && !*done)
      (void)g.group.freeze(std::chrono::milliseconds(0));
  }
}

Result<void> GuestClass::thaw(uint64_t id) {
  auto it = guests_.find(id);
  if (it == guests_.end()) return fail(Errc::not_found, "no guest " + std::to_string(id));
  if (auto r = it->second.group.thaw(); !r) return r;
  it->second.frozen = false;
  return {};
}

bool GuestClass::frozen(uint64_t id) const {
  auto it = guests_.find(id);
  return it != guests_.end() && it->second.frozen;
}

Result<size_t> GuestClass::kill(uint64_t id) {
  auto it = guests_.find(id);
  if (it == guests_.end()) return fail(Errc::not_found, "no guest " + std::to_string(id));
  Guest& g = it->second;
  if (g.frozen) {
    // Killed tasks must run to die; thaw after the signal so they never run guest code.
    if (auto p = g.group.pids_recursive())
      for (pid_t pid : *p)
        ::kill(pid, SIGKILL);
    (void)g.group.thaw();
    g.frozen = false;
  }
  std::set<pid_t> killed;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    auto pids = g.group.pids_recursive();
    if (!pids) return std::unexpected(pids.error());
    if (pids->empty()) return killed.size();
    if (std::chrono::steady_clock::now() > deadline)
      return fail(Errc::timed_out, "kill guest " + std::to_string(id) + ": " +
                                       std::to_string(pids->size()) + " processes still in " +
                                       g.group.path() + " after 5 s");
    for (pid_t pid : *pids)
      if (::kill(pid, SIGKILL) == 0) killed.insert(pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Result<std::vector<pid_t>> GuestClass::pids(uint64_t id) const {
  auto it = guests_.find(id);
  if (it == guests_.end()) return fail(Errc::not_found, "no guest " + std::to_string(id));
  return it->second.group.pids_recursive();
}

Result<std::vector<pid_t>> GuestClass::all_pids() const {
  return group_->pids_recursive();
}

Result<uint64_t> GuestClass::cpu_usage_ns() const {
  auto r = group_->cpu_usage();
  if (!r) return std::unexpected(r.error());
  return static_cast<uint64_t>(r->count());
}

Result<uint64_t> GuestClass::memory_bytes() const {
  return group_->memory_current();
}

Result<ShrinkReport> GuestClass::set_bound(std::optional<uint64_t> bytes) {
  ShrinkReport rep;
  auto cur = group_->memory_current();
  if (!cur) return std::unexpected(cur.error());
  rep.before = rep.after = *cur;
  if (!bytes) {
    if (auto r = group_->set_memory_max(std::nullopt); !r) return std::unexpected(r.error());
    bound_.reset();
    return rep;
  }
  uint64_t page = page_size();
  uint64_t target = (*bytes + page - 1) / page * page;
  // While the guests shrink they hold still: a guest faulting its pages back in while
  // they are paged out and the limit comes down races the kernel's reclaim, and the
  // memory controller then OOM-kills it (3 runs of 3 in the memory benchmark before this
  // freeze). The host is growing meanwhile, so an idle-priority guest loses little.
  // Freezing the class leaves guests frozen on their own (pause) frozen after the thaw.
  bool hold_still = target < *cur && group_->controllers().has(Controller::freezer) &&
                    group_->start_freeze().has_value();
  if (hold_still) (void)group_->wait_frozen(std::chrono::milliseconds(50));
  if (target < *cur) {
    // Page the guests out first, so that lowering the limit finds little to reclaim and
    // the host's allocations never wait on the guests' memory.
    auto pids = group_->pids_recursive();
    if (!pids) {
      if (hold_still) (void)group_->thaw();
      return std::unexpected(pids.error());
    }
    auto adv = advise_processes(*pids, Advice::pageout, *cur - target);
    if (adv) rep.paged_out = adv->total.bytes;
  }
  auto set = group_->set_memory_max(target);
  if (!set) {
    // The kernel could not reclaim down to it (no swap, or unevictable memory): hold the
    // guests where they are now, and say so.
    auto now = group_->memory_current();
    uint64_t hold = std::max(target, now ? (*now + page - 1) / page * page : *cur);
    if (auto r = group_->set_memory_max(hold); !r) {
      if (hold_still) (void)group_->thaw();
      return std::unexpected(r.error());
    }
    target = hold;
    rep.short_of_bound = true;
  }
  bound_ = target;
  rep.bound_set = target;
  if (auto now = group_->memory_current()) rep.after = *now;
  if (hold_still)
    if (auto r = group_->thaw(); !r) return std::unexpected(r.error());
  return rep;
}

Result<size_t> GuestClass::enforce_sched_idle() {
  if (priority_ != CpuPriority::sched_idle) return 0;
  auto pids = group_->pids_recursive();
  if (!pids) return std::unexpected(pids.error());
  size_t set = 0;
  for (pid_t pid : *pids) {
    auto threads = list_threads(pid);
    if (!threads) continue;
    for (pid_t tid : *threads) {
      auto s = thread_sched(tid);
      if (!s || s->policy == kernelside::Policy::idle) continue;
      if (set_thread_policy(tid, kernelside::Policy::idle)) ++set;
    }
  }
  return set;
}

}  // namespace dynamos::cyclesteal
