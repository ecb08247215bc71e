// Slurm's hostlist syntax, as in SLURM_JOB_NODELIST, `scontrol show hostnames` and
// `srun -w`:
//
//   n1,n2,m7          plain names, comma-separated
//   n[1-4,7]          n1 n2 n3 n4 n7 (ranges and single numbers inside brackets)
//   n[01-03]          n01 n02 n03 (a range keeps the width of its lower bound)
//   r[1-2]n[1-2]      r1n1 r1n2 r2n1 r2n2 (several brackets: every combination, the
//                     last bracket varying fastest, as Slurm prints them)
//   n[1-2],gpu[3-4]   several groups; commas inside brackets belong to the bracket
//
// Order is kept and duplicates stay (a hostfile adds the slots of a repeated host).
// Errors say what is wrong and where; an expansion beyond `max_hosts` names is an
// error, not an allocation of millions of strings.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace dynamos::gang {

inline constexpr std::size_t kMaxHostlist = 65536;

// The host names `text` stands for, in order.
Result<std::vector<std::string>> expand_hostlist(std::string_view text,
                                                 std::size_t max_hosts = kMaxHostlist);

// Whether `text` uses brackets (plain names need no expansion).
inline bool is_hostlist(std::string_view text) {
  return text.find_first_of("[],") != std::string_view::npos;
}

}  // namespace dynamos::gang
