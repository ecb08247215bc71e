// The progress protocol of DynAMOS's benchmark workloads.
//
// A workload started with `--progress-file PATH` maps a small file (4 KiB) and keeps a
// work counter in it up to date while it runs. A harness maps the same file read-only
// and samples the counter whenever it likes, without signalling, stopping or slowing the
// workload. This is how the switch and cycle-stealing benchmarks measure a job's rate:
// r0 alone, W done in a quantum of length Q, lost time Q - W/r0.
//
// The layout is fixed (offsets below, little-endian x86-64, naturally aligned) so that
// tools in other languages can read it too. Writers may be several threads of one
// process: counters are only ever advanced with atomic adds. The magic is written last
// when a writer (re)initialises the file, so a reader never trusts half-written fields.
// A writer never shrinks the file, so a reader's mapping stays valid across reruns.
//
// Units: `work` counts workload-specific units (named in `unit`, e.g. "points" for a
// stencil, "keys" for the sort, "bytes" for the sweep), advanced every few milliseconds
// of work at most, never only once per iteration. Times are CLOCK_MONOTONIC in
// nanoseconds, comparable across processes on the node.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "base/error.hpp"
#include "base/names.hpp"

namespace dynamos::workload {

inline constexpr std::uint64_t kProgressMagic = 0x31474f52504e5944ull;  // "DYNPROG1" in memory
inline constexpr std::uint32_t kProgressVersion = 1;
inline constexpr std::size_t kProgressFileSize = 4096;

enum class ProgressState : std::uint32_t {
  starting = 0,  // initialising data, no work counted yet
  running = 1,
  done = 2,    // finished and verified
  failed = 3,  // finished, verification failed (or an error stopped it)
};

inline const char* progress_state_name(ProgressState s) {
  static constexpr const char* kNames[] = {"starting", "running", "done",
                                           "failed"};  // in enum order
  return enum_name(kNames, s, "unknown");
}

// The file's first bytes. Offsets in comments are part of the protocol.
struct ProgressLayout {
  std::atomic<std::uint64_t> magic;       //   0: kProgressMagic once initialised
  std::uint32_t version;                  //   8: kProgressVersion
  std::uint32_t header_size;              //  12: sizeof(ProgressLayout)
  std::int32_t pid;                       //  16: the writing process
  std::int32_t rank;                      //  20: its MPI rank, 0 for non-MPI workloads
  std::uint64_t start_ns;                 //  24: CLOCK_MONOTONIC when the file was initialised
  char workload[32];                      //  32: e.g. "stencil", NUL-terminated
  char unit[32];                          //  64: what one unit of work is, e.g. "points"
  std::atomic<std::uint64_t> work;        //  96: units of work done; only grows
  std::atomic<std::uint64_t> iterations;  // 104: completed iterations (sweeps, solves, sorts)
  std::atomic<std::uint64_t> updated_ns;  // 112: CLOCK_MONOTONIC of the last work update
  std::atomic<std::uint32_t> state;       // 120: ProgressState
  std::uint32_t reserved;                 // 124
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(offsetof(ProgressLayout, work) == 96);
static_assert(offsetof(ProgressLayout, state) == 120);
static_assert(sizeof(ProgressLayout) == 128);

inline std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// Opens a progress file (O_CLOEXEC added) and reads its status; the caller closes the
// descriptor.
inline Result<std::pair<int, struct stat>> open_progress_file(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return fail_errno("open progress file " + path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    auto e = fail_errno("stat progress file " + path);
    ::close(fd);
    return e;
  }
  return std::pair<int, struct stat>{fd, st};
}

// A progress file's mapping, unmapped on destruction; movable, not copyable. `Layout` is
// ProgressLayout for the writer, const ProgressLayout for a reader.
template <class Layout>
class ProgressMapping {
 public:
  ProgressMapping() = default;
  explicit ProgressMapping(void* m) : p_(static_cast<Layout*>(m)) {}
  ProgressMapping(const ProgressMapping&) = delete;
  ProgressMapping& operator=(const ProgressMapping&) = delete;
  ProgressMapping(ProgressMapping&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  ProgressMapping& operator=(ProgressMapping&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  ~ProgressMapping() { reset(); }
  Layout* operator->() const { return p_; }
  Layout& operator*() const { return *p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  void reset() {
    if (p_) ::munmap(const_cast<std::remove_const_t<Layout>*>(p_), kProgressFileSize);
    p_ = nullptr;
  }
  Layout* p_ = nullptr;
};

// The workload's side. A default-constructed writer has no file and ignores every call,
// so workloads call it unconditionally.
class ProgressWriter {
 public:
  // Creates or reuses PATH and resets it to a fresh run of `workload`.
  static Result<ProgressWriter> create(const std::string& path, std::string_view workload,
                                       std::string_view unit, int rank = 0) {
    auto opened = open_progress_file(path, O_RDWR | O_CREAT);
    if (!opened) return std::unexpected(opened.error());
    auto [fd, st] = *opened;
    // Grow only: shrinking would fault a reader that has the old file mapped.
    if (st.st_size < static_cast<off_t>(kProgressFileSize) &&
        ::ftruncate(fd, kProgressFileSize) != 0) {
      auto e = fail_errno("resize progress file " + path);
      ::close(fd);
      return e;
    }
    void* m = ::mmap(nullptr, kProgressFileSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) return fail_errno("map progress file " + path);
    ProgressWriter w;
    w.p_ = ProgressMapping<ProgressLayout>(m);
    ProgressLayout& l = *w.p_;
    l.magic.store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    l.version = kProgressVersion;
    l.header_size = sizeof(ProgressLayout);
    l.pid = static_cast<std::int32_t>(::getpid());
    l.rank = rank;
    l.start_ns = monotonic_ns();
    copy_name(l.workload, workload);
    copy_name(l.unit, unit);
    l.work.store(0, std::memory_order_relaxed);
    l.iterations.store(0, std::memory_order_relaxed);
    l.updated_ns.store(l.start_ns, std::memory_order_relaxed);
    l.state.store(static_cast<std::uint32_t>(ProgressState::starting), std::memory_order_relaxed);
    l.reserved = 0;
    l.magic.store(kProgressMagic, std::memory_order_release);
    return w;
  }

  bool active() const { return static_cast<bool>(p_); }

  // Counts `units` more work done. Cheap (one atomic add and a vDSO clock read): call it
  // every block or plane, not per element.
  void add(std::uint64_t units) noexcept {
    if (!p_) return;
    p_->work.fetch_add(units, std::memory_order_relaxed);
    p_->updated_ns.store(monotonic_ns(), std::memory_order_release);
  }
  void iteration_done() noexcept {
    if (p_) p_->iterations.fetch_add(1, std::memory_order_release);
  }
  void set_state(ProgressState s) noexcept {
    if (p_) p_->state.store(static_cast<std::uint32_t>(s), std::memory_order_release);
  }

 private:
  static void copy_name(char (&dst)[32], std::string_view src) {
    std::memset(dst, 0, sizeof dst);
    std::memcpy(dst, src.data(), std::min(src.size(), sizeof dst - 1));
  }
  ProgressMapping<ProgressLayout> p_;
};

// One reading of a progress file.
struct ProgressSample {
  std::uint64_t work = 0;
  std::uint64_t iterations = 0;
  std::uint64_t updated_ns = 0;  // when the writer last counted work
  std::uint64_t read_ns = 0;     // when this sample was taken (reader's clock, same clock)
  std::uint64_t start_ns = 0;
  ProgressState state = ProgressState::starting;
  int pid = 0;
  int rank = 0;
};

// Units of work per second between two samples of the same run (0 if no time passed).
inline double progress_rate(const ProgressSample& earlier, const ProgressSample& later) {
  if (later.read_ns <= earlier.read_ns) return 0.0;
  return static_cast<double>(later.work - earlier.work) * 1e9 /
         static_cast<double>(later.read_ns - earlier.read_ns);
}

// The harness's side: maps the file read-only; sampling never blocks and never touches
// the writer.
class ProgressReader {
 public:
  // Fails with Errc::not_found while the workload has not created the file yet and with
  // Errc::state while it is still too short; harnesses retry until it appears.
  static Result<ProgressReader> open(const std::string& path) {
    auto opened = open_progress_file(path, O_RDONLY);
    if (!opened) return std::unexpected(opened.error());
    auto [fd, st] = *opened;
    if (st.st_size < static_cast<off_t>(kProgressFileSize)) {
      ::close(fd);
      return fail(Errc::state, "progress file " + path + " is not initialised yet (" +
                                   std::to_string(st.st_size) + " bytes)");
    }
    void* m = ::mmap(nullptr, kProgressFileSize, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) return fail_errno("map progress file " + path);
    ProgressReader r;
    r.p_ = ProgressMapping<const ProgressLayout>(m);
    return r;
  }

  // Fails with Errc::state until the writer has initialised the file, and with
  // Errc::version_mismatch for a file of another protocol version.
  Result<ProgressSample> sample() const {
    if (!p_) return fail(Errc::state, "progress reader has no file");
    if (p_->magic.load(std::memory_order_acquire) != kProgressMagic)
      return fail(Errc::state, "progress file not initialised by its workload yet");
    if (p_->version != kProgressVersion)
      return fail(Errc::version_mismatch, "progress file version " + std::to_string(p_->version) +
                                              ", this reader knows " +
                                              std::to_string(kProgressVersion));
    ProgressSample s;
    s.updated_ns = p_->updated_ns.load(std::memory_order_acquire);
    s.work = p_->work.load(std::memory_order_relaxed);
    s.iterations = p_->iterations.load(std::memory_order_acquire);
    s.state = static_cast<ProgressState>(p_->state.load(std::memory_order_acquire));
    s.start_ns = p_->start_ns;
    s.pid = p_->pid;
    s.rank = p_->rank;
    s.read_ns = monotonic_ns();
    return s;
  }

  std::string workload() const { return p_ ? field(p_->workload) : std::string(); }
  std::string unit() const { return p_ ? field(p_->unit) : std::string(); }

 private:
  static std::string field(const char (&f)[32]) { return std::string(f, ::strnlen(f, sizeof f)); }
  ProgressMapping<const ProgressLayout> p_;
};

}  // namespace dynamos::workload
