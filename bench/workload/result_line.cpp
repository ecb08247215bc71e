#include "bench/workload/result_line.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace dynamos::workload {
namespace {

void append_escaped(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

// A tiny parser for the flat objects ResultLine writes.
class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Result<std::map<std::string, std::string>> object() {
    std::map<std::string, std::string> out;
    skip();
    if (!eat('{')) return error("expected '{'");
    skip();
    if (eat('}')) return out;
    for (;;) {
      skip();
      auto k = string();
      if (!k) return std::unexpected(k.error());
      skip();
      if (!eat(':')) return error("expected ':' after key \"" + *k + "\"");
      skip();
      auto v = value();
      if (!v) return std::unexpected(v.error());
      out[*k] = *v;
      skip();
      if (eat(',')) continue;
      if (eat('}')) break;
      return error("expected ',' or '}'");
    }
    skip();
    if (i_ != s_.size()) return error("trailing characters after the object");
    return out;
  }

 private:
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n'))
      ++i_;
  }
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  std::unexpected<Error> error(const std::string& what) const {
    return fail(Errc::protocol, "result line, at character " + std::to_string(i_) + ": " + what);
  }
  Result<std::string> string() {
    if (!eat('"')) return error("expected a string");
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) break;
      char e = s_[i_++];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) return error("short \\u escape");
          unsigned long cp = std::strtoul(std::string(s_.substr(i_, 4)).c_str(), nullptr, 16);
          i_ += 4;
          out += cp < 0x80 ? static_cast<char>(cp) : '?';
          break;
        }
        default:
          out += e;
      }
    }
    if (!eat('"')) return error("unterminated string");
    return out;
  }
  Result<std::string> value() {
    if (i_ < s_.size() && s_[i_] == '"') return string();
    std::size_t start = i_;
    while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != '}' && s_[i_] != ' ')
      ++i_;
    std::string v(s_.substr(start, i_ - start));
    if (v.empty()) return error("expected a value");
    if (v == "true" || v == "false" || v == "null") return v;
    char* end = nullptr;
    std::strtod(v.c_str(), &end);
    if (*end != '\0') return error("'" + v + "' is not a JSON number, boolean or null");
    return v;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

void ResultLine::key(std::string_view k) {
  if (!body_.empty()) body_ += ',';
  append_escaped(body_, k);
  body_ += ':';
}

ResultLine& ResultLine::add(std::string_view k, std::string_view text) {
  key(k);
  append_escaped(body_, text);
  return *this;
}

ResultLine& ResultLine::add(std::string_view k, double value) {
  key(k);
  if (!std::isfinite(value)) {
    body_ += "null";
  } else {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", value);
    body_ += buf;
  }
  return *this;
}

ResultLine& ResultLine::add(std::string_view k, std::int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

ResultLine& ResultLine::add(std::string_view k, std::uint64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

ResultLine& ResultLine::add(std::string_view k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  return *this;
}

std::string ResultLine::str() const {
  return std::string(kResultPrefix) + "{" + body_ + "}";
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
  auto obj = Parser(line).object();
  if (!obj) return std::unexpected(obj.error());
  ResultFields f;
  f.values_ = std::move(*obj);
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
