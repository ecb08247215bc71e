// A process's memory from outside: advice through pidfd + process_madvise (page out,
// mark cold, prefetch), residency through /proc/PID/pagemap, access tracking through
// clear_refs; and prefaulting of the caller's own memory.
//
// Who uses it: the paging extension pages out a job's anonymous memory (all or part),
// records its working set from pagemap at switch-out and prefetches it with WILLNEED
// at switch-in, most recent first.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "kernelside/fs.hpp"
#include "kernelside/procfs.hpp"

namespace dynamos::kernelside {

struct Range {
  uintptr_t start = 0;
  size_t length = 0;
  uintptr_t end() const { return start + length; }
  bool operator==(const Range&) const = default;
};

size_t page_size();

// The anonymous, advisable mappings of a process as ranges, in address order.
std::vector<Range> anonymous_ranges(const std::vector<Mapping>& maps);
// The first `bytes` of ranges (ranges are cut at the limit), in the given order.
std::vector<Range> take_bytes(std::span<const Range> ranges, uint64_t bytes);
// Sums the lengths.
uint64_t total_bytes(std::span<const Range> ranges);

enum class Advice {
  pageout,   // MADV_PAGEOUT: reclaim now (anonymous pages go to swap)
  cold,      // MADV_COLD: move to the inactive list, reclaimed first under pressure
  willneed,  // MADV_WILLNEED: start reading swapped pages back (into the swap cache)
};
const char* advice_name(Advice a);

struct AdviseReport {
  uint64_t bytes = 0;         // bytes the kernel reported as advised
  size_t ranges_skipped = 0;  // ranges no longer mapped (the process changed its mappings)
  size_t calls = 0;           // process_madvise calls made
};

// A process held by a pidfd, so that advice never reaches a recycled pid.
class ProcessMemory {
 public:
  // pidfd_open(pid). Errc::not_found when the process is gone; Errc::unsupported before Linux 5.10.
  static Result<ProcessMemory> open(pid_t pid);
  pid_t pid() const { return pid_; }
  int pidfd() const { return fd_.get(); }

  // process_madvise over the ranges, in their order, in batches of up to 1024 iovecs
  // (UIO_MAXIOV), stopping after max_bytes. Ranges unmapped meanwhile are skipped
  // and counted; a process that exited is Errc::not_found.
  Result<AdviseReport> advise(std::span<const Range> ranges, Advice advice,
                              uint64_t max_bytes = UINT64_MAX) const;
  // advise over every anonymous mapping of the process (re-read from /proc/PID/maps).
  Result<AdviseReport> advise_anonymous(Advice advice, uint64_t max_bytes = UINT64_MAX) const;

 private:
  ProcessMemory(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  pid_t pid_;
  UniqueFd fd_;  // moves with the object, closes with it
};

// advise_anonymous over several processes (a job's ranks on this node, or a cgroup's
// pids()), sharing one max_bytes budget in the given order. Processes that exited are
// skipped and counted in processes_gone.
struct ProcessesAdviseReport {
  AdviseReport total;
  size_t processes = 0;       // advised
  size_t processes_gone = 0;  // exited before or while being advised
};
Result<ProcessesAdviseReport> advise_processes(std::span<const pid_t> pids, Advice advice,
                                               uint64_t max_bytes = UINT64_MAX);

// MADV_POPULATE_READ / _WRITE on the caller's own memory: fault pages in (from swap
// too) without touching them from user space. Needs Linux 5.14.
Result<void> populate_read(void* addr, size_t length);
Result<void> populate_write(void* addr, size_t length);

// ---- pagemap ----

// One 64-bit pagemap entry.
struct PageEntry {
  uint64_t raw = 0;
  bool present() const { return raw >> 63 & 1; }
  bool swapped() const { return raw >> 62 & 1; }
  bool file_or_shared() const { return raw >> 61 & 1; }
  bool exclusive() const { return raw >> 56 & 1; }
  bool soft_dirty() const { return raw >> 55 & 1; }
  // Page frame number; 0 unless the reader has CAP_SYS_ADMIN.
  uint64_t pfn() const { return present() ? raw & ((uint64_t{1} << 55) - 1) : 0; }
};

struct PageCounts {
  uint64_t present = 0, swapped = 0, none = 0;  // pages
  uint64_t total() const { return present + swapped + none; }
};

// /proc/PID/pagemap, read in bulk (one pread per 64 Ki pages); count and the runs walk
// ranges in chunks, in bounded memory whatever their size.
class Pagemap {
 public:
  static Result<Pagemap> open(pid_t pid);
  // One entry per page of the range (start rounded down, end up to pages).
  Result<std::vector<PageEntry>> read(Range r) const;
  Result<PageCounts> count(std::span<const Range> ranges) const;
  // The runs of pages of `ranges` that are present (resident), coalesced, in address
  // order: a working set to prefetch later.
  Result<std::vector<Range>> present_runs(std::span<const Range> ranges) const;
  // The runs that are swapped out.
  Result<std::vector<Range>> swapped_runs(std::span<const Range> ranges) const;
  // The runs written since the last clear_refs(soft_dirty).
  Result<std::vector<Range>> soft_dirty_runs(std::span<const Range> ranges) const;

 private:
  Pagemap(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  template <class Pred>
  Result<std::vector<Range>> runs(std::span<const Range> ranges, Pred pred) const;
  template <class Fn>
  Result<void> for_each_chunk(Range r, Fn fn) const;
  Result<size_t> read_into(uintptr_t first_page, std::span<PageEntry> out) const;
  pid_t pid_;
  UniqueFd fd_;
};

// Coalesces the runs of consecutive pages of `entries` (which start at `start`) for
// which pred holds. Exposed for tests.
std::vector<Range> runs_of(uintptr_t start, std::span<const PageEntry> entries,
                           bool (*pred)(PageEntry));

// /proc/PID/clear_refs: what to reset.
enum class ClearRefs {
  all = 1,         // referenced/accessed bits of all pages
  anonymous = 2,   // of anonymous pages
  file = 3,        // of file pages
  soft_dirty = 4,  // soft-dirty bits (pagemap bit 55 then shows pages written since)
  peak_rss = 5,    // the VmHWM peak resident size
};
Result<void> clear_refs(pid_t pid, ClearRefs what);

// Whether this kernel tracks soft-dirty bits (CONFIG_MEM_SOFT_DIRTY; this machine's 6.18
// kernel does not): probed once on a page of the caller's own memory. Without it,
// clear_refs(soft_dirty) is accepted but pagemap never shows a page as written.
Result<bool> soft_dirty_available();

// ---- swap ----

struct SwapDevice {
  std::string path;
  std::string type;  // "partition", "file"
  uint64_t size_bytes = 0, used_bytes = 0;
  int priority = 0;
};
Result<std::vector<SwapDevice>> parse_swaps(std::string_view text);
Result<std::vector<SwapDevice>> read_swaps();  // /proc/swaps

struct SwapInfo {
  bool present = false;  // any swap active
  uint64_t total_bytes = 0, free_bytes = 0;
};
Result<SwapInfo> swap_info();  // from /proc/meminfo

}  // namespace dynamos::kernelside
