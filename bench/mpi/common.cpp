#include "bench/mpi/common.hpp"
#include "bench/workload/options.hpp"

#include <cstdio>
#include <iostream>

#include "bench/workload/size.hpp"

namespace po = boost::program_options;

namespace dynamos::mpiwork {

double wall_seconds() {
  return static_cast<double>(workload::monotonic_ns()) * 1e-9;
}

namespace {

std::optional<int> parse_options(int argc, char** argv, const std::string& program,
                                 const std::string& summary, po::options_description& own,
                                 std::uint64_t default_iterations, CommonOptions& out) {
  std::string mem = "64M";
  po::options_description common("Common options");
  // clang-format off
  common.add_options()
    ("help,h", "show this help")
    ("mem,m", po::value(&mem)->default_value(mem), "memory footprint per rank (K, M, G suffixes)")
    ("iterations,n", po::value(&out.iterations),
     ("iterations to run (default " + std::to_string(default_iterations) +
      " unless --seconds is given)").c_str())
    ("seconds,s", po::value(&out.seconds), "run for about this long instead of -n")
    ("progress-file", po::value(&out.progress_file),
     "keep a progress counter in this file (rank 0; '%r' in the path: one file per rank)")
    ("inject-error", po::bool_switch(&out.inject_error),
     "corrupt one value halfway through (tests that verification catches it)")
    ("seed", po::value(&out.seed)->default_value(out.seed), "data seed")
    ("quiet,q", po::bool_switch(&out.quiet), "no progress lines");
  // clang-format on
  po::options_description all;
  all.add(common).add(own);
  po::variables_map vm;
  auto usage = [&](const std::string& msg) {
    return std::optional<int>(workload::usage_error(program, msg, " (try --help)"));
  };
  auto help = [&] {
    std::cout << program << ": " << summary << "\n\n"
              << "Run it under mpirun (as root: mpirun --allow-run-as-root --oversubscribe -np N "
              << program << " ...).\nProgress goes to stderr (rank 0, once a second); the last "
              << "line on stdout is 'RESULT {json}'.\nExit status: 0 verified, 1 verification "
              << "failed or error, 2 bad usage.\n\n"
              << all << "\n";
  };
  if (auto status = workload::parse_command_line(argc, argv, all, vm, program, " (try --help)",
                                                 nullptr, help))
    return status;
  auto m = workload::parse_size(mem);
  if (!m) return usage(m.error().message());
  if (*m < (64u << 10)) return usage("--mem must be at least 64K");
  out.mem = *m;
  if (vm.count("seconds") && !(out.seconds > 0)) return usage("--seconds must be positive");
  if (vm.count("iterations") && out.iterations == 0) return usage("--iterations must be positive");
  if (out.iterations == 0 && out.seconds == 0) out.iterations = default_iterations;
  return std::nullopt;
}

}  // namespace

std::optional<int> start(int& argc, char**& argv, const std::string& program,
                         const std::string& summary, po::options_description& own,
                         std::uint64_t default_iterations, CommonOptions& out,
                         const std::function<std::string()>& check) {
  if (auto status = parse_options(argc, argv, program, summary, own, default_iterations, out))
    return status;
  if (std::string problem = check ? check() : std::string(); !problem.empty()) {
    std::cerr << program << ": " << problem << "\n";
    return 2;
  }
  MPI_Init(&argc, &argv);
  return std::nullopt;
}

void die(const std::string& program, const std::string& message) {
  std::cerr << program << ": " << message << "\n";
  std::cerr.flush();
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

Run::Run(const CommonOptions& o, std::string workload, std::string unit)
    : o_(o), workload_(std::move(workload)), unit_(std::move(unit)) {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks_);
  std::string path = o.progress_file;
  auto pos = path.find("%r");
  bool per_rank = pos != std::string::npos;
  if (per_rank) path.replace(pos, 2, std::to_string(rank_));
  if (!path.empty() && (per_rank || rank_ == 0)) {
    auto w = workload::ProgressWriter::create(path, workload_, unit_, rank_);
    if (!w) die("dynamos-mpi-" + workload_, w.error().message());
    progress_ = std::move(*w);
  }
}

void Run::start() {
  MPI_Barrier(MPI_COMM_WORLD);
  start_ = last_print_ = wall_seconds();
  progress_.set_state(workload::ProgressState::running);
}

double Run::elapsed() const {
  return wall_seconds() - start_;
}

bool Run::keep_going(std::uint64_t done) {
  if (o_.iterations) return done < o_.iterations;
  // Stop where the run ends closest to the target: another iteration is started only
  // if at least half of it (judged by the last one) fits before the deadline, and at
  // least one always runs.
  double now = elapsed();
  double last = done > 0 ? now - last_iteration_end_ : 0.0;
  last_iteration_end_ = now;
  int go = rank_ == 0 ? (done == 0 || now + 0.5 * last < o_.seconds ? 1 : 0) : 0;
  MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
  return go != 0;
}

bool Run::inject_now(std::uint64_t it) const {
  if (!o_.inject_error || rank_ != ranks_ - 1) return false;
  std::uint64_t half = o_.iterations ? o_.iterations / 2 : 1;
  return it == half;
}

void Run::report(std::uint64_t done, std::uint64_t work_local, const std::string& detail) {
  if (rank_ != 0 || o_.quiet) return;
  double t = wall_seconds();
  if (t - last_print_ < 1.0) return;
  last_print_ = t;
  double s = t - start_;
  std::fprintf(stderr, "%s: %.1f s, %llu iterations, %.3g %s/s per rank%s%s\n", workload_.c_str(),
               s, static_cast<unsigned long long>(done), static_cast<double>(work_local) / s,
               unit_.c_str(), detail.empty() ? "" : ", ", detail.c_str());
}

int Run::finish(workload::ResultLine& extra, std::uint64_t iterations, std::uint64_t work_local,
                bool verified, double checksum, double residual) {
  double secs = elapsed();
  unsigned long long local = work_local, total = 0;
  MPI_Reduce(&local, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  int ok = verified ? 1 : 0, all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  progress_.set_state(all_ok ? workload::ProgressState::done : workload::ProgressState::failed);
  if (rank_ == 0) {
    workload::ResultLine r;
    r.add("workload", workload_).add("ranks", ranks_);
    r.add("footprint", o_.mem * static_cast<std::uint64_t>(ranks_));
    r.add("footprint_per_rank", o_.mem);
    r.add("iterations", iterations).add("seconds", secs);
    r.add("work", static_cast<std::uint64_t>(total)).add("unit", unit_);
    r.add("rate", secs > 0 ? static_cast<double>(total) / secs : 0.0);
    r.add("rate_unit", unit_ + "/s");
    r.add("verified", all_ok != 0).add("checksum", checksum).add("residual", residual);
    std::string line = r.str();
    std::string more = extra.str().substr(workload::kResultPrefix.size());
    if (more.size() > 2) line.insert(line.size() - 1, "," + more.substr(1, more.size() - 2));
    std::fflush(stderr);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    if (!all_ok)
      std::fprintf(stderr, "dynamos-mpi-%s: verification FAILED (residual %.3g)\n",
                   workload_.c_str(), residual);
  }
  return all_ok ? 0 : 1;
}

}  // namespace dynamos::mpiwork
