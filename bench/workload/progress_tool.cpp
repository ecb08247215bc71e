// dynamos-progress: reads a workload's progress file from outside (for scripts and the
// demo); C++ harnesses use bench/workload/progress.hpp directly.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include <boost/program_options.hpp>

#include "bench/workload/options.hpp"
#include "bench/workload/progress.hpp"
#include "bench/workload/result_line.hpp"

namespace po = boost::program_options;
using namespace dynamos::workload;

int main(int argc, char** argv) {
  std::string path;
  double interval = 0;
  int count = 0;
  bool json = false;
  po::options_description desc(
      "dynamos-progress PATH: show the progress of the workload writing PATH\n"
      "(a file given to a workload's --progress-file).\n\nOptions");
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("watch,w", po::value(&interval), "sample every this many seconds and print the rate")
    ("count,c", po::value(&count), "with --watch: stop after this many samples (default: until the run ends)")
    ("json", po::bool_switch(&json), "one JSON object per sample");
  // clang-format on
  po::options_description hidden;
  hidden.add_options()("path", po::value(&path));
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description pos;
  pos.add("path", 1);
  po::variables_map vm;
  if (auto status = parse_command_line(argc, argv, all, vm, "dynamos-progress", " (try --help)",
                                       &pos, [&] { std::cout << desc << "\n"; }))
    return *status;
  if (path.empty()) {
    std::cerr << "dynamos-progress: no progress file given (try --help)\n";
    return 2;
  }
  if (vm.count("watch") && !(interval > 0)) {
    std::cerr << "dynamos-progress: --watch needs a positive interval\n";
    return 2;
  }
  auto reader = ProgressReader::open(path);
  if (!reader) {
    std::cerr << "dynamos-progress: " << reader.error().message() << "\n";
    return 1;
  }
  auto prev = reader->sample();
  if (!prev) {
    std::cerr << "dynamos-progress: " << prev.error().message() << "\n";
    return 1;
  }
  auto print = [&](const ProgressSample& s, double rate) {
    double age = (static_cast<double>(s.read_ns) - static_cast<double>(s.updated_ns)) * 1e-9;
    double elapsed = (static_cast<double>(s.read_ns) - static_cast<double>(s.start_ns)) * 1e-9;
    if (json) {
      ResultLine r;
      r.add("workload", reader->workload()).add("unit", reader->unit());
      r.add("pid", s.pid).add("rank", s.rank).add("state", progress_state_name(s.state));
      r.add("work", s.work).add("iterations", s.iterations).add("elapsed_s", elapsed);
      r.add("idle_s", age).add("rate", rate);
      std::cout << r.str().substr(kResultPrefix.size()) << std::endl;
    } else {
      std::printf(
          "%s pid %d rank %d: %s, %llu %s, %llu iterations, %.1f s since start, last "
          "update %.3f s ago",
          reader->workload().c_str(), s.pid, s.rank, progress_state_name(s.state),
          static_cast<unsigned long long>(s.work), reader->unit().c_str(),
          static_cast<unsigned long long>(s.iterations), elapsed, age);
      if (rate >= 0) std::printf(", %.4g %s/s", rate, reader->unit().c_str());
      std::printf("\n");
      std::fflush(stdout);
    }
  };
  if (!vm.count("watch")) {
    print(*prev, -1);
    return 0;
  }
  for (int n = 0; count == 0 || n < count; ++n) {
    std::this_thread::sleep_for(std::chrono::duration<double>(interval));
    auto s = reader->sample();
    if (!s) {
      std::cerr << "dynamos-progress: " << s.error().message() << "\n";
      return 1;
    }
    print(*s, progress_rate(*prev, *s));
    prev = s;
    if (s->state == ProgressState::done || s->state == ProgressState::failed) break;
  }
  return 0;
}
