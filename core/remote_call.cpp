// Remote calls: one thread of the target is sent through a stub (remote_stubs) that
// makes system calls or calls a function and leaves the results in the mailbox of the
// state region, while the other threads run on. The calls the engine needs (mmap,
// dlopen, dlsym, __register_frame) are built on it.
#include <dlfcn.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <algorithm>
#include <functional>
#include <set>
#include <thread>

#include "core/symbols.hpp"
#include "core/target_remote_impl.hpp"

namespace dynamos::core::remote {

namespace {

bool is_restart_errno(long rax) {
  // -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK
  return rax == -512 || rax == -513 || rax == -514 || rax == -516;
}

// The malloc family, wherever it is defined: a program or library that brings its own
// allocator (interposing malloc) holds its lock there, and dlopen calls malloc: sending a
// thread that holds it through dlopen would deadlock that thread for good.
bool allocator_entry(const std::string& name) {
  static const std::set<std::string> names = {
      "malloc",         "free",          "calloc", "realloc", "reallocarray",       "memalign",
      "posix_memalign", "aligned_alloc", "valloc", "pvalloc", "malloc_usable_size", "cfree",
      "_Znwm",          "_ZdlPv",        "_Znam",  "_ZdaPv"};
  return names.count(name) != 0;
}

// The functions of libc that may hold the malloc or the dynamic loader's locks.
bool takes_locks(const std::string& name) {
  static const std::set<std::string> locked = {
      "malloc",          "free",     "calloc",         "realloc",
      "reallocarray",    "memalign", "posix_memalign", "aligned_alloc",
      "valloc",          "pvalloc",  "malloc_trim",    "mallinfo",
      "mallinfo2",       "dlopen",   "dlclose",        "dlsym",
      "dlvsym",          "dladdr",   "dladdr1",        "dlinfo",
      "dl_iterate_phdr", "fork",     "_Fork",          "__libc_dlopen_mode"};
  return locked.count(name) != 0;
}

// Where the thread resumes after the stub, and the registers it is sent with. A
// system call interrupted by the stop would be restarted by the kernel by moving the
// ip back 2 bytes; we take that over: the stub returns to the syscall instruction
// with the call number in rax.
std::pair<Address, user_regs_struct> resume_point(user_regs_struct regs) {
  Address resume = regs.rip;
  if (static_cast<long>(regs.orig_rax) >= 0 && is_restart_errno(static_cast<long>(regs.rax))) {
    resume = regs.rip - 2;
    regs.rax = static_cast<long>(regs.rax) == -516 ? SYS_restart_syscall : regs.orig_rax;
  }
  regs.orig_rax = ~0ull;  // no kernel restart logic on the way out of this stop
  return {resume, regs};
}

}  // namespace

// Is the thread inside malloc & co. or the dynamic loader (which may hold their
// locks)? Judged from its instruction pointer and a conservative stack scan.
Result<bool> RemoteTargetImpl::inside_locked_code(const Thread& t) {
  if (!lock_ranges_ready_) {
    auto syms = symbols();
    if (!syms) return std::unexpected(syms.error());
    for (const auto& obj : syms->objects()) {
      const bool loader = obj.path.find("/ld-linux") != std::string::npos;
      const bool libc = obj.path.find("/libc.so") != std::string::npos;
      for (const auto& s : obj.functions)
        if (loader || (libc && takes_locks(s.name)) || allocator_entry(s.name))
          lock_ranges_.push_back({s.address, s.address + std::max<std::size_t>(s.size, 1)});
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
  // A return address points just past its call; a word equal to the very end of a
  // range is rather a pointer to what follows it (the function after malloc, say, whose
  // address the start-up code keeps on the main thread's stack), or the return of a
  // call that never returns: neither is an activation inside the range.
  auto returns_into = [&](Address v) {
    return std::any_of(lock_ranges_.begin(), lock_ranges_.end(),
                       [&](const AddressRange& r) { return r.contains(v - 1) && v != r.end; });
  };
  for (ssize_t k = 0; n > 0 && k < n / 8; ++k)
    if (returns_into(stack[k])) return true;
  return false;
}

Result<ResumeGuard> RemoteTargetImpl::stop_for_call(Thread& t, Clock::time_point deadline,
                                                    bool check_locks) {
  auto backoff = std::chrono::microseconds(200);
  for (;;) {
    {
      ResumeGuard stopped(threads_);
      if (!t.stopped && !threads_.stop(t, deadline)) {
        if (threads_.exec_seen()) return exec_refusal(pid_);
        return fail(Errc::state, "thread " + std::to_string(t.tid) + " of process " +
                                     std::to_string(pid_) + " could not be stopped for a call");
      }
      if (ptrace(PTRACE_GETREGS, t.tid, 0, &t.regs) != 0)
        return fail_errno("ptrace(PTRACE_GETREGS)");
      if (auto same = same_image(); !same) return std::unexpected(same.error());
      // Checked while the thread is stopped: it cannot enter seccomp now, and a filter
      // could kill the process for the stub's system calls.
      if (auto ok = check_workable(pid_, t.tid); !ok) return std::unexpected(ok.error());
      // A thread that has just set a mailbox's done flag may still be on its way out
      // of the stub (restoring registers): never aim a new stub, or its return, there.
      bool busy = in_our_code(t.regs.rip);
      if (!busy && check_locks) {
        auto r = inside_locked_code(t);
        if (!r) return std::unexpected(r.error());
        busy = *r;
      }
      if (!busy) return stopped;
    }  // busy: resumed here, before waiting for it to leave
    if (Clock::now() + backoff > deadline)
      return fail(Errc::busy,
                  "thread " + std::to_string(t.tid) + " of process " + std::to_string(pid_) +
                      " stayed inside malloc or the dynamic loader (their locks may be held); "
                      "try again");
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::microseconds(20'000));
  }
}

Result<void> RemoteTargetImpl::run_on_thread(Thread& t, Address stub_at, Address done_at,
                                             const MakeStub& make_stub, bool check_locks) {
  const auto deadline = Clock::now() + options_.call_timeout;
  auto stopped = stop_for_call(t, deadline, check_locks);
  if (!stopped) return std::unexpected(stopped.error());
  auto [resume, regs] = resume_point(t.regs);
  const std::vector<std::uint8_t> stub = make_stub(resume);
  if (auto r = write_words({{done_at, 0}}); !r) return r;
  if (auto r = write(stub_at, stub); !r) return r;
  regs.rip = stub_at;
  if (ptrace(PTRACE_SETREGS, t.tid, 0, &regs) != 0)
    return fail_errno("ptrace(PTRACE_SETREGS) thread " + std::to_string(t.tid));
  // From here on the stub owns the thread: whatever happens to the tool, it finishes
  // the call and resumes where it was.
  ptrace(PTRACE_CONT, t.tid, 0, 0);
  t.stopped = false;
  stopped->release();
  for (;;) {
    std::uint64_t done = 0;
    if (auto r = read(done_at, {reinterpret_cast<std::uint8_t*>(&done), 8}); !r) {
      if (auto same = same_image(); !same) return same;
      return r;
    }
    if (done) return {};
    if (Clock::now() > deadline)
      return fail(Errc::timed_out, "a call in process " + std::to_string(pid_) + " (thread " +
                                       std::to_string(t.tid) + ") did not finish within " +
                                       std::to_string(options_.call_timeout.count()) +
                                       " ms; it finishes on its own later");
    if (auto same = same_image(); !same) return same;  // also passes signals on
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

Result<std::vector<std::uint64_t>> RemoteTargetImpl::syscalls(
    const std::vector<SyscallStep>& steps) {
  if (!state_)
    if (auto r = bootstrap(); !r) return std::unexpected(r.error());
  Thread* t = threads_.pick(pid_);
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
  Thread* t = threads_.pick(pid_);
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
  auto syms = symbols();
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

Result<void> RemoteTargetImpl::register_unwind_info(Address eh_frame) {
  auto syms = symbols();
  if (!syms) return std::unexpected(syms.error());
  auto reg = syms->find("__register_frame", "libgcc_s");
  if (!reg) return fail(Errc::unsupported, "no unwinder loaded in process " + std::to_string(pid_));
  auto r = call(reg->address, {eh_frame});
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<Address> RemoteTargetImpl::runtime_address(std::string_view name) {
  auto syms = symbols();
  if (!syms) return std::unexpected(syms.error());
  auto dlsym_sym = syms->find("dlsym", "/libc.so");
  if (!dlsym_sym)
    return fail(Errc::unsupported, "process " + std::to_string(pid_) + " has no dlsym");
  const std::string n(name);
  auto at = put_bytes(n.c_str(), n.size() + 1);
  if (!at) return std::unexpected(at.error());
  auto r = call(dlsym_sym->address, {0 /* RTLD_DEFAULT */, *at});
  if (!r) return std::unexpected(r.error());
  if (!*r) return fail(Errc::not_found, "process " + std::to_string(pid_) + " cannot resolve " + n);
  return *r;
}

}  // namespace dynamos::core::remote
