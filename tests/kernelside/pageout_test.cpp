// Paging a child's memory from outside on the real kernel, with swap on zram:
// page-out of a 256 MiB anonymous region (pagemap shows it swapped), demand page-in
// counted as major faults, WILLNEED bringing it back so that touching it costs no
// major fault, and proactive reclaim of the child's group. Prints the rates (MiB/s)
// that docs/kernelside.md reports.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "kernelside/memory.hpp"
#include "kernelside/procfs.hpp"
#include "support.hpp"

namespace ks = dynamos::kernelside;
using namespace ks::test;
using namespace std::chrono_literals;

namespace {

constexpr size_t kMiB = 1 << 20;
constexpr size_t kRegion = 256 * kMiB;

enum Command { kIdle = 0, kTouch = 1, kGo = 2, kWrite = 3 };

// Fills memory with data that compresses about like application data (zram stores
// zero-filled and repeated pages specially, which would flatter the rates): small
// pseudo-random numbers in 64-bit words, about 2:1 with lzo.
void fill(uint64_t* p, size_t words) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < words; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = (x & 0x0f0f0f0f0f0f0f0full) ^ i;
  }
}

// The child: maps and fills the region, then reads pages on command.
void child_main(Shared* s) {
  // Allocate only once in the test's group: v1 charges memory where it was first
  // touched and does not move the charge with the process.
  while (s->command.load() != kGo)
    ::usleep(100);
  s->command.store(kIdle);
  auto* p = static_cast<uint64_t*>(
      ::mmap(nullptr, kRegion + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED) ::_exit(3);
  // A hole right after the region: an unmapped range for the advice to skip.
  ::munmap(reinterpret_cast<char*>(p) + kRegion, 4096);
  ::madvise(p, kRegion, MADV_NOHUGEPAGE);  // 4 KiB pages, so page counts are exact
  fill(p, kRegion / 8);
  s->address.store(reinterpret_cast<uintptr_t>(p));
  s->done.store(1);
  int seen = 1;
  for (;;) {
    int command = s->command.load();
    if (command != kTouch && command != kWrite) {
      ::usleep(50);
      continue;
    }
    // value = offset, counter = length: read (or write) one word per page.
    auto* base = reinterpret_cast<volatile uint64_t*>(reinterpret_cast<char*>(p) + s->value.load());
    uint64_t sum = 0;
    for (size_t off = 0; off < s->counter.load() / 8; off += 4096 / 8) {
      sum += base[off];
      if (command == kWrite) base[off] = sum;
    }
    s->value.store(sum);
    s->command.store(kIdle);
    s->done.store(++seen);
  }
}

// Asks the child to read (or write) [offset, offset+length) and waits; the time it took.
std::chrono::nanoseconds touch(Shared* s, size_t offset, size_t length, Command how = kTouch) {
  int before = s->done.load();
  s->value.store(offset);
  s->counter.store(length);
  auto t0 = std::chrono::steady_clock::now();
  s->command.store(how);
  while (s->done.load() == before) {
  }
  return std::chrono::steady_clock::now() - t0;
}

double mib_per_s(size_t bytes, std::chrono::nanoseconds t) {
  return static_cast<double>(bytes) / kMiB / std::chrono::duration<double>(t).count();
}

uint64_t majflt(pid_t pid) {
  auto s = ks::read_stat(pid);
  if (!s) ADD_FAILURE() << s.error().message();
  return s ? s->majflt : 0;
}

}  // namespace

TEST(KernelsideMemory, PageOutAndBackOfA256MiBRegion) {
  KERNELSIDE_REQUIRE_ROOT();
  SwapGuard swap;
  ASSERT_TRUE(swap.ok()) << "could not set up swap: " << swap.output();
  auto info = ASSERT_OK(ks::swap_info());
  ASSERT_TRUE(info.present) << "no swap after scripts/zram-swap.sh up";
  ASSERT_GE(info.free_bytes, kRegion) << "not enough free swap for the test";

  auto layout = ASSERT_OK(ks::Layout::detect());
  ScopedGroup group(
      ASSERT_OK(ks::Group::create(layout, unique_group_name(), {ks::Controller::memory})));
  SharedMemory shm;
  Child child([&] { child_main(shm.get()); });
  ASSERT_OK_VOID(group->attach(child.pid()));
  shm->command.store(kGo);
  ASSERT_TRUE(wait_until([&] { return shm->done.load() == 1; }, 20s))
      << "child did not fill its memory";
  const ks::Range region{shm->address.load(), kRegion};
  const uint64_t pages = kRegion / ks::page_size();

  auto pagemap = ASSERT_OK(ks::Pagemap::open(child.pid()));
  auto resident = ASSERT_OK(pagemap.count({&region, 1}));
  EXPECT_EQ(resident.present, pages) << "the filled region is not fully resident";
  // The region is among the child's anonymous mappings, as the paging extension finds them.
  auto anon = ks::anonymous_ranges(ASSERT_OK(ks::read_maps(child.pid())));
  bool found = false;
  for (auto& r : anon)
    found |= r.start <= region.start && region.end() <= r.end();
  EXPECT_TRUE(found) << "the region is not listed as anonymous memory";

  // Page-out, as 2,049 ranges (three process_madvise batches of at most 1,024), one of
  // them unmapped.
  std::vector<ks::Range> pieces;
  for (size_t off = 0; off < kRegion; off += 128 * 1024)
    pieces.push_back({region.start + off, 128 * 1024});
  pieces.insert(pieces.begin() + 1500, ks::Range{region.end(), 4096});
  auto memory = ASSERT_OK(ks::ProcessMemory::open(child.pid()));
  auto t0 = std::chrono::steady_clock::now();
  auto out = ASSERT_OK(memory.advise(pieces, ks::Advice::pageout));
  auto pageout_time = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(out.bytes, kRegion) << "every mapped range advised";
  EXPECT_EQ(out.ranges_skipped, 1u) << "the unmapped range is skipped and counted";
  EXPECT_GE(out.calls, 3u);
  auto swapped = ASSERT_OK(pagemap.count({&region, 1}));
  EXPECT_GE(swapped.swapped, pages * 95 / 100) << "pagemap: " << swapped.present << " present, "
                                               << swapped.swapped << " swapped of " << pages;
  auto swapped_runs = ASSERT_OK(pagemap.swapped_runs({&region, 1}));
  EXPECT_GE(ks::total_bytes(swapped_runs), kRegion * 95 / 100);

  // Demand page-in of the first 64 MiB: one major fault per page (zram reads synchronously).
  const size_t demand = 64 * kMiB;
  uint64_t m0 = majflt(child.pid());
  auto demand_time = touch(shm.get(), 0, demand);
  uint64_t demand_faults = majflt(child.pid()) - m0;
  EXPECT_GE(demand_faults, demand / ks::page_size() / 2)
      << "touching swapped pages should fault them in";

  // WILLNEED over the other 192 MiB, most recent... here simply in order; then touching
  // it costs (almost) no major fault.
  const ks::Range rest{region.start + demand, kRegion - demand};
  t0 = std::chrono::steady_clock::now();
  auto in = ASSERT_OK(memory.advise({&rest, 1}, ks::Advice::willneed));
  auto willneed_time = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(in.bytes, rest.length);
  uint64_t m1 = majflt(child.pid());
  auto after_willneed_time = touch(shm.get(), demand, rest.length);
  uint64_t willneed_faults = majflt(child.pid()) - m1;
  EXPECT_LE(willneed_faults, rest.length / ks::page_size() / 20)
      << "after WILLNEED, touching the range still took " << willneed_faults << " major faults";
  auto back = ASSERT_OK(pagemap.count({&region, 1}));
  EXPECT_GE(back.present, pages * 99 / 100) << "region not resident again";

  // Write tracking for working-set recency: after clear_refs(soft_dirty), pagemap marks
  // only the pages written since.
  ASSERT_OK_VOID(ks::clear_refs(child.pid(), ks::ClearRefs::soft_dirty));
  EXPECT_EQ(ks::total_bytes(ASSERT_OK(pagemap.soft_dirty_runs({&region, 1}))), 0u);
  auto cold = ASSERT_OK(memory.advise({&region, 1}, ks::Advice::cold));
  EXPECT_EQ(cold.bytes, kRegion);
  touch(shm.get(), 8 * kMiB, kMiB, kWrite);
  auto written = ASSERT_OK(pagemap.soft_dirty_runs({&region, 1}));
  if (ASSERT_OK(ks::soft_dirty_available())) {
    ASSERT_EQ(written.size(), 1u) << "one written run expected";
    EXPECT_EQ(written[0], (ks::Range{region.start + 8 * kMiB, kMiB}));
  } else {
    std::printf("soft-dirty: not tracked by this kernel (CONFIG_MEM_SOFT_DIRTY off)\n");
    EXPECT_TRUE(written.empty()) << "soft-dirty reported missing, yet pagemap shows written pages";
  }

  // Proactive reclaim of the child's group pushes part of it out again.
  auto reclaim = ASSERT_OK(group->reclaim(64 * kMiB));
  auto again = ASSERT_OK(pagemap.count({&region, 1}));
  EXPECT_GE(reclaim.reclaimed(), 32 * kMiB)
      << "reclaim by " << ks::reclaim_method_name(reclaim.method);
  EXPECT_GE(again.swapped, 32 * kMiB / ks::page_size());
  EXPECT_EQ(ASSERT_OK(group->memory_max()), std::nullopt) << "reclaim must restore the limit";

  // The caller's own memory: MADV_POPULATE_READ faults swapped pages back in without
  // touching them from user space.
  {
    const size_t own_bytes = 16 * kMiB;
    auto* own = static_cast<uint64_t*>(
        ::mmap(nullptr, own_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(own, MAP_FAILED);
    fill(own, own_bytes / 8);
    const ks::Range own_range{reinterpret_cast<uintptr_t>(own), own_bytes};
    auto self = ASSERT_OK(ks::ProcessMemory::open(::getpid()));
    ASSERT_OK(self.advise({&own_range, 1}, ks::Advice::pageout));
    auto self_map = ASSERT_OK(ks::Pagemap::open(::getpid()));
    auto own_out = ASSERT_OK(self_map.count({&own_range, 1}));
    uint64_t self_maj = majflt(::getpid());
    ASSERT_OK_VOID(ks::populate_read(own, own_bytes));
    auto own_in = ASSERT_OK(self_map.count({&own_range, 1}));
    uint64_t own_pages = own_bytes / ks::page_size();
    EXPECT_GE(own_out.swapped, own_pages * 95 / 100) << "own memory was not paged out";
    EXPECT_EQ(own_in.present, own_pages) << "MADV_POPULATE_READ left pages out";
    EXPECT_GE(majflt(::getpid()) - self_maj, own_pages / 2)
        << "populating swapped pages should count major faults";
    ::munmap(own, own_bytes);
  }

  std::printf(
      "page-out  (MADV_PAGEOUT, 256 MiB):        %7.0f MiB/s (%.0f ms)\n"
      "page-in   (demand faults, 64 MiB):        %7.0f MiB/s (%llu major faults)\n"
      "page-in   (MADV_WILLNEED, 192 MiB):       %7.0f MiB/s, then touching it %7.0f MiB/s (%llu "
      "major faults)\n"
      "reclaim   (%s, asked 64 MiB): %llu MiB (%llu MiB of it by MADV_PAGEOUT)\n",
      mib_per_s(kRegion, pageout_time),
      std::chrono::duration<double, std::milli>(pageout_time).count(),
      mib_per_s(demand, demand_time), static_cast<unsigned long long>(demand_faults),
      mib_per_s(rest.length, willneed_time), mib_per_s(rest.length, after_willneed_time),
      static_cast<unsigned long long>(willneed_faults), ks::reclaim_method_name(reclaim.method),
      static_cast<unsigned long long>(reclaim.reclaimed() / kMiB),
      static_cast<unsigned long long>(reclaim.pageout_bytes / kMiB));
}
