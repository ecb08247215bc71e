// dynamos-mpi-ft: 3D FFT with an all-to-all transpose (FT-like).
//
// As NAS FT does: a complex field u0 on an nx x ny x nz grid (powers of two, z slabs per
// rank) is transformed once; each iteration t multiplies the spectrum by exp(-4 pi^2 a
// |k|^2 t), transforms back (1D FFTs along z, an MPI_Alltoall transpose from y slabs to z
// slabs, FFTs along y and x) and takes a checksum of 1024 points.
//
// Verification, independent of the FFT code:
//  - forward: the spectrum at a few modes equals the direct sum u0 . e_-k;
//  - result: the direct projections of the last iteration's field on those modes equal
//    the start's projections times the decay factor (a wrong transpose, a lost block or a
//    corrupted output value breaks them all);
//  - the stored spectrum, which every iteration reads, is unchanged at the end (a hash of
//    its bits taken right after the verified forward transform).
#include <algorithm>
#include <bit>
#include <cmath>
#include <complex>
#include <cstring>
#include <numbers>
#include <vector>

#include "bench/mpi/common.hpp"
#include "bench/workload/field.hpp"
#include "bench/workload/size.hpp"

using namespace dynamos;
using namespace dynamos::mpiwork;
namespace po = boost::program_options;

namespace {

const char* kProgram = "dynamos-mpi-ft";
constexpr double kAlpha = 1e-6;  // NAS FT's diffusion constant

// In-place iterative radix-2 FFT of one length.
class Fft {
 public:
  explicit Fft(int n) : n_(n), rev_(n), tw_(n / 2 > 0 ? n / 2 : 1) {
    int bits = std::countr_zero(static_cast<unsigned>(n));
    for (int i = 0; i < n; ++i) {
      int r = 0;
      for (int b = 0; b < bits; ++b)
        if (i & (1 << b)) r |= 1 << (bits - 1 - b);
      rev_[i] = r;
    }
    for (int i = 0; i < n / 2; ++i)
      tw_[i] = std::polar(1.0, -2 * std::numbers::pi * i / n);
  }

  // Forward: X_k = sum_j x_j e^{-2 pi i jk/n}; inverse: the conjugate sum, unscaled.
  void run(Complex* a, bool inverse) const {
    for (int i = 0; i < n_; ++i)
      if (i < rev_[i]) std::swap(a[i], a[rev_[i]]);
    for (int len = 2; len <= n_; len <<= 1) {
      int half = len / 2, step = n_ / len;
      for (int s = 0; s < n_; s += len)
        for (int j = 0; j < half; ++j) {
          Complex w = tw_[j * step];
          if (inverse) w = std::conj(w);
          Complex t = mul(a[s + j + half], w);
          a[s + j + half] = a[s + j] - t;
          a[s + j] += t;
        }
    }
  }
  int size() const { return n_; }

 private:
  int n_;
  std::vector<int> rev_;
  std::vector<Complex> tw_;
};

struct Layout {
  int nx, ny, nz, ranks, rank;
  int nzl() const { return nz / ranks; }
  int nyl() const { return ny / ranks; }
  std::size_t local() const { return static_cast<std::size_t>(nx) * ny * nz / ranks; }
};

// Spatial layout A[zl][y][x]; spectral layout B[yl][x][z].
class Transform {
 public:
  explicit Transform(const Layout& l)
      : l_(l),
        fx_(l.nx),
        fy_(l.ny),
        fz_(l.nz),
        send_(l.local()),
        recv_(l.local()),
        col_(static_cast<std::size_t>(kGroup) * l.ny) {}

  // A (spatial) -> B (spectral). A is destroyed.
  void forward(Complex* a, Complex* b, workload::ProgressWriter& progress) {
    xy_pass(a, false, progress);
    const int nzl = l_.nzl(), nyl = l_.nyl(), nx = l_.nx, ny = l_.ny;
    std::size_t block = static_cast<std::size_t>(nzl) * nyl * nx;
    for (int d = 0; d < l_.ranks; ++d)
      for (int zl = 0; zl < nzl; ++zl)
        for (int yl = 0; yl < nyl; ++yl)
          std::memcpy(&send_[d * block + (static_cast<std::size_t>(zl) * nyl + yl) * nx],
                      &a[(static_cast<std::size_t>(zl) * ny + d * nyl + yl) * nx],
                      nx * sizeof(Complex));
    alltoall(block);
    for (int s = 0; s < l_.ranks; ++s)
      for (int zl = 0; zl < nzl; ++zl)
        for (int yl = 0; yl < nyl; ++yl) {
          const Complex* src = &recv_[s * block + (static_cast<std::size_t>(zl) * nyl + yl) * nx];
          for (int x = 0; x < nx; ++x)
            b[(static_cast<std::size_t>(yl) * nx + x) * l_.nz + s * nzl + zl] = src[x];
        }
    z_pass(b, false, progress);
  }

  // W (spectral) -> A (spatial), scaled by 1/N. W is destroyed; A may be W (W is
  // packed for the transpose before A is written).
  void inverse(Complex* w, Complex* a, workload::ProgressWriter& progress) {
    z_pass(w, true, progress);
    const int nzl = l_.nzl(), nyl = l_.nyl(), nx = l_.nx, ny = l_.ny, nz = l_.nz;
    std::size_t block = static_cast<std::size_t>(nzl) * nyl * nx;
    for (int d = 0; d < l_.ranks; ++d)
      for (int zl = 0; zl < nzl; ++zl)
        for (int yl = 0; yl < nyl; ++yl) {
          Complex* dst = &send_[d * block + (static_cast<std::size_t>(zl) * nyl + yl) * nx];
          for (int x = 0; x < nx; ++x)
            dst[x] = w[(static_cast<std::size_t>(yl) * nx + x) * nz + d * nzl + zl];
        }
    alltoall(block);
    for (int s = 0; s < l_.ranks; ++s)
      for (int zl = 0; zl < nzl; ++zl)
        for (int yl = 0; yl < nyl; ++yl)
          std::memcpy(&a[(static_cast<std::size_t>(zl) * ny + s * nyl + yl) * nx],
                      &recv_[s * block + (static_cast<std::size_t>(zl) * nyl + yl) * nx],
                      nx * sizeof(Complex));
    xy_pass(a, true, progress);
    double scale = 1.0 / (static_cast<double>(nx) * ny * nz);
    for (std::size_t i = 0; i < l_.local(); ++i)
      a[i] *= scale;
  }

 private:
  static constexpr int kGroup = 8;
  void alltoall(std::size_t block) {
    MPI_Alltoall(send_.data(), static_cast<int>(2 * block), MPI_DOUBLE, recv_.data(),
                 static_cast<int>(2 * block), MPI_DOUBLE, MPI_COMM_WORLD);
  }
  void xy_pass(Complex* a, bool inverse, workload::ProgressWriter& progress) {
    const int nx = l_.nx, ny = l_.ny;
    for (int zl = 0; zl < l_.nzl(); ++zl) {
      Complex* plane = a + static_cast<std::size_t>(zl) * nx * ny;
      for (int y = 0; y < ny; ++y)
        fx_.run(plane + static_cast<std::size_t>(y) * nx, inverse);
      // Columns along y in groups of kGroup neighbours, so that each gathered row segment
      // is a whole cache line or more rather than one complex value per line.
      for (int x0 = 0; x0 < nx; x0 += kGroup) {
        int g = std::min(kGroup, nx - x0);
        for (int y = 0; y < ny; ++y)
          for (int j = 0; j < g; ++j)
            col_[static_cast<std::size_t>(j) * ny + y] =
                plane[static_cast<std::size_t>(y) * nx + x0 + j];
        for (int j = 0; j < g; ++j)
          fy_.run(col_.data() + static_cast<std::size_t>(j) * ny, inverse);
        for (int y = 0; y < ny; ++y)
          for (int j = 0; j < g; ++j)
            plane[static_cast<std::size_t>(y) * nx + x0 + j] =
                col_[static_cast<std::size_t>(j) * ny + y];
      }
      progress.add(static_cast<std::uint64_t>(nx) * ny);
    }
  }
  void z_pass(Complex* b, bool inverse, workload::ProgressWriter& progress) {
    for (int yl = 0; yl < l_.nyl(); ++yl) {
      for (int x = 0; x < l_.nx; ++x)
        fz_.run(b + (static_cast<std::size_t>(yl) * l_.nx + x) * l_.nz, inverse);
      progress.add(static_cast<std::uint64_t>(l_.nx) * l_.nz);
    }
  }

  Layout l_;
  Fft fx_, fy_, fz_;
  std::vector<Complex> send_, recv_, col_;
};

// Direct projections of the spatial field (all ranks).
std::vector<Complex> project(const Layout& l, const Complex* a, const std::vector<Mode>& modes) {
  return mpiwork::project(
      l.nx, l.ny, l.nz, l.rank * l.nzl(), l.nzl(),
      [&](int zl, int y) { return a + (static_cast<std::size_t>(zl) * l.ny + y) * l.nx; }, modes);
}

int signed_freq(int k, int n) {
  return k <= n / 2 ? k : k - n;
}

// exp(-4 pi^2 a k^2 t) for each index of one dimension.
std::vector<double> decay(int n, double t) {
  std::vector<double> d(n);
  for (int k = 0; k < n; ++k) {
    double f = signed_freq(k, n);
    d[k] = std::exp(-4 * std::numbers::pi * std::numbers::pi * kAlpha * f * f * t);
  }
  return d;
}

std::uint64_t bits_hash(const Complex* b, std::size_t n) {
  std::uint64_t h = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double re = b[i].real(), im = b[i].imag();
    h += workload::mix64(std::bit_cast<std::uint64_t>(re) ^ (i << 1)) +
         workload::mix64(std::bit_cast<std::uint64_t>(im) ^ ((i << 1) | 1));
  }
  std::uint64_t total = 0;
  MPI_Allreduce(&h, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

// The grid: total points from --mem (four complex arrays a point: 64 bytes), split into
// powers of two with z at least the ranks.
Layout make_layout(const CommonOptions& o, int rank, int ranks) {
  if (!std::has_single_bit(static_cast<unsigned>(ranks)))
    die(kProgram, "the number of ranks must be a power of two, not " + std::to_string(ranks));
  std::uint64_t total_points = o.mem / 64 * static_cast<std::uint64_t>(ranks);
  int L = std::bit_width(total_points) - 1;
  int lz = L / 3, ly = (L - lz) / 2, lx = L - lz - ly;
  int lr = std::countr_zero(static_cast<unsigned>(ranks));
  if (lz < lr) die(kProgram, "--mem too small: the z and y sizes must be at least the ranks");
  return Layout{1 << lx, 1 << ly, 1 << lz, ranks, rank};
}

// u0: two smooth fields plus noise as real and imaginary parts.
void initial_field(const Layout& l, std::vector<Complex>& w, std::uint64_t seed) {
  std::vector<double> re(l.nx), im(l.nx);
  for (int zl = 0; zl < l.nzl(); ++zl)
    for (int y = 0; y < l.ny; ++y) {
      int z = l.rank * l.nzl() + zl;
      std::uint64_t g = (static_cast<std::uint64_t>(z) * l.ny + y) * l.nx;
      double yy = static_cast<double>(y) / l.ny, zz = static_cast<double>(z) / l.nz;
      workload::fill_field_line(re.data(), l.nx, 0, yy, zz, 1.0 / l.nx, 0, 0, g, seed);
      workload::fill_field_line(im.data(), l.nx, 0, yy, zz, 1.0 / l.nx, 0, 0, g, seed + 1);
      Complex* row = w.data() + (static_cast<std::size_t>(zl) * l.ny + y) * l.nx;
      for (int x = 0; x < l.nx; ++x)
        row[x] = {re[x], im[x] - 2.0};
    }
}

// The modes checked: five fixed, three drawn from the seed.
std::vector<Mode> check_modes(const Layout& l, std::uint64_t seed) {
  std::vector<Mode> modes = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 2, 3}};
  std::uint64_t h = workload::mix64(seed + 77);
  for (int i = 0; i < 3; ++i) {
    h = workload::mix64(h);
    modes.push_back({static_cast<int>(h % l.nx), static_cast<int>((h >> 20) % l.ny),
                     static_cast<int>((h >> 40) % l.nz)});
  }
  return modes;
}

// The sum of |u0| over the grid (at least 1): errors are relative to it.
double field_scale(const std::vector<Complex>& w) {
  double scale = 0;
  for (const Complex& c : w)
    scale += std::abs(c);
  MPI_Allreduce(MPI_IN_PLACE, &scale, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return std::max(scale, 1.0);
}

// Forward check: the spectrum at each mode against the direct projection; the worst
// relative error.
double forward_error(const Layout& l, const std::vector<Complex>& b0,
                     const std::vector<Mode>& modes, const std::vector<Complex>& p0, double scale) {
  std::vector<Complex> spec(modes.size());
  for (std::size_t m = 0; m < modes.size(); ++m) {
    const Mode& k = modes[m];
    if (k.ky / l.nyl() == l.rank)
      spec[m] = b0[(static_cast<std::size_t>(k.ky % l.nyl()) * l.nx + k.kx) * l.nz + k.kz];
  }
  MPI_Allreduce(MPI_IN_PLACE, spec.data(), static_cast<int>(2 * modes.size()), MPI_DOUBLE, MPI_SUM,
                MPI_COMM_WORLD);
  double worst = 0;
  for (std::size_t m = 0; m < modes.size(); ++m)
    worst = std::max(worst, std::abs(spec[m] - p0[m]) / scale);
  return worst;
}

// w = the spectrum decayed to time t (in the transposed layout), then transformed back.
void evolve(const Layout& l, const std::vector<Complex>& b0, std::vector<Complex>& w, double t,
            Transform& tf, workload::ProgressWriter& progress) {
  std::vector<double> dx = decay(l.nx, t), dy = decay(l.ny, t), dz = decay(l.nz, t);
  for (int yl = 0; yl < l.nyl(); ++yl)
    for (int x = 0; x < l.nx; ++x) {
      double f = dy[l.rank * l.nyl() + yl] * dx[x];
      std::size_t base = (static_cast<std::size_t>(yl) * l.nx + x) * l.nz;
      for (int z = 0; z < l.nz; ++z)
        w[base + z] = b0[base + z] * (f * dz[z]);
    }
  tf.inverse(w.data(), w.data(), progress);
}

// NAS FT's checksum: 1024 points spread over the grid.
Complex checksum_of(const Layout& l, const std::vector<Complex>& w) {
  Complex local = 0, checksum = 0;
  for (int j = 1; j <= 1024; ++j) {
    int x = j % l.nx, y = (3 * j) % l.ny, z = (5 * j) % l.nz;
    if (z / l.nzl() == l.rank)
      local += w[(static_cast<std::size_t>(z % l.nzl()) * l.ny + y) * l.nx + x];
  }
  MPI_Allreduce(&local, &checksum, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return checksum;
}

// Result check: direct projections of the field at time t against the decayed start.
double result_error(const Layout& l, const std::vector<Complex>& w, const std::vector<Mode>& modes,
                    const std::vector<Complex>& p0, double scale, double t) {
  std::vector<Complex> p1 = project(l, w.data(), modes);
  double worst = 0;
  for (std::size_t m = 0; m < modes.size(); ++m) {
    const Mode& k = modes[m];
    double d = decay(l.nx, t)[k.kx] * decay(l.ny, t)[k.ky] * decay(l.nz, t)[k.kz];
    worst = std::max(worst, std::abs(p1[m] - p0[m] * d) / scale);
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  CommonOptions o;
  po::options_description own("FT options");
  if (auto status = start(argc, argv, kProgram,
                          "3D FFT with an all-to-all transpose, evolved in spectral space "
                          "(FT-like); the number of ranks must be a power of two. Verified by "
                          "direct Fourier projections.",
                          own, 6, o))
    return *status;
  Run run(o, "ft", "points");
  const Layout l = make_layout(o, run.rank(), run.ranks());
  const std::size_t n = l.local();
  std::vector<Complex> b0(n), w(n);
  Transform tf(l);
  initial_field(l, w, o.seed);
  const std::vector<Mode> modes = check_modes(l, o.seed);
  const std::vector<Complex> p0 = project(l, w.data(), modes);
  const double scale = field_scale(w);
  if (l.rank == 0 && !o.quiet)
    std::fprintf(stderr, "ft: grid %dx%dx%d on %d rank(s), %s per rank\n", l.nx, l.ny, l.nz,
                 l.ranks, workload::format_size(4 * n * sizeof(Complex)).c_str());

  run.start();
  tf.forward(w.data(), b0.data(), run.progress());
  double worst = forward_error(l, b0, modes, p0, scale);
  const std::uint64_t hash0 = bits_hash(b0.data(), n);
  std::uint64_t it = 0, work = 2 * n;  // the forward transform's passes
  Complex checksum = 0;
  while (run.keep_going(it)) {
    ++it;
    evolve(l, b0, w, static_cast<double>(it), tf, run.progress());
    checksum = checksum_of(l, w);
    work += 2 * n;
    if (run.inject_now(it)) b0[n / 3] *= 2.0;  // a corrupted spectral value (an exponent bit)
    run.progress().iteration_done();
    char detail[96];
    std::snprintf(detail, sizeof detail, "checksum %.10e %+.10ei", checksum.real(),
                  checksum.imag());
    run.report(it, work, detail);
  }
  if (it > 0)
    worst = std::max(worst, result_error(l, w, modes, p0, scale, static_cast<double>(it)));
  bool intact = bits_hash(b0.data(), n) == hash0;
  bool verified = it > 0 && intact && worst <= 1e-10;
  if (l.rank == 0 && !intact)
    std::fprintf(stderr, "%s: the stored spectrum changed during the run\n", kProgram);

  workload::ResultLine extra;
  extra.add("grid", std::to_string(l.nx) + "x" + std::to_string(l.ny) + "x" + std::to_string(l.nz));
  extra.add("checksum_re", checksum.real()).add("checksum_im", checksum.imag());
  extra.add("spectrum_intact", intact);
  int code = run.finish(extra, it, work, verified, checksum.real(), worst);
  MPI_Finalize();
  return code;
}
