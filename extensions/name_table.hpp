// Name tables of the extensions' enums (a policy's names, in enum order, null-terminated
// as a tunable's choices are): the name of a value and the value of a name.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace dynamos::ext {

template <class E, std::size_t N>
const char* enum_name(const char* const (&names)[N], E value) {
  return names[static_cast<std::size_t>(value)];
}

template <class E, std::size_t N>
std::optional<E> parse_enum_name(const char* const (&names)[N], std::string_view name) {
  for (std::size_t i = 0; i + 1 < N; ++i)
    if (name == names[i]) return static_cast<E>(i);
  return std::nullopt;
}

}  // namespace dynamos::ext
