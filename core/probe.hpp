// Built-in probes: a version that counts every call and times a sample of them,
// readable from outside while the target runs (performance monitoring injected
// into a running job).
//
// The fast path counts the call (lock xadd) and jumps to the version it wraps, so
// 63 of 64 calls pay one atomic add. Every 64th call takes the timed path: it
// builds a frame, copies up to 32 stack-argument slots so the callee sees its
// arguments where it expects them, reads the TSC, calls the wrapped version,
// reads the TSC again and adds the difference. The timed path has DWARF unwind
// information registered with the unwinder, so exceptions and backtraces pass
// through it. Mean time per call = ticks / timed calls / TSC frequency.
#pragma once

#include <cstdint>
#include <vector>

#include "base/error.hpp"
#include "core/near_memory.hpp"
#include "core/target.hpp"

namespace dynamos::core {

struct ProbeCode {
  Address code = 0;      // the trampoline: what the slot points at
  Address counters = 0;  // calls, timed calls, ticks (3 x u64), then the wrapped target
  Address eh_frame = 0;  // CIE + FDE for the timed path, for __register_frame
  std::size_t code_size = 0;
};

// Builds a probe wrapping `wrapped` near `near_to`, writes it into the target, and
// registers its unwind information there.
Result<ProbeCode> make_probe(Target& target, NearMemory& near, Address near_to, Address wrapped);

struct ProbeCounts {
  std::uint64_t calls = 0, timed = 0, ticks = 0;
};
Result<ProbeCounts> read_probe(Target& target, Address counters);

// TSC ticks per second on this machine, measured once against CLOCK_MONOTONIC.
double tsc_hz();

}  // namespace dynamos::core
