// The engine's state region in a remote target: a shared memfd mapping named
// "dynamos-state" that every later invocation of the tool finds and reads. Its header
// says where the tool's call stubs run and which of two state blobs is current; a
// new state is written into the other blob and made current by storing the header's
// blob fields together with the update's version slots.
//
// Everything read from here is the target's memory, which the target (or anything
// else) may have overwritten: the header is checked before any field of it is used,
// and a malformed one is refused with an error, never followed.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/target.hpp"

namespace dynamos::core::remote {

inline constexpr std::size_t kStateSize = 1 << 20;
inline constexpr std::size_t kMailboxOffset = 4096;  // done flag, results, argument bytes
inline constexpr std::size_t kMailboxBytes = 4096;
inline constexpr std::size_t kBlobOffset[2] = {8192, 8192 + 520192};
inline constexpr std::size_t kBlobMax = 520192;
inline constexpr std::size_t kCallArea = 64 * 1024;  // RX memory for call stubs
inline constexpr char kStateMagic[16] = "DYNAMOS-STATE1";
inline constexpr char kStateName[] = "dynamos-state";
static_assert(kBlobOffset[1] + kBlobMax <= kStateSize);

struct StateHeader {
  char magic[16];
  std::uint64_t call_area;
  std::uint64_t generation;
  std::uint64_t blob_offset;
  std::uint64_t blob_length;
  // The process the region was made in (0: made by an older version). The mapping is
  // shared, so a forked child carries its parent's region: patching the child through
  // it would rewrite the parent's record of its updates.
  std::uint64_t owner_pid;
};

// The header of a region whose bootstrap was killed before it wrote one (all zero).
bool is_unwritten(const StateHeader& h);

// Checks the magic and the current blob's place and size (Errc::version_mismatch for
// another format, Errc::protocol for a malformed header, naming the field).
Result<void> check_state_header(const StateHeader& h, pid_t pid);
// Refuses a region made in another process than `pid` (Errc::unsupported: a forked child).
Result<void> check_state_owner(const StateHeader& h, pid_t pid);
// Checks that the call area is inside an anonymous executable mapping: the tool
// writes stubs there and sends threads through them.
Result<void> check_call_area(const StateHeader& h, const std::vector<Mapping>& maps, pid_t pid);

// Which of the two blobs a checked header names as current.
inline int current_blob(const StateHeader& h) {
  return h.blob_offset == kBlobOffset[1] ? 1 : 0;
}

}  // namespace dynamos::core::remote
