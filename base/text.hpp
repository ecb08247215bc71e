// Small text helpers every parser of the project shares.
#pragma once

#include <cctype>
#include <string>
#include <string_view>

namespace dynamos::text {

// Without leading and trailing white space.
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

// ASCII lower case.
inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// 'text', for messages that quote what the user wrote.
inline std::string quoted(std::string_view s) {
  return "'" + std::string(s) + "'";
}

}  // namespace dynamos::text
