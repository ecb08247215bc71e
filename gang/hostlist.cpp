#include "gang/hostlist.hpp"

#include <charconv>

namespace dynamos::gang {
namespace {

// One bracket's numbers, already formatted ("01", "02", ...).
using Choices = std::vector<std::string>;

Result<void> bad(std::string_view text, std::size_t at, const std::string& why) {
  return fail(Errc::invalid_argument, "hostlist '" + std::string(text) + "': " + why +
                                          " (at character " + std::to_string(at + 1) + ")");
}

bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

std::string padded(unsigned long v, std::size_t width) {
  std::string s = std::to_string(v);
  if (s.size() < width) s.insert(0, width - s.size(), '0');
  return s;
}

// The inside of one bracket, "1-4,7" or "01-03"; `at` is its offset in `all`.
Result<Choices> parse_bracket(std::string_view all, std::size_t at, std::string_view inside,
                              std::size_t max_hosts) {
  Choices out;
  std::size_t start = 0;
  for (;;) {
    auto comma = inside.find(',', start);
    auto item = inside.substr(start, comma == std::string_view::npos ? inside.npos : comma - start);
    auto dash = item.find('-');
    auto lo_text = item.substr(0, dash);
    auto hi_text = dash == std::string_view::npos ? lo_text : item.substr(dash + 1);
    if (!all_digits(lo_text) || !all_digits(hi_text) || lo_text.size() > 9 || hi_text.size() > 9) {
      auto r = bad(all, at + start,
                   "'" + std::string(item) + "' is not a number or a range like 1-4 in brackets");
      return std::unexpected(r.error());
    }
    unsigned long lo = 0, hi = 0;
    std::from_chars(lo_text.data(), lo_text.data() + lo_text.size(), lo);
    std::from_chars(hi_text.data(), hi_text.data() + hi_text.size(), hi);
    if (hi < lo) {
      auto r = bad(all, at + start, "range " + std::string(item) + " runs backwards");
      return std::unexpected(r.error());
    }
    if (hi - lo >= max_hosts || out.size() + (hi - lo + 1) > max_hosts) {
      auto r = bad(all, at + start, "more than " + std::to_string(max_hosts) + " hosts");
      return std::unexpected(r.error());
    }
    // Slurm keeps the width of the lower bound: n[01-10] is n01..n10, n[1-10] n1..n10.
    for (unsigned long v = lo; v <= hi; ++v)
      out.push_back(padded(v, lo_text.size()));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

// One group such as "r[1-2]n[01-02]-ib" (no top-level comma), appended to `hosts`.
Result<void> expand_group(std::string_view all, std::size_t at, std::string_view group,
                          std::size_t max_hosts, std::vector<std::string>& hosts) {
  if (group.empty()) return bad(all, at, "empty host name");
  // The group as literal pieces between brackets: lit0 [b0] lit1 [b1] ... litN.
  std::vector<std::string> literals(1);
  std::vector<Choices> brackets;
  std::size_t i = 0;
  while (i < group.size()) {
    char c = group[i];
    if (c == '[') {
      auto close = group.find(']', i);
      auto nested = group.find('[', i + 1);
      if (close == std::string_view::npos) return bad(all, at + i, "'[' without ']'");
      if (nested < close) return bad(all, at + nested, "brackets cannot nest");
      auto choices = parse_bracket(all, at + i + 1, group.substr(i + 1, close - i - 1), max_hosts);
      if (!choices) return std::unexpected(choices.error());
      brackets.push_back(std::move(*choices));
      literals.emplace_back();
      i = close + 1;
    } else if (c == ']') {
      return bad(all, at + i, "']' without '['");
    } else if (!host_char(c)) {
      return bad(all, at + i, std::string("'") + c + "' cannot be part of a host name");
    } else {
      literals.back() += c;
      ++i;
    }
  }
  std::size_t count = 1;
  for (const auto& b : brackets) {
    count *= b.size();
    if (count > max_hosts || hosts.size() + count > max_hosts)
      return bad(all, at, "more than " + std::to_string(max_hosts) + " hosts");
  }
  // Every combination, the last bracket varying fastest (an odometer).
  std::vector<std::size_t> digit(brackets.size(), 0);
  for (std::size_t n = 0; n < count; ++n) {
    std::string name = literals[0];
    for (std::size_t b = 0; b < brackets.size(); ++b)
      name += brackets[b][digit[b]] + literals[b + 1];
    if (name.size() > 253) return bad(all, at, "host name '" + name + "' is too long");
    hosts.push_back(std::move(name));
    for (std::size_t b = brackets.size(); b-- > 0;) {
      if (++digit[b] < brackets[b].size()) break;
      digit[b] = 0;
    }
  }
  return {};
}

}  // namespace

Result<std::vector<std::string>> expand_hostlist(std::string_view text, std::size_t max_hosts) {
  if (text.empty()) return fail(Errc::invalid_argument, "hostlist is empty");
  std::vector<std::string> hosts;
  std::size_t start = 0;
  int depth = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] == '[') ++depth;
    if (i < text.size() && text[i] == ']') --depth;
    if (i < text.size() && (text[i] != ',' || depth > 0)) continue;
    if (auto r = expand_group(text, start, text.substr(start, i - start), max_hosts, hosts); !r)
      return std::unexpected(r.error());
    start = i + 1;
  }
  return hosts;
}

}  // namespace dynamos::gang
