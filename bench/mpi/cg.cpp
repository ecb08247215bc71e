// dynamos-mpi-cg: conjugate gradient on a sparse symmetric positive definite matrix,
// with allreduce for every dot product (CG-like).
//
// As NAS CG does, each iteration is one inverse power step: solve A z = x with a fixed
// number of CG steps, estimate zeta = shift + 1 / (x . z), then x = z / |z|. Rows are
// distributed in blocks; the search direction is allgathered before each sparse
// matrix-vector product, since a row couples to columns spread over the whole matrix.
//
// The matrix is defined by a rule, not by data: row i couples to columns i +- o_t (mod n)
// for K pseudo-random offsets o_t, with weights from a hash of the (unordered) pair, and
// a diagonal that makes it diagonally dominant (hence SPD and well conditioned). The rows
// are stored in CSR for the solver; verification regenerates each row from the rule
// (independent of the stored matrix and of the solver) and checks the true residual
// |x - A z| / |x| of the last solve.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include "bench/mpi/common.hpp"
#include "bench/workload/field.hpp"
#include "bench/workload/size.hpp"

using namespace dynamos;
using namespace dynamos::mpiwork;
namespace po = boost::program_options;

namespace {

const char* kProgram = "dynamos-mpi-cg";
constexpr double kShift = 4.0;  // diagonal margin: eigenvalues in [shift, shift + 4K]
constexpr double kTolerance = 1e-6;

struct Matrix {
  std::uint64_t n = 0;     // global rows
  std::uint64_t row0 = 0;  // first local row
  std::uint64_t rows = 0;  // local rows
  std::vector<std::uint64_t> offsets;
  std::uint64_t seed = 0;
  // CSR of the local rows; columns are global.
  std::vector<std::uint64_t> rowptr;
  std::vector<std::uint32_t> col;
  std::vector<double> val;
};

// The weight of the coupling between rows a and b (a != b), symmetric in a, b.
double weight(std::uint64_t a, std::uint64_t b, std::uint64_t seed) {
  std::uint64_t lo = std::min(a, b), hi = std::max(a, b);
  double u = workload::unit_noise(lo * 0x9e3779b97f4a7c15ull + hi, seed);  // [-1, 1)
  return -(0.75 + 0.25 * u);                                               // in [-1, -0.5)
}

// Row i from the rule: calls f(column, value) for each entry, diagonal last.
template <class F>
void for_row(const Matrix& a, std::uint64_t i, F&& f) {
  double off = 0;
  for (std::uint64_t o : a.offsets) {
    std::uint64_t up = (i + o) % a.n, down = (i + a.n - o) % a.n;
    double wu = weight(i, up, a.seed), wd = weight(i, down, a.seed);
    f(up, wu);
    f(down, wd);
    off += std::fabs(wu) + std::fabs(wd);
  }
  f(i, off + kShift);
}

void build(Matrix& a) {
  a.rowptr.assign(a.rows + 1, 0);
  std::size_t per_row = 2 * a.offsets.size() + 1;
  a.col.resize(a.rows * per_row);
  a.val.resize(a.rows * per_row);
  std::size_t k = 0;
  std::vector<std::pair<std::uint64_t, double>> row;
  for (std::uint64_t r = 0; r < a.rows; ++r) {
    row.clear();
    for_row(a, a.row0 + r, [&](std::uint64_t c, double v) { row.emplace_back(c, v); });
    std::sort(row.begin(), row.end());  // column order, as a CSR reader expects
    for (auto& [c, v] : row) {
      a.col[k] = static_cast<std::uint32_t>(c);
      a.val[k] = v;
      ++k;
    }
    a.rowptr[r + 1] = k;
  }
}

double dot(const std::vector<double>& x, const std::vector<double>& y) {
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    s += x[i] * y[i];
  double total = 0;
  MPI_Allreduce(&s, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

// The matrix of this rank's rows: K distinct offsets in [1, n/2) (the first couples
// neighbours, the rest spread out), stored in CSR.
Matrix make_matrix(const CommonOptions& o, int nonzeros, int rank, int ranks, double per_row) {
  Matrix a;
  a.seed = o.seed;
  a.rows = std::max<std::uint64_t>(16, static_cast<std::uint64_t>(o.mem / per_row));
  a.n = a.rows * ranks;
  if (a.n >= (1ull << 31)) die(kProgram, "--mem too large: more than 2^31 rows");
  a.row0 = a.rows * rank;
  std::size_t k = (nonzeros - 1) / 2;
  if (a.n < 4 * k + 4) die(kProgram, "--mem too small for --nonzeros");
  std::set<std::uint64_t> chosen = {1};
  std::uint64_t h = workload::mix64(o.seed ^ 0xc6a4a7935bd1e995ull);
  while (chosen.size() < k) {
    h = workload::mix64(h);
    chosen.insert(2 + h % (a.n / 2 - 2));
  }
  a.offsets.assign(chosen.begin(), chosen.end());
  build(a);
  return a;
}

// Inverse power iteration on this rank's rows: the vectors and the solver.
struct Solver {
  Solver(Matrix& m, Run& r, std::uint64_t seed)
      : a(m), run(r), nl(m.rows), x(nl), z(nl), res(nl), p(nl), q(nl), pfull(m.n) {
    workload::fill_field_1d(x.data(), nl, a.row0, a.n, seed);
    double norm = std::sqrt(dot(x, x));
    for (double& v : x)
      v /= norm;
  }

  // out = A local, with the search direction allgathered first.
  void spmv(const std::vector<double>& local, std::vector<double>& out) {
    constexpr std::uint64_t kChunk = 16384;
    MPI_Allgather(local.data(), static_cast<int>(nl), MPI_DOUBLE, pfull.data(),
                  static_cast<int>(nl), MPI_DOUBLE, MPI_COMM_WORLD);
    for (std::uint64_t i0 = 0; i0 < nl; i0 += kChunk) {
      std::uint64_t i1 = std::min<std::uint64_t>(nl, i0 + kChunk);
      for (std::uint64_t i = i0; i < i1; ++i) {
        double s = 0;
        for (std::uint64_t k = a.rowptr[i]; k < a.rowptr[i + 1]; ++k)
          s += a.val[k] * pfull[a.col[k]];
        out[i] = s;
      }
      run.progress().add(a.rowptr[i1] - a.rowptr[i0]);
      work += a.rowptr[i1] - a.rowptr[i0];
    }
  }

  // Solves A z = x from z = 0 with `steps` CG steps; the CG residual's norm.
  double solve(int steps) {
    std::fill(z.begin(), z.end(), 0.0);
    res = x;
    p = x;
    double rho = dot(res, res);
    for (int s = 0; s < steps; ++s) {
      spmv(p, q);
      double alpha = rho / dot(p, q);
      for (std::size_t i = 0; i < nl; ++i) {
        z[i] += alpha * p[i];
        res[i] -= alpha * q[i];
      }
      double rho_new = dot(res, res);
      double beta = rho_new / rho;
      rho = rho_new;
      for (std::size_t i = 0; i < nl; ++i)
        p[i] = res[i] + beta * p[i];
    }
    return std::sqrt(rho);
  }

  // The next right-hand side: x = z / |z|.
  void normalise() {
    double norm = std::sqrt(dot(z, z));
    for (std::size_t i = 0; i < nl; ++i)
      x[i] = z[i] / norm;
  }

  // True residual |x - A z| / |x| of the last solve, with the matrix regenerated from its
  // rule.
  double true_residual() {
    std::vector<double> zfull(a.n);
    MPI_Allgather(z.data(), static_cast<int>(nl), MPI_DOUBLE, zfull.data(), static_cast<int>(nl),
                  MPI_DOUBLE, MPI_COMM_WORLD);
    double res2 = 0;
    for (std::uint64_t i = 0; i < nl; ++i) {
      double s = 0;
      for_row(a, a.row0 + i, [&](std::uint64_t c, double v) { s += v * zfull[c]; });
      double d = x[i] - s;
      res2 += d * d;
    }
    double res2_total = 0;
    MPI_Allreduce(&res2, &res2_total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return std::sqrt(res2_total / dot(x, x));
  }

  Matrix& a;
  Run& run;
  const std::size_t nl;
  std::vector<double> x, z, res, p, q, pfull;
  std::uint64_t work = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CommonOptions o;
  int cg_steps = 25, nonzeros = 13;
  po::options_description own("CG options");
  // clang-format off
  own.add_options()
    ("cg-steps", po::value(&cg_steps)->default_value(cg_steps), "CG steps per solve (per iteration)")
    ("nonzeros", po::value(&nonzeros)->default_value(nonzeros),
     "nonzeros per row (odd, 3..63): the diagonal plus pairs of couplings");
  // clang-format on
  auto check = [&]() -> std::string {
    if (cg_steps < 1 || nonzeros < 3 || nonzeros > 63 || nonzeros % 2 == 0)
      return "--cg-steps must be positive and --nonzeros odd in 3..63";
    return {};
  };
  if (auto status = start(argc, argv, kProgram,
                          "conjugate gradient (inverse power iteration) on a sparse SPD matrix "
                          "with allreduce (CG-like); verified by the true residual against the "
                          "matrix regenerated from its rule.",
                          own, 10, o, check))
    return *status;
  Run run(o, "cg", "nonzeros");
  const int rank = run.rank(), ranks = run.ranks();
  // Bytes per local row: CSR (12 per nonzero + 8), 5 local vectors, the gathered vector.
  const double per_row = 12.0 * nonzeros + 8 + 5 * 8 + 8.0 * ranks;
  Matrix a = make_matrix(o, nonzeros, rank, ranks, per_row);
  Solver solver(a, run, o.seed);
  if (rank == 0 && !o.quiet)
    std::fprintf(stderr, "cg: %llu rows, %d nonzeros per row, on %d rank(s), %s per rank\n",
                 static_cast<unsigned long long>(a.n), nonzeros, ranks,
                 workload::format_size(static_cast<std::uint64_t>(per_row * a.rows)).c_str());

  run.start();
  std::uint64_t it = 0;
  double zeta = 0, rnorm = 0;
  bool more = run.keep_going(it);
  while (more) {
    rnorm = solver.solve(cg_steps);
    zeta = kShift + 1.0 / dot(solver.x, solver.z);
    ++it;
    if (run.inject_now(it)) a.val[a.rowptr[a.rows / 2]] *= -1;  // a corrupted matrix entry
    run.progress().iteration_done();
    more = run.keep_going(it);
    // The last solve's right-hand side stays in x for verification.
    if (more) {
      solver.normalise();
      char detail[96];
      std::snprintf(detail, sizeof detail, "zeta %.12g, CG residual %.3g", zeta, rnorm);
      run.report(it, solver.work, detail);
    }
  }
  const double residual = solver.true_residual();
  bool verified = std::isfinite(residual) && residual <= kTolerance;

  workload::ResultLine extra;
  extra.add("rows", a.n).add("nonzeros_per_row", nonzeros).add("cg_steps", cg_steps);
  extra.add("zeta", zeta).add("cg_residual", rnorm);
  int code = run.finish(extra, it, solver.work, verified, zeta, residual);
  MPI_Finalize();
  return code;
}
