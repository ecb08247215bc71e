// Who a process is, and whether a requester may attach to it.
//
// A root tool (the node agent, or `dynamos patch` run by root) acts for a user. The
// kernel's own ptrace checks are skipped for root, so the engine applies them for the
// user itself (ptrace access mode "attach, real credentials", Documentation of
// ptrace(2)): the target's real, effective and saved ids must all be the requester's,
// it holds no capabilities, and it is dumpable. Between the owner check and the
// attach the process may change (exec a setuid or file-capability program, or exit
// and have its pid reused): the identity read at the check is compared with the one
// read after the attach, when every later exec is reported (PTRACE_O_TRACEEXEC).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

#include "base/error.hpp"

namespace dynamos::core {

// The user a tool attaches for. Root (uid 0) may attach to anything the tool can.
struct Requester {
  uid_t uid = 0;
  std::optional<gid_t> gid;  // unknown: the target's group ids must agree with each other
};

// What identifies a process and its rights, read from /proc/PID.
struct ProcessIdentity {
  std::uint64_t start_time = 0;  // clock ticks after boot (stat field 22): tells pid reuse
  dev_t exe_dev = 0;             // the executable (/proc/PID/exe), changed by an exec
  ino_t exe_ino = 0;
  uid_t uid[4] = {};  // real, effective, saved, file system
  gid_t gid[4] = {};
  std::uint64_t cap_prm = 0;  // permitted and effective capability sets
  std::uint64_t cap_eff = 0;
  bool dumpable = true;  // PR_GET_DUMPABLE == 1 (see read_process_identity)
};

// Refuses (Errc::unsupported, naming why) a process the engine cannot work in without
// risk to it: its main thread has exited (pthread_exit: /proc/PID/maps and mem are
// empty then), or thread `tid` (0: the main thread) runs under seccomp, strict or a
// filter, which may kill the process for the mmap or dlopen the engine makes there.
Result<void> check_workable(pid_t pid, pid_t tid = 0);

// Reads the identity of process `pid`. Errc::not_found when it is gone.
Result<ProcessIdentity> read_process_identity(pid_t pid);

// Whether `now` is still the process that `before` described: same start time (no pid
// reuse) and same executable (no exec of another program). Errc::not_permitted naming
// what changed.
Result<void> check_same_process(pid_t pid, const ProcessIdentity& before,
                                const ProcessIdentity& now);

// Whether `who` may attach to a process of identity `id`, as the kernel would decide for
// that user: every uid the requester's, group ids the requester's (or, when unknown, all
// equal: no setgid program), no permitted or effective capabilities, dumpable. Always
// true for root. Errc::not_permitted naming the reason.
Result<void> check_may_attach(pid_t pid, const ProcessIdentity& id, const Requester& who);

}  // namespace dynamos::core
