// The remote target: another process, reached through ptrace and /proc/PID/mem.
// See core/remote.hpp for the guarantees; the comments here explain the how.
#include <cpuid.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "core/engine.hpp"
#include "core/remote.hpp"
#include "core/symbols.hpp"
#include "core/x86_writer.hpp"

namespace dynamos::core {
namespace {

using Clock = std::chrono::steady_clock;

// Layout of the shared state region ("/memfd:dynamos-state").
constexpr std::size_t kStateSize = 1 << 20;
constexpr std::size_t kMailboxOffset = 4096;  // done flag, result, argument bytes
constexpr std::size_t kMailboxBytes = 4096;
constexpr std::size_t kBlobOffset[2] = {8192, 8192 + 520192};
constexpr std::size_t kBlobMax = 520192;
constexpr std::size_t kCallArea = 64 * 1024;
constexpr char kStateMagic[16] = "DYNAMOS-STATE1";
constexpr char kStateName[] = "dynamos-state";

struct StateHeader {
  char magic[16];
  std::uint64_t call_area;
  std::uint64_t generation;
  std::uint64_t blob_offset;
  std::uint64_t blob_length;
};

struct Mailbox {
  std::uint64_t done;
  std::uint64_t result;
  std::uint64_t results[6];
};

// Size of the XSAVE area for the features the OS enabled (CPUID leaf 0xD).
std::size_t xsave_size() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(0xD, 0, &a, &b, &c, &d) || b == 0) return 4096;
  return (b + 63) & ~std::size_t{63};
}

// ---- Stub generation: save everything, run a body, restore, jump back ----

enum Reg { RAX = 0, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

void movabs(X86Writer& w, int reg, std::uint64_t imm) {
  w.u8(reg < 8 ? 0x48 : 0x49);
  w.u8(static_cast<std::uint8_t>(0xB8 + (reg & 7)));
  w.u64(imm);
}

void save_all(X86Writer& w) {
  const std::uint8_t prologue[] = {
      0x48, 0x8D, 0x64, 0x24, 0x80,                    // lea rsp, [rsp-128]   (skip the red zone)
      0x9C,                                            // pushfq
      0x50, 0x51, 0x52, 0x53, 0x55, 0x56, 0x57,        // rax rcx rdx rbx rbp rsi rdi
      0x41, 0x50, 0x41, 0x51, 0x41, 0x52, 0x41, 0x53,  // r8-r11
      0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57,  // r12-r15
      0x48, 0x89, 0xE5,                                // mov rbp, rsp
      0x48, 0x83, 0xE4, 0xC0,                          // and rsp, -64
  };
  w.raw(prologue, sizeof prologue);
  const auto size = static_cast<std::uint32_t>(xsave_size());
  w.u8(0x48), w.u8(0x81), w.u8(0xEC), w.u32(size);  // sub rsp, size
  // XRSTOR faults unless the XSAVE header's reserved bytes are zero, and XSAVE
  // writes only XSTATE_BV there: clear the 64-byte header (offset 512) first.
  w.u8(0x31), w.u8(0xC0);  // xor eax, eax
  for (std::uint32_t off = 512; off < 576; off += 8) {
    w.u8(0x48), w.u8(0x89), w.u8(0x84), w.u8(0x24), w.u32(off);  // mov [rsp+off], rax
  }
  const std::uint8_t xsave[] = {0xB8, 0xFF, 0xFF, 0xFF, 0xFF,   // mov eax, -1
                                0xBA, 0xFF, 0xFF, 0xFF, 0xFF,   // mov edx, -1
                                0x48, 0x0F, 0xAE, 0x24, 0x24};  // xsave64 [rsp]
  w.raw(xsave, sizeof xsave);
}

void restore_all_and_jump(X86Writer& w, Address resume) {
  const std::uint8_t epilogue[] = {
      0xB8, 0xFF, 0xFF, 0xFF, 0xFF,                    // mov eax, -1
      0xBA, 0xFF, 0xFF, 0xFF, 0xFF,                    // mov edx, -1
      0x48, 0x0F, 0xAE, 0x2C, 0x24,                    // xrstor64 [rsp]
      0x48, 0x89, 0xEC,                                // mov rsp, rbp
      0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C,  // r15-r12
      0x41, 0x5B, 0x41, 0x5A, 0x41, 0x59, 0x41, 0x58,  // r11-r8
      0x5F, 0x5E, 0x5D, 0x5B, 0x5A, 0x59, 0x58,        // rdi rsi rbp rbx rdx rcx rax
      0x9D,                                            // popfq
      0x48, 0x8D, 0xA4, 0x24, 0x80, 0x00, 0x00, 0x00,  // lea rsp, [rsp+128]
  };
  w.raw(epilogue, sizeof epilogue);
  w.jmp_abs(resume);
}

// mov [rbx+disp8], rax
void store_rax(X86Writer& w, std::uint8_t disp) {
  w.u8(0x48), w.u8(0x89), w.u8(0x43), w.u8(disp);
}
// mov qword [rbx+disp8], 1
void store_done(X86Writer& w, std::uint8_t disp) {
  w.u8(0x48), w.u8(0xC7), w.u8(0x43), w.u8(disp), w.u32(1);
}

// An argument of a stub step: an immediate, or a result an earlier step stored.
struct Arg {
  std::uint64_t value = 0;
  bool from_result = false;  // value is the index of the result slot
};

void load_arg(X86Writer& w, int reg, const Arg& a) {
  if (!a.from_result) return movabs(w, reg, a.value);
  // mov reg, [rbx + 16 + 8*index]
  const auto disp = static_cast<std::uint8_t>(offsetof(Mailbox, results) + 8 * a.value);
  w.u8(reg < 8 ? 0x48 : 0x4C), w.u8(0x8B), w.u8(static_cast<std::uint8_t>(0x43 | ((reg & 7) << 3))),
      w.u8(disp);
}

struct SyscallStep {
  long nr;
  Arg args[6];
};

// A stub that runs system calls one after another, storing each result in
// mailbox.results[i], then sets mailbox.done. rbx holds the mailbox throughout
// (syscall clobbers only rcx and r11).
std::vector<std::uint8_t> syscall_stub(Address at, Address mailbox,
                                       const std::vector<SyscallStep>& steps, Address resume) {
  X86Writer w(at);
  save_all(w);
  movabs(w, RBX, mailbox);
  const int regs[6] = {RDI, RSI, RDX, R10, R8, R9};
  for (std::size_t i = 0; i < steps.size(); ++i) {
    for (int a = 0; a < 6; ++a)
      load_arg(w, regs[a], steps[i].args[a]);
    movabs(w, RAX, static_cast<std::uint64_t>(steps[i].nr));
    w.u8(0x0F), w.u8(0x05);  // syscall
    store_rax(w, static_cast<std::uint8_t>(offsetof(Mailbox, results) + 8 * i));
  }
  store_done(w, offsetof(Mailbox, done));
  restore_all_and_jump(w, resume);
  return w.take();
}

// A stub that calls fn(args) with the System V ABI (rsp is 64-byte aligned here).
std::vector<std::uint8_t> call_stub(Address at, Address mailbox, Address fn,
                                    const std::vector<std::uint64_t>& args, Address resume) {
  X86Writer w(at);
  save_all(w);
  const int regs[6] = {RDI, RSI, RDX, RCX, R8, R9};
  for (std::size_t i = 0; i < args.size() && i < 6; ++i)
    movabs(w, regs[i], args[i]);
  movabs(w, RAX, fn);
  w.u8(0xFF), w.u8(0xD0);  // call rax
  movabs(w, RBX, mailbox);
  store_rax(w, offsetof(Mailbox, result));
  store_done(w, offsetof(Mailbox, done));
  restore_all_and_jump(w, resume);
  return w.take();
}

bool is_restart_errno(long rax) {
  // -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK
  return rax == -512 || rax == -513 || rax == -514 || rax == -516;
}

struct Thread {
  pid_t tid = 0;
  bool stopped = false;
  bool group_stop = false;  // stopped by SIGSTOP & co: resume with PTRACE_LISTEN
  bool regs_dirty = false;
  user_regs_struct regs{};
};

class RemoteWorld;

class RemoteTargetImpl final : public RemoteTarget {
 public:
  RemoteTargetImpl(pid_t pid, AttachOptions options, int lock_fd)
      : pid_(pid), options_(options), lock_fd_(lock_fd) {}
  ~RemoteTargetImpl() override { detach(); }

  Result<void> init() {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (pthread_sigmask(SIG_BLOCK, &chld, &saved_mask_) == 0)
      sigchld_fd_ = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (auto r = seize_new_threads(); !r) return r;
    if (threads_.empty())
      return fail(Errc::not_found, "process " + std::to_string(pid_) + " has no threads");
    mem_fd_ = open(("/proc/" + std::to_string(pid_) + "/mem").c_str(), O_RDWR | O_CLOEXEC);
    if (mem_fd_ < 0) return fail_errno("open /proc/" + std::to_string(pid_) + "/mem");
    return find_state_region();
  }

  pid_t pid() const override { return pid_; }

  Result<std::vector<Mapping>> mappings() override {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/maps");
    if (!in) return fail_errno("open /proc/" + std::to_string(pid_) + "/maps");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return parse_maps(text);
  }

  Result<void> read(Address address, std::span<std::uint8_t> out) override {
    ssize_t n = pread(mem_fd_, out.data(), out.size(), static_cast<off_t>(address));
    if (n != static_cast<ssize_t>(out.size()))
      return fail_errno(n < 0 ? errno : EIO, "read " + std::to_string(out.size()) + " bytes at " +
                                                 hex(address) + " of process " +
                                                 std::to_string(pid_));
    return {};
  }

  Result<void> write(Address address, std::span<const std::uint8_t> bytes) override {
    ssize_t n = pwrite(mem_fd_, bytes.data(), bytes.size(), static_cast<off_t>(address));
    if (n != static_cast<ssize_t>(bytes.size()))
      return fail_errno(n < 0 ? errno : EIO, "write " + std::to_string(bytes.size()) +
                                                 " bytes at " + hex(address) + " of process " +
                                                 std::to_string(pid_));
    return {};
  }

  Result<void> store_word(Address address, std::uint64_t value) override {
    if (address % 8) return fail(Errc::invalid_argument, "unaligned slot " + hex(address));
    if (world_open_) {
      pending_.push_back({address, value});  // written with the state, before resuming
      return {};
    }
    return write_words({{address, value}});
  }

  Result<std::uint64_t> load_word(Address address) override {
    for (auto it = pending_.rbegin(); it != pending_.rend(); ++it)
      if (it->first == address) return it->second;
    std::uint64_t v = 0;
    if (auto r = read(address, {reinterpret_cast<std::uint8_t*>(&v), 8}); !r)
      return std::unexpected(r.error());
    return v;
  }

  Result<Address> map_fixed(Address address, std::size_t length, int prot) override {
    auto r = syscalls({{SYS_mmap,
                        {{address},
                         {length},
                         {static_cast<std::uint64_t>(prot)},
                         {MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE},
                         {~std::uint64_t{0}},
                         {0}}}});
    if (!r) return std::unexpected(r.error());
    const auto got = (*r)[0];
    if (got > ~std::uint64_t{4095})
      return fail_errno(static_cast<int>(-static_cast<long>(got)),
                        "mmap at " + hex(address) + " in process " + std::to_string(pid_));
    if (got != address)
      return fail(Errc::busy, "mmap at " + hex(address) + " was placed elsewhere");
    return address;
  }

  Result<std::unique_ptr<StoppedWorld>> stop_world(const StopOptions& options) override;

  pid_t calling_thread() const override { return 0; }
  ThreadState own_state(bool) const override { return {}; }
  bool always_stop() const override { return true; }

  Result<std::string> load_state() override {
    if (!state_) return std::string();
    StateHeader h;
    if (auto r = read(state_, {reinterpret_cast<std::uint8_t*>(&h), sizeof h}); !r)
      return std::unexpected(r.error());
    if (std::memcmp(h.magic, kStateMagic, sizeof kStateMagic) != 0)
      return fail(Errc::version_mismatch, "the dynamos-state region of process " +
                                              std::to_string(pid_) + " has an unknown format");
    generation_ = h.generation;
    current_blob_ = h.blob_offset == kBlobOffset[1] ? 1 : 0;
    if (h.blob_length == 0) return std::string();
    if (h.blob_length > kBlobMax) return fail(Errc::protocol, "engine state too large");
    std::string blob(h.blob_length, '\0');
    if (auto r = read(state_ + h.blob_offset,
                      {reinterpret_cast<std::uint8_t*>(blob.data()), blob.size()});
        !r)
      return std::unexpected(r.error());
    return blob;
  }

  void stage_state(std::string blob) override { staged_ = std::move(blob); }
  void drop_staged_state() override {
    staged_.reset();
    pending_.clear();
  }

  Result<std::uint64_t> call(Address fn, std::initializer_list<std::uint64_t> args) override;
  Result<void> register_unwind_info(Address eh_frame) override {
    auto syms = Symbols::load(*this);
    if (!syms) return std::unexpected(syms.error());
    auto reg = syms->find("__register_frame", "libgcc_s");
    if (!reg)
      return fail(Errc::unsupported, "no unwinder loaded in process " + std::to_string(pid_));
    auto r = call(reg->address, {eh_frame});
    if (!r) return std::unexpected(r.error());
    return {};
  }

  Result<Address> runtime_address(std::string_view name) override {
    auto syms = Symbols::load(*this);
    if (!syms) return std::unexpected(syms.error());
    auto dlsym_sym = syms->find("dlsym", "/libc.so");
    if (!dlsym_sym)
      return fail(Errc::unsupported, "process " + std::to_string(pid_) + " has no dlsym");
    const std::string n(name);
    auto at = put_bytes(n.c_str(), n.size() + 1);
    if (!at) return std::unexpected(at.error());
    auto r = call(dlsym_sym->address, {0 /* RTLD_DEFAULT */, *at});
    if (!r) return std::unexpected(r.error());
    if (!*r)
      return fail(Errc::not_found, "process " + std::to_string(pid_) + " cannot resolve " + n);
    return *r;
  }
  Result<Address> load_library(const std::string& path) override;
  Result<Address> put_bytes(const void* data, std::size_t size) override;

  void detach() override {
    for (auto& t : threads_) {
      if (!t.stopped) {
        if (ptrace(PTRACE_INTERRUPT, t.tid, 0, 0) != 0) continue;
        if (!wait_stop(t, Clock::now() + std::chrono::milliseconds(500))) continue;
      }
      ptrace(PTRACE_DETACH, t.tid, 0, 0);
    }
    threads_.clear();
    if (mem_fd_ >= 0) close(mem_fd_), mem_fd_ = -1;
    if (sigchld_fd_ >= 0) {
      close(sigchld_fd_);
      sigchld_fd_ = -1;
      pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
    }
    if (lock_fd_ >= 0) {
      // Remove the lock file while still holding it, so none pile up in /tmp.
      unlink(("/tmp/dynamos-" + std::to_string(pid_) + ".lock").c_str());
      close(lock_fd_);
      lock_fd_ = -1;
    }
  }

  // While the target is stopped the tool runs at real-time priority when allowed:
  // otherwise each thread it resumes preempts it (wakeup preemption) and the
  // threads not yet resumed wait a whole time slice of the busy ones.
  void boost() {
    if (boosted_ || getenv("DYNAMOS_NO_BOOST")) return;
    if (pthread_getschedparam(pthread_self(), &saved_policy_, &saved_param_) != 0) return;
    sched_param p{};
    p.sched_priority = 1;
    boosted_ = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p) == 0;
  }
  void unboost() {
    if (!boosted_) return;
    pthread_setschedparam(pthread_self(), saved_policy_, &saved_param_);
    boosted_ = false;
  }

  bool in_our_code(Address ip) const {
    return (call_area_ && ip >= call_area_ && ip < call_area_ + kCallArea) ||
           (slack_ && ip >= slack_ && ip < slack_ + slack_size_);
  }

  // ---- used by RemoteWorld ----
  Result<void> stop_all(Clock::time_point deadline);
  void resume_all();
  Result<void> flush_pending();
  std::vector<Thread>& threads() { return threads_; }
  bool world_open_ = false;

 private:
  Result<void> seize_new_threads();
  bool wait_stop(Thread& t, Clock::time_point deadline);
  void pump_events();
  Result<void> write_words(const std::vector<std::pair<Address, std::uint64_t>>& words);
  Result<void> find_state_region();
  Result<void> bootstrap();
  Result<std::vector<std::uint64_t>> syscalls(const std::vector<SyscallStep>& steps);
  // Sends one thread through `stub_for(resume)` and waits for the mailbox's done flag.
  template <class MakeStub>
  Result<void> run_on_thread(Thread& t, Address stub_at, Address done_at, MakeStub make_stub,
                             bool check_locks);
  Result<bool> inside_locked_code(const Thread& t);

  pid_t pid_;
  AttachOptions options_;
  int lock_fd_ = -1;
  int mem_fd_ = -1;
  int sigchld_fd_ = -1;
  bool boosted_ = false;
  int saved_policy_ = SCHED_OTHER;
  sched_param saved_param_{};  // ptrace stops raise SIGCHLD: wake on it instead of polling
  sigset_t saved_mask_{};

  // Sleeps until a tracee changes state (or 1 ms passes, in case another thread of
  // this process took the SIGCHLD).
  void wait_for_child_event() {
    if (sigchld_fd_ < 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      return;
    }
    pollfd p{sigchld_fd_, POLLIN, 0};
    if (poll(&p, 1, 1) > 0) {
      signalfd_siginfo info[16];
      while (::read(sigchld_fd_, info, sizeof info) > 0) {
      }
    }
  }
  std::vector<Thread> threads_;
  Address state_ = 0;      // the state region, once it exists
  Address call_area_ = 0;  // RX memory for call stubs
  Address slack_ = 0;      // where the bootstrap stub ran, while it may still run
  std::size_t slack_size_ = 0;
  std::uint64_t generation_ = 0;
  int current_blob_ = 0;
  std::optional<std::string> staged_;
  std::vector<std::pair<Address, std::uint64_t>> pending_;
  std::vector<AddressRange> lock_ranges_;  // malloc family and the dynamic loader
  bool lock_ranges_ready_ = false;
};

class RemoteWorld final : public StoppedWorld {
 public:
  RemoteWorld(RemoteTargetImpl& target, std::vector<ThreadState> states,
              std::vector<std::vector<Address>> frames, std::vector<std::size_t> index)
      : target_(target),
        states_(std::move(states)),
        frames_(std::move(frames)),
        index_(std::move(index)) {
    for (std::size_t i = 0; i < states_.size(); ++i)
      states_[i].frames = frames_[i];
    target_.world_open_ = true;
  }
  ~RemoteWorld() override {
    (void)target_.flush_pending();
    target_.world_open_ = false;
    target_.resume_all();
    target_.unboost();
  }
  std::span<const ThreadState> threads() const override { return states_; }
  void set_ip(std::size_t i, Address ip) override {
    Thread& t = target_.threads()[index_.at(i)];
    t.regs.rip = ip;
    t.regs_dirty = true;
  }

 private:
  RemoteTargetImpl& target_;
  std::vector<ThreadState> states_;
  std::vector<std::vector<Address>> frames_;
  std::vector<std::size_t> index_;
};

Result<void> RemoteTargetImpl::seize_new_threads() {
  const std::string dir = "/proc/" + std::to_string(pid_) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return fail_errno("list " + dir);
  std::vector<pid_t> tids;
  while (auto* e = readdir(d)) {
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') tids.push_back(std::atoi(e->d_name));
  }
  closedir(d);
  for (pid_t tid : tids) {
    if (std::any_of(threads_.begin(), threads_.end(),
                    [&](const Thread& t) { return t.tid == tid; }))
      continue;
    if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
      if (errno == ESRCH) continue;  // exited meanwhile
      if (errno == EPERM)
        return fail_errno("not permitted to trace process " + std::to_string(pid_) +
                          " (another user's process, or restricted by ptrace_scope)");
      return fail_errno("ptrace(PTRACE_SEIZE) thread " + std::to_string(tid));
    }
    threads_.push_back(Thread{tid});
  }
  return {};
}

// Waits for `t` to report an interrupt (or group) stop; passes on any signal that
// arrives first. False when the thread exited or the deadline passed.
bool RemoteTargetImpl::wait_stop(Thread& t, Clock::time_point deadline) {
  for (;;) {
    int status = 0;
    pid_t r = waitpid(t.tid, &status, __WALL | WNOHANG);
    if (r < 0) return false;  // gone
    if (r == 0) {
      if (Clock::now() > deadline) return false;
      wait_for_child_event();
      continue;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) return false;
    if (!WIFSTOPPED(status)) continue;
    const int event = status >> 16;
    const int sig = WSTOPSIG(status);
    if (event == PTRACE_EVENT_STOP) {
      t.group_stop = sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
      t.stopped = true;
      return true;
    }
    // A signal on its way to the thread: deliver it and keep waiting for our stop.
    ptrace(PTRACE_CONT, t.tid, 0, reinterpret_cast<void*>(static_cast<long>(event ? 0 : sig)));
  }
}

// Delivers signals that stopped running threads while the tool was busy elsewhere.
void RemoteTargetImpl::pump_events() {
  for (auto& t : threads_) {
    if (t.stopped) continue;
    int status = 0;
    if (waitpid(t.tid, &status, __WALL | WNOHANG) > 0 && WIFSTOPPED(status)) {
      const int event = status >> 16;
      if (event == PTRACE_EVENT_STOP) {
        ptrace(PTRACE_CONT, t.tid, 0, 0);  // a stale interrupt: let it go
      } else {
        ptrace(PTRACE_CONT, t.tid, 0, reinterpret_cast<void*>(static_cast<long>(WSTOPSIG(status))));
      }
    }
  }
}

Result<void> RemoteTargetImpl::stop_all(Clock::time_point deadline) {
  for (;;) {
    if (auto r = seize_new_threads(); !r) return r;
    bool any_new = false;
    for (auto& t : threads_) {
      if (t.stopped) continue;
      any_new = true;
      if (ptrace(PTRACE_INTERRUPT, t.tid, 0, 0) != 0) t.tid = -t.tid;  // exited
    }
    if (!any_new) break;  // a scan with every thread already stopped: nobody can clone now
    for (auto& t : threads_) {
      if (t.stopped || t.tid < 0) continue;
      if (!wait_stop(t, deadline)) {
        const std::string task = "/proc/" + std::to_string(pid_) + "/task/" + std::to_string(t.tid);
        if (access(task.c_str(), F_OK) != 0) {
          t.tid = -t.tid;
          continue;
        }
        resume_all();
        return fail(Errc::timed_out,
                    "thread " + std::to_string(t.tid) + " of process " + std::to_string(pid_) +
                        " did not stop in time (frozen or in uninterruptible sleep?)");
      }
    }
    std::erase_if(threads_, [](const Thread& t) { return t.tid < 0; });
  }
  for (auto& t : threads_) {
    if (ptrace(PTRACE_GETREGS, t.tid, 0, &t.regs) != 0) {
      resume_all();
      return fail_errno("ptrace(PTRACE_GETREGS) thread " + std::to_string(t.tid));
    }
    t.regs_dirty = false;
  }
  return {};
}

void RemoteTargetImpl::resume_all() {
  for (auto& t : threads_) {
    if (!t.stopped) continue;
    if (t.regs_dirty) ptrace(PTRACE_SETREGS, t.tid, 0, &t.regs);
    t.regs_dirty = false;
    ptrace(t.group_stop ? PTRACE_LISTEN : PTRACE_CONT, t.tid, 0, 0);
    t.stopped = false;
  }
}

Result<void> RemoteTargetImpl::write_words(
    const std::vector<std::pair<Address, std::uint64_t>>& words) {
  std::vector<iovec> local, remote;
  for (const auto& w : words) {
    local.push_back({const_cast<std::uint64_t*>(&w.second), 8});
    remote.push_back({reinterpret_cast<void*>(w.first), 8});
  }
  ssize_t n = process_vm_writev(pid_, local.data(), local.size(), remote.data(), remote.size(), 0);
  if (n != static_cast<ssize_t>(8 * words.size()))
    return fail_errno(n < 0 ? errno : EIO,
                      "write version slots of process " + std::to_string(pid_));
  return {};
}

// Writes the staged state beside the current one, then stores the update's slots
// and the header that makes the new state current in one process_vm_writev.
Result<void> RemoteTargetImpl::flush_pending() {
  std::vector<std::pair<Address, std::uint64_t>> words = std::move(pending_);
  pending_.clear();
  if (staged_) {
    if (!state_) {
      staged_.reset();  // cannot happen: stop_world creates the region first
    } else if (staged_->size() > kBlobMax) {
      staged_.reset();
      return fail(Errc::unsupported, "engine state too large for the state region");
    } else {
      const int next = 1 - current_blob_;
      if (auto r = write(state_ + kBlobOffset[next],
                         {reinterpret_cast<const std::uint8_t*>(staged_->data()), staged_->size()});
          !r)
        return r;
      words.push_back({state_ + offsetof(StateHeader, blob_offset), kBlobOffset[next]});
      words.push_back({state_ + offsetof(StateHeader, blob_length), staged_->size()});
      words.push_back({state_ + offsetof(StateHeader, generation), generation_ + 1});
      current_blob_ = next;
      ++generation_;
      staged_.reset();
    }
  }
  if (words.empty()) return {};
  return write_words(words);
}

Result<std::unique_ptr<StoppedWorld>> RemoteTargetImpl::stop_world(const StopOptions& options) {
  // The state region must exist before the world stops (creating it is a remote call).
  if (!state_)
    if (auto r = bootstrap(); !r) return std::unexpected(r.error());
  boost();
  if (auto r = stop_all(Clock::now() + options.timeout); !r) {
    unboost();
    return std::unexpected(r.error());
  }
  std::vector<ThreadState> states;
  std::vector<std::vector<Address>> frames;
  std::vector<std::size_t> index;
  std::vector<Mapping> exec, all;
  if (options.with_frames) {
    auto maps = mappings();
    if (!maps) {
      resume_all();
      return std::unexpected(maps.error());
    }
    for (const auto& m : *maps)
      if (m.executable()) exec.push_back(m);
    all = std::move(*maps);
  }
  for (std::size_t i = 0; i < threads_.size(); ++i) {
    const Thread& t = threads_[i];
    ThreadState s;
    s.tid = t.tid;
    s.ip = t.regs.rip;
    std::vector<Address> f;
    if (options.with_frames) {
      // Conservative: every stack word that points into executable memory counts as
      // a return address. Never misses a frame (no unwind tables needed); may see an
      // old pointer and wait longer than necessary.
      // Only the thread's own stack (the mapping holding sp), at most 64 KiB of it.
      const Address sp = t.regs.rsp;
      Address stack_end = 0;
      for (const auto& m : all)
        if (m.begin <= sp && sp < m.end) stack_end = m.end;
      const Address span = stack_end > sp ? std::min<Address>(64 * 1024, stack_end - sp) : 0;
      std::vector<std::uint64_t> stack(span / 8);
      std::size_t got = 0;
      while (got < stack.size()) {
        ssize_t n = pread(mem_fd_, stack.data() + got, (stack.size() - got) * 8,
                          static_cast<off_t>(sp + got * 8));
        if (n <= 0) break;
        got += static_cast<std::size_t>(n) / 8;
      }
      for (std::size_t k = 0; k < got; ++k) {
        const Address v = stack[k];
        for (const auto& m : exec)
          if (v > m.begin && v <= m.end) {
            f.push_back(v - 1);
            break;
          }
      }
      s.frames_complete = stack_end > sp && sp + got * 8 + 8 > stack_end;  // read to its top
    }
    states.push_back(s);
    frames.push_back(std::move(f));
    index.push_back(i);
  }
  return std::unique_ptr<StoppedWorld>(
      new RemoteWorld(*this, std::move(states), std::move(frames), std::move(index)));
}

Result<void> RemoteTargetImpl::find_state_region() {
  auto maps = mappings();
  if (!maps) return std::unexpected(maps.error());
  for (const auto& m : *maps) {
    if (m.path.rfind(std::string("/memfd:") + kStateName, 0) == 0 &&
        m.end - m.begin == kStateSize) {
      state_ = m.begin;
      StateHeader h;
      if (auto r = read(state_, {reinterpret_cast<std::uint8_t*>(&h), sizeof h}); !r) return r;
      if (std::memcmp(h.magic, kStateMagic, sizeof kStateMagic) != 0) {
        state_ = 0;  // a region of ours that a killed bootstrap never finished: make a new one
        continue;
      }
      call_area_ = h.call_area;
      generation_ = h.generation;
      current_blob_ = h.blob_offset == kBlobOffset[1] ? 1 : 0;
      return {};
    }
  }
  return {};
}

// Is the thread inside malloc & co. or the dynamic loader (which may hold their
// locks)? Judged from its instruction pointer and a conservative stack scan.
Result<bool> RemoteTargetImpl::inside_locked_code(const Thread& t) {
  if (!lock_ranges_ready_) {
    auto syms = Symbols::load(*this);
    if (!syms) return std::unexpected(syms.error());
    for (const auto& obj : syms->objects()) {
      const bool loader = obj.path.find("/ld-linux") != std::string::npos;
      const bool libc = obj.path.find("/libc.so") != std::string::npos;
      if (!loader && !libc) continue;
      for (const auto& s : obj.functions) {
        static const std::set<std::string> locked = {
            "malloc",          "free",     "calloc",         "realloc",
            "reallocarray",    "memalign", "posix_memalign", "aligned_alloc",
            "valloc",          "pvalloc",  "malloc_trim",    "mallinfo",
            "mallinfo2",       "dlopen",   "dlclose",        "dlsym",
            "dlvsym",          "dladdr",   "dladdr1",        "dlinfo",
            "dl_iterate_phdr", "fork",     "_Fork",          "__libc_dlopen_mode"};
        if (loader || locked.count(s.name))
          lock_ranges_.push_back({s.address, s.address + std::max<std::size_t>(s.size, 1)});
      }
    }
    // The whole text of the dynamic loader: lazy binding and dlopen live there.
    auto maps = mappings();
    if (maps)
      for (const auto& m : *maps)
        if (m.executable() && m.path.find("/ld-linux") != std::string::npos)
          lock_ranges_.push_back({m.begin, m.end});
    lock_ranges_ready_ = true;
  }
  auto in_locked = [&](Address a) {
    return std::any_of(lock_ranges_.begin(), lock_ranges_.end(),
                       [&](const AddressRange& r) { return r.contains(a); });
  };
  if (in_locked(t.regs.rip)) return true;
  std::vector<std::uint64_t> stack(32 * 1024 / 8);
  ssize_t n = pread(mem_fd_, stack.data(), stack.size() * 8, static_cast<off_t>(t.regs.rsp));
  for (ssize_t k = 0; n > 0 && k < n / 8; ++k)
    if (in_locked(stack[k] - 1)) return true;
  return false;
}

template <class MakeStub>
Result<void> RemoteTargetImpl::run_on_thread(Thread& t, Address stub_at, Address done_at,
                                             MakeStub make_stub, bool check_locks) {
  const auto deadline = Clock::now() + options_.call_timeout;
  auto backoff = std::chrono::microseconds(200);
  for (;;) {
    if (!t.stopped && (ptrace(PTRACE_INTERRUPT, t.tid, 0, 0) != 0 || !wait_stop(t, deadline)))
      return fail(Errc::state, "thread " + std::to_string(t.tid) + " of process " +
                                   std::to_string(pid_) + " could not be stopped for a call");
    if (ptrace(PTRACE_GETREGS, t.tid, 0, &t.regs) != 0) return fail_errno("ptrace(PTRACE_GETREGS)");
    // A thread that has just set a mailbox's done flag may still be on its way out
    // of the stub (restoring registers): never aim a new stub, or its return, there.
    bool busy = in_our_code(t.regs.rip);
    if (!busy && check_locks) {
      auto r = inside_locked_code(t);
      if (!r) {
        resume_all();
        return std::unexpected(r.error());
      }
      busy = *r;
    }
    if (!busy) break;
    resume_all();
    if (Clock::now() + backoff > deadline)
      return fail(Errc::busy,
                  "thread " + std::to_string(t.tid) + " of process " + std::to_string(pid_) +
                      " stayed inside malloc or the dynamic loader (their locks may be held); "
                      "try again");
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(20'000));
  }

  // Where the thread resumes after the stub. A system call interrupted by the stop
  // would be restarted by the kernel by moving the ip back 2 bytes; we take that
  // over: the stub returns to the syscall instruction with the call number in rax.
  user_regs_struct regs = t.regs;
  Address resume = regs.rip;
  if (static_cast<long>(regs.orig_rax) >= 0 && is_restart_errno(static_cast<long>(regs.rax))) {
    resume = regs.rip - 2;
    regs.rax = static_cast<long>(regs.rax) == -516 ? SYS_restart_syscall : regs.orig_rax;
  }
  regs.orig_rax = ~0ull;  // no kernel restart logic on the way out of this stop
  const std::vector<std::uint8_t> stub = make_stub(resume);
  const std::uint64_t zero = 0;
  if (auto r = write_words({{done_at, zero}}); !r) {
    resume_all();
    return r;
  }
  if (auto r = write(stub_at, stub); !r) {
    resume_all();
    return r;
  }
  regs.rip = stub_at;
  if (ptrace(PTRACE_SETREGS, t.tid, 0, &regs) != 0) {
    resume_all();
    return fail_errno("ptrace(PTRACE_SETREGS) thread " + std::to_string(t.tid));
  }
  // From here on the stub owns the thread: whatever happens to the tool, it finishes
  // the call and resumes where it was.
  ptrace(PTRACE_CONT, t.tid, 0, 0);
  t.stopped = false;
  for (;;) {
    std::uint64_t done = 0;
    if (auto r = read(done_at, {reinterpret_cast<std::uint8_t*>(&done), 8}); !r) return r;
    if (done) return {};
    if (Clock::now() > deadline)
      return fail(Errc::timed_out, "a call in process " + std::to_string(pid_) + " (thread " +
                                       std::to_string(t.tid) + ") did not finish within " +
                                       std::to_string(options_.call_timeout.count()) +
                                       " ms; it finishes on its own later");
    pump_events();
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

Thread* pick_thread(std::vector<Thread>& threads, pid_t pid) {
  for (auto& t : threads)
    if (t.tid == pid) return &t;
  return threads.empty() ? nullptr : &threads.front();
}

// Creates the call area and the state region with a stub written into the slack
// after the end of an executable segment (bytes that belong to no code), using a
// scratch area far below the thread's stack pointer for the mailbox. The slack
// bytes are put back afterwards.
Result<void> RemoteTargetImpl::bootstrap() {
  Thread* t = pick_thread(threads_, pid_);
  if (!t) return fail(Errc::not_found, "process " + std::to_string(pid_) + " has no threads");
  auto maps = mappings();
  if (!maps) return std::unexpected(maps.error());

  // Slack: an executable file mapping whose segment ends before the mapping does.
  Address slack = 0;
  std::size_t slack_size = 0;
  const std::string root = "/proc/" + std::to_string(pid_) + "/root";
  for (const auto& m : *maps) {
    if (!m.executable() || m.path.empty() || m.path[0] != '/') continue;
    int fd = open((root + m.path).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    elf_version(EV_CURRENT);
    Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
    std::size_t n = 0;
    Address first_vaddr = 0;
    bool have_first = false;
    if (elf && elf_getphdrnum(elf, &n) == 0) {
      for (std::size_t i = 0; i < n; ++i) {
        GElf_Phdr ph;
        if (!gelf_getphdr(elf, static_cast<int>(i), &ph) || ph.p_type != PT_LOAD) continue;
        if (!have_first) first_vaddr = ph.p_vaddr - ph.p_offset, have_first = true;
        if (!(ph.p_flags & PF_X)) continue;
        // The mapping of this segment: file offset range matches m.offset.
        const Address seg_file_begin = ph.p_offset & ~Address{4095};
        if (seg_file_begin != m.offset) continue;
        const Address bias = m.begin - (ph.p_vaddr & ~Address{4095});
        const Address seg_end = bias + ph.p_vaddr + ph.p_filesz;
        if (seg_end < m.end && m.end - seg_end > slack_size) {
          slack = (seg_end + 15) & ~Address{15};
          slack_size = m.end - slack;
        }
      }
    }
    (void)first_vaddr;
    if (elf) elf_end(elf);
    close(fd);
    if (slack_size >= 1024) break;
  }
  if (slack_size < 512)
    return fail(Errc::unsupported, "no spare executable bytes found in process " +
                                       std::to_string(pid_) + " to start the engine there");

  // Scratch mailbox: 64 KiB below the thread's stack pointer, inside its stack.
  if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) != 0 ||
      !wait_stop(*t, Clock::now() + options_.stop_timeout))
    return fail(Errc::state, "thread " + std::to_string(t->tid) + " could not be stopped");
  if (ptrace(PTRACE_GETREGS, t->tid, 0, &t->regs) != 0) return fail_errno("ptrace(PTRACE_GETREGS)");
  const Address scratch = (t->regs.rsp - 65536) & ~Address{63};
  bool in_stack = false;
  for (const auto& m : *maps)
    if (t->regs.rsp >= m.begin && t->regs.rsp < m.end && scratch >= m.begin) in_stack = true;
  if (!in_stack) {
    resume_all();
    return fail(Errc::unsupported, "the stack of thread " + std::to_string(t->tid) +
                                       " has no room for the engine's bootstrap");
  }
  const Address name_at = scratch + 256;
  const Address mailbox = scratch;
  if (auto r =
          write(name_at, {reinterpret_cast<const std::uint8_t*>(kStateName), sizeof kStateName});
      !r) {
    resume_all();
    return r;
  }
  std::vector<std::uint8_t> saved(std::min<std::size_t>(slack_size, 2048));
  if (auto r = read(slack, saved); !r) {
    resume_all();
    return r;
  }
  const std::uint64_t none = ~std::uint64_t{0};
  const std::vector<SyscallStep> steps = {
      {SYS_mmap,
       {{0}, {kCallArea}, {PROT_READ | PROT_EXEC}, {MAP_PRIVATE | MAP_ANONYMOUS}, {none}, {0}}},
      {SYS_memfd_create, {{name_at}, {1 /* MFD_CLOEXEC */}, {0}, {0}, {0}, {0}}},
      {SYS_ftruncate, {{1, true}, {kStateSize}, {0}, {0}, {0}, {0}}},
      {SYS_mmap, {{0}, {kStateSize}, {PROT_READ | PROT_WRITE}, {MAP_SHARED}, {1, true}, {0}}},
      {SYS_close, {{1, true}, {0}, {0}, {0}, {0}, {0}}},
  };
  auto r = run_on_thread(
      *t, slack, mailbox + offsetof(Mailbox, done),
      [&](Address resume) { return syscall_stub(slack, mailbox, steps, resume); }, false);
  if (!r) return r;
  Mailbox box;
  if (auto rr = read(mailbox, {reinterpret_cast<std::uint8_t*>(&box), sizeof box}); !rr) return rr;
  // Put the slack bytes back once the thread has left the stub.
  for (int tries = 0; tries < 1000; ++tries) {
    if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) != 0 ||
        !wait_stop(*t, Clock::now() + options_.stop_timeout))
      break;
    user_regs_struct regs{};
    const bool left = ptrace(PTRACE_GETREGS, t->tid, 0, &regs) == 0 &&
                      !(regs.rip >= slack && regs.rip < slack + saved.size());
    if (left) (void)write(slack, saved);
    resume_all();
    if (left) break;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  auto ok = [](std::uint64_t v) { return v < ~std::uint64_t{4095}; };
  if (!ok(box.results[0]) || !ok(box.results[1]) || !ok(box.results[3]))
    return fail(Errc::system, "creating the engine's memory in process " + std::to_string(pid_) +
                                  " failed (mmap/memfd_create refused)");
  call_area_ = box.results[0];
  state_ = box.results[3];
  StateHeader h{};
  std::memcpy(h.magic, kStateMagic, sizeof kStateMagic);
  h.call_area = call_area_;
  h.blob_offset = kBlobOffset[0];
  if (auto rr = write(state_, {reinterpret_cast<const std::uint8_t*>(&h), sizeof h}); !rr)
    return rr;
  generation_ = 0;
  current_blob_ = 0;
  return {};
}

Result<std::vector<std::uint64_t>> RemoteTargetImpl::syscalls(
    const std::vector<SyscallStep>& steps) {
  if (!state_)
    if (auto r = bootstrap(); !r) return std::unexpected(r.error());
  Thread* t = pick_thread(threads_, pid_);
  if (!t) return fail(Errc::not_found, "process " + std::to_string(pid_) + " has no threads");
  const Address mailbox = state_ + kMailboxOffset;
  auto r = run_on_thread(
      *t, call_area_, mailbox + offsetof(Mailbox, done),
      [&](Address resume) { return syscall_stub(call_area_, mailbox, steps, resume); }, false);
  if (!r) return std::unexpected(r.error());
  Mailbox box;
  if (auto rr = read(mailbox, {reinterpret_cast<std::uint8_t*>(&box), sizeof box}); !rr)
    return std::unexpected(rr.error());
  return std::vector<std::uint64_t>(box.results, box.results + steps.size());
}

Result<std::uint64_t> RemoteTargetImpl::call(Address fn,
                                             std::initializer_list<std::uint64_t> args) {
  if (!state_)
    if (auto r = bootstrap(); !r) return std::unexpected(r.error());
  Thread* t = pick_thread(threads_, pid_);
  if (!t) return fail(Errc::not_found, "process " + std::to_string(pid_) + " has no threads");
  const Address mailbox = state_ + kMailboxOffset;
  std::vector<std::uint64_t> a(args);
  auto r = run_on_thread(
      *t, call_area_, mailbox + offsetof(Mailbox, done),
      [&](Address resume) { return call_stub(call_area_, mailbox, fn, a, resume); }, true);
  if (!r) return std::unexpected(r.error());
  Mailbox box;
  if (auto rr = read(mailbox, {reinterpret_cast<std::uint8_t*>(&box), sizeof box}); !rr)
    return std::unexpected(rr.error());
  return box.result;
}

Result<Address> RemoteTargetImpl::put_bytes(const void* data, std::size_t size) {
  if (!state_)
    if (auto r = bootstrap(); !r) return std::unexpected(r.error());
  if (size > kMailboxBytes - sizeof(Mailbox))
    return fail(Errc::invalid_argument, "call argument too large");
  const Address at = state_ + kMailboxOffset + 256;
  if (auto r = write(at, {static_cast<const std::uint8_t*>(data), size}); !r)
    return std::unexpected(r.error());
  return at;
}

Result<Address> RemoteTargetImpl::load_library(const std::string& path) {
  auto syms = Symbols::load(*this);
  if (!syms) return std::unexpected(syms.error());
  auto dlopen_sym = syms->find("dlopen", "/libc.so");
  if (!dlopen_sym) dlopen_sym = syms->find("dlopen");
  if (!dlopen_sym)
    return fail(Errc::unsupported,
                "process " + std::to_string(pid_) + " has no dlopen to load " + path);
  auto at = put_bytes(path.c_str(), path.size() + 1);
  if (!at) return std::unexpected(at.error());
  auto handle = call(dlopen_sym->address, {*at, RTLD_NOW});
  if (!handle) return std::unexpected(with_context(handle.error(), "loading " + path));
  if (*handle) return *handle;
  // Ask the target why: dlerror() returns its message.
  std::string why = "dlopen failed";
  if (auto dlerror_sym = syms->find("dlerror", "/libc.so")) {
    auto msg = call(dlerror_sym->address, {});
    if (msg && *msg) {
      char buf[512] = {};
      if (read(*msg, {reinterpret_cast<std::uint8_t*>(buf), sizeof buf - 1})) why = buf;
    }
  }
  return fail(Errc::invalid_argument,
              "cannot load " + path + " into process " + std::to_string(pid_) + ": " + why);
}

}  // namespace

Result<std::unique_ptr<RemoteTarget>> RemoteTarget::attach(pid_t pid,
                                                           const AttachOptions& options) {
  if (pid <= 0) return fail(Errc::invalid_argument, "invalid process id " + std::to_string(pid));
  if (pid == getpid()) return fail(Errc::invalid_argument, "use the local engine for this process");
  struct stat st;
  if (stat(("/proc/" + std::to_string(pid)).c_str(), &st) != 0)
    return fail(Errc::not_found, "no such process " + std::to_string(pid));
  // One dynamos at a time per target.
  const std::string lock_path = "/tmp/dynamos-" + std::to_string(pid) + ".lock";
  int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd >= 0 && flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    close(lock_fd);
    return fail(Errc::busy, "another dynamos is working on process " + std::to_string(pid));
  }
  auto t = std::make_unique<RemoteTargetImpl>(pid, options, lock_fd);
  if (auto r = t->init(); !r) return std::unexpected(r.error());
  return std::unique_ptr<RemoteTarget>(std::move(t));
}

}  // namespace dynamos::core
