// Memory for clones, stubs and version slots within +-2 GiB of the functions they
// serve, so a 5-byte jmp rel32 reaches them and they reach RIP-relative data.
// An arena is a code region (read+execute, written through the target) followed by
// a data region (read+write: slots and counters), carved out by bump allocation.
// Nothing is freed: patch points live as long as the process.
#pragma once

#include <cstdint>
#include <vector>

#include "base/error.hpp"
#include "core/target.hpp"

namespace dynamos::core {

class NearMemory {
 public:
  explicit NearMemory(Target& target) : target_(target) {}

  struct Block {
    Address code = 0;  // `code_size` bytes of executable memory
    Address data = 0;  // `data_size` bytes of writable memory, zeroed
  };
  // One block whose code and data both lie within `reach` bytes of `near` (and so
  // of each other's RIP-relative range). Errc::refused when no gap is free there.
  Result<Block> allocate(Address near, std::size_t code_size, std::size_t data_size);

  static constexpr std::uint64_t kReach =
      (1ull << 31) - (64ull << 20);  // margin for the arena size
  static constexpr std::size_t kRegion = 64 * 1024;

  // Bytes mapped so far (both halves of every arena).
  std::size_t mapped_bytes() const { return arenas_.size() * 2 * kRegion; }

  struct Arena {
    Address base = 0;  // code at base, data at base + kRegion
    std::size_t code_used = 0;
    std::size_t data_used = 0;
  };
  // For engines whose state outlives them (remote targets): save and restore arenas.
  const std::vector<Arena>& arenas() const { return arenas_; }
  void restore(std::vector<Arena> arenas) { arenas_ = std::move(arenas); }

 private:
  Result<Arena*> new_arena(Address near);

  Target& target_;
  std::vector<Arena> arenas_;
};

}  // namespace dynamos::core
