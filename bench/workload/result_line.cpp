#include "bench/workload/result_line.hpp"

#include <cmath>
#include <cstdlib>

namespace dynamos::workload {

ResultLine& ResultLine::add(std::string_view k, std::string_view text) {
  obj_[std::string(k)] = std::string(text);
  return *this;
}

ResultLine& ResultLine::add(std::string_view k, double value) {
  obj_[std::string(k)] = std::isfinite(value) ? nlohmann::ordered_json(value) : nullptr;
  return *this;
}

ResultLine& ResultLine::add(std::string_view k, std::int64_t value) {
  obj_[std::string(k)] = value;
  return *this;
}

ResultLine& ResultLine::add(std::string_view k, std::uint64_t value) {
  obj_[std::string(k)] = value;
  return *this;
}

ResultLine& ResultLine::add(std::string_view k, bool value) {
  obj_[std::string(k)] = value;
  return *this;
}

std::string ResultLine::str() const {
  return std::string(kResultPrefix) +
         obj_.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<std::string> ResultFields::text(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return fail(Errc::not_found, "result line has no field \"" + key + "\"");
  return it->second;
}

Result<double> ResultFields::number(const std::string& key) const {
  auto t = text(key);
  if (!t) return std::unexpected(t.error());
  char* end = nullptr;
  double v = std::strtod(t->c_str(), &end);
  if (t->empty() || *end != '\0')
    return fail(Errc::protocol, "result field \"" + key + "\" is not a number: " + *t);
  return v;
}

Result<bool> ResultFields::boolean(const std::string& key) const {
  auto t = text(key);
  if (!t) return std::unexpected(t.error());
  if (*t == "true") return true;
  if (*t == "false") return false;
  return fail(Errc::protocol, "result field \"" + key + "\" is not a boolean: " + *t);
}

Result<ResultFields> parse_result_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
    line.remove_suffix(1);
  if (line.starts_with(kResultPrefix)) line.remove_prefix(kResultPrefix.size());
  auto obj = nlohmann::json::parse(line, nullptr, false);
  if (obj.is_discarded() || !obj.is_object())
    return fail(Errc::protocol, "result line: not a JSON object: " + std::string(line));
  ResultFields f;
  for (const auto& [key, value] : obj.items()) {
    if (value.is_object() || value.is_array())
      return fail(Errc::protocol, "result line: field \"" + key + "\" is not a flat value");
    f.values_[key] = value.is_string() ? value.get<std::string>() : value.dump();
  }
  return f;
}

Result<ResultFields> find_result_line(std::string_view output) {
  std::size_t pos = std::string_view::npos;
  std::size_t from = 0;
  while (true) {
    std::size_t p = output.find(kResultPrefix, from);
    if (p == std::string_view::npos) break;
    if (p == 0 || output[p - 1] == '\n') pos = p;
    from = p + 1;
  }
  if (pos == std::string_view::npos)
    return fail(Errc::not_found, "no line starting with \"RESULT \" in the workload's output");
  std::size_t end = output.find('\n', pos);
  return parse_result_line(output.substr(pos, end == std::string_view::npos ? end : end - pos));
}

}  // namespace dynamos::workload
