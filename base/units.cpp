#include "base/units.hpp"

#include "base/text.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <limits>
#include <optional>
#include <vector>

namespace dynamos {

namespace {

using text::lower;
using text::quoted;
using text::trim;

// A non-negative decimal number "123", "1.5", ".25" split into digits and scale:
// value = mantissa / 10^scale. Kept exact so that "1.5K" and "0.1s" convert without
// rounding; at most 30 significant digits so that the 128-bit arithmetic cannot overflow.
struct Decimal {
  __int128 mantissa = 0;
  int scale = 0;
};

// Consumes a decimal number from the front of `s`; nullopt when there is none.
std::optional<Decimal> take_decimal(std::string_view& s) {
  Decimal d;
  std::size_t i = 0;
  int digits = 0;
  bool seen_point = false;
  bool any = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.' && !seen_point) {
      seen_point = true;
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(c))) break;
    any = true;
    if (d.mantissa == 0 && c == '0') {
      if (seen_point) ++d.scale;
      continue;
    }
    if (++digits > 30) return std::nullopt;
    d.mantissa = d.mantissa * 10 + (c - '0');
    if (seen_point) ++d.scale;
  }
  if (!any) return std::nullopt;
  s.remove_prefix(i);
  return d;
}

// mantissa * unit / 10^scale when that is a whole number that fits int64.
enum class Exact { ok, fraction, overflow };
Exact scale_exact(const Decimal& d, std::int64_t unit, std::int64_t& out) {
  if (d.mantissa == 0) {
    out = 0;
    return Exact::ok;
  }
  // mantissa < 10^30 and unit < 2^63: bound the product before computing it.
  if (d.mantissa > (static_cast<__int128>(1) << 126) / unit) return Exact::overflow;
  __int128 v = d.mantissa * unit;
  // v < 2^126 < 10^38, so a larger scale always leaves a fraction.
  if (d.scale > 37) return Exact::fraction;
  __int128 p = 1;
  for (int i = 0; i < d.scale; ++i)
    p *= 10;
  if (v % p != 0) return Exact::fraction;
  v /= p;
  if (v > std::numeric_limits<std::int64_t>::max()) return Exact::overflow;
  out = static_cast<std::int64_t>(v);
  return Exact::ok;
}

// number * unit as a whole count of `what` (nanoseconds, bytes), or why not.
Result<std::int64_t> scaled(const Decimal& number, std::int64_t unit, const std::string& shown,
                            const char* what, const char* too_large) {
  std::int64_t out = 0;
  switch (scale_exact(number, unit, out)) {
    case Exact::fraction:
      return fail(Errc::invalid_argument, shown + " is not a whole number of " + what);
    case Exact::overflow:
      return fail(Errc::invalid_argument, shown + too_large);
    case Exact::ok:
      break;
  }
  return out;
}

// A quantity's text (`what`: "duration", "size"), trimmed and without a leading '+',
// and as error messages show it; an error when it is empty or negative.
struct QuantityText {
  std::string_view text;
  std::string shown;
};
Result<QuantityText> quantity_text(std::string_view text, std::string_view what) {
  std::string_view s = trim(text);
  QuantityText q{s, quoted(s)};
  if (s.empty()) return fail(Errc::invalid_argument, "an empty text is not a " + std::string(what));
  if (s[0] == '-')
    return fail(Errc::invalid_argument, q.shown + ": a " + std::string(what) + " is not negative");
  if (s[0] == '+') q.text.remove_prefix(1);
  return q;
}

}  // namespace

Result<std::int64_t> parse_duration_ns(std::string_view text) {
  auto q = quantity_text(text, "duration");
  if (!q) return std::unexpected(q.error());
  std::string_view s = q->text;
  const std::string& shown = q->shown;
  if (s == "0") return 0;
  static const std::pair<const char*, std::int64_t> units[] = {
      {"ns", 1},
      {"us", 1'000},
      {"\xC2\xB5s", 1'000},  // µs
      {"ms", 1'000'000},
      {"s", 1'000'000'000},
      {"min", 60'000'000'000},
      {"m", 60'000'000'000},
      {"h", 3'600'000'000'000},
      {"d", 86'400'000'000'000},
  };
  std::int64_t total = 0;
  bool first = true;
  while (!s.empty()) {
    auto number = take_decimal(s);
    if (!number)
      return fail(Errc::invalid_argument,
                  shown + " is not a duration (a number and a unit: ns, us, ms, s, min, h, d)");
    std::size_t n = 0;
    while (n < s.size() && !std::isdigit(static_cast<unsigned char>(s[n])) && s[n] != '.')
      ++n;
    std::string unit = lower(s.substr(0, n));
    s.remove_prefix(n);
    if (unit.empty()) {
      if (total != 0 || !s.empty() || !first)
        return fail(Errc::invalid_argument,
                    shown + " needs a unit after every number (ns, us, ms, s, min, h, d)");
      unit = "s";  // a bare number is seconds: "2", "1.5"
    }
    first = false;
    auto it = std::find_if(std::begin(units), std::end(units),
                           [&](const auto& u) { return unit == u.first; });
    if (it == std::end(units))
      return fail(Errc::invalid_argument,
                  shown + ": unknown duration unit '" + unit + "' (ns, us, ms, s, min, h, d)");
    auto part =
        scaled(*number, it->second, shown, "nanoseconds", " is too long (at most about 292 years)");
    if (!part) return std::unexpected(part.error());
    if (__builtin_add_overflow(total, *part, &total))
      return fail(Errc::invalid_argument, shown + " is too long (at most about 292 years)");
  }
  return total;
}

Result<std::int64_t> parse_size_bytes(std::string_view text) {
  auto q = quantity_text(text, "size");
  if (!q) return std::unexpected(q.error());
  std::string_view s = q->text;
  const std::string& shown = q->shown;
  auto number = take_decimal(s);
  if (!number)
    return fail(Errc::invalid_argument,
                shown +
                    " is not a size (a number and an optional unit: B, K, M, G, T, KiB, "
                    "MiB, GiB, TiB, kB, MB, GB, TB)");
  std::string unit = lower(trim(s));
  constexpr std::int64_t k = 1024;
  static const std::pair<const char*, std::int64_t> units[] = {
      {"", 1},
      {"b", 1},
      {"k", k},
      {"kib", k},
      {"kb", 1000},
      {"m", k * k},
      {"mib", k * k},
      {"mb", 1000 * 1000},
      {"g", k * k * k},
      {"gib", k * k * k},
      {"gb", 1000LL * 1000 * 1000},
      {"t", k * k * k * k},
      {"tib", k * k * k * k},
      {"tb", 1000LL * 1000 * 1000 * 1000},
      {"p", k * k * k * k * k},
      {"pib", k * k * k * k * k},
      {"pb", 1000LL * 1000 * 1000 * 1000 * 1000},
  };
  auto it = std::find_if(std::begin(units), std::end(units),
                         [&](const auto& u) { return unit == u.first; });
  if (it == std::end(units))
    return fail(Errc::invalid_argument,
                shown + ": unknown size unit '" + std::string(trim(s)) +
                    "' (B, K, M, G, T, P and KiB..PiB are powers of 1024; kB..PB of 1000)");
  return scaled(*number, it->second, shown, "bytes", " is too large (at most 8 EiB - 1)");
}

std::string format_duration_ns(std::int64_t ns) {
  if (ns == 0) return "0s";
  static const std::pair<const char*, std::int64_t> units[] = {
      {"h", 3'600'000'000'000}, {"min", 60'000'000'000}, {"s", 1'000'000'000},
      {"ms", 1'000'000},        {"us", 1'000},           {"ns", 1},
  };
  for (const auto& [name, unit] : units)
    if (ns % unit == 0) return std::to_string(ns / unit) + name;
  return std::to_string(ns) + "ns";
}

std::string format_size_bytes(std::int64_t bytes) {
  if (bytes == 0) return "0B";
  static const char* names[] = {"PiB", "TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 5; ++i) {
    std::int64_t unit = std::int64_t{1} << (10 * (5 - i));
    if (bytes % unit == 0) return std::to_string(bytes / unit) + names[i];
  }
  return std::to_string(bytes) + "B";
}

std::string format_duration(std::chrono::nanoseconds d) {
  char buf[32];
  double s = static_cast<double>(d.count()) / 1e9;
  if (s < 1 && d.count() % 1'000'000 == 0)
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(d.count() / 1'000'000));
  else
    std::snprintf(buf, sizeof buf, "%gs", s);
  return buf;
}

namespace {
// Up to `max` colon-separated fields of digits, each below 10^9; nullopt otherwise.
std::optional<std::vector<std::int64_t>> colon_fields(std::string_view s, std::size_t max) {
  std::vector<std::int64_t> out;
  for (;;) {
    std::size_t n = 0;
    std::int64_t v = 0;
    while (n < s.size() && std::isdigit(static_cast<unsigned char>(s[n]))) {
      if (n >= 9) return std::nullopt;
      v = v * 10 + (s[n] - '0');
      ++n;
    }
    if (n == 0 || out.size() == max) return std::nullopt;
    out.push_back(v);
    s.remove_prefix(n);
    if (s.empty()) return out;
    if (s[0] != ':') return std::nullopt;
    s.remove_prefix(1);
  }
}
}  // namespace

Result<std::int64_t> parse_time_limit_s(std::string_view text) {
  std::string_view s = trim(text);
  std::string shown = quoted(s);
  std::string low = lower(s);
  if (low == "unlimited" || low == "infinite") return 0;
  auto bad = [&] {
    return fail(Errc::invalid_argument,
                shown +
                    " is not a time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, "
                    "D-HH:MM:SS or UNLIMITED)");
  };
  std::int64_t days = -1;
  if (auto dash = s.find('-'); dash != std::string_view::npos) {
    auto d = colon_fields(s.substr(0, dash), 1);
    if (!d) return bad();
    days = (*d)[0];
    s.remove_prefix(dash + 1);
  }
  auto f = colon_fields(s, 3);
  if (!f) return bad();
  std::int64_t h = 0, m = 0, sec = 0;
  if (days >= 0) {  // D-HH, D-HH:MM, D-HH:MM:SS
    h = (*f)[0];
    if (f->size() > 1) m = (*f)[1];
    if (f->size() > 2) sec = (*f)[2];
  } else if (f->size() == 1) {  // MM
    m = (*f)[0];
  } else if (f->size() == 2) {  // MM:SS
    m = (*f)[0];
    sec = (*f)[1];
  } else {  // HH:MM:SS
    h = (*f)[0];
    m = (*f)[1];
    sec = (*f)[2];
  }
  std::int64_t total = std::max<std::int64_t>(days, 0) * 86'400 + h * 3'600 + m * 60 + sec;
  if (total == 0)
    return fail(Errc::invalid_argument, shown + ": a time limit must be positive (or UNLIMITED)");
  if (total > 365LL * 86'400 * 100)
    return fail(Errc::invalid_argument, shown + " is too long a time limit (at most 100 years)");
  return total;
}

std::string format_time_limit_s(std::int64_t seconds) {
  if (seconds <= 0) return "UNLIMITED";
  char buf[64];
  auto d = seconds / 86'400, h = seconds / 3'600 % 24, m = seconds / 60 % 60, s = seconds % 60;
  if (d > 0)
    std::snprintf(buf, sizeof buf, "%lld-%02lld:%02lld:%02lld", static_cast<long long>(d),
                  static_cast<long long>(h), static_cast<long long>(m), static_cast<long long>(s));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", static_cast<long long>(h),
                  static_cast<long long>(m), static_cast<long long>(s));
  return buf;
}

Result<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  auto ns = parse_duration_ns(text);
  if (!ns) return std::unexpected(ns.error());
  return std::chrono::nanoseconds(*ns);
}

Result<std::uint64_t> parse_size(std::string_view text) {
  auto bytes = parse_size_bytes(text);
  if (!bytes) return std::unexpected(bytes.error());
  return static_cast<std::uint64_t>(*bytes);
}

}  // namespace dynamos
