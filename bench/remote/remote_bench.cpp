// dynamos-bench-remote: what a remote live update costs the process it changes.
//
//   stop time   how long all threads of a 16-thread busy process are stopped per
//               update (library path: apply + revert, N cycles), and per
//               `dynamos patch` command, with the whole command's wall time;
//   probe       a 1-thread process's call rate of a ~20 ns function while a probe
//               is in it, against the same process's rate just before and after
//               (interleaved), and the same with bpftrace's uprobe where it runs.
// Prints a summary and one JSON line per figure; with --json, one JSON object with every
// figure (stop_ms_p50: the median time the target's threads are stopped per update, from
// the engine's stop to the last thread resumed) and the summary on standard error.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "bench/workload/options.hpp"
#include "core/engine.hpp"
#include "core/remote.hpp"
#include "core/symbols.hpp"
#include "testkit/process.hpp"

using namespace dynamos;
using namespace dynamos::core;
using remote_test::Program;
using remote_test::run;
using namespace std::chrono_literals;

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()))];
}

double read_rate(Program& t) {
  std::smatch m;
  const std::string l = t.last_line();
  return std::regex_search(l, m, std::regex("rate ([0-9.]+)")) ? std::stod(m[1]) : 0;
}

// Mean of the rates printed over `d`.
double rate_over(Program& t, std::chrono::milliseconds d) {
  std::vector<double> r;
  const auto end = std::chrono::steady_clock::now() + d;
  std::size_t seen = t.lines();
  while (std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(20ms);
    if (t.lines() != seen) {
      seen = t.lines();
      r.push_back(read_rate(t));
    }
  }
  return median(r);
}

// Every figure of the run, for --json.
nlohmann::ordered_json g_figures = nlohmann::ordered_json::object();
bool g_json = false;

// A summary line: on standard output, or standard error under --json.
__attribute__((format(printf, 1, 2))) void say(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vfprintf(g_json ? stderr : stdout, format, args);
  va_end(args);
}

// A figure as one JSON line (kept for the single object under --json).
void print_figure(const nlohmann::ordered_json& figure) {
  if (!g_json) std::printf("%s\n", figure.dump().c_str());
}

double round_to(double v, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(v * f) / f;
}

// Runs `argv` with its output thrown away; its pid.
pid_t spawn_quiet(const std::vector<std::string>& argv) {
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    std::vector<char*> args;
    for (const auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int failed(const std::string& message) {
  std::cerr << message << "\n";
  return 1;
}

struct Options {
  int cycles = 200, commands = 20, rounds = 5, threads = 16;
  bool json = false;
};

// Parses the command line: an exit status when the program should stop there.
std::optional<int> parse_options(int argc, char** argv, Options& o) {
  namespace po = boost::program_options;
  po::options_description desc(
      "usage: dynamos-bench-remote [options]\n\nMeasures the stop time of remote updates and the "
      "overhead of probes (see the source header).\n\noptions");
  desc.add_options()("help,h", "show this help")("cycles", po::value(&o.cycles)->default_value(200),
                                                 "library apply+revert cycles")(
      "commands", po::value(&o.commands)->default_value(20), "dynamos patch commands")(
      "rounds", po::value(&o.rounds)->default_value(5), "probe on/off rounds")(
      "threads", po::value(&o.threads)->default_value(16), "busy threads in the patched process")(
      "json", po::bool_switch(&o.json), "print one JSON object with every figure");
  po::variables_map vm;
  return workload::parse_command_line(argc, argv, desc, vm, "dynamos-bench-remote");
}

// 1. Stop time through the library: apply + revert cycles on a busy process.
int measure_library_stops(const Options& o) {
  Program t({BUSY_TARGET, std::to_string(o.threads)});
  if (!t.wait_for("rate", 5s)) return failed("target did not start");
  auto target = RemoteTarget::attach(t.pid());
  if (!target) return failed(target.error().message());
  auto& remote = **target;
  auto engine = Engine::over(std::move(*target));
  if (!engine) return failed(engine.error().message());
  if (auto h = remote.load_library(BUSY_PATCH); !h) return failed(h.error().message());
  auto syms = Symbols::load(remote);
  auto v2 = syms->find("bench_work_v2");
  if (!v2) return failed(v2.error().message());
  std::vector<double> stops;
  auto last_stop = [&] {
    return std::chrono::duration<double, std::milli>((*engine)->last_stop()).count();
  };
  for (int i = 0; i < o.cycles; ++i) {
    auto id = (*engine)->apply(redirect_update("bench_work", v2->address, "v2"));
    if (!id) return failed(id.error().message());
    stops.push_back(last_stop());
    if (getenv("DYNAMOS_BENCH_TRACE")) std::fprintf(stderr, "apply %d: %.3f ms\n", i, stops.back());
    if (auto r = (*engine)->revert(*id); !r) return failed(r.error().message());
    stops.push_back(last_stop());
  }
  say("stop time, %d busy threads, %zu updates: median %.3f ms, p90 %.3f ms, max %.3f ms\n",
      o.threads, stops.size(), median(stops), percentile(stops, 0.9),
      *std::max_element(stops.begin(), stops.end()));
  g_figures["threads"] = o.threads;
  g_figures["updates"] = stops.size();
  g_figures["stop_ms_p50"] = round_to(median(stops), 4);
  g_figures["stop_ms_p90"] = round_to(percentile(stops, 0.9), 4);
  g_figures["stop_ms_max"] = round_to(*std::max_element(stops.begin(), stops.end()), 4);
  print_figure({{"figure", "stop_ms"},
                {"threads", o.threads},
                {"n", stops.size()},
                {"median", round_to(median(stops), 4)},
                {"p90", round_to(percentile(stops, 0.9), 4)}});
  return 0;
}

// 2. Whole `dynamos patch` commands, each reverted.
int measure_commands(const Options& o) {
  Program t({BUSY_TARGET, std::to_string(o.threads)});
  if (!t.wait_for("rate", 5s)) return 1;
  std::vector<double> stop, total;
  const std::regex re("stopped for ([0-9.]+) ms; command took ([0-9.]+) ms");
  for (int i = 0; i < o.commands; ++i) {
    auto out = run({DYNAMOS_CLI, "patch", std::to_string(t.pid()), "--replace",
                    std::string("bench_work=") + BUSY_PATCH + ":bench_work_v2"});
    std::smatch m;
    if (out.status != 0 || !std::regex_search(out.out, m, re)) return std::cerr << out.err, 1;
    stop.push_back(std::stod(m[1]));
    total.push_back(std::stod(m[2]));
    std::smatch id;
    std::regex_search(out.out, id, std::regex("update ([0-9]+)"));
    run({DYNAMOS_CLI, "revert", std::to_string(t.pid()), id[1]});
  }
  say("dynamos patch, %d busy threads, %d commands: stop median %.3f ms, command median %.1f "
      "ms\n",
      o.threads, o.commands, median(stop), median(total));
  g_figures["patch_command_stop_ms_p50"] = round_to(median(stop), 4);
  g_figures["patch_command_ms_p50"] = round_to(median(total), 2);
  print_figure({{"figure", "patch_command"},
                {"threads", o.threads},
                {"stop_ms", round_to(median(stop), 4)},
                {"command_ms", round_to(median(total), 2)}});
  return 0;
}

// Rounds of the target's call rate without, then with, a tracer started by `start`
// (which returns its pid), `settle` after it starts; each round's ratio off/on.
template <class Start>
std::vector<double> overhead_rounds(Program& t, int rounds, Start start,
                                    std::chrono::milliseconds settle,
                                    std::chrono::milliseconds window, bool need_exit_ok) {
  std::vector<double> ratios;
  for (int r = 0; r < rounds; ++r) {
    const double off = rate_over(t, 1500ms);
    pid_t tracer = start();
    std::this_thread::sleep_for(settle);
    const double on = rate_over(t, window);
    int status = 0;
    waitpid(tracer, &status, 0);
    bool ok = !need_exit_ok || (WIFEXITED(status) && WEXITSTATUS(status) != 127);
    if (on > 0 && ok) ratios.push_back(off / on);
  }
  return ratios;
}

// bpftrace's uprobe on the same function, where it can run here.
void measure_bpftrace(Program& t, int rounds) {
  if (access("/usr/bin/bpftrace", X_OK) != 0) {
    say("bpftrace: not installed (apt-get install bpftrace to compare)\n");
    return;
  }
  const std::string prog = std::string("uprobe:") + BUSY_TARGET + ":bench_work { @c = count(); }";
  auto b = overhead_rounds(
      t, rounds,
      [&] {
        return spawn_quiet({"/usr/bin/timeout", "-s", "INT", "3", "/usr/bin/bpftrace", "-e", prog});
      },
      3000ms /* bpftrace compiles and attaches */, 1200ms, true);
  if (b.empty()) {
    say("bpftrace: no reading (it did not attach within 3 s, or its run failed)\n");
    return;
  }
  say("bpftrace uprobe overhead: time per call with/without = %.3f (median of %zu rounds)\n",
      median(b), b.size());
  g_figures["bpftrace_overhead_ratio"] = round_to(median(b), 4);
  print_figure(
      {{"figure", "bpftrace_overhead"}, {"ratio", round_to(median(b), 4)}, {"rounds", b.size()}});
}

// 3. Probe overhead, interleaved rounds on one busy thread.
int measure_probe(const Options& o) {
  Program t({BUSY_TARGET, "1"});
  if (!t.wait_for("rate", 5s)) return 1;
  std::this_thread::sleep_for(500ms);
  auto ratios = overhead_rounds(
      t, o.rounds,
      [&] {
        return spawn_quiet(
            {DYNAMOS_CLI, "probe", std::to_string(t.pid()), "bench_work", "--seconds", "2.5"});
      },
      600ms /* the probe is in */, 1500ms, false);
  say("probe overhead on a ~20 ns function: time per call with/without = %.3f (median of %zu "
      "rounds)\n",
      median(ratios), ratios.size());
  g_figures["probe_overhead_ratio"] = round_to(median(ratios), 4);
  print_figure({{"figure", "probe_overhead"},
                {"ratio", round_to(median(ratios), 4)},
                {"rounds", ratios.size()}});
  measure_bpftrace(t, o.rounds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (auto status = parse_options(argc, argv, o)) return *status;
  g_json = o.json;
  double load[1] = {0};
  if (getloadavg(load, 1) == 1) g_figures["loadavg_1m_at_start"] = round_to(load[0], 2);
  if (int s = measure_library_stops(o)) return s;
  if (int s = measure_commands(o)) return s;
  const int s = measure_probe(o);
  if (g_json && s == 0) std::printf("%s\n", g_figures.dump().c_str());
  return s;
}
