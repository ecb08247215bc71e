// dynamos-sweep: a single-process, memory-bound workload that sweeps its own working set.
//
// The working set is split into blocks; each touch of a block runs one step of a periodic
// 3-point smoothing stencil over it in place (u += a (u[i-1] - 2u[i] + u[i+1])), so a
// touch reads and writes every byte of the block. The touch pattern decides which block
// comes next (in order, at random, or mostly from a hot part). Used by the paging switch
// benchmark (two jobs sweeping 700 MiB each) and by the cycle-stealing benchmark, as the
// guest and, in bursty mode, as the host (busy on T threads for B ms, idle for I ms).
//
// Verification is independent of the stencil code: the stencil conserves a block's sum,
// and multiplies the block's projection on the cosine mode k by mu_k per touch. Both are
// recorded per block at the start and checked per block at the end.
//
// The result line also carries what the kernel accounted to the process's threads: CPU
// time and time runnable but waiting for a CPU (threads_cpu_s, threads_wait_s: each
// thread reads its own /proc/PID/task/TID/schedstat as it ends; bursty mode adds
// bursts_cpu_s, bursts_wait_s: the same from the first burst on), and major faults. A
// harness gets exact figures without polling /proc while the workload runs (a poller
// would itself take CPU time from the workload it measures).
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <numbers>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/program_options.hpp>

#include "bench/workload/field.hpp"
#include "bench/workload/options.hpp"
#include "bench/workload/progress.hpp"
#include "bench/workload/result_line.hpp"
#include "bench/workload/size.hpp"
#include "kernelside/procfs.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::workload;

namespace {

constexpr double kAlpha = 0.25;  // stencil weight: stable for the 1D 3-point stencil (<= 0.5)
constexpr int kMode = 3;         // the cosine mode whose decay is checked

enum class Pattern { sequential, random, hotspot };

struct Options {
  std::uint64_t mem = 256ull << 20;
  std::uint64_t block = 64ull << 10;
  Pattern pattern = Pattern::sequential;
  std::string pattern_name = "sequential";
  double hot_fraction = 0.1;
  double hot_share = 0.9;
  int threads = 1;
  std::uint64_t iterations = 0;  // sweeps (sweep mode) or bursts (bursty mode)
  double seconds = 0;
  bool bursty = false;
  double busy_ms = 200;
  double idle_ms = 300;
  std::uint64_t burst_work = 0;  // bytes per thread per burst; 0: calibrate from busy_ms
  std::uint64_t grow_to = 0;     // bursty: the working set grows from mem to this
  int grow_steps = 10;           // ... over this many bursts
  std::string progress_file;
  std::string dump;
  bool inject_error = false;
  std::uint64_t seed = 1;
  bool quiet = false;
};

// CPU and wait time that the kernel accounted to threads (/proc/.../schedstat).
struct CpuWait {
  std::uint64_t cpu_ns = 0, wait_ns = 0;
  CpuWait& operator+=(const CpuWait& o) {
    cpu_ns += o.cpu_ns;
    wait_ns += o.wait_ns;
    return *this;
  }
  double cpu_s() const { return static_cast<double>(cpu_ns) * 1e-9; }
  double wait_s() const { return static_cast<double>(wait_ns) * 1e-9; }
};

// A thread of this process: its figures so far; zero where schedstat is unavailable.
CpuWait read_cpu_wait(pid_t tid) {
  auto s = dynamos::kernelside::read_thread_schedstat(::getpid(), tid);
  if (!s) return {};
  return {static_cast<std::uint64_t>(s->on_cpu.count()),
          static_cast<std::uint64_t>(s->waiting.count())};
}

// Every thread of the process adds its own figures as it ends; the bursty host's threads
// are also counted from the first burst on (the bursts, without start-up: loading,
// filling the working set, starting threads).
class ThreadTimes {
 public:
  void add_self(bool burst_thread = false) {
    CpuWait mine = read_cpu_wait(::gettid());
    std::lock_guard lock(mutex_);
    all_ += mine;
    if (burst_thread) bursts_end_ += mine;
  }
  // Called as the first burst starts, with the threads that run the bursts.
  void mark_bursts_start(const std::vector<pid_t>& tids) {
    CpuWait sum;
    for (pid_t tid : tids)
      sum += read_cpu_wait(tid);
    std::lock_guard lock(mutex_);
    bursts_start_ = sum;
  }
  CpuWait all() const {
    std::lock_guard lock(mutex_);
    return all_;
  }
  CpuWait bursts() const {
    std::lock_guard lock(mutex_);
    return {bursts_end_.cpu_ns - std::min(bursts_end_.cpu_ns, bursts_start_.cpu_ns),
            bursts_end_.wait_ns - std::min(bursts_end_.wait_ns, bursts_start_.wait_ns)};
  }

 private:
  mutable std::mutex mutex_;
  CpuWait all_, bursts_start_, bursts_end_;
};

// The bursty host's threads: the calling thread takes part (thread 0), as an OpenMP
// master does, and threads-1 workers are started once and kept between bursts, asleep
// while idle. (Threads created anew for every burst would be placed by the kernel's fork
// balancing, and a caller that only wakes workers and sleeps puts them on its own CPU:
// both misplace threads when idle-class guests make every CPU look busy.)
class BurstPool {
 public:
  BurstPool(int threads, ThreadTimes& times) {
    for (int t = 1; t < threads; ++t)
      threads_.emplace_back([this, &times, t] {
        {
          std::lock_guard lock(mutex_);
          tids_.push_back(::gettid());
        }
        worker(t);
        times.add_self(true);
      });
    std::unique_lock lock(mutex_);
    started_.wait(lock, [&] { return tids_.size() == threads_.size(); });
  }
  ~BurstPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
  }
  BurstPool(const BurstPool&) = delete;
  BurstPool& operator=(const BurstPool&) = delete;

  // The threads that run bursts: the caller's and the workers'.
  std::vector<pid_t> tids() const {
    std::lock_guard lock(mutex_);
    std::vector<pid_t> out = tids_;
    out.push_back(::gettid());
    return out;
  }

  // Runs task(t) for every t, task(0) on the calling thread, and returns when all are done.
  void run(const std::function<void(int)>& task) {
    {
      std::lock_guard lock(mutex_);
      task_ = &task;
      pending_ = static_cast<int>(threads_.size());
      ++generation_;
    }
    wake_.notify_all();
    task(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  void worker(int t) {
    std::uint64_t seen = 0;
    {
      std::lock_guard lock(mutex_);
      started_.notify_one();
    }
    for (;;) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      const auto* task = task_;
      lock.unlock();
      (*task)(t);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  mutable std::mutex mutex_;
  std::condition_variable wake_, done_, started_;
  const std::function<void(int)>* task_ = nullptr;
  std::uint64_t generation_ = 0;
  int pending_ = 0;
  bool stopping_ = false;
  std::vector<pid_t> tids_;
  std::vector<std::jthread> threads_;  // last: joined first on destruction
};

// One thread's share of the working set and its per-block verification records.
struct Partition {
  double* data = nullptr;
  std::uint64_t blocks = 0;       // mapped
  std::uint64_t active = 0;       // initialised and in the working set (grows with --grow-to)
  std::uint64_t first_block = 0;  // global index of its first block
  std::vector<double> sum0, proj0;
  std::vector<std::uint32_t> touches;
  std::uint64_t rng = 0;
  std::uint64_t next = 0;  // sequential position
};

class Sweeper {
 public:
  Sweeper(const Options& o, double* base, std::uint64_t total_blocks)
      : o_(o), len_(o.block / sizeof(double)), total_blocks_(total_blocks) {
    cos_.resize(len_);
    for (std::uint64_t i = 0; i < len_; ++i)
      cos_[i] = std::cos(2 * std::numbers::pi * kMode * static_cast<double>(i) /
                         static_cast<double>(len_));
    double s = std::sin(std::numbers::pi * kMode / static_cast<double>(len_));
    mu_ = 1 - 4 * kAlpha * s * s;
    parts_.resize(o.threads);
    std::uint64_t per = total_blocks / o.threads, extra = total_blocks % o.threads;
    std::uint64_t b = 0;
    for (int t = 0; t < o.threads; ++t) {
      Partition& p = parts_[t];
      p.blocks = per + (static_cast<std::uint64_t>(t) < extra ? 1 : 0);
      p.first_block = b;
      p.data = base + b * len_;
      p.sum0.resize(p.blocks);
      p.proj0.resize(p.blocks);
      p.touches.assign(p.blocks, 0);
      p.rng = mix64(o.seed * 1000003 + t) | 1;
      b += p.blocks;
    }
  }

  // Grows partition t's working set to `fraction` of its blocks: fills the new blocks
  // with field data and records their invariants.
  void grow(int t, double fraction) {
    Partition& p = parts_[t];
    std::uint64_t to = std::clamp<std::uint64_t>(
        static_cast<std::uint64_t>(fraction * static_cast<double>(p.blocks) + 0.5), 1, p.blocks);
    std::uint64_t n = total_blocks_ * len_;
    for (std::uint64_t b = p.active; b < to; ++b) {
      double* u = p.data + b * len_;
      fill_field_1d(u, len_, (p.first_block + b) * len_, n, o_.seed);
      auto [s, pr] = invariants(u);
      p.sum0[b] = s;
      p.proj0[b] = pr;
    }
    p.active = std::max(p.active, to);
  }

  std::uint64_t pick(int t) {
    Partition& p = parts_[t];
    switch (o_.pattern) {
      case Pattern::sequential: {
        std::uint64_t b = p.next;
        p.next = (p.next + 1) % p.active;
        return b;
      }
      case Pattern::random:
        return xorshift(p.rng) % p.active;
      case Pattern::hotspot: {
        std::uint64_t hot = std::max<std::uint64_t>(
            1, static_cast<std::uint64_t>(o_.hot_fraction * static_cast<double>(p.active)));
        double r = static_cast<double>(xorshift(p.rng) >> 11) * 0x1.0p-53;
        if (r < o_.hot_share || hot >= p.active) return xorshift(p.rng) % hot;
        return hot + xorshift(p.rng) % (p.active - hot);
      }
    }
    return 0;
  }

  // One touch: a stencil step over block b of partition t, in place.
  void touch(int t, std::uint64_t b) {
    Partition& p = parts_[t];
    double* u = p.data + b * len_;
    const std::uint64_t n = len_;
    double first = u[0], prev = u[n - 1], cur = u[0];
    for (std::uint64_t i = 0; i + 1 < n; ++i) {
      double next = u[i + 1];
      u[i] = cur + kAlpha * (prev - 2 * cur + next);
      prev = cur;
      cur = next;
    }
    u[n - 1] = cur + kAlpha * (prev - 2 * cur + first);
    ++p.touches[b];
  }

  // Checks every block's invariants; returns the number of blocks that fail, and the
  // largest relative deviation seen.
  std::pair<std::uint64_t, double> verify(double& checksum) const {
    std::uint64_t bad = 0;
    double worst = 0;
    checksum = 0;
    for (const Partition& p : parts_) {
      for (std::uint64_t b = 0; b < p.active; ++b) {
        const double* u = p.data + b * len_;
        auto [s, pr] = invariants(u);
        double scale = 0;
        for (std::uint64_t i = 0; i < len_; ++i)
          scale += std::fabs(u[i]);
        scale = std::max(scale, 1.0);
        double expect = p.proj0[b] * std::pow(mu_, static_cast<double>(p.touches[b]));
        double dev = std::max(std::fabs(s - p.sum0[b]), std::fabs(pr - expect)) / scale;
        worst = std::max(worst, dev);
        if (!(dev <= 1e-10)) ++bad;
        checksum += s;
      }
    }
    return {bad, worst};
  }

  void corrupt() {
    // Flip the sign of one value in the middle of the working set: a wrong result.
    Partition& p = parts_[0];
    double* u = p.data + (p.active / 2) * len_ + len_ / 3;
    *u = -*u;
  }

  std::uint64_t active_blocks(int t) const { return parts_[t].active; }
  std::uint64_t active_bytes() const {
    std::uint64_t a = 0;
    for (const Partition& p : parts_)
      a += p.active;
    return a * len_ * sizeof(double);
  }
  std::uint64_t block_bytes() const { return len_ * sizeof(double); }

 private:
  static std::uint64_t xorshift(std::uint64_t& s) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  std::pair<double, double> invariants(const double* u) const {
    double s = 0, pr = 0;
    for (std::uint64_t i = 0; i < len_; ++i) {
      s += u[i];
      pr += u[i] * cos_[i];
    }
    return {s, pr};
  }

  const Options& o_;
  std::uint64_t len_;
  std::uint64_t total_blocks_;
  std::vector<double> cos_;
  double mu_ = 1;
  std::vector<Partition> parts_;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int usage_error(const std::string& msg) {
  return workload::usage_error("dynamos-sweep", msg, " (try --help)");
}

// Parses and checks the command line into `o`: an exit status when the program should
// stop there.
std::optional<int> parse_options(int argc, char** argv, Options& o) {
  std::string mem = "256M", block = "64K", mode = "sweep", burst_work, grow_to;
  po::options_description desc(
      "dynamos-sweep: a memory-bound workload sweeping its own working set with a stencil.\n"
      "Prints progress on stderr once a second and a final line 'RESULT {json}' on stdout;\n"
      "exits 1 if the result fails verification, 2 on bad usage.\n\nOptions");
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("mem,m", po::value(&mem)->default_value(mem), "working set size (K, M, G suffixes)")
    ("block", po::value(&block)->default_value(block), "bytes touched at once (one stencil pass)")
    ("pattern", po::value(&o.pattern_name)->default_value(o.pattern_name),
     "touch pattern: sequential, random or hotspot")
    ("hot-fraction", po::value(&o.hot_fraction)->default_value(o.hot_fraction),
     "hotspot: share of the working set that is hot")
    ("hot-share", po::value(&o.hot_share)->default_value(o.hot_share),
     "hotspot: share of touches that go to the hot part")
    ("threads,t", po::value(&o.threads)->default_value(o.threads),
     "threads, each sweeping its own part of the working set")
    ("iterations,n", po::value(&o.iterations),
     "sweeps of the working set (sweep mode) or bursts (bursty mode)")
    ("seconds,s", po::value(&o.seconds), "run for this long instead (default: 10 s if no -n)")
    ("mode", po::value(&mode)->default_value(mode),
     "sweep: work continuously; bursty: busy for --busy-ms, idle for --idle-ms")
    ("busy-ms", po::value(&o.busy_ms)->default_value(o.busy_ms), "bursty: busy phase length")
    ("idle-ms", po::value(&o.idle_ms)->default_value(o.idle_ms), "bursty: idle phase length")
    ("burst-work", po::value(&burst_work),
     "bursty: bytes each thread sweeps per burst (fixed work, so contention shows as a longer "
     "burst); default: calibrated at start so that a burst alone takes --busy-ms")
    ("grow-to", po::value(&grow_to),
     "bursty: grow the working set from --mem to this size, one step per burst (a host "
     "growing into memory a guest holds)")
    ("grow-steps", po::value(&o.grow_steps)->default_value(o.grow_steps),
     "bursty: bursts over which the working set grows")
    ("progress-file", po::value(&o.progress_file), "keep a progress counter in this file")
    ("dump", po::value(&o.dump), "write the working set to this file at the end")
    ("inject-error", po::bool_switch(&o.inject_error), "corrupt one value (tests verification)")
    ("seed", po::value(&o.seed)->default_value(o.seed), "data seed")
    ("quiet,q", po::bool_switch(&o.quiet), "no progress lines");
  // clang-format on
  po::variables_map vm;
  if (auto status = parse_command_line(argc, argv, desc, vm, "dynamos-sweep", " (try --help)"))
    return status;
  auto m = parse_size(mem);
  if (!m) return usage_error(m.error().message());
  auto bl = parse_size(block);
  if (!bl) return usage_error(bl.error().message());
  o.mem = *m;
  o.block = *bl;
  if (o.block < 4096 || o.block % sizeof(double) != 0)
    return usage_error("--block must be at least 4K and a multiple of 8 bytes");
  if (o.threads < 1 || o.threads > 256) return usage_error("--threads must be 1..256");
  if (o.pattern_name == "sequential")
    o.pattern = Pattern::sequential;
  else if (o.pattern_name == "random")
    o.pattern = Pattern::random;
  else if (o.pattern_name == "hotspot")
    o.pattern = Pattern::hotspot;
  else
    return usage_error("unknown --pattern '" + o.pattern_name + "'");
  if (!(o.hot_fraction > 0 && o.hot_fraction <= 1) || !(o.hot_share >= 0 && o.hot_share <= 1))
    return usage_error("--hot-fraction must be in (0, 1] and --hot-share in [0, 1]");
  if (mode == "bursty")
    o.bursty = true;
  else if (mode != "sweep")
    return usage_error("unknown --mode '" + mode + "'");
  if (!burst_work.empty()) {
    auto w = parse_size(burst_work);
    if (!w) return usage_error(w.error().message());
    o.burst_work = *w;
  }
  if (!grow_to.empty()) {
    auto g = parse_size(grow_to);
    if (!g) return usage_error(g.error().message());
    if (!o.bursty) return usage_error("--grow-to needs --mode bursty");
    if (*g < o.mem) return usage_error("--grow-to must be at least --mem");
    if (o.grow_steps < 1) return usage_error("--grow-steps must be positive");
    o.grow_to = *g;
  }
  if (o.bursty && (!(o.busy_ms > 0) || !(o.idle_ms >= 0)))
    return usage_error("--busy-ms must be positive and --idle-ms not negative");
  if (o.iterations == 0 && !(o.seconds > 0)) o.seconds = 10;
  if (std::max(o.mem, o.grow_to) / o.block < static_cast<std::uint64_t>(o.threads))
    return usage_error("--mem must hold at least one --block per thread");
  return std::nullopt;
}

// The working set's mapping, unmapped on destruction.
struct Mapping {
  void* addr = MAP_FAILED;
  std::uint64_t size = 0;
  explicit Mapping(std::uint64_t bytes) : size(bytes) {
    addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr != MAP_FAILED) munmap(addr, size);
  }
};

// The workload's threads at work: counts the bytes swept, the progress file, the
// progress lines.
class Workers {
 public:
  Workers(const Options& o, Sweeper& sw, ProgressWriter& progress, ThreadTimes& times,
          std::uint64_t bytes)
      : o_(o),
        sw_(sw),
        progress_(progress),
        times_(times),
        bytes_(bytes),
        progress_batch_(std::max<std::uint64_t>(1, (1ull << 20) / o.block)),
        last_print_(now_s()) {}

  // Sweep mode: every thread sweeps its part until the iterations or the time are done;
  // the sweeps of the whole working set.
  std::uint64_t run_sweeps(double start) {
    double deadline = o_.iterations ? 0.0 : start + o_.seconds;
    std::atomic<int> running{o_.threads};
    std::jthread watcher([&] {
      while (running.load() > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        print_progress(start, done_bytes_.load() / bytes_, "sweeps");
      }
      times_.add_self();
    });
    run_threads([&](int t) {
      std::uint64_t goal = o_.iterations ? o_.iterations * sw_.active_blocks(t) * o_.block : 0;
      work(t, goal, deadline, true);
      running.fetch_sub(1);
    });
    watcher.join();
    return done_bytes_.load() / bytes_;
  }

  // Bursty mode: busy bursts of fixed work and idle pauses (calibrating the work first
  // when not given, which restarts the clock); the bursts, and their figures in `result`.
  std::uint64_t run_bursts(double& start, std::uint64_t mapped, ResultLine& result);

  std::uint64_t done_bytes() const { return done_bytes_.load(); }

 private:
  // Counts finished work; a sweep (iteration) is done each time the bytes swept by all
  // threads together pass another multiple of the working set.
  void flush(std::uint64_t n, bool count_iterations) {
    if (n == 0) return;
    progress_.add(n);
    std::uint64_t before = done_bytes_.fetch_add(n, std::memory_order_relaxed);
    if (count_iterations)
      for (std::uint64_t k = before / bytes_; k < (before + n) / bytes_; ++k)
        progress_.iteration_done();
  }

  // Touches blocks of partition t until `bytes_goal` bytes are done (0: no goal), the
  // deadline passed (0: none) or stop.
  std::uint64_t work(int t, std::uint64_t bytes_goal, double deadline, bool count_iterations) {
    std::uint64_t done = 0, since = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      sw_.touch(t, sw_.pick(t));
      done += o_.block;
      if (++since == progress_batch_) {
        flush(since * o_.block, count_iterations);
        since = 0;
        if (deadline > 0 && now_s() >= deadline) break;
      }
      if (bytes_goal && done >= bytes_goal) break;
    }
    flush(since * o_.block, count_iterations);
    return done;
  }

  template <class F>
  void run_threads(F&& per_thread) {
    std::vector<std::jthread> th;
    for (int t = 0; t < o_.threads; ++t)
      th.emplace_back([&per_thread, this, t] {
        per_thread(t);
        times_.add_self();
      });
  }

  void print_progress(double start, std::uint64_t iter, const char* what) {
    double t = now_s();
    if (o_.quiet || t - last_print_ < 1.0) return;
    last_print_ = t;
    std::fprintf(stderr, "sweep: %.1f s, %llu %s, %.0f MiB/s\n", t - start,
                 static_cast<unsigned long long>(iter), what,
                 static_cast<double>(done_bytes_.load()) / (t - start) / (1 << 20));
  }

  const Options& o_;
  Sweeper& sw_;
  ProgressWriter& progress_;
  ThreadTimes& times_;
  const std::uint64_t bytes_;  // the working set at the start
  const std::uint64_t progress_batch_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> done_bytes_{0};
  double last_print_;
};

std::uint64_t Workers::run_bursts(double& start, std::uint64_t mapped, ResultLine& result) {
  BurstPool pool(o_.threads, times_);
  // Calibrate: the bytes a thread sweeps in busy_ms alone, best of three.
  std::uint64_t per_burst = o_.burst_work;
  if (per_burst == 0) {
    for (int round = 0; round < 3; ++round) {
      std::vector<std::uint64_t> got(o_.threads);
      double dl = now_s() + o_.busy_ms / 1000;
      pool.run([&](int t) { got[t] = work(t, 0, dl, false); });
      per_burst = std::max(per_burst, *std::min_element(got.begin(), got.end()));
    }
    done_bytes_ = 0;
    start = now_s();
  }
  std::vector<double> busy;
  std::uint64_t bursts = 0;
  double end = o_.iterations ? 0.0 : start + o_.seconds;
  times_.mark_bursts_start(pool.tids());
  for (std::uint64_t b = 0; o_.iterations ? b < o_.iterations : now_s() < end; ++b) {
    double t0 = now_s();
    double fraction = 1.0;
    if (o_.grow_to && b < static_cast<std::uint64_t>(o_.grow_steps)) {
      double size = static_cast<double>(o_.mem) + static_cast<double>(o_.grow_to - o_.mem) *
                                                      static_cast<double>(b + 1) / o_.grow_steps;
      fraction = size / static_cast<double>(mapped);
    }
    pool.run([&](int t) {
      if (o_.grow_to) sw_.grow(t, fraction);  // new memory is part of the burst's work
      work(t, per_burst, 0, false);
    });
    busy.push_back(now_s() - t0);
    progress_.iteration_done();
    ++bursts;
    print_progress(start, bursts, "bursts");
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(o_.idle_ms));
  }
  std::vector<double> sorted = busy;
  std::sort(sorted.begin(), sorted.end());
  double total_busy = 0;
  for (double x : busy)
    total_busy += x;
  result.add("busy_ms", o_.busy_ms).add("idle_ms", o_.idle_ms).add("burst_work", per_burst);
  result.add("busy_s", total_busy);
  result.add("burst_s_median", sorted.empty() ? 0.0 : sorted[sorted.size() / 2]);
  result.add("burst_s_max", sorted.empty() ? 0.0 : sorted.back());
  return bursts;
}

// Sets the working set up on every thread (each its own part); the seconds it took.
double set_up_data(const Options& o, Sweeper& sw, ThreadTimes& thread_times) {
  double t_init = now_s();
  std::vector<std::jthread> init;
  for (int t = 0; t < o.threads; ++t)
    init.emplace_back([&sw, &o, &thread_times, t] {
      sw.grow(t, o.grow_to ? static_cast<double>(o.mem) / static_cast<double>(o.grow_to) : 1.0);
      thread_times.add_self();
    });
  init.clear();  // joins
  return now_s() - t_init;
}

// The result line's figures of the run, the threads' CPU and wait times and the faults.
void add_run_figures(ResultLine& result, const Options& o, const Sweeper& sw,
                     ThreadTimes& thread_times, std::uint64_t iterations, double elapsed,
                     double moved, bool verified, double checksum, double worst,
                     std::uint64_t bad) {
  result.add("footprint", sw.active_bytes());
  result.add("iterations", iterations).add("seconds", elapsed);
  result.add("work", static_cast<std::uint64_t>(moved)).add("unit", "bytes");
  result.add("rate", elapsed > 0 ? moved / elapsed : 0.0).add("rate_unit", "bytes/s");
  result.add("verified", verified).add("checksum", checksum).add("residual", worst);
  result.add("bad_blocks", bad);
  thread_times.add_self(o.bursty);  // the main thread, last (it runs bursts too)
  CpuWait all = thread_times.all();
  result.add("threads_cpu_s", all.cpu_s()).add("threads_wait_s", all.wait_s());
  if (o.bursty) {
    CpuWait b = thread_times.bursts();
    result.add("bursts_cpu_s", b.cpu_s()).add("bursts_wait_s", b.wait_s());
  }
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  result.add("majflt", static_cast<std::int64_t>(ru.ru_majflt));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (auto status = parse_options(argc, argv, o)) return *status;
  ProgressWriter progress;
  if (!o.progress_file.empty()) {
    auto w = ProgressWriter::create(o.progress_file, o.bursty ? "sweep-bursty" : "sweep", "bytes");
    if (!w) {
      std::cerr << "dynamos-sweep: " << w.error().message() << "\n";
      return 1;
    }
    progress = std::move(*w);
  }
  const std::uint64_t total_blocks = std::max(o.mem, o.grow_to) / o.block;
  Mapping region(total_blocks * o.block);
  if (region.addr == MAP_FAILED) {
    std::cerr << "dynamos-sweep: mmap of " << format_size(region.size) << ": "
              << std::strerror(errno) << "\n";
    return 1;
  }
  Sweeper sw(o, static_cast<double*>(region.addr), total_blocks);
  ThreadTimes thread_times;
  const double t_init = set_up_data(o, sw, thread_times);
  const std::uint64_t bytes = sw.active_bytes();  // the working set (at the start)
  if (!o.quiet)
    std::cerr << "sweep: " << format_size(bytes)
              << (o.grow_to ? " growing to " + format_size(region.size) : std::string())
              << " in blocks of " << format_size(o.block) << ", " << o.threads
              << " thread(s), pattern " << o.pattern_name << (o.bursty ? ", bursty" : "")
              << "; data ready in " << t_init << " s\n";

  Workers workers(o, sw, progress, thread_times, bytes);
  progress.set_state(ProgressState::running);
  double start = now_s();
  ResultLine result;
  result.add("workload", o.bursty ? "sweep-bursty" : "sweep").add("ranks", 1);
  result.add("footprint_start", bytes).add("threads", o.threads).add("pattern", o.pattern_name);
  const std::uint64_t iterations =
      o.bursty ? workers.run_bursts(start, region.size, result) : workers.run_sweeps(start);
  const double elapsed = now_s() - start;

  if (o.inject_error) sw.corrupt();
  double checksum = 0;
  auto [bad, worst] = sw.verify(checksum);
  bool verified = bad == 0;
  progress.set_state(verified ? ProgressState::done : ProgressState::failed);
  if (!o.dump.empty()) {
    std::ofstream f(o.dump, std::ios::binary);
    f.write(static_cast<const char*>(region.addr), static_cast<std::streamsize>(bytes));
    if (!f) std::cerr << "dynamos-sweep: writing " << o.dump << " failed\n";
  }
  add_run_figures(result, o, sw, thread_times, iterations, elapsed,
                  static_cast<double>(workers.done_bytes()), verified, checksum, worst, bad);
  std::cout << result.str() << std::endl;
  if (!verified)
    std::cerr << "dynamos-sweep: verification FAILED: " << bad
              << " block(s) broke the stencil's invariants (worst relative deviation " << worst
              << ")\n";
  return verified ? 0 : 1;
}
