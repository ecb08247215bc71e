// dynamos-bench-remote: what a remote live update costs the process it changes.
//
//   stop time   how long all threads of a 16-thread busy process are stopped per
//               update (library path: apply + revert, N cycles), and per
//               `dynamos patch` command, with the whole command's wall time;
//   probe       a 1-thread process's call rate of a ~20 ns function while a probe
//               is in it, against the same process's rate just before and after
//               (interleaved), and the same with bpftrace's uprobe where it runs.
// Prints a summary and one JSON line per figure.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

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

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  int cycles = 200, commands = 20, rounds = 5, threads = 16;
  po::options_description desc(
      "usage: dynamos-bench-remote [options]\n\nMeasures the stop time of remote updates and the "
      "overhead of probes (see the source header).\n\noptions");
  desc.add_options()("help,h", "show this help")("cycles", po::value(&cycles)->default_value(200),
                                                 "library apply+revert cycles")(
      "commands", po::value(&commands)->default_value(20), "dynamos patch commands")(
      "rounds", po::value(&rounds)->default_value(5), "probe on/off rounds")(
      "threads", po::value(&threads)->default_value(16), "busy threads in the patched process");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "dynamos-bench-remote: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }

  // 1. Stop time through the library.
  {
    Program t({BUSY_TARGET, std::to_string(threads)});
    if (!t.wait_for("rate", 5s)) return std::cerr << "target did not start\n", 1;
    auto target = RemoteTarget::attach(t.pid());
    if (!target) return std::cerr << target.error().message() << "\n", 1;
    auto& remote = **target;
    auto engine = Engine::over(std::move(*target));
    if (!engine) return std::cerr << engine.error().message() << "\n", 1;
    if (auto h = remote.load_library(BUSY_PATCH); !h)
      return std::cerr << h.error().message() << "\n", 1;
    auto syms = Symbols::load(remote);
    auto v2 = syms->find("bench_work_v2");
    if (!v2) return std::cerr << v2.error().message() << "\n", 1;
    std::vector<double> stops;
    for (int i = 0; i < cycles; ++i) {
      auto id = (*engine)->apply(redirect_update("bench_work", v2->address, "v2"));
      if (!id) return std::cerr << id.error().message() << "\n", 1;
      stops.push_back(std::chrono::duration<double, std::milli>((*engine)->last_stop()).count());
      if (getenv("DYNAMOS_BENCH_TRACE"))
        std::fprintf(stderr, "apply %d: %.3f ms\n", i, stops.back());
      if (auto r = (*engine)->revert(*id); !r) return std::cerr << r.error().message() << "\n", 1;
      stops.push_back(std::chrono::duration<double, std::milli>((*engine)->last_stop()).count());
    }
    std::printf(
        "stop time, %d busy threads, %zu updates: median %.3f ms, p90 %.3f ms, max %.3f ms\n",
        threads, stops.size(), median(stops), percentile(stops, 0.9),
        *std::max_element(stops.begin(), stops.end()));
    std::printf("{\"figure\":\"stop_ms\",\"threads\":%d,\"n\":%zu,\"median\":%.4f,\"p90\":%.4f}\n",
                threads, stops.size(), median(stops), percentile(stops, 0.9));
  }

  // 2. Whole commands.
  {
    Program t({BUSY_TARGET, std::to_string(threads)});
    if (!t.wait_for("rate", 5s)) return 1;
    std::vector<double> stop, total;
    const std::regex re("stopped for ([0-9.]+) ms; command took ([0-9.]+) ms");
    for (int i = 0; i < commands; ++i) {
      auto o = run({DYNAMOS_CLI, "patch", std::to_string(t.pid()), "--replace",
                    std::string("bench_work=") + BUSY_PATCH + ":bench_work_v2"});
      std::smatch m;
      if (o.status != 0 || !std::regex_search(o.out, m, re)) return std::cerr << o.err, 1;
      stop.push_back(std::stod(m[1]));
      total.push_back(std::stod(m[2]));
      std::smatch id;
      std::regex_search(o.out, id, std::regex("update ([0-9]+)"));
      run({DYNAMOS_CLI, "revert", std::to_string(t.pid()), id[1]});
    }
    std::printf(
        "dynamos patch, %d busy threads, %d commands: stop median %.3f ms, command median %.1f "
        "ms\n",
        threads, commands, median(stop), median(total));
    std::printf(
        "{\"figure\":\"patch_command\",\"threads\":%d,\"stop_ms\":%.4f,\"command_ms\":%.2f}\n",
        threads, median(stop), median(total));
  }

  // 3. Probe overhead, interleaved rounds on one busy thread.
  {
    Program t({BUSY_TARGET, "1"});
    if (!t.wait_for("rate", 5s)) return 1;
    std::this_thread::sleep_for(500ms);
    std::vector<double> ratios;
    for (int r = 0; r < rounds; ++r) {
      const double off = rate_over(t, 1500ms);
      pid_t probe = fork();
      if (probe == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(DYNAMOS_CLI, DYNAMOS_CLI, "probe", std::to_string(t.pid()).c_str(), "bench_work",
              "--seconds", "2.5", nullptr);
        _exit(127);
      }
      std::this_thread::sleep_for(600ms);  // the probe is in
      const double on = rate_over(t, 1500ms);
      waitpid(probe, nullptr, 0);
      if (on > 0) ratios.push_back(off / on);
    }
    std::printf(
        "probe overhead on a ~20 ns function: time per call with/without = %.3f (median of %zu "
        "rounds)\n",
        median(ratios), ratios.size());
    std::printf("{\"figure\":\"probe_overhead\",\"ratio\":%.4f,\"rounds\":%zu}\n", median(ratios),
                ratios.size());

    // bpftrace's uprobe on the same function, where it can run here.
    if (access("/usr/bin/bpftrace", X_OK) == 0) {
      std::vector<double> b;
      for (int r = 0; r < rounds; ++r) {
        const double off = rate_over(t, 1500ms);
        const std::string prog =
            std::string("uprobe:") + BUSY_TARGET + ":bench_work { @c = count(); }";
        pid_t bt = fork();
        if (bt == 0) {
          int null = open("/dev/null", O_WRONLY);
          dup2(null, 1);
          dup2(null, 2);
          execl("/usr/bin/timeout", "timeout", "-s", "INT", "3", "/usr/bin/bpftrace", "-e",
                prog.c_str(), nullptr);
          _exit(127);
        }
        std::this_thread::sleep_for(3000ms);  // bpftrace compiles and attaches
        const double on = rate_over(t, 1200ms);
        int status = 0;
        waitpid(bt, &status, 0);
        if (on > 0 && WIFEXITED(status) && WEXITSTATUS(status) != 127) b.push_back(off / on);
      }
      if (b.empty()) {
        std::printf("bpftrace: no reading (it did not attach within 3 s, or its run failed)\n");
      } else {
        std::printf(
            "bpftrace uprobe overhead: time per call with/without = %.3f (median of %zu rounds)\n",
            median(b), b.size());
        std::printf("{\"figure\":\"bpftrace_overhead\",\"ratio\":%.4f,\"rounds\":%zu}\n", median(b),
                    b.size());
      }
    } else {
      std::printf("bpftrace: not installed (apt-get install bpftrace to compare)\n");
    }
  }
  return 0;
}
