// A small JSON reader for what the harness reads back from other programs: the agents'
// switch records (JSON lines with nested paging reports) and `dynamos ... --json`
// output. Numbers are doubles; objects keep their keys sorted. Writing stays by hand
// (base/json.hpp escapes).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/error.hpp"

namespace dynamos::compare {

class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::map<std::string, Json, std::less<>>;

  Json() = default;  // null
  explicit Json(bool b) : v_(b) {}
  explicit Json(double d) : v_(d) {}
  explicit Json(std::string s) : v_(std::move(s)) {}
  explicit Json(Array a) : v_(std::make_shared<Array>(std::move(a))) {}
  explicit Json(Object o) : v_(std::make_shared<Object>(std::move(o))) {}

  bool is_null() const { return std::holds_alternative<std::monostate>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_number() const { return std::holds_alternative<double>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_array() const { return std::holds_alternative<std::shared_ptr<Array>>(v_); }
  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(v_); }

  // Typed access with a fallback for a missing or differently typed value.
  double number(double fallback = 0) const;
  bool boolean(bool fallback = false) const;
  std::string string(std::string fallback = {}) const;
  const Array& array() const;    // empty unless an array
  const Object& object() const;  // empty unless an object
  // A member of an object (null when missing or not an object).
  const Json& operator[](std::string_view key) const;
  bool has(std::string_view key) const;

 private:
  std::variant<std::monostate, bool, double, std::string, std::shared_ptr<Array>,
               std::shared_ptr<Object>>
      v_;
};

// Parses one JSON text (surrounding white space allowed). Errors name the offset.
Result<Json> parse_json(std::string_view text);
// Parses JSON lines: one value a non-empty line.
Result<std::vector<Json>> parse_json_lines(std::string_view text);

}  // namespace dynamos::compare
