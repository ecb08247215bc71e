// The guest class: one cgroup holding every guest, at idle CPU priority, with a memory
// bound; one child cgroup per guest (its processes and everything they fork or spawn),
// so that each guest can be frozen, thawed or killed on its own.
//
// CPU priority: cpu.idle=1 on the class group (the whole class is one idle entity
// against the host: the host's threads wait for it at most a tick). Where no CPU
// cgroup serves the class (or the kernel lacks cpu.idle), every thread of every guest
// gets SCHED_IDLE instead; new threads inherit it, and enforce_sched_idle() catches
// any a guest changed back.
//
// Releasing (policy off, detach, unload) moves the guests' processes back to the
// cgroups they came from (the root when those are gone), lifts every bound and removes
// the groups this class created. Nothing is left behind.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "kernelside/cgroup.hpp"

namespace dynamos::cyclesteal {

// The controllers the class and its guest groups use on this host.
kernelside::Controllers class_controllers(const kernelside::Layout& layout);

enum class CpuPriority { cgroup_idle, sched_idle };
const char* cpu_priority_name(CpuPriority p);  // "cpu.idle", "SCHED_IDLE"

struct ShrinkReport {
  uint64_t before = 0;          // guests' memory before, bytes
  uint64_t after = 0;           // after
  uint64_t paged_out = 0;       // bytes paged out with process_madvise(PAGEOUT)
  uint64_t bound_set = 0;       // the bound in force afterwards
  bool short_of_bound = false;  // the kernel could not reclaim down to the bound
};

// What a new build needs to take a guest over (upgrade in place).
struct GuestRecord {
  uint64_t id = 0;
  std::string path;  // its group
  bool created = false, frozen = false;
  std::map<std::string, std::string> origin;  // hierarchy root -> cgroup it came from
};

class GuestClass {
 public:
  // Creates (or adopts) the class group at class_path, idle priority set. With
  // force_sched_idle the class uses SCHED_IDLE per thread even where cpu.idle works
  // (for hosts whose CPU hierarchy is left to others, and for testing the fallback).
  static Result<GuestClass> create(const kernelside::Layout& layout, std::string class_path,
                                   bool force_sched_idle = false);
  // Takes over a class another build of the extension left (upgrade in place).
  static Result<GuestClass> adopt(const kernelside::Layout& layout, std::string class_path,
                                  bool created, CpuPriority priority,
                                  std::optional<uint64_t> bound);
  bool created() const { return created_; }
  std::vector<GuestRecord> records() const;
  Result<void> restore(const GuestRecord& record);
  GuestClass(GuestClass&&) = default;
  GuestClass& operator=(GuestClass&&) = default;

  const std::string& path() const { return group_->path(); }
  CpuPriority priority() const { return priority_; }

  // Puts guest `id` into its own group (own_path, or class_path/g<id> when empty) and
  // moves its processes there (all their threads).
  Result<void> add(uint64_t id, const std::string& own_path, std::span<const pid_t> pids);
  bool has(uint64_t id) const { return guests_.contains(id); }
  std::vector<uint64_t> ids() const;
  // Moves the guest's processes back where they came from and removes its group.
  Result<void> release(uint64_t id);
  Result<void> release_all();  // every guest, then the class group itself

  // Starts freezing the guest and waits up to 20 ms for it; a guest still freezing
  // then counts as frozen (its tasks freeze as soon as they are scheduled).
  Result<void> freeze(uint64_t id);
  // Re-kicks guests that are still freezing (each sample).
  void finish_freezing();
  Result<void> thaw(uint64_t id);
  bool frozen(uint64_t id) const;
  // SIGKILLs every process of the guest (thawed first) and waits until they are gone;
  // returns how many were killed. The guest stays registered, empty.
  Result<size_t> kill(uint64_t id);

  Result<std::vector<pid_t>> pids(uint64_t id) const;
  Result<std::vector<pid_t>> all_pids() const;
  Result<uint64_t> cpu_usage_ns() const;  // the whole class, since creation
  Result<uint64_t> memory_bytes() const;  // the whole class
  std::optional<uint64_t> bound() const { return bound_; }

  // Sets the class's memory bound. A bound below the current usage pages guest memory
  // out first (process_madvise PAGEOUT, so the kernel does not make the host wait on
  // reclaim), then lowers the limit; nullopt lifts it.
  Result<ShrinkReport> set_bound(std::optional<uint64_t> bytes);

  // SCHED_IDLE fallback: sets it on every guest thread not yet idle. No-op with cpu.idle.
  Result<size_t> enforce_sched_idle();

 private:
  struct Guest {
    kernelside::Group group;
    bool created = false;  // this class created the group (else: adopted, left in place)
    bool frozen = false;
    // Where its processes came from, per hierarchy directory: moved back on release.
    std::map<std::string, std::string> origin;
  };
  GuestClass(kernelside::Layout layout, kernelside::Group group, bool created,
             CpuPriority priority);
  Result<void> move_out(Guest& g);

  kernelside::Layout layout_;
  std::optional<kernelside::Group> group_;
  bool created_ = false;
  CpuPriority priority_ = CpuPriority::cgroup_idle;
  std::optional<uint64_t> bound_;
  std::map<uint64_t, Guest> guests_;
};

}  // namespace dynamos::cyclesteal
