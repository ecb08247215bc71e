// The remote target's code generator: stubs that a thread of the target is sent
// through to make system calls or call a function for the tool, then resume where it
// was. Each stub saves every register and the extended FPU state, runs its body,
// leaves the results in a mailbox, restores everything and jumps back.
//
// These are the only raw opcode bytes of the remote target, all in remote_stubs.cpp
// with their disassembly. core/x86_writer has no push/pop, mov or xsave forms; the
// jump back uses its jmp_abs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/target.hpp"

namespace dynamos::core::remote {

// Where a stub leaves its results (in the target; rbx points at it in the stub).
struct Mailbox {
  std::uint64_t done;        // set to 1 as the stub's last store before restoring
  std::uint64_t result;      // rax after a function call
  std::uint64_t results[6];  // rax after each system call step
};

// An argument of a stub step: an immediate, or a result an earlier step stored.
struct Arg {
  std::uint64_t value = 0;
  bool from_result = false;  // value is the index of the result slot
};

struct SyscallStep {
  long nr;
  Arg args[6];
};

// A stub at `at` that runs system calls one after another, storing each result in
// mailbox.results[i], then sets mailbox.done and jumps to `resume`.
std::vector<std::uint8_t> syscall_stub(Address at, Address mailbox,
                                       const std::vector<SyscallStep>& steps, Address resume);

// A stub at `at` that calls fn(args) with the System V ABI (at most 6 arguments),
// stores rax in mailbox.result, sets mailbox.done and jumps to `resume`.
std::vector<std::uint8_t> call_stub(Address at, Address mailbox, Address fn,
                                    const std::vector<std::uint64_t>& args, Address resume);

}  // namespace dynamos::core::remote
