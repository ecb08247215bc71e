// dynamos-demo: the live-update engine changing a program while it runs.
//
// Four worker threads compute interest with demo_interest(), which has a bug. The
// demo loads a patch object with the fix, redirects the function in one update
// (the workers never stop for more than the rendezvous), counts calls per version,
// switches back and forth, reverts, and shows the original still callable.
#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/engine.hpp"

using namespace dynamos::core;
using namespace std::chrono_literals;

extern "C" __attribute__((noinline)) long demo_interest(long cents, int days) {
  // The bug: divides by 365 twice, so interest is almost always zero.
  return cents + cents * 5 * days / 36500 / 365;
}

namespace {

std::atomic<long> g_calls{0};
std::atomic<long> g_last{0};
std::atomic<bool> g_stop{false};

void worker() {
  long (*volatile fn)(long, int) = demo_interest;
  while (!g_stop.load(std::memory_order_relaxed)) {
    g_last.store(fn(100'000, 365), std::memory_order_relaxed);  // $1000.00 for a year at 5%
    g_calls.fetch_add(1, std::memory_order_relaxed);
  }
}

void show(const char* when) {
  const long before = g_calls.load();
  std::this_thread::sleep_for(300ms);
  const long rate = (g_calls.load() - before) * 10 / 3;
  std::printf("  %-34s $1000.00 after a year = $%ld.%02ld   (%ld calls/s)\n", when,
              g_last.load() / 100, g_last.load() % 100, rate);
}

int fail(const char* what, const dynamos::Error& e) {
  std::fprintf(stderr, "dynamos-demo: %s: %s\n", what, e.message().c_str());
  g_stop = true;
  return 1;
}

std::string patch_path(const char* argv0) {
  std::string self = argv0;
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) self.assign(buf, static_cast<std::size_t>(n));
  const auto slash = self.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : self.substr(0, slash);
  return dir + "/../lib/libdynamos_demo_patch.so";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    std::printf(
        "usage: dynamos-demo\n\n"
        "Shows the live-update engine fixing a function of this running program: four\n"
        "threads call it nonstop while a patch object is loaded, the function is\n"
        "redirected, versions are counted and switched, and the update is reverted.\n");
    return std::string(argv[1]) == "--help" ? 0 : 2;
  }
  std::printf("DynAMOS demo: updating a running program (pid %d)\n\n", getpid());
  std::vector<std::thread> workers;
  for (int i = 0; i < 4; ++i)
    workers.emplace_back(worker);
  struct Join {
    std::vector<std::thread>& t;
    ~Join() {
      g_stop = true;
      for (auto& th : t)
        th.join();
    }
  } join{workers};

  std::printf("1. four threads call demo_interest() nonstop; it has a bug:\n");
  show("running the original:");

  const std::string path = patch_path(argv[0]);
  void* patch = dlopen(path.c_str(), RTLD_NOW);
  if (!patch) {
    std::fprintf(stderr, "dynamos-demo: cannot load the patch %s: %s\n", path.c_str(), dlerror());
    return 1;
  }
  auto fixed = reinterpret_cast<Address>(dlsym(patch, "demo_interest_fixed"));

  std::printf("\n2. load %s and redirect demo_interest to demo_interest_fixed\n",
              path.substr(path.rfind('/') + 1).c_str());
  auto& engine = Engine::self();
  UpdateRequest fix = redirect_update("demo_interest", fixed, "fixed");
  fix.hijack.counted = true;
  const auto t0 = std::chrono::steady_clock::now();
  auto update = engine.apply(fix);
  if (!update) return fail("update", update.error());
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf(
      "   update %lu applied in %ld us (drain mode: running calls finish on the old code)\n",
      *update, static_cast<long>(us));
  show("running the fix:");

  auto point = engine.find(reinterpret_cast<Address>(demo_interest));
  if (!point) return fail("find", point.error());
  std::printf("\n3. both versions stay alive; switch between them adaptively\n");
  for (VersionId v : {VersionId{0}, VersionId{1}}) {
    if (auto r = engine.switch_version(*point, v); !r) return fail("switch", r.error());
    show(v == 0 ? "switched to the original:" : "switched to the fix:");
  }
  auto info = engine.info(*point);
  for (const auto& v : info->versions)
    std::printf("   version %u %-10s %12lu calls counted by its stub\n", v.id, v.name.c_str(),
                v.calls);

  std::printf(
      "\n4. revert update %lu in quiescent mode: it switches only at a moment when no\n"
      "   thread is inside (four threads almost always are), trying for 300 ms:\n",
      *update);
  auto q = engine.revert(*update, SafetyMode::quiescent, 300ms);
  if (q) {
    std::printf("   found such a moment and reverted\n");
  } else {
    std::printf("   %s\n", q.error().message().c_str());
    std::printf("   revert in drain mode instead: new calls take the original at once\n");
    if (auto r = engine.revert(*update); !r) return fail("revert", r.error());
  }
  show("after the revert:");
  auto original = engine.original<long(long, int)>(*point);
  std::printf("   the original stays callable through its clone: $%ld.%02ld\n",
              original(100'000, 365) / 100, original(100'000, 365) % 100);
  std::printf("\nDone: the program never stopped; %ld calls ran during the demo.\n",
              g_calls.load());
  return 0;
}
