#include "core/near_memory.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>

namespace dynamos::core {
namespace {

std::uint64_t distance(Address a, Address b) {
  return a > b ? a - b : b - a;
}

}  // namespace

Result<NearMemory::Block> NearMemory::allocate(Address near, std::size_t code_size,
                                               std::size_t data_size) {
  code_size = (code_size + 15) & ~std::size_t{15};
  data_size = (data_size + 63) & ~std::size_t{63};  // a cache line per slot group
  if (code_size > kRegion || data_size > kRegion)
    return fail(Errc::invalid_argument, "near block too large");
  for (auto& a : arenas_) {
    if (distance(a.base, near) > kReach) continue;
    if (a.code_used + code_size > kRegion || a.data_used + data_size > kRegion) continue;
    Block b{a.base + a.code_used, a.base + kRegion + a.data_used};
    a.code_used += code_size;
    a.data_used += data_size;
    return b;
  }
  auto arena = new_arena(near);
  if (!arena) return std::unexpected(arena.error());
  Arena& a = **arena;
  Block b{a.base, a.base + kRegion};
  a.code_used = code_size;
  a.data_used = data_size;
  return b;
}

Result<NearMemory::Arena*> NearMemory::new_arena(Address near) {
  auto maps = target_.mappings();
  if (!maps) return std::unexpected(maps.error());
  const std::size_t size = 2 * kRegion;
  const Address low = near > kReach ? near - kReach : 0x100000;
  const Address high = near + kReach;

  // Candidate places: the end of each gap's low side and the start of its high side,
  // nearest to the function first.
  std::vector<Address> candidates;
  Address prev_end = 0x100000;  // stay clear of mmap_min_addr and the null page area
  auto consider_gap = [&](Address gap_begin, Address gap_end) {
    if (gap_end <= gap_begin || gap_end - gap_begin < size) return;
    const Address first = (gap_begin + 0xFFFF) & ~Address{0xFFFF};
    const Address last = (gap_end - size) & ~Address{0xFFFF};
    if (first > last) return;
    for (Address c : {first, last}) {
      if (c >= low && c + size <= high) candidates.push_back(c);
    }
    // A gap spanning the function's neighbourhood: the closest point inside it.
    if (near > first && near < last) {
      const Address c = near & ~Address{0xFFFF};
      if (c >= first && c <= last) candidates.push_back(c);
    }
  };
  for (const auto& m : *maps) {
    if (m.begin > prev_end) consider_gap(prev_end, m.begin);
    prev_end = std::max(prev_end, m.end);
  }
  consider_gap(prev_end, Address{0x7ffffffff000});
  std::sort(candidates.begin(), candidates.end(),
            [&](Address a, Address b) { return distance(a, near) < distance(b, near); });

  for (Address c : candidates) {
    auto code = target_.map_fixed(c, kRegion, PROT_READ | PROT_EXEC);
    if (!code) continue;
    auto data = target_.map_fixed(c + kRegion, kRegion, PROT_READ | PROT_WRITE);
    if (!data) continue;  // the code half stays mapped; harmless and rare
    arenas_.push_back(Arena{c, 0, 0});
    return &arenas_.back();
  }
  return fail(Errc::refused,
              "no free memory within +-2 GiB of " + hex(near) + " for the clone and stub");
}

}  // namespace dynamos::core
