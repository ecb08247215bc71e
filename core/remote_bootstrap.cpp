// The first remote call into a process: before the engine has memory of its own
// there, a stub written into the slack after an executable segment (bytes of no code,
// elf_slack) creates the call area and the state region, with a scratch mailbox far
// below the thread's stack pointer. The slack bytes are put back afterwards.
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <cstring>
#include <thread>

#include "core/elf_slack.hpp"
#include "core/target_remote_impl.hpp"

namespace dynamos::core::remote {

namespace {

// The system calls of the bootstrap: the call area, then the state region (a memfd
// named kStateName, sized and mapped shared, its descriptor closed again).
std::vector<SyscallStep> bootstrap_steps(Address name_at) {
  const std::uint64_t none = ~std::uint64_t{0};
  return {
      {SYS_mmap,
       {{0}, {kCallArea}, {PROT_READ | PROT_EXEC}, {MAP_PRIVATE | MAP_ANONYMOUS}, {none}, {0}}},
      {SYS_memfd_create, {{name_at}, {1 /* MFD_CLOEXEC */}, {0}, {0}, {0}, {0}}},
      {SYS_ftruncate, {{1, true}, {kStateSize}, {0}, {0}, {0}, {0}}},
      {SYS_mmap, {{0}, {kStateSize}, {PROT_READ | PROT_WRITE}, {MAP_SHARED}, {1, true}, {0}}},
      {SYS_close, {{1, true}, {0}, {0}, {0}, {0}, {0}}},
  };
}

}  // namespace

Result<void> RemoteTargetImpl::bootstrap() {
  Thread* t = threads_.pick(pid_);
  if (!t) return fail(Errc::not_found, "process " + std::to_string(pid_) + " has no threads");
  auto maps = mappings();
  if (!maps) return std::unexpected(maps.error());
  const Slack slack = find_elf_slack(pid_, *maps);
  if (slack.size < 512)
    return fail(Errc::unsupported, "no spare executable bytes found in process " +
                                       std::to_string(pid_) + " to start the engine there");

  // Scratch mailbox: 64 KiB below the thread's stack pointer, inside its stack.
  std::vector<std::uint8_t> saved(std::min<std::size_t>(slack.size, 2048));
  Address mailbox = 0;
  {
    ResumeGuard stopped(threads_);  // until the stub owns the thread, on every path
    if (!threads_.stop(*t, Clock::now() + options_.stop_timeout)) {
      if (threads_.exec_seen()) return exec_refusal(pid_);
      return fail(Errc::state, "thread " + std::to_string(t->tid) + " could not be stopped");
    }
    if (ptrace(PTRACE_GETREGS, t->tid, 0, &t->regs) != 0)
      return fail_errno("ptrace(PTRACE_GETREGS)");
    if (auto same = same_image(); !same) return same;
    mailbox = (t->regs.rsp - 65536) & ~Address{63};
    bool in_stack = false;
    for (const auto& m : *maps)
      if (t->regs.rsp >= m.begin && t->regs.rsp < m.end && mailbox >= m.begin) in_stack = true;
    if (!in_stack)
      return fail(Errc::unsupported, "the stack of thread " + std::to_string(t->tid) +
                                         " has no room for the engine's bootstrap");
    const Address name_at = mailbox + 256;
    if (auto r =
            write(name_at, {reinterpret_cast<const std::uint8_t*>(kStateName), sizeof kStateName});
        !r)
      return r;
    if (auto r = read(slack.at, saved); !r) return r;
    const std::vector<SyscallStep> steps = bootstrap_steps(name_at);
    slack_ = slack.at;  // ours while the stub may run there
    slack_size_ = saved.size();
    auto r = run_on_thread(
        *t, slack.at, mailbox + offsetof(Mailbox, done),
        [&](Address resume) { return syscall_stub(slack.at, mailbox, steps, resume); }, false);
    if (!r) return r;
  }
  Mailbox box;
  if (auto rr = read(mailbox, {reinterpret_cast<std::uint8_t*>(&box), sizeof box}); !rr) return rr;
  restore_slack(*t, slack.at, saved);

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
  h.owner_pid = static_cast<std::uint64_t>(pid_);
  if (auto rr = write(state_, {reinterpret_cast<const std::uint8_t*>(&h), sizeof h}); !rr)
    return rr;
  generation_ = 0;
  current_blob_ = 0;
  return {};
}

// Puts the slack bytes back once the thread has left the stub (it may still be
// restoring registers there after setting the done flag).
void RemoteTargetImpl::restore_slack(Thread& t, Address at,
                                     const std::vector<std::uint8_t>& saved) {
  for (int tries = 0; tries < 1000; ++tries) {
    bool left = false;
    {
      ResumeGuard stopped(threads_);
      if (!threads_.stop(t, Clock::now() + options_.stop_timeout)) return;
      user_regs_struct regs{};
      left = ptrace(PTRACE_GETREGS, t.tid, 0, &regs) == 0 &&
             !(regs.rip >= at && regs.rip < at + saved.size());
      if (left) (void)write(at, saved);
    }
    if (left) {
      slack_ = 0;
      slack_size_ = 0;
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace dynamos::core::remote
