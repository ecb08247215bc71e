// A job's working set on this node: per process, runs of anonymous pages, kept in the
// order to prefetch them (most recently used first); and the page-out and prefetch that
// act on such sets through kernelside/ (pagemap, process_madvise).
//
// Recency: pagemap says which pages are resident, not when they were used. A sample
// taken during the quantum (tick) and the set at switch-out tell pages faulted in since
// the sample (the newest) from older ones; the newest go first, each group from high
// addresses down (a sweep that ascends used its highest pages last).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/error.hpp"
#include "kernelside/memory.hpp"

namespace dynamos::paging {

using kernelside::Range;

struct ProcessRuns {
  pid_t pid = 0;
  std::vector<Range> runs;
};

struct WorkingSet {
  std::vector<ProcessRuns> processes;
  uint64_t bytes() const;
  uint64_t pages() const { return bytes() / kernelside::page_size(); }
  bool empty() const { return bytes() == 0; }
};

// The resident runs of each process's anonymous memory, in address order. Processes
// that are gone are left out and counted in *gone.
Result<WorkingSet> resident_set(std::span<const pid_t> pids, size_t* gone = nullptr);

// Sorted, coalesced run lists: a minus b, a intersected with b.
std::vector<Range> subtract(std::span<const Range> a, std::span<const Range> b);
std::vector<Range> intersect(std::span<const Range> a, std::span<const Range> b);

// `current` ordered most recent first, given an earlier sample of the same processes
// (nullptr or empty: no recency known, high addresses first).
WorkingSet order_by_recency(const WorkingSet& current, const WorkingSet* earlier);

// The reverse order: least recently used first, for page-out.
WorkingSet reversed(const WorkingSet& ws);

// The parts of ws (kept in ws's order) that are swapped out / resident now.
Result<WorkingSet> swapped_part(const WorkingSet& ws, size_t* gone = nullptr);
Result<WorkingSet> resident_part(const WorkingSet& ws, size_t* gone = nullptr);

struct MoveReport {
  uint64_t bytes = 0;         // advised
  size_t calls = 0;           // process_madvise calls
  size_t processes_gone = 0;  // exited before or while being advised
};

// The first max_bytes of ws cut into consecutive pieces of at most chunk_bytes, in order.
std::vector<WorkingSet> split(const WorkingSet& ws, uint64_t chunk_bytes, uint64_t max_bytes);

// Advises the runs of ws in order, up to max_bytes, in calls of at most batch_bytes.
Result<MoveReport> advise(const WorkingSet& ws, kernelside::Advice advice, uint64_t max_bytes,
                          uint64_t batch_bytes);

// Major faults of the processes so far (processes gone count 0).
uint64_t major_faults(std::span<const pid_t> pids);

}  // namespace dynamos::paging
