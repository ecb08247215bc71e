// Slack: bytes of an executable file mapping past the end of its code segment. They
// belong to no code, so the remote target's bootstrap can run a stub there before
// the engine has memory of its own in the process (and puts the bytes back after).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

#include "core/target.hpp"

namespace dynamos::core {

struct Slack {
  Address at = 0;  // 16-byte aligned
  std::size_t size = 0;
};

// The largest slack of the first executable file mapping of process `pid` (files read
// through /proc/PID/root) that has at least 1 KiB, else the largest seen; size 0 if
// none.
Slack find_elf_slack(pid_t pid, const std::vector<Mapping>& maps);

}  // namespace dynamos::core
