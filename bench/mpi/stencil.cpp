// dynamos-mpi-stencil: a 3D 7-point relaxation with halo exchange (MG-like).
//
// A periodic nx x ny x nz grid of doubles is cut into z slabs, one per rank. Each
// iteration exchanges the slab's boundary planes with both neighbours and applies
// u += a * laplacian(u), the smoother that dominates NAS MG's time and traffic.
//
// Verification, independent of the stencil code: the operator is shift-invariant, so each
// Fourier mode e_k is an eigenvector with eigenvalue mu_k = 1 + a * sum_d (2 cos(2 pi k_d /
// n_d) - 2). The projections <u, e_k> on a few modes (k = 0, the sum, among them) are
// computed directly at the start and at the end, and must agree with mu_k^N times the
// start. A wrong halo, a lost plane or a corrupted value breaks that.
#include <algorithm>
#include <cmath>
#include <complex>
#include <numbers>
#include <vector>

#include "bench/mpi/common.hpp"
#include "bench/workload/field.hpp"
#include "bench/workload/size.hpp"

using namespace dynamos;
using namespace dynamos::mpiwork;
namespace po = boost::program_options;

namespace {

constexpr double kAlpha = 0.125;  // stable for the 3D 7-point stencil (<= 1/6)
const char* kProgram = "dynamos-mpi-stencil";

struct Grid {
  int nx = 0, ny = 0, nz = 0;  // global
  int nzl = 0, z0 = 0;         // this rank's planes
  std::size_t plane() const { return static_cast<std::size_t>(nx) * ny; }
};

// <u, e_k> over this rank's planes (u has one halo plane on each side).
std::vector<Complex> project(const Grid& g, const double* u, const std::vector<Mode>& modes) {
  return mpiwork::project(
      g.nx, g.ny, g.nz, g.z0, g.nzl,
      [&](int zl, int y) { return u + (zl + 1) * g.plane() + static_cast<std::size_t>(y) * g.nx; },
      modes);
}

double abs_sum(const Grid& g, const double* u) {
  double s = 0;
  for (std::size_t i = g.plane(); i < (g.nzl + 1) * g.plane(); ++i)
    s += std::fabs(u[i]);
  double total = 0;
  MPI_Allreduce(&s, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

void exchange_halos(const Grid& g, double* u, int rank, int ranks) {
  int up = (rank + 1) % ranks, down = (rank + ranks - 1) % ranks;
  int n = static_cast<int>(g.plane());
  // Top interior plane goes up, bottom halo comes from below; then the reverse.
  MPI_Sendrecv(u + g.nzl * g.plane(), n, MPI_DOUBLE, up, 1, u, n, MPI_DOUBLE, down, 1,
               MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  MPI_Sendrecv(u + g.plane(), n, MPI_DOUBLE, down, 2, u + (g.nzl + 1) * g.plane(), n, MPI_DOUBLE,
               up, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

// v = u + a * laplacian(u) on one interior plane zl (1-based, halos at 0 and nzl+1).
void relax_plane(const Grid& g, const double* u, double* v, int zl) {
  const int nx = g.nx, ny = g.ny;
  const std::size_t p = g.plane();
  const double* c = u + zl * p;
  const double* below = c - p;
  const double* above = c + p;
  double* out = v + zl * p;
  for (int y = 0; y < ny; ++y) {
    const std::size_t r = static_cast<std::size_t>(y) * nx;
    const std::size_t rn = static_cast<std::size_t>(y + 1 == ny ? 0 : y + 1) * nx;
    const std::size_t rs = static_cast<std::size_t>(y == 0 ? ny - 1 : y - 1) * nx;
    auto at = [&](int x) {
      int xl = x == 0 ? nx - 1 : x - 1, xr = x + 1 == nx ? 0 : x + 1;
      double lap = c[r + xl] + c[r + xr] + c[rn + x] + c[rs + x] + below[r + x] + above[r + x] -
                   6 * c[r + x];
      out[r + x] = c[r + x] + kAlpha * lap;
    };
    at(0);
    for (int x = 1; x < nx - 1; ++x) {
      double lap = c[r + x - 1] + c[r + x + 1] + c[rn + x] + c[rs + x] + below[r + x] +
                   above[r + x] - 6 * c[r + x];
      out[r + x] = c[r + x] + kAlpha * lap;
    }
    if (nx > 1) at(nx - 1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CommonOptions o;
  po::options_description own("Stencil options");
  if (auto status = start(argc, argv, kProgram,
                          "3D 7-point relaxation on a periodic grid cut into z slabs, with halo "
                          "exchange (MG-like); verified by Fourier-mode projections.",
                          own, 20, o))
    return *status;
  Run run(o, "stencil", "points");
  const int rank = run.rank(), ranks = run.ranks();

  // Two arrays of doubles with halo planes: about mem/16 points per rank.
  Grid g;
  double per_rank = static_cast<double>(o.mem) / 16.0;
  int side = std::max(4, static_cast<int>(std::cbrt(per_rank * ranks)));
  g.nx = g.ny = side;
  g.nzl = std::max(1, static_cast<int>(per_rank / static_cast<double>(g.plane())) - 2);
  if (g.nzl < 1) die(kProgram, "--mem too small for the grid");
  g.nz = g.nzl * ranks;
  g.z0 = g.nzl * rank;
  std::size_t n = (g.nzl + 2) * g.plane();
  std::vector<double> ua(n), va(n);
  double* u = ua.data();
  double* v = va.data();
  for (int zl = 0; zl < g.nzl; ++zl)
    for (int y = 0; y < g.ny; ++y) {
      std::size_t off = (zl + 1) * g.plane() + static_cast<std::size_t>(y) * g.nx;
      std::uint64_t global = (static_cast<std::uint64_t>(g.z0 + zl) * g.ny + y) * g.nx;
      workload::fill_field_line(u + off, g.nx, 0, static_cast<double>(y) / g.ny,
                                static_cast<double>(g.z0 + zl) / g.nz, 1.0 / g.nx, 0, 0, global,
                                o.seed);
    }

  std::vector<Mode> modes = {{0, 0, 0}, {1, 0, 0}, {0, 1, 1}, {2, 1, 3}};
  {
    std::uint64_t h = workload::mix64(o.seed);
    for (int i = 0; i < 3; ++i) {
      h = workload::mix64(h);
      modes.push_back({static_cast<int>(h % g.nx), static_cast<int>((h >> 20) % g.ny),
                       static_cast<int>((h >> 40) % g.nz)});
    }
  }
  std::vector<Complex> p0 = project(g, u, modes);

  if (rank == 0 && !o.quiet)
    std::fprintf(stderr, "stencil: grid %dx%dx%d on %d rank(s), %s per rank\n", g.nx, g.ny, g.nz,
                 ranks, workload::format_size(2 * n * sizeof(double)).c_str());

  run.start();
  std::uint64_t it = 0, work = 0;
  while (run.keep_going(it)) {
    exchange_halos(g, u, rank, ranks);
    for (int zl = 1; zl <= g.nzl; ++zl) {
      relax_plane(g, u, v, zl);
      run.progress().add(g.plane());
    }
    std::swap(u, v);
    ++it;
    work += static_cast<std::uint64_t>(g.nzl) * g.plane();
    if (run.inject_now(it)) {
      double& x = u[g.plane() + g.plane() / 2];
      x = -x;  // a corrupted value: the run must fail verification
    }
    run.progress().iteration_done();
    run.report(it, work);
  }

  std::vector<Complex> p1 = project(g, u, modes);
  double scale = std::max(1.0, abs_sum(g, u));
  double worst = 0;
  const double tau = 2 * std::numbers::pi;
  for (std::size_t m = 0; m < modes.size(); ++m) {
    const Mode& k = modes[m];
    double mu =
        1 + kAlpha * (2 * std::cos(tau * k.kx / g.nx) - 2 + 2 * std::cos(tau * k.ky / g.ny) - 2 +
                      2 * std::cos(tau * k.kz / g.nz) - 2);
    Complex expect = p0[m] * std::pow(mu, static_cast<double>(it));
    worst = std::max(worst, std::abs(p1[m] - expect) / scale);
  }
  bool verified = worst <= 1e-10;
  workload::ResultLine extra;
  extra.add("grid", std::to_string(g.nx) + "x" + std::to_string(g.ny) + "x" + std::to_string(g.nz));
  extra.add("sum", p1[0].real());
  int code = run.finish(extra, it, work, verified, p1[0].real(), worst);
  MPI_Finalize();
  return code;
}
