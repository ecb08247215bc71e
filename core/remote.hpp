// Reaching another process: the remote target. Threads are seized with ptrace
// (PTRACE_SEIZE, never PTRACE_O_EXITKILL: if the tool dies, the kernel detaches and
// the target runs on), stopped with PTRACE_INTERRUPT only for the moment code is
// written, and memory is written through /proc/PID/mem.
//
// Remote calls (mmap, dlopen) never hijack registers in a way the target depends on
// the tool to undo: the chosen thread is sent through a generated stub that saves
// every register (and the extended FPU state), makes the call, leaves the result in
// a mailbox, restores everything and jumps back to where the thread was. If the
// tool is killed at any point, the stub still finishes and the thread resumes.
//
// The engine's state lives in the target, in a shared memfd mapping named
// "dynamos-state", so that later invocations (dynamos updates, revert) see it. A new
// state is written beside the current one and made current by the same single
// process_vm_writev that stores the update's version slots.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "core/remote_identity.hpp"
#include "core/target.hpp"

namespace dynamos::core {

struct AttachOptions {
  std::chrono::milliseconds stop_timeout{1000};  // for each stop of all threads
  std::chrono::milliseconds call_timeout{5000};  // for each remote call
  // The user the tool acts for (core/remote_identity.hpp); unset: the tool's real ids.
  std::optional<Requester> requester;
  // The identity the caller's owner check saw; unset: read by attach before seizing.
  // Attach refuses a process that is no longer that one (pid reused, another program).
  std::optional<ProcessIdentity> expect;
};

class RemoteTarget : public Target {
 public:
  // Seizes every thread of `pid` (without stopping them). Refused with a clear
  // error: no such process, not permitted (for the requester, by the rules of
  // core/remote_identity.hpp, checked again once seized), no longer the process that
  // was checked, or another dynamos already working on it. Any exec of the target
  // while attached detaches it and fails every later operation.
  static Result<std::unique_ptr<RemoteTarget>> attach(pid_t pid, const AttachOptions& options = {});

  // Calls `fn(args...)` in the target on one of its threads, while the others run.
  // Waits until the thread is neither inside malloc nor inside the dynamic loader
  // (so the call cannot deadlock on a lock that thread holds), retrying until the
  // call timeout.
  virtual Result<std::uint64_t> call(Address fn, std::initializer_list<std::uint64_t> args) = 0;

  // dlopen(path, RTLD_NOW) in the target; the error text of dlerror() on failure.
  virtual Result<Address> load_library(const std::string& path) = 0;

  // Copies bytes into the target's mailbox (for call arguments); returns their address.
  virtual Result<Address> put_bytes(const void* data, std::size_t size) = 0;

  // `e`, met while working on the target, told as what really happened when the
  // process executed a new program or exited meanwhile (a vanished thread is only the
  // symptom of that). Waits a moment for an exec under way to finish.
  virtual Error explain(Error e) = 0;

  // Detaches from every thread. Also done by the destructor, and by the kernel if
  // the tool dies.
  virtual void detach() = 0;
};

}  // namespace dynamos::core
