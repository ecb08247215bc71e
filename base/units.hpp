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
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.hpp"

namespace dynamos {

Result<std::int64_t> parse_duration_ns(std::string_view text);
Result<std::int64_t> parse_size_bytes(std::string_view text);

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
