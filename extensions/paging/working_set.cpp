#include "extensions/paging/working_set.hpp"

#include <signal.h>

#include <algorithm>

#include "kernelside/procfs.hpp"

namespace dynamos::paging {

using kernelside::Advice;
using kernelside::Pagemap;
using kernelside::ProcessMemory;

uint64_t WorkingSet::bytes() const {
  uint64_t total = 0;
  for (const auto& p : processes)
    total += kernelside::total_bytes(p.runs);
  return total;
}

Result<WorkingSet> resident_set(std::span<const pid_t> pids, size_t* gone) {
  WorkingSet ws;
  for (pid_t pid : pids) {
    auto maps = kernelside::read_maps(pid);
    Result<Pagemap> pagemap = maps ? Pagemap::open(pid) : std::unexpected(maps.error());
    Result<std::vector<Range>> runs =
        pagemap ? pagemap->present_runs(kernelside::anonymous_ranges(*maps))
                : std::unexpected(pagemap.error());
    if (!runs) {
      if (runs.error().code == Errc::not_found) {
        if (gone) ++*gone;
        continue;
      }
      return std::unexpected(with_context(runs.error(), "recording the working set"));
    }
    ws.processes.push_back({pid, std::move(*runs)});
  }
  return ws;
}

std::vector<Range> subtract(std::span<const Range> a, std::span<const Range> b) {
  std::vector<Range> out;
  size_t j = 0;
  for (Range r : a) {
    uintptr_t start = r.start, end = r.end();
    while (j < b.size() && b[j].end() <= start)
      ++j;
    for (size_t k = j; k < b.size() && b[k].start < end; ++k) {
      if (b[k].start > start) out.push_back({start, b[k].start - start});
      start = std::max(start, b[k].end());
      if (start >= end) break;
    }
    if (start < end) out.push_back({start, end - start});
  }
  return out;
}

std::vector<Range> intersect(std::span<const Range> a, std::span<const Range> b) {
  std::vector<Range> out;
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    uintptr_t start = std::max(a[i].start, b[j].start);
    uintptr_t end = std::min(a[i].end(), b[j].end());
    if (start < end) out.push_back({start, end - start});
    if (a[i].end() < b[j].end())
      ++i;
    else
      ++j;
  }
  return out;
}

namespace {
std::vector<Range> descending(std::vector<Range> runs) {
  std::sort(runs.begin(), runs.end(), [](Range x, Range y) { return x.start > y.start; });
  return runs;
}
}  // namespace

WorkingSet order_by_recency(const WorkingSet& current, const WorkingSet* earlier) {
  WorkingSet out;
  for (const auto& p : current.processes) {
    const ProcessRuns* before = nullptr;
    if (earlier)
      for (const auto& e : earlier->processes)
        if (e.pid == p.pid) before = &e;
    ProcessRuns ordered{p.pid, {}};
    if (!before || before->runs.empty()) {
      ordered.runs = descending(p.runs);
    } else {
      ordered.runs = descending(subtract(p.runs, before->runs));
      auto old = descending(intersect(p.runs, before->runs));
      ordered.runs.insert(ordered.runs.end(), old.begin(), old.end());
    }
    out.processes.push_back(std::move(ordered));
  }
  return out;
}

WorkingSet reversed(const WorkingSet& ws) {
  WorkingSet out = ws;
  std::reverse(out.processes.begin(), out.processes.end());
  for (auto& p : out.processes)
    std::reverse(p.runs.begin(), p.runs.end());
  return out;
}

namespace {
// Keeps, in ws's order, the pages of each run for which pred holds.
Result<WorkingSet> filter(const WorkingSet& ws, bool (*pred)(kernelside::PageEntry), size_t* gone) {
  WorkingSet out;
  const uint64_t page = kernelside::page_size();
  for (const auto& p : ws.processes) {
    auto pagemap = Pagemap::open(p.pid);
    if (!pagemap) {
      if (pagemap.error().code == Errc::not_found) {
        if (gone) ++*gone;
        continue;
      }
      return std::unexpected(pagemap.error());
    }
    ProcessRuns kept{p.pid, {}};
    bool lost = false;
    for (Range r : p.runs) {
      auto entries = pagemap->read(r);
      if (!entries) {
        // The process exited meanwhile: reading its pagemap fails or returns nothing.
        if (entries.error().code == Errc::not_found || ::kill(p.pid, 0) != 0) {
          lost = true;
          break;
        }
        return std::unexpected(entries.error());
      }
      auto runs = kernelside::runs_of(r.start / page * page, *entries, pred);
      kept.runs.insert(kept.runs.end(), runs.begin(), runs.end());
    }
    if (lost) {
      if (gone) ++*gone;
      continue;
    }
    out.processes.push_back(std::move(kept));
  }
  return out;
}
}  // namespace

Result<WorkingSet> swapped_part(const WorkingSet& ws, size_t* gone) {
  return filter(
      ws, [](kernelside::PageEntry e) { return e.swapped(); }, gone);
}

Result<WorkingSet> resident_part(const WorkingSet& ws, size_t* gone) {
  return filter(
      ws, [](kernelside::PageEntry e) { return e.present(); }, gone);
}

std::vector<WorkingSet> split(const WorkingSet& ws, uint64_t chunk_bytes, uint64_t max_bytes) {
  std::vector<WorkingSet> out;
  chunk_bytes = std::max<uint64_t>(chunk_bytes, kernelside::page_size());
  WorkingSet cur;
  uint64_t in_cur = 0, total = 0;
  for (const auto& p : ws.processes) {
    for (Range r : p.runs) {
      while (r.length > 0 && total < max_bytes) {
        uint64_t n = std::min<uint64_t>({r.length, chunk_bytes - in_cur, max_bytes - total});
        if (cur.processes.empty() || cur.processes.back().pid != p.pid)
          cur.processes.push_back({p.pid, {}});
        cur.processes.back().runs.push_back({r.start, n});
        r.start += n;
        r.length -= n;
        in_cur += n;
        total += n;
        if (in_cur == chunk_bytes) {
          out.push_back(std::move(cur));
          cur = {};
          in_cur = 0;
        }
      }
    }
  }
  if (in_cur > 0) out.push_back(std::move(cur));
  return out;
}

Result<MoveReport> advise(const WorkingSet& ws, Advice advice, uint64_t max_bytes,
                          uint64_t batch_bytes) {
  MoveReport report;
  batch_bytes = std::max<uint64_t>(batch_bytes, kernelside::page_size());
  for (const auto& p : ws.processes) {
    if (report.bytes >= max_bytes) break;
    auto mem = ProcessMemory::open(p.pid);
    if (!mem) {
      if (mem.error().code == Errc::not_found) {
        ++report.processes_gone;
        continue;
      }
      return std::unexpected(mem.error());
    }
    std::span<const Range> rest = p.runs;
    std::vector<Range> cut;  // the part of a run left over by the previous batch
    while (report.bytes < max_bytes && (!rest.empty() || !cut.empty())) {
      uint64_t quota = std::min(batch_bytes, max_bytes - report.bytes);
      std::vector<Range> batch;
      uint64_t taken = 0;
      auto take = [&](Range r) {
        uint64_t n = std::min<uint64_t>(r.length, quota - taken);
        batch.push_back({r.start, n});
        taken += n;
        if (n < r.length) cut.push_back({r.start + n, r.length - n});
      };
      std::vector<Range> pending;
      pending.swap(cut);
      for (Range r : pending) {
        if (taken >= quota)
          cut.push_back(r);
        else
          take(r);
      }
      while (taken < quota && !rest.empty()) {
        take(rest.front());
        rest = rest.subspan(1);
      }
      auto r = mem->advise(batch, advice);
      if (!r) {
        if (r.error().code == Errc::not_found) {
          ++report.processes_gone;
          break;
        }
        return std::unexpected(r.error());
      }
      report.bytes += r->bytes;
      report.calls += r->calls;
    }
  }
  return report;
}

uint64_t major_faults(std::span<const pid_t> pids) {
  uint64_t total = 0;
  for (pid_t pid : pids)
    if (auto s = kernelside::read_stat(pid)) total += s->majflt;
  return total;
}

}  // namespace dynamos::paging
