// Small helpers for the JSON that programs print (one object a line): escaping only;
// the project writes JSON by hand and never parses it in C++.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace dynamos {

// `s` as the inside of a JSON string: quotes, backslashes and control bytes escaped.
inline std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace dynamos
