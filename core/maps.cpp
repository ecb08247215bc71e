#include <algorithm>
#include <charconv>

#include "core/target.hpp"

namespace dynamos::core {

Result<std::vector<Mapping>> parse_maps(std::string_view text) {
  std::vector<Mapping> out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.empty()) continue;
    auto bad = [&] {
      return fail(Errc::protocol, "malformed maps line " + std::to_string(line_no) + ": '" +
                                      std::string(line) + "'");
    };
    Mapping m;
    const char* p = line.data();
    const char* end = p + line.size();
    auto r = std::from_chars(p, end, m.begin, 16);
    if (r.ec != std::errc{} || r.ptr == end || *r.ptr != '-') return bad();
    r = std::from_chars(r.ptr + 1, end, m.end, 16);
    if (r.ec != std::errc{} || r.ptr == end) return bad();
    p = r.ptr + 1;
    const char* sp = std::find(p, end, ' ');
    m.perms.assign(p, sp);
    if (sp == end) return bad();
    r = std::from_chars(sp + 1, end, m.offset, 16);
    if (r.ec != std::errc{}) return bad();
    // Skip "dev inode", then spaces; the rest is the path (may contain spaces).
    p = r.ptr;
    for (int field = 0; field < 2; ++field) {
      while (p < end && *p == ' ')
        ++p;
      while (p < end && *p != ' ')
        ++p;
    }
    while (p < end && *p == ' ')
      ++p;
    m.path.assign(p, end);
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace dynamos::core
