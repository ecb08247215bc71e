// Coordinator scale: N simulated agents (light in-process peers over loopback TCP, on
// their own thread) and one synchronised switch round: PrepareSwitch to every node,
// every PrepareAck, SwitchAt with a common deadline, every SwitchAck. The iteration
// time is the round as gangd sees it, from its decision to the last acknowledgement.
// Targets (issue 18): at most 20 ms with 1,000 agents, 100 ms with 10,000.
//
//   build/bin/bench_gang_coordinator_scale --agents N --json [--rounds R]
//       [--frame-auth on|off|both]
//     one JSON object: round_ms_p50 (and p90, max, prepare, lead, skew, CPU per round)
//     with frame authentication on; with `both` (the default) the same figures
//     without it under "without_frame_auth", rounds of the two clusters interleaved so
//     that outside load hits both alike, and their ratio as "frame_auth_cost".
//   build/bin/bench_gang_coordinator_scale [--benchmark_filter=/1000]
//     Google Benchmark over 10, 100 and 1,000 agents, frame authentication on.
//
// Counters: prepare_ms (decision to last PrepareAck), lead_ms (SwitchAt to deadline,
// adaptive), skew_us (first to last agent switching), p50_ms/max_ms of the round,
// late (agents that got SwitchAt after the deadline), failed, cpu_ms (CPU time of the
// whole process, gangd plus every agent, per round).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "testkit/cluster_harness.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace std::chrono_literals;

namespace {

double ms(Nanos d) {
  return static_cast<double>(d.count()) / 1e6;
}

// Two descriptors an agent (both ends of its connection) and some to spare; as root the
// hard limit is raised too when it is lower.
void raise_fd_limit(int agents = 1000) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return;
  rlim_t want = 2 * static_cast<rlim_t>(agents) + 1024;
  if (r.rlim_max < want) {
    rlimit raised{want, want};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return;
  }
  if (r.rlim_cur < r.rlim_max) {
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
Result<void> start_cluster(test::Cluster& c, int agents, bool frame_auth = true) {
  std::vector<std::uint8_t> key(32, 7);
  auto secret = Secret::from_bytes(key);
  CoordinatorConfig cfg;
  for (int i = 0; i < agents; ++i)
    cfg.hosts.push_back({"sim" + std::to_string(i), 1, 0});
  cfg.secret = secret;
  cfg.frame_auth = frame_auth;
  cfg.run_quantum_loop = false;
  cfg.heartbeat = 1s;
  cfg.max_agent_connections = 2 * static_cast<std::size_t>(agents) + 64;
  cfg.log = [](const std::string& line) {
    if (line.find("refus") != std::string::npos || line.find("accept") != std::string::npos)
      std::cerr << "gangd: " << line << "\n";
  };
  if (auto ok = c.start_coordinator(cfg); !ok) return ok;
  for (int i = 0; i < agents; ++i)
    c.add_agent("sim" + std::to_string(i), secret);
  if (!c.wait_for(
          [&] { return c.coordinator->agents_connected() == static_cast<std::size_t>(agents); },
          60000ms))
    return fail(Errc::timed_out,
                "only " +
                    std::to_string(c.call([&] { return c.coordinator->agents_connected(); })) +
                    " of " + std::to_string(agents) + " simulated agents registered in 60 s");
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

// --- --json mode ---------------------------------------------------------------------

struct Sample {
  std::vector<double> round_ms, prepare_ms, lead_ms, skew_us;
  double cpu_s = 0;
  std::size_t failed = 0, late = 0;

  static double pick(std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
  }
  static double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v)
      s += x;
    return s / static_cast<double>(v.size());
  }
  nlohmann::json json() const {
    return {{"rounds", round_ms.size()},
            {"round_ms_p50", pick(round_ms, 0.5)},
            {"round_ms_p90", pick(round_ms, 0.9)},
            {"round_ms_max", pick(round_ms, 1.0)},
            {"prepare_ms_p50", pick(prepare_ms, 0.5)},
            {"lead_ms_mean", mean(lead_ms)},
            {"skew_us_mean", mean(skew_us)},
            {"cpu_ms_per_round", cpu_s * 1e3 / static_cast<double>(round_ms.size())},
            {"late", late},
            {"failed", failed}};
  }
};

// One cluster under measurement: its rounds and the CPU time they took.
struct Run {
  test::Cluster c{/*agents_on_own_thread=*/true};
  Sample sample;

  Result<void> round(int agents) {
    double cpu0 = cpu_seconds();
    auto s = c.await(c.coordinator->broadcast_round());
    sample.cpu_s += cpu_seconds() - cpu0;
    if (s.switched != static_cast<std::size_t>(agents))
      return fail(Errc::state, "a round reached " + std::to_string(s.switched) + " of " +
                                   std::to_string(agents) + " agents" +
                                   (s.errors.empty() ? "" : ": " + s.errors.front()));
    sample.round_ms.push_back(ms(s.total));
    sample.prepare_ms.push_back(ms(s.prepare_phase));
    sample.lead_ms.push_back(ms(s.lead));
    sample.skew_us.push_back(static_cast<double>(s.skew.count()) / 1e3);
    sample.late += s.late;
    sample.failed += s.failed;
    return {};
  }
};

int json_main(int agents, int rounds, const std::string& mode) {
  raise_fd_limit(agents * (mode == "both" ? 2 : 1));
  std::vector<bool> auths;
  if (mode != "off") auths.push_back(true);
  if (mode != "on") auths.push_back(false);
  std::vector<std::unique_ptr<Run>> runs;
  for (bool auth : auths) {
    runs.push_back(std::make_unique<Run>());
    if (auto ok = start_cluster(runs.back()->c, agents, auth); !ok) {
      std::cerr << "bench_gang_coordinator_scale: " << ok.error().message() << "\n";
      return 1;
    }
  }
  for (int i = 0; i < rounds + 3; ++i) {
    for (auto& r : runs) {
      auto ok = r->round(agents);
      if (!ok) {
        std::cerr << "bench_gang_coordinator_scale: " << ok.error().message() << "\n";
        return 1;
      }
      if (i < 3) r->sample = {};  // warm-up rounds adapt the lead
    }
  }
  nlohmann::json out = runs.front()->sample.json();
  out["agents"] = agents;
  out["frame_auth"] = static_cast<bool>(auths.front());
  if (runs.size() == 2) {
    out["without_frame_auth"] = runs.back()->sample.json();
    out["frame_auth_cost"] = {
        {"round_p50_ratio", out["round_ms_p50"].get<double>() /
                                out["without_frame_auth"]["round_ms_p50"].get<double>()},
        {"cpu_per_round_ratio", out["cpu_ms_per_round"].get<double>() /
                                    out["without_frame_auth"]["cpu_ms_per_round"].get<double>()}};
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

BENCHMARK(BM_SwitchRound)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->UseManualTime()
    ->Iterations(30)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  int agents = 0, rounds = 30;
  bool json = false;
  std::string mode = "both";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "bench_gang_coordinator_scale: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--agents")
      agents = std::atoi(value().c_str());
    else if (a == "--rounds")
      rounds = std::atoi(value().c_str());
    else if (a == "--frame-auth")
      mode = value();
    else if (a == "--json")
      json = true;
    else if (a.rfind("--benchmark", 0) != 0) {
      std::cerr << "bench_gang_coordinator_scale: unknown option " << a
                << " (--agents N --json [--rounds R] [--frame-auth on|off|both])\n";
      return 2;
    }
  }
  if (json || agents > 0) {
    if (agents <= 0 || rounds <= 0 || (mode != "on" && mode != "off" && mode != "both")) {
      std::cerr << "bench_gang_coordinator_scale: --agents and --rounds must be positive, "
                   "--frame-auth on, off or both\n";
      return 2;
    }
    return json_main(agents, rounds, mode);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
