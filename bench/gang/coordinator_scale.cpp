// Coordinator scale: N simulated agents and one synchronised switch round of the real
// coordinator (gangd's Coordinator, its round path unchanged): a SwitchOrder with the
// round's deadline to every node, every SwitchAck. The iteration time is the
// round as gangd sees it, from its decision to the last acknowledgement. Targets
// (issue 18): at most 20 ms with 1,000 agents, 100 ms with 10,000.
//
// What the agents simulate: each is a real AgentSession (the agent side of the protocol,
// its authentication and frame tags) over loopback TCP whose switch_now records the
// plan and returns (no cgroup is frozen). Real agents run on hosts of their own and
// switch in parallel; here they share the threads of their processes and switch one
// after another, so the skew (first to last switching) and the tail of the round
// measure the simulation's agents as well as the coordinator.
//
//   build/bin/bench_gang_coordinator_scale --agents N --json [--rounds R]
//       [--frame-auth on|off|both] [--agent-procs P] [--heartbeat-ms MS]
//     one JSON object: round_ms_p50 (and p90, max, send, lead, skew, the CPU time of
//     gangd's thread and of the agents per round) with frame authentication on; with
//     `both` (the default) the same figures without it under "without_frame_auth",
//     rounds of the two clusters interleaved so that outside load hits both alike (run
//     one after the other when two clusters' descriptors do not fit the limit), and
//     their ratio as "frame_auth_cost". The agents run in P child processes (default 1)
//     of one thread each, so that gangd's descriptors and CPU are its own.
//   build/bin/bench_gang_coordinator_scale [--benchmark_filter=/1000]
//     Google Benchmark over 10, 100 and 1,000 agents in-process (agents on a second
//     thread), frame authentication on.
//
// Counters: send_ms (decision to the last SwitchOrder sent), lead_ms (first plan sent to
// the deadline, adaptive), skew_us (first to last agent switching), p50_ms/max_ms of
// the round, late (agents that got their plan after the deadline), failed, cpu_ms (CPU
// time per round).
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "kernelside/limits.hpp"
#include "kernelside/spawn.hpp"
#include "testkit/cluster_harness.hpp"

using namespace dynamos;
using namespace dynamos::gang;
using namespace std::chrono_literals;

namespace {

double ms(Nanos d) {
  return static_cast<double>(d.count()) / 1e6;
}

// Two descriptors an agent when both ends of its connection are in this process, and
// some to spare; as root the hard limit is raised too where that is permitted.
void raise_fd_limit(int agents = 1000) {
  (void)kernelside::raise_open_files(2 * static_cast<std::uint64_t>(agents) + 1024);
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

Secret bench_secret() {
  std::vector<std::uint8_t> key(32, 7);
  return Secret::from_bytes(key);
}

std::string sim_name(int i) {
  return "sim" + std::to_string(i);
}

// A coordinator without a quantum loop for `agents` simulated nodes.
Result<void> start_coordinator(test::Cluster& c, int agents, bool frame_auth,
                               Nanos heartbeat = 1s) {
  CoordinatorConfig cfg;
  for (int i = 0; i < agents; ++i)
    cfg.hosts.push_back({sim_name(i), 1, 0});
  cfg.secret = bench_secret();
  cfg.frame_auth = frame_auth;
  cfg.run_quantum_loop = false;
  cfg.heartbeat = heartbeat;
  cfg.max_agent_connections = 2 * static_cast<std::size_t>(agents) + 64;
  cfg.log = [](const std::string& line) {
    if (line.find("refus") != std::string::npos || line.find("accept") != std::string::npos)
      std::cerr << "gangd: " << line << "\n";
  };
  return c.start_coordinator(cfg);
}

// Waits until every agent registered; an error says how many did.
Result<void> wait_registered(test::Cluster& c, int agents, std::chrono::seconds timeout) {
  if (c.wait_for(
          [&] { return c.coordinator->agents_connected() == static_cast<std::size_t>(agents); },
          timeout))
    return {};
  return fail(Errc::timed_out,
              "only " + std::to_string(c.call([&] { return c.coordinator->agents_connected(); })) +
                  " of " + std::to_string(agents) + " simulated agents registered in " +
                  std::to_string(timeout.count()) + " s");
}

// A coordinator and `agents` in-process simulated agents registered with it.
Result<void> start_cluster(test::Cluster& c, int agents, bool frame_auth = true) {
  if (auto ok = start_coordinator(c, agents, frame_auth); !ok) return ok;
  for (int i = 0; i < agents; ++i)
    c.add_agent(sim_name(i), bench_secret());
  return wait_registered(c, agents, 60s);
}

// What the rounds measured, summed; reported as the counters above.
struct Totals {
  std::vector<double> round_ms;
  double send = 0, lead = 0, skew = 0, late = 0, failed = 0;

  void add(const RoundStats& s) {
    round_ms.push_back(ms(s.total));
    send += ms(s.send);
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
    state.counters["send_ms"] = send / n;
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

// --- agent processes ------------------------------------------------------------------

// The agents' side (--serve-agents PORT FIRST COUNT on|off): simulated agents sim<FIRST>
// .. sim<FIRST+COUNT-1> on this process's main thread, until it is killed.
int serve_agents(std::uint16_t port, int first, int count, bool frame_auth) {
  (void)kernelside::raise_open_files(static_cast<std::uint64_t>(count) + 256);
  asio::io_context io{1};
  std::vector<std::unique_ptr<test::RecordingNode>> nodes;
  std::vector<std::shared_ptr<AgentSession>> sessions;
  for (int i = first; i < first + count; ++i) {
    nodes.push_back(std::make_unique<test::RecordingNode>());
    AgentConfig cfg;
    cfg.coordinator_port = port;
    cfg.node = sim_name(i);
    cfg.secret = bench_secret();
    cfg.frame_auth = frame_auth;
    cfg.reconnect_min = 20ms;
    cfg.reconnect_max = 200ms;
    cfg.log = [](log::Level level, const std::string& line) {
      if (level <= log::Level::error) std::cerr << "agent: " << line << "\n";
    };
    sessions.push_back(AgentSession::create(io.get_executor(), cfg, *nodes.back()));
    sessions.back()->start();
  }
  io.run();
  return 0;
}

// CPU time of a process's main thread (ns), from /proc/PID/schedstat; 0 when unreadable.
std::uint64_t main_thread_cpu_ns(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/schedstat");
  std::uint64_t ns = 0;
  in >> ns;
  return ns;
}

// CPU time of the calling thread (ns).
std::uint64_t thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// --- --json mode ---------------------------------------------------------------------

struct Sample {
  std::vector<double> round_ms, send_ms, lead_ms, skew_us;
  double gangd_cpu_ms = 0, agents_cpu_ms = 0;
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
    double n = static_cast<double>(round_ms.size());
    return {{"rounds", round_ms.size()},
            {"round_ms_p50", pick(round_ms, 0.5)},
            {"round_ms_p90", pick(round_ms, 0.9)},
            {"round_ms_max", pick(round_ms, 1.0)},
            {"send_ms_p50", pick(send_ms, 0.5)},
            {"lead_ms_mean", mean(lead_ms)},
            {"skew_us_mean", mean(skew_us)},
            {"gangd_cpu_ms_per_round", gangd_cpu_ms / n},
            {"agents_cpu_ms_per_round", agents_cpu_ms / n},
            {"cpu_ms_per_round", (gangd_cpu_ms + agents_cpu_ms) / n},
            {"late", late},
            {"failed", failed}};
  }
};

// One cluster under measurement: gangd's coordinator on this process's io thread, its
// agents in child processes; its rounds and the CPU time they took.
struct Run {
  test::Cluster c;
  std::vector<pid_t> agent_pids;
  Sample sample;

  ~Run() { stop(); }

  Result<void> start(int agents, int procs, bool frame_auth, Nanos heartbeat) {
    if (auto ok = start_coordinator(c, agents, frame_auth, heartbeat); !ok) return ok;
    auto port = c.call([&] { return c.coordinator->port(); });
    for (int p = 0, first = 0; p < procs; ++p) {
      int count = agents / procs + (p < agents % procs ? 1 : 0);
      kernelside::SpawnOptions o;
      o.argv = {"/proc/self/exe",      "--serve-agents",      std::to_string(port),
                std::to_string(first), std::to_string(count), frame_auth ? "on" : "off"};
      o.die_with_parent = true;
      auto pid = kernelside::spawn(o);
      if (!pid) return std::unexpected(with_context(pid.error(), "starting simulated agents"));
      agent_pids.push_back(*pid);
      first += count;
    }
    return wait_registered(c, agents, 120s);
  }

  // The agents go first: gangd closing their links would make them log and reconnect.
  void stop() {
    for (pid_t pid : std::exchange(agent_pids, {})) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    c.shutdown();
  }

  std::uint64_t agents_cpu_ns() const {
    std::uint64_t sum = 0;
    for (pid_t pid : agent_pids)
      sum += main_thread_cpu_ns(pid);
    return sum;
  }

  Result<void> round(int agents) {
    auto gangd0 = c.call(thread_cpu_ns);
    auto agents0 = agents_cpu_ns();
    auto s = c.await(c.coordinator->broadcast_round());
    sample.gangd_cpu_ms += static_cast<double>(c.call(thread_cpu_ns) - gangd0) / 1e6;
    sample.agents_cpu_ms += static_cast<double>(agents_cpu_ns() - agents0) / 1e6;
    if (s.switched != static_cast<std::size_t>(agents))
      return fail(Errc::state, "a round reached " + std::to_string(s.switched) + " of " +
                                   std::to_string(agents) + " agents" +
                                   (s.errors.empty() ? "" : ": " + s.errors.front()));
    sample.round_ms.push_back(ms(s.total));
    sample.send_ms.push_back(ms(s.send));
    sample.lead_ms.push_back(ms(s.lead));
    sample.skew_us.push_back(static_cast<double>(s.skew.count()) / 1e3);
    sample.late += s.late;
    sample.failed += s.failed;
    return {};
  }
};

struct JsonOptions {
  int agents = 0, rounds = 30, procs = 1, heartbeat_ms = 1000;
  std::string mode = "both";
};

// Runs o.rounds measured rounds (after 3 warm-up rounds that adapt the lead) on each
// cluster: interleaved, or one cluster after the other (each started when its turn
// comes and stopped after its rounds).
Result<void> measure(const JsonOptions& o, std::vector<std::unique_ptr<Run>>& runs,
                     const std::vector<bool>& auths, bool interleaved) {
  auto start = [&](std::size_t i) -> Result<void> {
    runs[i] = std::make_unique<Run>();
    return runs[i]->start(o.agents, o.procs, auths[i], std::chrono::milliseconds(o.heartbeat_ms));
  };
  auto rounds = [&](std::size_t i, int k) -> Result<void> {
    if (auto ok = runs[i]->round(o.agents); !ok) return ok;
    if (k < 3) runs[i]->sample = {};  // warm-up rounds adapt the lead
    return {};
  };
  runs.resize(auths.size());
  if (interleaved) {
    for (std::size_t i = 0; i < auths.size(); ++i)
      if (auto ok = start(i); !ok) return ok;
    for (int k = 0; k < o.rounds + 3; ++k)
      for (std::size_t i = 0; i < runs.size(); ++i)
        if (auto ok = rounds(i, k); !ok) return ok;
    return {};
  }
  for (std::size_t i = 0; i < auths.size(); ++i) {
    if (auto ok = start(i); !ok) return ok;
    for (int k = 0; k < o.rounds + 3; ++k)
      if (auto ok = rounds(i, k); !ok) return ok;
    runs[i]->stop();  // its descriptors go before the next cluster's come
  }
  return {};
}

int json_main(const JsonOptions& o) {
  std::vector<bool> auths;
  if (o.mode != "off") auths.push_back(true);
  if (o.mode != "on") auths.push_back(false);
  // gangd's end of every connection is here, the agents' ends in their processes.
  auto lim =
      kernelside::raise_open_files(auths.size() * static_cast<std::uint64_t>(o.agents) + 512);
  std::uint64_t per_proc = static_cast<std::uint64_t>((o.agents + o.procs - 1) / o.procs) + 256;
  if (lim && (lim->soft < static_cast<std::uint64_t>(o.agents) + 512 || lim->soft < per_proc)) {
    std::cerr << "bench_gang_coordinator_scale: " << o.agents << " agents need about "
              << o.agents + 512 << " descriptors in gangd's process and " << per_proc
              << " in each agents' process; the limit is " << lim->soft
              << " (more --agent-procs split the agents' side only)\n";
    return 1;
  }
  bool interleaved =
      auths.size() == 1 ||
      (lim && lim->soft >= auths.size() * static_cast<std::uint64_t>(o.agents) + 512);
  std::vector<std::unique_ptr<Run>> runs;
  if (auto ok = measure(o, runs, auths, interleaved); !ok) {
    std::cerr << "bench_gang_coordinator_scale: " << ok.error().message() << "\n";
    return 1;
  }
  nlohmann::json out = runs.front()->sample.json();
  out["agents"] = o.agents;
  out["agent_processes"] = o.procs;
  out["frame_auth"] = static_cast<bool>(auths.front());
  out["heartbeat_ms"] = o.heartbeat_ms;
  out["simulated"] =
      "agents: real AgentSessions (protocol, authentication, frame tags) over loopback TCP in " +
      std::to_string(o.procs) +
      " process(es) of one thread; switch_now records the plan, nothing is frozen; they "
      "switch one after another on their thread where real agents switch in parallel";
  if (runs.size() == 2) {
    out["interleaved"] = interleaved;
    out["without_frame_auth"] = runs.back()->sample.json();
    out["frame_auth_cost"] = {
        {"round_p50_ratio", out["round_ms_p50"].get<double>() /
                                out["without_frame_auth"]["round_ms_p50"].get<double>()},
        {"gangd_cpu_per_round_ratio",
         out["gangd_cpu_ms_per_round"].get<double>() /
             out["without_frame_auth"]["gangd_cpu_ms_per_round"].get<double>()},
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
  if (argc == 6 && std::string(argv[1]) == "--serve-agents")
    return serve_agents(static_cast<std::uint16_t>(std::atoi(argv[2])), std::atoi(argv[3]),
                        std::atoi(argv[4]), std::string(argv[5]) == "on");
  JsonOptions o;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "bench_gang_coordinator_scale: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::cout << "usage: bench_gang_coordinator_scale --agents N --json [--rounds R (30)]\n"
                   "         [--frame-auth on|off|both (both)] [--agent-procs P (1)]\n"
                   "         [--heartbeat-ms MS (1000)]\n"
                   "  One synchronised switch round of gangd's coordinator with N simulated\n"
                   "  agents over loopback TCP; prints one JSON object (round_ms_p50 ...).\n"
                   "       bench_gang_coordinator_scale [--benchmark_filter=...]\n"
                   "  Google Benchmark over 10, 100 and 1,000 agents in one process.\n";
      return 0;
    }
    if (a == "--agents")
      o.agents = std::atoi(value().c_str());
    else if (a == "--rounds")
      o.rounds = std::atoi(value().c_str());
    else if (a == "--frame-auth")
      o.mode = value();
    else if (a == "--agent-procs")
      o.procs = std::atoi(value().c_str());
    else if (a == "--heartbeat-ms")
      o.heartbeat_ms = std::atoi(value().c_str());
    else if (a == "--json")
      json = true;
    else if (a.rfind("--benchmark", 0) != 0) {
      std::cerr << "bench_gang_coordinator_scale: unknown option " << a << " (try --help)\n";
      return 2;
    }
  }
  if (json || o.agents > 0) {
    if (o.agents <= 0 || o.rounds <= 0 || o.procs <= 0 || o.procs > o.agents ||
        o.heartbeat_ms < 10 || (o.mode != "on" && o.mode != "off" && o.mode != "both")) {
      std::cerr
          << "bench_gang_coordinator_scale: --agents, --rounds and --agent-procs must be "
             "positive (at most one process an agent), --heartbeat-ms at least 10, --frame-auth "
             "on, off or both\n";
      return 2;
    }
    return json_main(o);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
