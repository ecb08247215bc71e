// Sizes on workload command lines: "256M", "1.5G", "4096" (bytes), binary multiples.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.hpp"
#include "base/units.hpp"

namespace dynamos::workload {

// Parses a byte count with an optional K, M, G or T suffix (powers of 1024, "KiB" and
// "MB" spellings accepted as the same).
using dynamos::parse_size;  // base/units.hpp

// "256 MiB", "1.5 GiB", "512 B".
std::string format_size(std::uint64_t bytes);

}  // namespace dynamos::workload
