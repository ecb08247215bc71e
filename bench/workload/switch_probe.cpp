// dynamos-switch-probe: a rank that records when it ran, for measuring gang switches
// from the jobs' side. It spins reading CLOCK_REALTIME; a gap longer than --gap-us
// between two readings means it did not run in between (frozen, or waiting for a CPU).
// The runs between gaps are its run segments. At the end it writes them, one
// "start_ns end_ns" line each, to DIR/probe-<rank>-<pid>.txt, headed by a line
// "# rank R pid P cgroup C" (its freezer or unified cgroup: the node and job it ran in).
// It ends --seconds after it started (wall clock), so two such jobs started together
// end together, having alternated all along.
//
// bench/gang/switch_overlap.py reads these files with gangd's round log: per round, when
// every outgoing rank last ran and every incoming rank first ran, and whether ranks of
// the two jobs ran at the same time on one node (the overlap).
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "bench/workload/options.hpp"

namespace po = boost::program_options;

namespace {

std::uint64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// The cgroup that names this rank's node and job: the freezer hierarchy's (v1), else the
// unified one's.
std::string own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line, unified;
  while (std::getline(in, line)) {
    auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1);
    if (controllers == "freezer") return line.substr(second + 1);
    if (controllers.empty()) unified = line.substr(second + 1);
  }
  return unified;
}

int rank_from_environment() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 5;
  unsigned gap_us = 200;
  std::string dir = ".";
  po::options_description desc(
      "dynamos-switch-probe: spins, records its run segments (gaps longer than --gap-us "
      "split them) and writes them to DIR/probe-RANK-PID.txt");
  desc.add_options()("help,h", "show this help")(
      "seconds", po::value(&seconds)->default_value(seconds),
      "how long it runs from its start, wall-clock seconds")(
      "gap-us", po::value(&gap_us)->default_value(gap_us),
      "a pause longer than this (microseconds) ends a run segment")(
      "dir", po::value(&dir)->default_value(dir), "where to write the segments");
  po::variables_map vm;
  if (auto status =
          dynamos::workload::parse_command_line(argc, argv, desc, vm, "dynamos-switch-probe"))
    return *status;
  if (!(seconds > 0) || gap_us == 0)
    return dynamos::workload::usage_error("dynamos-switch-probe",
                                          "--seconds and --gap-us must be positive");

  const int rank = rank_from_environment();
  const std::string path =
      dir + "/probe-" + std::to_string(rank) + "-" + std::to_string(::getpid()) + ".txt";
  const std::uint64_t gap = std::uint64_t{gap_us} * 1000;
  const auto budget = static_cast<std::uint64_t>(seconds * 1e9);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> segments;
  segments.reserve(1 << 16);
  const std::uint64_t began = realtime_ns();
  std::uint64_t start = began, last = start;
  while (last - began < budget) {
    std::uint64_t now = realtime_ns();
    if (now - last > gap) {
      segments.emplace_back(start, last);
      start = now;
    }
    last = now;
  }
  segments.emplace_back(start, last);

  FILE* out = std::fopen(path.c_str(), "w");
  if (!out) {
    std::perror(("dynamos-switch-probe: " + path).c_str());
    return 1;
  }
  std::fprintf(out, "# rank %d pid %d cgroup %s\n", rank, static_cast<int>(::getpid()),
               own_cgroup().c_str());
  for (const auto& [s, e] : segments)
    std::fprintf(out, "%llu %llu\n", static_cast<unsigned long long>(s),
                 static_cast<unsigned long long>(e));
  return std::fclose(out) == 0 ? 0 : 1;
}
