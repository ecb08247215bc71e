// The final machine-readable line of every workload:
//   RESULT {"workload":"cg","ranks":2,...,"verified":true}
// one flat JSON object (strings, numbers, booleans, null) on one line starting with
// "RESULT ". Harnesses find it in the workload's output with find_result_line().
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/error.hpp"

namespace dynamos::workload {

inline constexpr std::string_view kResultPrefix = "RESULT ";

// Builds the line; keys keep the order they were added in.
class ResultLine {
 public:
  ResultLine& add(std::string_view key, std::string_view text);
  ResultLine& add(std::string_view key, const char* text) {
    return add(key, std::string_view(text));
  }
  ResultLine& add(std::string_view key, const std::string& text) {
    return add(key, std::string_view(text));
  }
  ResultLine& add(std::string_view key, double value);  // non-finite values become null
  ResultLine& add(std::string_view key, std::int64_t value);
  ResultLine& add(std::string_view key, std::uint64_t value);
  ResultLine& add(std::string_view key, int value) {
    return add(key, static_cast<std::int64_t>(value));
  }
  ResultLine& add(std::string_view key, bool value);

  // "RESULT {...}" without a newline.
  std::string str() const;

 private:
  nlohmann::ordered_json obj_ = nlohmann::ordered_json::object();
};

// A parsed result: every value as its JSON text decoded (strings unescaped, numbers and
// booleans as written, null as "null").
class ResultFields {
 public:
  bool has(const std::string& key) const { return values_.contains(key); }
  Result<std::string> text(const std::string& key) const;
  Result<double> number(const std::string& key) const;
  Result<bool> boolean(const std::string& key) const;
  const std::map<std::string, std::string>& all() const { return values_; }

 private:
  friend Result<ResultFields> parse_result_line(std::string_view line);
  std::map<std::string, std::string> values_;
};

// Parses one line ("RESULT {...}" or just "{...}").
Result<ResultFields> parse_result_line(std::string_view line);

// Finds the last RESULT line in a workload's output and parses it.
Result<ResultFields> find_result_line(std::string_view output);

}  // namespace dynamos::workload
