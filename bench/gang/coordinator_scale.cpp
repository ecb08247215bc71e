// Coordinator scale: N simulated agents (light in-process peers over loopback TCP, on
// their own thread) and one synchronised switch round: PrepareSwitch to every node,
// every PrepareAck, SwitchAt with a common deadline, every SwitchAck. The iteration
// time is the round as gangd sees it, from its decision to the last acknowledgement.
// Target (issue 7): at most 100 ms with 1,000 agents.
//
//   build/bin/bench_gang_coordinator_scale [--benchmark_filter=/1000]
//
// Counters: prepare_ms (decision to last PrepareAck), lead_ms (SwitchAt to deadline,
// adaptive), skew_us (first to last agent switching), p50_ms/max_ms of the round,
// late (agents that got SwitchAt after the deadline), failed, cpu_ms (CPU time of the
// whole process, gangd plus every agent, per round).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <algorithm>

#include "testkit/cluster_harness.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace std::chrono_literals;

namespace {

double ms(Nanos d) {
  return static_cast<double>(d.count()) / 1e6;
}

void raise_fd_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// A coordinator without a quantum loop and `agents` simulated agents registered with
// it; an error says what did not come up.
Result<void> start_cluster(test::Cluster& c, int agents) {
  std::vector<std::uint8_t> key(32, 7);
  auto secret = Secret::from_bytes(key);
  CoordinatorConfig cfg;
  for (int i = 0; i < agents; ++i)
    cfg.hosts.push_back({"sim" + std::to_string(i), 1, 0});
  cfg.secret = secret;
  cfg.run_quantum_loop = false;
  cfg.heartbeat = 1s;
  cfg.log = [](const std::string&) {};
  if (auto ok = c.start_coordinator(cfg); !ok) return ok;
  for (int i = 0; i < agents; ++i)
    c.add_agent("sim" + std::to_string(i), secret);
  if (!c.wait_for(
          [&] { return c.coordinator->agents_connected() == static_cast<std::size_t>(agents); },
          60000ms))
    return fail(Errc::timed_out, "not every simulated agent registered");
  return {};
}

// What the rounds measured, summed; reported as the counters above.
struct Totals {
  std::vector<double> round_ms;
  double prepare = 0, lead = 0, skew = 0, late = 0, failed = 0;

  void add(const RoundStats& s) {
    round_ms.push_back(ms(s.total));
    prepare += ms(s.prepare_phase);
    lead += ms(s.lead);
    skew += static_cast<double>(s.skew.count()) / 1e3;
    late += static_cast<double>(s.late);
    failed += static_cast<double>(s.failed);
  }

  void report(benchmark::State& state, double cpu_s) {
    // CPU time of both threads (gangd and all agents) per round: what a round costs
    // independent of how busy the machine is.
    double n = static_cast<double>(round_ms.size());
    state.counters["cpu_ms"] = cpu_s * 1e3 / n;
    std::sort(round_ms.begin(), round_ms.end());
    state.counters["p50_ms"] = round_ms[round_ms.size() / 2];
    state.counters["max_ms"] = round_ms.back();
    state.counters["prepare_ms"] = prepare / n;
    state.counters["lead_ms"] = lead / n;
    state.counters["skew_us"] = skew / n;
    state.counters["late"] = late;
    state.counters["failed"] = failed;
  }
};

void BM_SwitchRound(benchmark::State& state) {
  raise_fd_limit();
  const auto agents = static_cast<int>(state.range(0));
  test::Cluster c(/*agents_on_own_thread=*/true);
  if (auto ok = start_cluster(c, agents); !ok) {
    state.SkipWithError(ok.error().message().c_str());
    return;
  }
  for (int i = 0; i < 3; ++i)
    c.await(c.coordinator->broadcast_round());  // warm up, adapt lead

  Totals totals;
  double cpu0 = cpu_seconds();
  for (auto _ : state) {
    auto s = c.await(c.coordinator->broadcast_round());
    state.SetIterationTime(static_cast<double>(s.total.count()) / 1e9);
    totals.add(s);
    if (s.switched != static_cast<std::size_t>(agents)) {
      state.SkipWithError("a round did not reach every agent");
      break;
    }
  }
  if (!totals.round_ms.empty()) totals.report(state, cpu_seconds() - cpu0);
}

}  // namespace

BENCHMARK(BM_SwitchRound)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->UseManualTime()
    ->Iterations(30)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
