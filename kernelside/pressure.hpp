// Pressure stall information (PSI): how long tasks waited for CPU, memory or io.
// System-wide in /proc/pressure/, per group in v2 cgroups (X.pressure). PSI can be
// compiled out or disabled at boot (psi=0); reads then fail with Errc::unsupported
// saying how to enable it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.hpp"
#include "kernelside/fs.hpp"

namespace dynamos::kernelside {

enum class Resource { cpu, memory, io };
const char* resource_name(Resource r);

struct PressureLine {
  double avg10 = 0, avg60 = 0, avg300 = 0;  // percent of wall time stalled
  uint64_t total_us = 0;                    // cumulative stall time
};

struct Pressure {
  PressureLine some;                 // some tasks stalled
  std::optional<PressureLine> full;  // all non-idle tasks stalled (absent for cpu before 5.13)
};

// Parses the text of a pressure file.
Result<Pressure> parse_pressure(std::string_view text);

bool psi_available();
// System-wide PSI from /proc/pressure/<resource>.
Result<Pressure> read_pressure(Resource r);
// PSI from any pressure file (e.g. a v2 cgroup's memory.pressure).
Result<Pressure> read_pressure_file(const std::string& path);

// Stall share between two readings: cumulative totals turned into the fraction of the
// interval in which tasks were stalled. For sampling at short intervals (100 ms),
// where the kernel's own 10 s averages react too slowly.
class PressureSampler {
 public:
  struct Sample {
    double some = 0;  // 0..1
    double full = 0;  // 0..1 (0 when the file has no full line)
    std::chrono::nanoseconds interval{0};
  };
  // Reads /proc/pressure/<r> now as the starting point.
  static Result<PressureSampler> open(Resource r);
  // Reads a pressure file (e.g. a v2 cgroup's) now as the starting point.
  static Result<PressureSampler> open_file(std::string path);
  // The stall shares since the previous sample (or open).
  Result<Sample> sample();

 private:
  explicit PressureSampler(std::string path) : path_(std::move(path)) {}
  std::string path_;
  Pressure last_;
  std::chrono::steady_clock::time_point last_time_;
};

// A PSI trigger: the kernel wakes the holder when tasks stalled for at least `stall`
// within any `window` (500 ms to 10 s; without CAP_SYS_RESOURCE, which root lacks on
// this machine, a multiple of 2 s).
// For reacting at once (a host burst) instead of at the next sample. The fd polls with
// POLLPRI, so it fits an event loop (Boost.Asio posix::stream_descriptor).
class PressureTrigger {
 public:
  enum class Kind { some, full };
  static Result<PressureTrigger> open(Resource r, Kind kind, std::chrono::microseconds stall,
                                      std::chrono::microseconds window);
  // The same on any pressure file (a v2 cgroup's memory.pressure).
  static Result<PressureTrigger> open_file(const std::string& path, Kind kind,
                                           std::chrono::microseconds stall,
                                           std::chrono::microseconds window);
  int fd() const { return fd_.get(); }
  // Whether the trigger fired (since the last wait) within timeout; 0 = just check.
  Result<bool> wait(std::chrono::milliseconds timeout);

 private:
  PressureTrigger(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  UniqueFd fd_;
  std::string path_;
};

}  // namespace dynamos::kernelside
