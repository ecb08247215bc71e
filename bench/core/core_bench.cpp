// dynamos-bench-core: what a live update costs the code it changes.
//
//   call/plain        bench_work called directly
//   call/redirect     bench_redirected, hijacked in drain mode to bench_work:
//                     entry jmp -> stub -> jmp [slot] -> bench_work
//   call/counted      the same through a counting trampoline (lock inc per call)
//   call/probed       the same through a probe (counts every call, times 1 in 64)
//   switch/slot       one adaptive version switch (an atomic store)
//   update/quiescent  a 4-function update in quiescent mode while 4 threads are busy
//
// After the runs it prints the ratios redirect/plain and counted/plain (medians of
// the repetitions, CPU time of the calling thread) against the targets 1.03 and 1.15.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <optional>
#include <thread>

#include "core/engine.hpp"

using namespace dynamos::core;

extern "C" {
long bench_work(long);
long bench_redirected(long);
long bench_counted(long);
long bench_switched(long);
long bench_probed(long);
long bench_q0(long), bench_q1(long), bench_q2(long), bench_q3(long);
long bench_q0_v2(long), bench_q1_v2(long), bench_q2_v2(long), bench_q3_v2(long);
}

namespace {

Address addr(auto* fn) {
  return reinterpret_cast<Address>(fn);
}

void die(const char* what, const dynamos::Error& e) {
  std::fprintf(stderr, "dynamos-bench-core: %s: %s\n", what, e.message().c_str());
  std::exit(1);
}

void setup_redirects() {
  auto& engine = Engine::self();
  if (auto r = engine.apply(redirect_update("bench_redirected", addr(bench_work))); !r)
    die("redirect bench_redirected", r.error());
  UpdateRequest counted = redirect_update("bench_counted", addr(bench_work));
  counted.hijack.counted = true;
  if (auto r = engine.apply(counted); !r) die("redirect bench_counted", r.error());
  auto probed = engine.hijack("bench_probed");
  if (!probed) die("hijack bench_probed", probed.error());
  auto probe = engine.add_probe(*probed);
  if (!probe) die("probe bench_probed", probe.error());
  if (auto r = engine.switch_version(*probed, *probe); !r) die("switch to the probe", r.error());
}

template <long (*Fn)(long)>
void call(benchmark::State& state) {
  long (*volatile fn)(long) = Fn;
  long x = 1;
  for (auto _ : state) {
    x = fn(x);
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(call<bench_work>)->Name("call/plain");
BENCHMARK(call<bench_redirected>)->Name("call/redirect");
BENCHMARK(call<bench_counted>)->Name("call/counted");
BENCHMARK(call<bench_probed>)->Name("call/probed");

void switch_slot(benchmark::State& state) {
  auto& engine = Engine::self();
  static PatchPointId point = [&] {
    auto p = engine.hijack("bench_switched");
    if (!p) die("hijack bench_switched", p.error());
    if (auto v = engine.add_version(*p, addr(bench_work), "work"); !v)
      die("add version", v.error());
    return *p;
  }();
  VersionId v = 0;
  for (auto _ : state) {
    v ^= 1;
    if (auto r = engine.switch_version(point, v); !r) die("switch", r.error());
  }
  (void)engine.switch_version(point, 0);
}
BENCHMARK(switch_slot)->Name("switch/slot");

void update_quiescent(benchmark::State& state) {
  auto& engine = Engine::self();
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int i = 0; i < 4; ++i)
    busy.emplace_back([&] {
      long x = 0;
      while (!stop.load(std::memory_order_relaxed))
        benchmark::DoNotOptimize(x = bench_work(x));
    });
  UpdateRequest req;
  req.mode = SafetyMode::quiescent;
  req.redirects = {{"bench_q0", 0, addr(bench_q0_v2), "v2"},
                   {"bench_q1", 0, addr(bench_q1_v2), "v2"},
                   {"bench_q2", 0, addr(bench_q2_v2), "v2"},
                   {"bench_q3", 0, addr(bench_q3_v2), "v2"}};
  std::optional<UpdateId> applied;
  for (auto _ : state) {
    // Alternate: apply the update, then revert it (each a 4-function quiescent switch).
    if (!applied) {
      auto id = engine.apply(req);
      if (!id) die("quiescent update", id.error());
      applied = *id;
    } else {
      if (auto r = engine.revert(*applied, SafetyMode::quiescent); !r) die("revert", r.error());
      applied.reset();
    }
  }
  if (applied) (void)engine.revert(*applied);
  stop = true;
  for (auto& t : busy)
    t.join();
}
BENCHMARK(update_quiescent)->Name("update/quiescent")->Unit(benchmark::kMicrosecond)->UseRealTime();

// Keeps each benchmark's median, then prints the ratios the issue sets targets for.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs)
      if (r.aggregate_name == "median" ||
          (r.aggregate_name.empty() && !medians_.count(r.run_name.function_name)))
        medians_[r.run_name.function_name] = r.GetAdjustedCPUTime();
  }
  void print_ratios() const {
    auto get = [&](const char* n) { return medians_.count(n) ? medians_.at(n) : 0.0; };
    const double plain = get("call/plain");
    if (plain <= 0) return;
    // CPU time: what the calling thread itself spent, unaffected by other processes
    // taking the CPU away (real time on a shared 2-core machine is mostly their noise).
    std::printf("\nratios (median CPU time per call):\n");
    auto line = [&](const char* name, double target) {
      const double v = get(name);
      if (v <= 0) return;
      std::printf("  %-14s / call/plain = %.3f  (target <= %.2f: %s)\n", name, v / plain, target,
                  v / plain <= target ? "met" : "MISSED");
    };
    line("call/redirect", 1.03);
    line("call/counted", 1.15);
    line("call/probed", 1.5);
  }

 private:
  std::map<std::string, double> medians_;
};

}  // namespace

int main(int argc, char** argv) {
  setup_redirects();
  std::vector<char*> args(argv, argv + argc);
  bool has_reps = false;
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]).starts_with("--benchmark_repetitions")) has_reps = true;
  static char reps[] = "--benchmark_repetitions=5";
  static char agg[] = "--benchmark_report_aggregates_only=true";
  if (!has_reps) {
    args.push_back(reps);
    args.push_back(agg);
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 2;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios();
  benchmark::Shutdown();
  return 0;
}
