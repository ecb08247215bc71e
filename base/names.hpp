// Names of enum values: one table of names in the enum's order, instead of a switch a
// function. A value past the table (a cast from outside) gets `unknown`.
#pragma once

#include <cstddef>

namespace dynamos {

template <class E, std::size_t N>
constexpr const char* enum_name(const char* const (&names)[N], E value,
                                const char* unknown = "unknown") {
  const auto i = static_cast<std::size_t>(value);
  return i < N ? names[i] : unknown;
}

}  // namespace dynamos
