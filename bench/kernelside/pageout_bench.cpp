// dynamos-bench-pageout: page-out and page-in rates (MiB/s) of a child's anonymous
// memory through process_madvise, on the swap this machine has (zram set up by
// scripts/zram-swap.sh when none is active, and removed again afterwards).
//   dynamos-bench-pageout [--mib N] [--repeat K]
// Per round: MADV_PAGEOUT of the whole region; demand page-in (the child writes one
// word per page); MADV_PAGEOUT again; MADV_WILLNEED; the child writes it again.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernelside/memory.hpp"
#include "kernelside/procfs.hpp"

namespace ks = dynamos::kernelside;
using Clock = std::chrono::steady_clock;

namespace {

struct Shared {
  std::atomic<int> command{0}, done{0};
  std::atomic<uintptr_t> address{0};
};

void fill(uint64_t* p, size_t words) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < words; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = (x & 0x0f0f0f0f0f0f0f0full) ^ i;
  }
}

[[noreturn]] void child(Shared* s, size_t bytes) {
  auto* p = static_cast<uint64_t*>(
      ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED) ::_exit(3);
  ::madvise(p, bytes, MADV_NOHUGEPAGE);
  fill(p, bytes / 8);
  s->address.store(reinterpret_cast<uintptr_t>(p));
  s->done.store(1);
  for (int seen = 1;;) {
    if (s->command.load() == 0) {
      ::usleep(50);
      continue;
    }
    // Writes, as an application does: a dirty page must be compressed again at the next
    // page-out (a clean one still in the swap cache would just be dropped).
    for (size_t i = 0; i < bytes / 8; i += 512)
      p[i] += 1;
    s->command.store(0);
    s->done.store(++seen);
  }
}

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

int run(const std::string& cmd) {
  return std::system(cmd.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 256;
  int repeat = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mib" && i + 1 < argc)
      mib = std::strtoul(argv[++i], nullptr, 10);
    else if (a == "--repeat" && i + 1 < argc)
      repeat = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: dynamos-bench-pageout [--mib N] [--repeat K]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "dynamos-bench-pageout: needs root (swap setup, pagemap)\n");
    return 1;
  }
  const std::string script = std::string(DYNAMOS_SOURCE_DIR) + "/scripts/zram-swap.sh";
  const std::string holder = std::to_string(::getpid());
  if (run(script + " up --holder " + holder) != 0) {
    std::fprintf(stderr, "dynamos-bench-pageout: swap setup failed\n");
    return 1;
  }
  const size_t bytes = mib << 20;
  auto* s = new (::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                        -1, 0)) Shared;
  pid_t pid = ::fork();
  if (pid == 0) child(s, bytes);
  while (s->done.load() != 1)
    ::usleep(1000);
  const ks::Range region{s->address.load(), bytes};
  auto touch = [&] {
    int before = s->done.load();
    auto t0 = Clock::now();
    s->command.store(1);
    while (s->done.load() == before) {
    }
    return Clock::now() - t0;
  };
  int status = 0;
  auto mem = ks::ProcessMemory::open(pid);
  auto pagemap = ks::Pagemap::open(pid);
  if (!mem || !pagemap) {
    std::fprintf(stderr, "dynamos-bench-pageout: %s\n",
                 (!mem ? mem.error() : pagemap.error()).message().c_str());
    status = 1;
  }
  std::vector<double> out_rates, demand_rates, willneed_rates, touch_after_rates;
  for (int r = 0; r < repeat && status == 0; ++r) {
    auto t0 = Clock::now();
    auto out = mem->advise({&region, 1}, ks::Advice::pageout);
    auto t_out = Clock::now() - t0;
    auto maj0 = ks::read_stat(pid)->majflt;
    auto t_demand = touch();
    auto maj1 = ks::read_stat(pid)->majflt;
    auto out2 = mem->advise({&region, 1}, ks::Advice::pageout);
    t0 = Clock::now();
    auto in = mem->advise({&region, 1}, ks::Advice::willneed);
    auto t_willneed = Clock::now() - t0;
    auto after_willneed = pagemap->count({&region, 1});
    auto maj2 = ks::read_stat(pid)->majflt;
    auto t_after = touch();
    auto maj3 = ks::read_stat(pid)->majflt;
    if (!out || !out2 || !in || !after_willneed) {
      std::fprintf(stderr, "dynamos-bench-pageout: advise failed\n");
      status = 1;
      break;
    }
    double m = static_cast<double>(mib);
    out_rates.push_back(m / seconds(t_out));
    demand_rates.push_back(m / seconds(t_demand));
    willneed_rates.push_back(m / seconds(t_willneed));
    touch_after_rates.push_back(m / seconds(t_after));
    std::printf(
        "round %d: pageout %6.0f MiB/s | demand page-in %6.0f MiB/s (%llu majflt) | "
        "willneed %6.0f MiB/s (pagemap after: %llu present, %llu swapped) then touch %6.0f MiB/s "
        "(%llu majflt)\n",
        r + 1, out_rates.back(), demand_rates.back(), static_cast<unsigned long long>(maj1 - maj0),
        willneed_rates.back(), static_cast<unsigned long long>(after_willneed->present),
        static_cast<unsigned long long>(after_willneed->swapped), touch_after_rates.back(),
        static_cast<unsigned long long>(maj3 - maj2));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  if (status == 0) {
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    std::printf(
        "median of %d rounds, %zu MiB: pageout %.0f MiB/s, demand page-in %.0f MiB/s, "
        "WILLNEED page-in %.0f MiB/s, touch after WILLNEED %.0f MiB/s\n",
        repeat, mib, median(out_rates), median(demand_rates), median(willneed_rates),
        median(touch_after_rates));
  }
  std::fflush(stdout);
  run(script + " down --holder " + holder);
  return status;
}
