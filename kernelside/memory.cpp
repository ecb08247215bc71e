#include "kernelside/memory.hpp"
#include "base/names.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include "kernelside/fs.hpp"

namespace dynamos::kernelside {

namespace {

constexpr size_t kMaxIovecs = 1024;           // UIO_MAXIOV
constexpr uint64_t kMaxBatchBytes = 1 << 30;  // well under MAX_RW_COUNT
constexpr size_t kPagemapChunk = 64 * 1024;   // entries per pread (512 KiB)

int madv_of(Advice a) {
  switch (a) {
    case Advice::pageout:
      return MADV_PAGEOUT;
    case Advice::cold:
      return MADV_COLD;
    case Advice::willneed:
      return MADV_WILLNEED;
  }
  return -1;
}

std::string range_text(const Range& r) {
  char buf[64];
  snprintf(buf, sizeof buf, "%lx-%lx", static_cast<unsigned long>(r.start),
           static_cast<unsigned long>(r.end()));
  return buf;
}

long sys_process_madvise(int pidfd, const iovec* iov, size_t n, int advice) {
  return ::syscall(SYS_process_madvise, pidfd, iov, n, advice, 0u);
}

}  // namespace

size_t page_size() {
  static const size_t size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

const char* advice_name(Advice a) {
  static constexpr const char* kNames[] = {"MADV_PAGEOUT", "MADV_COLD",
                                           "MADV_WILLNEED"};  // in enum order
  return enum_name(kNames, a, "?");
}

std::vector<Range> anonymous_ranges(const std::vector<Mapping>& maps) {
  std::vector<Range> out;
  for (auto& m : maps)
    if (m.anonymous() && !m.special() && (m.read || m.write)) out.push_back({m.start, m.size()});
  return out;
}

std::vector<Range> take_bytes(std::span<const Range> ranges, uint64_t bytes) {
  std::vector<Range> out;
  for (auto& r : ranges) {
    if (bytes == 0) break;
    Range cut = r;
    if (cut.length > bytes) cut.length = bytes / page_size() * page_size();
    if (cut.length == 0) break;
    out.push_back(cut);
    bytes -= cut.length;
  }
  return out;
}

uint64_t total_bytes(std::span<const Range> ranges) {
  uint64_t sum = 0;
  for (auto& r : ranges)
    sum += r.length;
  return sum;
}

// ---- ProcessMemory ----

Result<ProcessMemory> ProcessMemory::open(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u));
  if (fd < 0) {
    if (errno == ENOSYS)
      return fail(Errc::unsupported, "pidfd_open: needs Linux 5.3 (and process_madvise 5.10)");
    return fail_errno("pidfd_open pid " + std::to_string(pid));
  }
  return ProcessMemory(pid, fd);
}

Result<AdviseReport> ProcessMemory::advise(std::span<const Range> ranges, Advice advice,
                                           uint64_t max_bytes) const {
  AdviseReport report;
  // The kernel takes at most MAX_RW_COUNT (about 2 GiB) per call and silently ignores
  // the rest, so no range and no batch goes beyond kMaxBatchBytes.
  std::vector<Range> todo;
  for (auto& r : take_bytes(ranges, max_bytes)) {
    if (r.start % page_size() != 0)
      return fail(Errc::invalid_argument, std::string(advice_name(advice)) + " pid " +
                                              std::to_string(pid_) + ": range " + range_text(r) +
                                              " does not start on a page");
    for (uint64_t off = 0; off < r.length; off += kMaxBatchBytes)
      todo.push_back({r.start + off, std::min<uint64_t>(kMaxBatchBytes, r.length - off)});
  }
  std::string what =
      std::string("process_madvise ") + advice_name(advice) + " pid " + std::to_string(pid_);
  size_t next = 0;
  std::vector<iovec> iov;
  iov.reserve(kMaxIovecs);
  while (next < todo.size()) {
    iov.clear();
    uint64_t batch_bytes = 0;
    for (size_t i = next; i < todo.size() && iov.size() < kMaxIovecs; ++i) {
      if (batch_bytes + todo[i].length > kMaxBatchBytes) break;
      batch_bytes += todo[i].length;
      iov.push_back({reinterpret_cast<void*>(todo[i].start), todo[i].length});
    }
    size_t n = iov.size();
    long done = sys_process_madvise(fd_.get(), iov.data(), n, madv_of(advice));
    ++report.calls;
    int err = errno;
    if (done < 0) {
      if (err == ENOSYS)
        return fail(Errc::unsupported, what + ": process_madvise needs Linux 5.10");
      if (err == ESRCH) return fail_errno(err, what + ": the process exited");
      if (err != ENOMEM && err != EFAULT && err != EINVAL) return fail_errno(err, what);
      done = 0;
    }
    report.bytes += static_cast<uint64_t>(done);
    // The kernel advises iovecs in order and stops at the first that fails, counting
    // only those before it: find that one, skip it, go on after it.
    uint64_t sum = 0;
    size_t i = 0;
    while (i < n && sum + iov[i].iov_len <= static_cast<uint64_t>(done))
      sum += iov[i++].iov_len;
    if (i == n) {
      next += n;
      continue;
    }
    long single = sys_process_madvise(fd_.get(), &iov[i], 1, madv_of(advice));
    ++report.calls;
    if (single < 0) {
      int e = errno;
      // ENOMEM/EFAULT: unmapped since the caller read the maps; EINVAL: a mapping that
      // cannot take this advice (locked, huge TLB, PFN map). Both are counted, not fatal.
      if (e == ESRCH) return fail_errno(e, what + ": the process exited");
      if (e != ENOMEM && e != EFAULT && e != EINVAL)
        return fail_errno(e, what + " range " + range_text(todo[next + i]));
      ++report.ranges_skipped;
    } else {
      report.bytes += static_cast<uint64_t>(single);
    }
    next += i + 1;
  }
  return report;
}

Result<AdviseReport> ProcessMemory::advise_anonymous(Advice advice, uint64_t max_bytes) const {
  auto maps = read_maps(pid_);
  if (!maps) return std::unexpected(maps.error());
  auto ranges = anonymous_ranges(*maps);
  return advise(ranges, advice, max_bytes);
}

Result<ProcessesAdviseReport> advise_processes(std::span<const pid_t> pids, Advice advice,
                                               uint64_t max_bytes) {
  ProcessesAdviseReport report;
  for (pid_t pid : pids) {
    if (report.total.bytes >= max_bytes) break;
    auto mem = ProcessMemory::open(pid);
    Result<AdviseReport> r = mem ? mem->advise_anonymous(advice, max_bytes - report.total.bytes)
                                 : Result<AdviseReport>(std::unexpected(mem.error()));
    if (!r) {
      if (r.error().code == Errc::not_found) {
        ++report.processes_gone;
        continue;
      }
      return std::unexpected(r.error());
    }
    ++report.processes;
    report.total.bytes += r->bytes;
    report.total.ranges_skipped += r->ranges_skipped;
    report.total.calls += r->calls;
  }
  return report;
}

namespace {
// madvise(advice) over [addr, addr + length), widened down to a page boundary.
Result<void> populate(void* addr, size_t length, int advice, const char* advice_name) {
  auto a = reinterpret_cast<uintptr_t>(addr);
  uintptr_t start = a / page_size() * page_size();
  if (::madvise(reinterpret_cast<void*>(start), length + (a - start), advice) != 0)
    return fail_errno(std::string("madvise ") + advice_name + " " +
                      range_text({start, length + (a - start)}));
  return {};
}
}  // namespace

Result<void> populate_read(void* addr, size_t length) {
  return populate(addr, length, MADV_POPULATE_READ, "MADV_POPULATE_READ");
}

Result<void> populate_write(void* addr, size_t length) {
  return populate(addr, length, MADV_POPULATE_WRITE, "MADV_POPULATE_WRITE");
}

// ---- Pagemap ----

Result<Pagemap> Pagemap::open(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail_errno("open " + path);
  return Pagemap(pid, fd);
}

Result<size_t> Pagemap::read_into(uintptr_t first_page, std::span<PageEntry> out) const {
  size_t got = 0;
  while (got < out.size()) {
    off_t offset = static_cast<off_t>((first_page + got) * sizeof(uint64_t));
    ssize_t n = ::pread(fd_.get(), out.data() + got, (out.size() - got) * sizeof(uint64_t), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("read /proc/" + std::to_string(pid_) + "/pagemap at page " +
                        std::to_string(first_page + got));
    }
    if (n == 0)
      return fail(Errc::not_found,
                  "read /proc/" + std::to_string(pid_) + "/pagemap: the process exited");
    got += static_cast<size_t>(n) / sizeof(uint64_t);
  }
  return got;
}

template <class Fn>
Result<void> Pagemap::for_each_chunk(Range r, Fn fn) const {
  // Chunks of 64 Ki entries, so that huge reserved mappings (MPI libraries reserve
  // many GiB) are walked in bounded memory.
  const size_t page = page_size();
  uintptr_t first = r.start / page;
  uintptr_t last = (r.end() + page - 1) / page;
  std::vector<PageEntry> buf(std::min<size_t>(kPagemapChunk, last - first));
  for (uintptr_t at = first; at < last;) {
    size_t n = std::min<size_t>(kPagemapChunk, last - at);
    auto got = read_into(at, {buf.data(), n});
    if (!got) return std::unexpected(got.error());
    fn(at * page, std::span<const PageEntry>(buf.data(), n));
    at += n;
  }
  return {};
}

Result<std::vector<PageEntry>> Pagemap::read(Range r) const {
  const size_t page = page_size();
  uintptr_t first = r.start / page;
  uintptr_t last = (r.end() + page - 1) / page;
  std::vector<PageEntry> out(last - first);
  for (size_t at = 0; at < out.size(); at += kPagemapChunk) {
    size_t n = std::min(kPagemapChunk, out.size() - at);
    auto got = read_into(first + at, {out.data() + at, n});
    if (!got) return std::unexpected(got.error());
  }
  return out;
}

Result<PageCounts> Pagemap::count(std::span<const Range> ranges) const {
  PageCounts c;
  for (auto& r : ranges) {
    auto ok = for_each_chunk(r, [&](uintptr_t, std::span<const PageEntry> entries) {
      for (auto e : entries) {
        if (e.present())
          ++c.present;
        else if (e.swapped())
          ++c.swapped;
        else
          ++c.none;
      }
    });
    if (!ok) return std::unexpected(ok.error());
  }
  return c;
}

std::vector<Range> runs_of(uintptr_t start, std::span<const PageEntry> entries,
                           bool (*pred)(PageEntry)) {
  std::vector<Range> out;
  const size_t page = page_size();
  start = start / page * page;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (!pred(entries[i])) continue;
    uintptr_t at = start + i * page;
    if (!out.empty() && out.back().end() == at)
      out.back().length += page;
    else
      out.push_back({at, page});
  }
  return out;
}

template <class Pred>
Result<std::vector<Range>> Pagemap::runs(std::span<const Range> ranges, Pred pred) const {
  std::vector<Range> out;
  for (auto& r : ranges) {
    auto ok = for_each_chunk(r, [&](uintptr_t start, std::span<const PageEntry> entries) {
      for (auto& p : runs_of(start, entries, pred)) {
        if (!out.empty() && out.back().end() == p.start)
          out.back().length += p.length;
        else
          out.push_back(p);
      }
    });
    if (!ok) return std::unexpected(ok.error());
  }
  return out;
}

Result<std::vector<Range>> Pagemap::present_runs(std::span<const Range> ranges) const {
  return runs(
      ranges, +[](PageEntry e) { return e.present(); });
}

Result<std::vector<Range>> Pagemap::swapped_runs(std::span<const Range> ranges) const {
  return runs(
      ranges, +[](PageEntry e) { return e.swapped(); });
}

Result<std::vector<Range>> Pagemap::soft_dirty_runs(std::span<const Range> ranges) const {
  return runs(
      ranges, +[](PageEntry e) { return e.soft_dirty() && (e.present() || e.swapped()); });
}

Result<void> clear_refs(pid_t pid, ClearRefs what) {
  return write_text("/proc/" + std::to_string(pid) + "/clear_refs",
                    std::to_string(static_cast<int>(what)));
}

Result<bool> soft_dirty_available() {
  static const Result<bool> probed = []() -> Result<bool> {
    void* p =
        ::mmap(nullptr, page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return fail_errno("mmap a page to probe soft-dirty tracking");
    auto* word = static_cast<volatile uint64_t*>(p);
    *word = 1;
    Result<bool> result = false;
    if (auto c = clear_refs(::getpid(), ClearRefs::soft_dirty); !c) {
      result = std::unexpected(c.error());
    } else {
      *word = 2;
      auto pm = Pagemap::open(::getpid());
      if (!pm) {
        result = std::unexpected(pm.error());
      } else {
        auto e = pm->read({reinterpret_cast<uintptr_t>(p), page_size()});
        if (!e)
          result = std::unexpected(e.error());
        else
          result = !e->empty() && (*e)[0].soft_dirty();
      }
    }
    ::munmap(p, page_size());
    return result;
  }();
  return probed;
}

// ---- swap ----

Result<std::vector<SwapDevice>> parse_swaps(std::string_view text) {
  std::vector<SwapDevice> out;
  auto lines = split_lines(text);
  for (size_t i = 1; i < lines.size(); ++i) {  // line 0 is the header
    auto w = split_words(lines[i]);
    if (w.empty()) continue;
    if (w.size() < 5)
      return fail(Errc::protocol, "malformed /proc/swaps line '" + std::string(lines[i]) + "'");
    auto size = parse_u64(w[2]);
    auto used = parse_u64(w[3]);
    if (!size || !used)
      return fail(Errc::protocol, "malformed /proc/swaps line '" + std::string(lines[i]) + "'");
    SwapDevice d;
    d.path = std::string(w[0]);
    d.type = std::string(w[1]);
    d.size_bytes = *size * 1024;
    d.used_bytes = *used * 1024;
    d.priority = std::atoi(std::string(w[4]).c_str());
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::vector<SwapDevice>> read_swaps() {
  auto text = read_text("/proc/swaps");
  if (!text) return std::unexpected(text.error());
  return parse_swaps(*text);
}

Result<SwapInfo> swap_info() {
  auto mi = read_meminfo();
  if (!mi) return std::unexpected(mi.error());
  SwapInfo s;
  s.total_bytes = mi->contains("SwapTotal") ? mi->at("SwapTotal") : 0;
  s.free_bytes = mi->contains("SwapFree") ? mi->at("SwapFree") : 0;
  s.present = s.total_bytes > 0;
  return s;
}

}  // namespace dynamos::kernelside
