// dynamos probe: performance monitoring injected into a running process.
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/command.hpp"
#include "core/engine.hpp"
#include "core/probe.hpp"
#include "core/remote.hpp"

namespace po = boost::program_options;
using namespace dynamos;
using namespace dynamos::core;

namespace {

Result<std::unique_ptr<Engine>> attach(pid_t pid) {
  auto target = RemoteTarget::attach(pid);
  if (!target) return std::unexpected(target.error());
  return Engine::over(std::move(*target));
}

struct Reading {
  std::string function;
  std::uint64_t calls = 0, timed = 0, ticks = 0;
};

int run_probe(std::span<const std::string> args) {
  po::options_description desc(
      "usage: dynamos probe PID SYM [SYM ...] --seconds S [--json]\n\n"
      "Injects a counting and timing probe into each function SYM of the running process\n"
      "PID, lets it run for S seconds (the process is not traced meanwhile), reports per\n"
      "function the calls and the mean time per call, then removes the probes. Every call\n"
      "is counted; one call in 64 is timed (TSC), which keeps the overhead near one atomic\n"
      "add per call.\n\noptions");
  double seconds = 0;
  bool json = false;
  desc.add_options()("help,h", "show this help")("seconds", po::value(&seconds),
                                                 "how long to measure")(
      "json", po::bool_switch(&json), "one JSON object per function instead of a table");
  std::vector<std::string> positional;
  po::variables_map vm;
  if (auto status = cli::parse_options("probe", args, desc, positional, vm)) return *status;
  if (positional.size() < 2)
    return cli::error("probe", "give PID and at least one SYM (try --help)", 2);
  if (!(seconds > 0) || seconds > 86400)
    return cli::error("probe", "--seconds must be between 0 and 86400", 2);
  char* end = nullptr;
  const long pid = std::strtol(positional[0].c_str(), &end, 10);
  if (*end || pid <= 0)
    return cli::error("probe", "'" + positional[0] + "' is not a process id", 2);
  const std::vector<std::string> functions(positional.begin() + 1, positional.end());

  cli::prefer_realtime();
  // Install: one update switching every function to its probe.
  UpdateId update = 0;
  std::vector<std::pair<PatchPointId, VersionId>> probes;
  {
    auto engine = attach(static_cast<pid_t>(pid));
    if (!engine) return cli::error("probe", engine.error().message());
    std::vector<UpdateInfo::Switch> switches;
    for (const auto& f : functions) {
      auto point = (*engine)->hijack(f);
      if (!point) return cli::error("probe", point.error().message());
      auto v = (*engine)->add_probe(*point);
      if (!v) return cli::error("probe", v.error().message());
      switches.push_back({*point, 0, *v});
      probes.emplace_back(*point, *v);
    }
    auto id =
        (*engine)->apply_switches(switches, SafetyMode::drain, std::chrono::milliseconds(2000));
    if (!id) return cli::error("probe", id.error().message());
    update = *id;
  }  // detached: the process runs untraced while it is measured

  const double hz = tsc_hz();
  std::fprintf(stderr, "probing %zu function%s of process %ld for %.1f s...\n", functions.size(),
               functions.size() == 1 ? "" : "s", pid, seconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));

  auto engine = attach(static_cast<pid_t>(pid));
  if (!engine) return cli::error("probe", "reading the probes: " + engine.error().message());
  std::vector<Reading> readings;
  for (std::size_t i = 0; i < probes.size(); ++i) {
    auto info = (*engine)->info(probes[i].first);
    if (!info) return cli::error("probe", info.error().message());
    const auto& v = info->versions.at(probes[i].second);
    readings.push_back({functions[i], v.calls, v.timed_calls, v.timed_ticks});
  }
  if (auto r = (*engine)->revert(update); !r)
    return cli::error("probe", "removing the probes: " + r.error().message());

  if (!json)
    std::printf("%-32s %14s %12s %14s %10s\n", "FUNCTION", "CALLS", "CALLS/S", "MEAN NS/CALL",
                "TIMED");
  for (const auto& r : readings) {
    const double mean_ns = r.timed ? static_cast<double>(r.ticks) / r.timed / hz * 1e9 : 0.0;
    const double rate = r.calls / seconds;
    if (json) {
      auto one_decimal = [](double v) { return std::round(v * 10) / 10; };
      nlohmann::ordered_json j = {
          {"function", r.function},           {"calls", r.calls},
          {"calls_per_s", one_decimal(rate)}, {"mean_ns", one_decimal(mean_ns)},
          {"timed_calls", r.timed},           {"seconds", std::round(seconds * 1000) / 1000}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%-32s %14lu %12.0f %14.1f %10lu\n", r.function.c_str(),
                  static_cast<unsigned long>(r.calls), rate, mean_ns,
                  static_cast<unsigned long>(r.timed));
    }
  }
  return 0;
}

}  // namespace

DYNAMOS_COMMAND(probe, "probe", "count and time calls of functions in a running process",
                run_probe);
