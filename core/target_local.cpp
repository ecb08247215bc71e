// The calling process as a target. Memory is written through /proc/self/mem (which
// writes through page protection, copying file text on write, as a debugger
// does), and the other threads are stopped with a signal rendezvous: each thread is
// sent a real-time signal whose handler records where the thread was, optionally
// unwinds its stack, and parks on a futex until the engine releases it. A thread
// interrupted inside bytes the engine overwrote is moved by editing its saved
// context, which takes effect when the handler returns.
//
// Rule: nothing in the stopped window allocates. A parked thread may hold the
// malloc lock; the engine prepares every buffer before it stops the world.
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include <unwind.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "core/target.hpp"

extern "C" void __register_frame(void*);

namespace dynamos::core {
namespace {

constexpr int kMaxThreads = 4096;
constexpr int kMaxFrames = 64;

struct Slot {
  pid_t tid = 0;
  bool alive = false;
  std::atomic<int> arrived{0};
  Address ip = 0;
  Address new_ip = 0;
  int frame_count = 0;
  bool frames_complete = true;
  Address frames[kMaxFrames];
};

struct Rendezvous {
  std::atomic<std::uint32_t> session{0};  // the session handlers may join
  std::atomic<std::uint32_t> release{0};  // futex: equals session once threads may go
  std::atomic<std::uint32_t> arrived{0};  // futex: threads parked so far
  std::atomic<std::uint32_t> left{0};     // threads that have left the handler
  bool with_frames = false;
  int count = 0;
  Slot slots[kMaxThreads];
};

// Static storage: a late handler from an abandoned session must never touch freed memory.
Rendezvous g_rv;
std::mutex g_rv_mutex;  // one rendezvous at a time per process
int g_signal = 0;

pid_t gettid_raw() {
  return static_cast<pid_t>(syscall(SYS_gettid));
}

long futex(std::atomic<std::uint32_t>* word, int op, std::uint32_t value,
           const struct timespec* timeout = nullptr) {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), op, value, timeout, nullptr, 0);
}

struct UnwindState {
  Address* frames;
  int count = 0;
  bool reached_bottom = false;  // the outermost frame was seen
  bool truncated = false;       // kMaxFrames were collected and more followed
};

_Unwind_Reason_Code collect_frame(struct _Unwind_Context* ctx, void* arg) {
  auto* st = static_cast<UnwindState*>(arg);
  int before = 0;
  Address ip = _Unwind_GetIPInfo(ctx, &before);
  if (ip == 0) {
    st->reached_bottom = true;
    return _URC_END_OF_STACK;
  }
  if (!before) ip -= 1;  // a return address: point inside the call
  if (st->count >= kMaxFrames) {
    st->truncated = true;
    return _URC_END_OF_STACK;
  }
  st->frames[st->count++] = ip;
  return _URC_NO_REASON;
}

// Unwinds the calling thread into frames[kMaxFrames]. True when the unwinder reached
// the bottom of the stack: a scan cut off at kMaxFrames, or stopped by an unwinding
// error, may have missed any frame below (quiescence and drain must not trust it).
bool unwind_stack(Address* frames, int& count) {
  UnwindState st{frames};
  const _Unwind_Reason_Code rc = _Unwind_Backtrace(collect_frame, &st);
  count = st.count;
  return !st.truncated && (rc == _URC_END_OF_STACK || st.reached_bottom);
}

void on_rendezvous_signal(int, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  const auto value = reinterpret_cast<std::uintptr_t>(info->si_value.sival_ptr);
  const auto session = static_cast<std::uint32_t>(value >> 32);
  const auto index = static_cast<std::uint32_t>(value & 0xffffffffu);
  if (info->si_code != SI_QUEUE || session == 0 ||
      session != g_rv.session.load(std::memory_order_acquire) || index >= kMaxThreads) {
    errno = saved_errno;
    return;  // a stray or late signal: nothing to do
  }
  Slot& slot = g_rv.slots[index];
  auto* uc = static_cast<ucontext_t*>(context);
  slot.ip = static_cast<Address>(uc->uc_mcontext.gregs[REG_RIP]);
  slot.new_ip = 0;
  slot.frame_count = 0;
  slot.frames_complete = true;
  if (g_rv.with_frames) {
    slot.frames_complete = unwind_stack(slot.frames, slot.frame_count);
  }
  slot.arrived.store(1, std::memory_order_release);
  g_rv.arrived.fetch_add(1, std::memory_order_acq_rel);
  futex(&g_rv.arrived, FUTEX_WAKE_PRIVATE, INT32_MAX);

  // Park until released. The engine always publishes release = session at the end
  // of a session, whether it succeeded or gave up.
  for (;;) {
    const std::uint32_t r = g_rv.release.load(std::memory_order_acquire);
    if (r == session) break;
    futex(&g_rv.release, FUTEX_WAIT_PRIVATE, r);
  }
  if (slot.new_ip) uc->uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(slot.new_ip);
  g_rv.left.fetch_add(1, std::memory_order_acq_rel);
  futex(&g_rv.left, FUTEX_WAKE_PRIVATE, INT32_MAX);
  errno = saved_errno;
}

struct LinuxDirent64 {  // the kernel's getdents64 record
  std::uint64_t d_ino;
  std::int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

// Reads the thread ids of this process with raw getdents64: no allocation.
int list_threads(pid_t* out, int max) {
  int fd = static_cast<int>(
      syscall(SYS_openat, AT_FDCWD, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd < 0) return -1;
  alignas(8) char buf[8192];
  int n = 0;
  for (;;) {
    long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (got <= 0) break;
    for (long pos = 0; pos < got;) {
      auto* d = reinterpret_cast<LinuxDirent64*>(buf + pos);
      pos += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      pid_t tid = 0;
      for (const char* c = d->d_name; *c; ++c)
        tid = tid * 10 + (*c - '0');
      if (n < max) out[n++] = tid;
    }
  }
  close(fd);
  return n;
}

bool send_signal(pid_t tid, std::uint32_t session, int index) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  info.si_signo = g_signal;
  info.si_code = SI_QUEUE;
  info.si_pid = getpid();
  info.si_uid = getuid();
  info.si_value.sival_ptr = reinterpret_cast<void*>((static_cast<std::uintptr_t>(session) << 32) |
                                                    static_cast<std::uint32_t>(index));
  return syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, g_signal, &info) == 0;
}

bool thread_alive(pid_t tid) {
  return syscall(SYS_tgkill, getpid(), tid, 0) == 0;
}

Result<void> install_handler() {
  static std::once_flag once;
  static Result<void> installed;
  std::call_once(once, [] {
    // SIGRTMIN is already past glibc's own real-time signals; +7 leaves room for others.
    int sig = SIGRTMIN + 7;
    if (const char* env = std::getenv("DYNAMOS_SIGNAL")) sig = std::atoi(env);
    if (sig < SIGRTMIN || sig > SIGRTMAX) {
      installed = fail(Errc::invalid_argument,
                       "DYNAMOS_SIGNAL must be a real-time signal number between " +
                           std::to_string(SIGRTMIN) + " and " + std::to_string(SIGRTMAX));
      return;
    }
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rendezvous_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);  // nothing interrupts a parked thread
    if (sigaction(sig, &sa, nullptr) != 0) {
      installed = fail_errno("sigaction for the rendezvous signal " + std::to_string(sig));
      return;
    }
    g_signal = sig;
    // Warm the unwinder up now: its first use may load and allocate.
    int count = 0;
    unwind_stack(g_rv.slots[0].frames, count);
  });
  return installed;
}

class LocalWorld final : public StoppedWorld {
 public:
  LocalWorld(std::uint32_t session, std::unique_lock<std::mutex> lock)
      : session_(session), lock_(std::move(lock)) {
    states_.reserve(g_rv.count);
    for (int i = 0; i < g_rv.count; ++i) {
      const Slot& s = g_rv.slots[i];
      if (!s.alive) continue;
      ThreadState t;
      t.tid = s.tid;
      t.ip = s.ip;
      t.frames = std::span<const Address>(s.frames, s.frame_count);
      t.frames_complete = s.frames_complete;
      states_.push_back(t);
      index_.push_back(i);
    }
  }
  ~LocalWorld() override { finish_session(session_, expected_left()); }

  std::span<const ThreadState> threads() const override { return states_; }
  void set_ip(std::size_t index, Address ip) override { g_rv.slots[index_.at(index)].new_ip = ip; }

  // Releases parked threads and waits (bounded) until they have left the handler, so
  // the next session never reuses a slot a thread still reads.
  static void finish_session(std::uint32_t session, std::uint32_t expect) {
    g_rv.release.store(session, std::memory_order_release);
    futex(&g_rv.release, FUTEX_WAKE_PRIVATE, INT32_MAX);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    for (;;) {
      const std::uint32_t left = g_rv.left.load(std::memory_order_acquire);
      if (left >= expect || std::chrono::steady_clock::now() > deadline) break;
      struct timespec ts {
        0, 1'000'000
      };
      futex(&g_rv.left, FUTEX_WAIT_PRIVATE, left, &ts);
    }
    g_rv.session.store(0, std::memory_order_release);
  }

 private:
  std::uint32_t expected_left() const { return g_rv.arrived.load(std::memory_order_acquire); }

  std::uint32_t session_;
  std::unique_lock<std::mutex> lock_;
  std::vector<ThreadState> states_;
  std::vector<int> index_;
};

class LocalTarget final : public Target {
 public:
  LocalTarget() { mem_fd_ = open("/proc/self/mem", O_RDWR | O_CLOEXEC); }
  ~LocalTarget() override {
    if (mem_fd_ >= 0) close(mem_fd_);
  }

  pid_t pid() const override { return getpid(); }

  Result<std::vector<Mapping>> mappings() override {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail_errno("open /proc/self/maps");
    std::string text;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0) {
        auto e = fail_errno("read /proc/self/maps");
        close(fd);
        return e;
      }
      if (n == 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    close(fd);
    return parse_maps(text);
  }

  Result<void> read(Address address, std::span<std::uint8_t> out) override {
    if (mem_fd_ < 0) return fail(Errc::unsupported, "/proc/self/mem is not available");
    ssize_t n = pread(mem_fd_, out.data(), out.size(), static_cast<off_t>(address));
    if (n != static_cast<ssize_t>(out.size()))
      return fail_errno(n < 0 ? errno : EIO,
                        "read " + std::to_string(out.size()) + " bytes at " + hex(address));
    return {};
  }

  Result<void> write(Address address, std::span<const std::uint8_t> bytes) override {
    if (mem_fd_ < 0) return fail(Errc::unsupported, "/proc/self/mem is not available");
    ssize_t n = pwrite(mem_fd_, bytes.data(), bytes.size(), static_cast<off_t>(address));
    if (n != static_cast<ssize_t>(bytes.size()))
      return fail_errno(n < 0 ? errno : EIO, "write " + std::to_string(bytes.size()) +
                                                 " bytes at " + hex(address) +
                                                 " through /proc/self/mem");
    return {};
  }

  Result<void> store_word(Address address, std::uint64_t value) override {
    if (address % 8) return fail(Errc::invalid_argument, "unaligned slot " + hex(address));
    std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(address))
        .store(value, std::memory_order_release);
    return {};
  }

  Result<std::uint64_t> load_word(Address address) override {
    if (address % 8) return fail(Errc::invalid_argument, "unaligned slot " + hex(address));
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(address))
        .load(std::memory_order_acquire);
  }

  Result<Address> map_fixed(Address address, std::size_t length, int prot) override {
    void* p = mmap(reinterpret_cast<void*>(address), length, prot,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
      return fail_errno("mmap " + std::to_string(length) + " bytes at " + hex(address));
    if (reinterpret_cast<Address>(p) != address) {
      munmap(p, length);  // a kernel without MAP_FIXED_NOREPLACE placed it elsewhere
      return fail(Errc::busy, "mmap at " + hex(address) + " was placed elsewhere");
    }
    return address;
  }

  Result<std::unique_ptr<StoppedWorld>> stop_world(const StopOptions& options) override {
    if (auto r = install_handler(); !r) return std::unexpected(r.error());
    std::unique_lock lock(g_rv_mutex);
    static std::uint32_t next_session = 0;
    std::uint32_t session = ++next_session;
    if (session == 0) session = ++next_session;

    g_rv.with_frames = options.with_frames;
    g_rv.count = 0;
    g_rv.arrived.store(0);
    g_rv.left.store(0);
    g_rv.session.store(session, std::memory_order_release);

    const pid_t self = gettid_raw();
    const auto deadline = std::chrono::steady_clock::now() + options.timeout;
    pid_t tids[kMaxThreads];
    std::uint32_t sent = 0;
    for (;;) {
      // Signal every thread not yet signalled; repeat until a scan finds none new, so
      // threads created while others were being stopped are stopped too.
      int n = list_threads(tids, kMaxThreads);
      if (n < 0) {
        LocalWorld::finish_session(session, g_rv.arrived.load());
        return fail_errno("list /proc/self/task");
      }
      bool new_threads = false;
      for (int i = 0; i < n; ++i) {
        if (tids[i] == self || known(tids[i])) continue;
        if (g_rv.count >= kMaxThreads) {
          LocalWorld::finish_session(session, g_rv.arrived.load());
          return fail(Errc::unsupported, "more than " + std::to_string(kMaxThreads) + " threads");
        }
        Slot& s = g_rv.slots[g_rv.count];
        s.tid = tids[i];
        s.arrived.store(0);
        s.alive = send_signal(tids[i], session, g_rv.count);
        ++g_rv.count;
        if (s.alive) {
          ++sent;
          new_threads = true;
        }
      }
      if (!new_threads && sent == g_rv.arrived.load(std::memory_order_acquire)) break;
      // Wait for the signalled threads to park, dropping those that exit meanwhile.
      while (g_rv.arrived.load(std::memory_order_acquire) < sent) {
        if (std::chrono::steady_clock::now() > deadline) {
          pid_t blocker = 0;
          for (int i = 0; i < g_rv.count; ++i)
            if (g_rv.slots[i].alive && !g_rv.slots[i].arrived.load()) blocker = g_rv.slots[i].tid;
          LocalWorld::finish_session(session, g_rv.arrived.load());
          return fail(Errc::timed_out,
                      "thread " + std::to_string(blocker) + " did not stop within " +
                          std::to_string(options.timeout.count()) + " ms (is signal " +
                          std::to_string(g_signal) + " blocked in it?)");
        }
        const std::uint32_t seen = g_rv.arrived.load(std::memory_order_acquire);
        struct timespec ts {
          0, 200'000
        };
        futex(&g_rv.arrived, FUTEX_WAIT_PRIVATE, seen, &ts);
        for (int i = 0; i < g_rv.count; ++i) {
          Slot& s = g_rv.slots[i];
          if (s.alive && !s.arrived.load(std::memory_order_acquire) && !thread_alive(s.tid)) {
            s.alive = false;
            --sent;
          }
        }
      }
    }
    return std::unique_ptr<StoppedWorld>(new LocalWorld(session, std::move(lock)));
  }

  pid_t calling_thread() const override { return gettid_raw(); }

  Result<void> register_unwind_info(Address eh_frame) override {
    __register_frame(reinterpret_cast<void*>(eh_frame));
    return {};
  }

  Result<Address> runtime_address(std::string_view name) override {
    void* p = dlsym(RTLD_DEFAULT, std::string(name).c_str());
    if (!p) return fail(Errc::not_found, "cannot resolve " + std::string(name));
    return reinterpret_cast<Address>(p);
  }

  ThreadState own_state(bool with_frames) const override {
    static thread_local Address frames[kMaxFrames];
    ThreadState t;
    t.tid = gettid_raw();
    t.ip = reinterpret_cast<Address>(__builtin_return_address(0));
    if (with_frames) {
      int count = 0;
      t.frames_complete = unwind_stack(frames, count);
      t.frames = std::span<const Address>(frames, count);
    }
    return t;
  }

 private:
  static bool known(pid_t tid) {
    for (int i = 0; i < g_rv.count; ++i)
      if (g_rv.slots[i].tid == tid) return true;
    return false;
  }

  int mem_fd_ = -1;
};

}  // namespace

std::unique_ptr<Target> make_local_target() {
  return std::make_unique<LocalTarget>();
}

}  // namespace dynamos::core
