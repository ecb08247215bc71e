#include "bench/workload/size.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <string>

namespace dynamos::workload {

Result<std::uint64_t> parse_size(std::string_view text) {
  std::string s(text);
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(s, &used);
  } catch (...) {
    return fail(Errc::invalid_argument,
                "size '" + s + "' is not a number with an optional K/M/G/T suffix");
  }
  std::string suffix;
  for (char c : s.substr(used))
    if (!std::isspace(static_cast<unsigned char>(c)))
      suffix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 1;
  if (suffix.empty() || suffix == "B") {
    mult = 1;
  } else {
    const std::string units = "KMGT";
    auto pos = units.find(suffix[0]);
    std::string rest = suffix.substr(1);
    if (pos == std::string::npos || !(rest.empty() || rest == "B" || rest == "IB"))
      return fail(Errc::invalid_argument,
                  "size '" + s + "': unknown suffix '" + suffix + "' (use K, M, G or T)");
    mult = std::pow(1024.0, static_cast<double>(pos + 1));
  }
  double bytes = value * mult;
  if (!(bytes >= 0) || bytes > 1.8e19)
    return fail(Errc::invalid_argument, "size '" + s + "' is out of range");
  return static_cast<std::uint64_t>(bytes);
}

std::string format_size(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0 || v == std::floor(v))
    std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace dynamos::workload
