// Units of time and size, one parser each for the whole project: command-line options,
// config files, tunables and protocol texts all read "1.5s" and "512M" the same way.
//
// Durations: a number and a unit, or several ("1h30m"); units ns, us (or µs), ms, s,
// m or min, h, d; a bare number is seconds ("2", "1.5"); "0" is zero. Exact to the
// nanosecond: "0.1s" is 100000000 ns, and a text that is not a whole number of
// nanoseconds is refused rather than rounded.
// Sizes: a number and an optional unit: B; K, M, G, T, P and KiB..PiB (powers of
// 1024, as Slurm and the kernel's memory files use them); kB, MB, GB, TB, PB (powers
// of 1000). Case does not matter ("2 g" is 2 GiB). Exact to the byte.
// Time limits, in Slurm's forms (sbatch --time): "MM" (minutes), "MM:SS", "HH:MM:SS",
// "D-HH", "D-HH:MM", "D-HH:MM:SS"; "UNLIMITED" or "INFINITE" is no limit (0).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.hpp"

namespace dynamos {

Result<std::int64_t> parse_duration_ns(std::string_view text);
Result<std::int64_t> parse_size_bytes(std::string_view text);
// Seconds of a Slurm time limit; 0 for UNLIMITED. A limit of zero is refused.
Result<std::int64_t> parse_time_limit_s(std::string_view text);
// The same limit in Slurm's canonical form: "D-HH:MM:SS" ("HH:MM:SS" under a day),
// "UNLIMITED" for 0.
std::string format_time_limit_s(std::int64_t seconds);

// The same as std::chrono and unsigned values.
Result<std::chrono::nanoseconds> parse_duration(std::string_view text);
Result<std::uint64_t> parse_size(std::string_view text);

// Canonical texts, parse(format(v)) == v: the largest exact unit ("1500ms", "2min",
// "64MiB").
std::string format_duration_ns(std::int64_t ns);
std::string format_size_bytes(std::int64_t bytes);
// For people: "2s", "1.5s", "500ms", "120s".
std::string format_duration(std::chrono::nanoseconds d);

}  // namespace dynamos
