// Data that compresses like application data.
//
// zram compresses the pages it stores, so a workload whose memory holds zeros or a
// repeated pattern would make paging look far cheaper than it is. Workloads fill their
// arrays with a smooth field (a few low-frequency modes, as a simulated physical field)
// plus small pseudo-random noise: every double differs in its low mantissa bits, as
// computed data does. docs/workloads.md gives the compression ratios measured with lz4.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

namespace dynamos::workload {

// splitmix64's finaliser: a cheap, well-mixed hash of an index.
inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1), a pure function of (index, seed).
inline double unit_noise(std::uint64_t index, std::uint64_t seed) {
  std::uint64_t h = mix64(index ^ mix64(seed));
  return static_cast<double>(h >> 11) * 0x1.0p-52 - 1.0;
}

// The smooth part at a point of the unit cube (x, y, z in [0, 1)). Values lie around 2,
// well away from zero.
inline double smooth_value(double x, double y, double z, std::uint64_t seed) {
  constexpr double tau = 2 * std::numbers::pi;
  double phase = static_cast<double>(mix64(seed) >> 40) * 0x1.0p-24;
  return 2.0 + std::sin(tau * (x + phase)) * std::cos(tau * (2 * y + phase)) +
         0.5 * std::sin(tau * (3 * z + x - y));
}

// The field at a point, plus noise drawn from the point's global `index`.
inline double field_value(double x, double y, double z, std::uint64_t index, std::uint64_t seed) {
  return smooth_value(x, y, z, seed) + 1e-3 * unit_noise(index, seed);
}

// Fills out[0..count) with the field along a line: point j is (x + j*dx, y + j*dy,
// z + j*dz) with noise index first_index + j. The smooth part is evaluated every 16
// points and interpolated between: filling gigabytes stays fast (a few ns a value).
inline void fill_field_line(double* out, std::uint64_t count, double x, double y, double z,
                            double dx, double dy, double dz, std::uint64_t first_index,
                            std::uint64_t seed) {
  constexpr std::uint64_t step = 16;
  double left = smooth_value(x, y, z, seed);
  for (std::uint64_t j0 = 0; j0 < count; j0 += step) {
    double t = static_cast<double>(j0 + step);
    double right = smooth_value(x + t * dx, y + t * dy, z + t * dz, seed);
    std::uint64_t end = j0 + step < count ? j0 + step : count;
    for (std::uint64_t j = j0; j < end; ++j) {
      double w = static_cast<double>(j - j0) / step;
      out[j] = left + w * (right - left) + 1e-3 * unit_noise(first_index + j, seed);
    }
    left = right;
  }
}

// A flat array of n values as one line through the cube (several periods of each mode).
inline void fill_field_1d(double* out, std::uint64_t count, std::uint64_t first, std::uint64_t n,
                          std::uint64_t seed) {
  double d = n ? 1.0 / static_cast<double>(n) : 0.0;
  double t = static_cast<double>(first) * d;
  fill_field_line(out, count, t, 7 * t, 31 * t, d, 7 * d, 31 * d, first, seed);
}

}  // namespace dynamos::workload
