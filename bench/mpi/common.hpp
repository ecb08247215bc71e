// What every MPI workload shares: the common options, run-length control, progress
// (printed by rank 0 once a second and kept in the progress file) and the result line.
#pragma once

#include <mpi.h>

#include <complex>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "bench/workload/progress.hpp"
#include "bench/workload/result_line.hpp"

namespace dynamos::mpiwork {

struct CommonOptions {
  std::uint64_t mem = 64ull << 20;  // bytes per rank
  std::uint64_t iterations = 0;     // 0: run for `seconds`
  double seconds = 0;
  std::string progress_file;  // "%r" in it is replaced by the rank; else rank 0 only
  bool inject_error = false;
  std::uint64_t seed = 1;
  bool quiet = false;
};

// Starts a workload program: parses the shared options plus the workload's own (`own`)
// before MPI_Init, so that --help works without a launcher, runs `check` on the
// workload's own options (it returns what is wrong with them, or nothing), then calls
// MPI_Init. Returns an exit code when the program should exit now (help shown: 0, bad
// usage: 2), nothing when it should run.
std::optional<int> start(int& argc, char**& argv, const std::string& program,
                         const std::string& summary,
                         boost::program_options::options_description& own,
                         std::uint64_t default_iterations, CommonOptions& out,
                         const std::function<std::string()>& check = {});

// Prints one line on stderr from rank 0 and aborts the job with exit code 1.
[[noreturn]] void die(const std::string& program, const std::string& message);

// One run: the clock, the stop decision, progress output and the final result.
class Run {
 public:
  Run(const CommonOptions& o, std::string workload, std::string unit);

  int rank() const { return rank_; }
  int ranks() const { return ranks_; }
  workload::ProgressWriter& progress() { return progress_; }

  // Starts the clock once the data is ready (collective).
  void start();
  // Collective: true while another iteration should run. `done` iterations are complete;
  // call it once per iteration.
  bool keep_going(std::uint64_t done);
  // Rank 0 prints a progress line at most once a second; `detail` is appended.
  void report(std::uint64_t done, std::uint64_t work_local, const std::string& detail = {});
  double elapsed() const;
  // Whether to corrupt data at iteration `it` on this rank (the last rank, halfway).
  bool inject_now(std::uint64_t it) const;

  // Collective. Fills the common fields, prints the RESULT line on rank 0 and returns the
  // process exit code (0 when verified, 1 otherwise). `work_local` is this rank's work.
  int finish(workload::ResultLine& extra, std::uint64_t iterations, std::uint64_t work_local,
             bool verified, double checksum, double residual);

 private:
  CommonOptions o_;
  std::string workload_, unit_;
  int rank_ = 0, ranks_ = 1;
  workload::ProgressWriter progress_;
  double start_ = 0, last_print_ = 0;
  double last_iteration_end_ = 0;  // seconds since start
};

double wall_seconds();

using Complex = std::complex<double>;

// A Fourier mode of the grid, by its wave numbers.
struct Mode {
  int kx, ky, kz;
};

inline Complex mul(Complex a, Complex b) {
  // Plain formula: std::complex's operator* checks for infinities in a library call.
  return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}

// Direct projections sum_x u(x) e^{-2 pi i k.x/n} of a field on an nx*ny*nz grid cut
// into z slabs, summed over all ranks (collective). This rank holds planes z0 to
// z0+nzl-1; row(zl, y) points at the nx values of row y of its local plane zl.
template <class Row>
std::vector<Complex> project(int nx, int ny, int nz, int z0, int nzl, Row row,
                             const std::vector<Mode>& modes) {
  std::vector<Complex> out(modes.size());
  const double tau = 2 * std::numbers::pi;
  for (std::size_t m = 0; m < modes.size(); ++m) {
    const Mode& k = modes[m];
    std::vector<Complex> ex(nx);
    for (int x = 0; x < nx; ++x)
      ex[x] = std::polar(1.0, -tau * k.kx * x / nx);
    Complex acc = 0;
    for (int zl = 0; zl < nzl; ++zl) {
      int z = z0 + zl;
      for (int y = 0; y < ny; ++y) {
        Complex eyz = std::polar(
            1.0, -tau * (static_cast<double>(k.ky) * y / ny + static_cast<double>(k.kz) * z / nz));
        const auto* values = row(zl, y);
        Complex r = 0;
        for (int x = 0; x < nx; ++x)
          r += mul(values[x], ex[x]);
        acc += mul(r, eyz);
      }
    }
    out[m] = acc;
  }
  std::vector<Complex> total(modes.size());
  MPI_Allreduce(out.data(), total.data(), static_cast<int>(2 * modes.size()), MPI_DOUBLE, MPI_SUM,
                MPI_COMM_WORLD);
  return total;
}

}  // namespace dynamos::mpiwork
